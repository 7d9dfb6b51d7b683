#!/usr/bin/env python3
"""Optimiser throughput (issue 16, Must show): one 1,000-combination grid, three engines.

The grid (``basic``): ``rsi_oversold`` 5 values 20..35, ``rsi_overbought`` 5 values 65..80,
``stop_loss_pct`` 5 values 1..3%, ``take_profit_pct`` 8 values 2..6% = 1,000 combinations, over the
six months of real 5m ETHUSDT candles (52,992 bars), seed rules (decide and fill at the close,
stops/targets on closes), fee 0.0004, as *whole processes* on this machine's 2 cores:

1. **tradeconsole optimize** ``--folds 0 --pbo-blocks 0 --workers 2 --mode seed --json``
   (in-sample only, as the competitors are; includes loading and validating the CSVs, the
   indicators, and the self-check re-running the top 5 through ``run_backtest``). Also timed for
   information: the same grid with the default honest report (4 walk-forward folds + PBO + DSR).
2. **backtesting.py** ``Backtest.optimize`` over the same grid (a ``Strategy`` reading the
   product's precomputed indicator columns, ``sl``/``tp`` on the orders, ``trade_on_close``,
   ``FractionalBacktest``). It needs ~1-3 s per combination here, so by default it runs a random
   ``--bt-combos`` of the 1,000 (``max_tries``) and its rate is combinations / wall time of that
   whole process; the rate is what the ratio compares.
3. **vectorbt** ``Portfolio.from_signals`` with the 1,000 combinations broadcast as columns
   (entries/short entries per RSI pair, ``sl_stop``/``tp_stop`` per column, close-only prices,
   the product's precomputed indicators from an .npz). Installed into a separate venv under
   ``~/.cache/tradeconsole-bench/`` when not importable; if that fails the bench says so.

The competitors' rules are the same rules, not bit-identical backtests (their fill and stop
conventions differ slightly); only the product's numbers are checked against its backtest.
Timings on a shared machine are noisy: the load average is printed before and after, and the
three run interleaved ``--rounds`` times (medians). ``--big`` adds 10,000 random trials over five
years of 5m candles (the six months stitched 10 times, see ``bench_backtest.build_long_series``).

    .venv/bin/python bench/bench_optimize.py [--rounds 3] [--bt-combos 12] [--big]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
DATA_5M = (ROOT.parent / "shared" / "data" / "binance" / "spot" / "ETHUSDT" / "5m").resolve()
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
VBT_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tradeconsole-bench" / "vectorbt-venv"

OVERSOLD = [20.0, 23.75, 27.5, 31.25, 35.0]
OVERBOUGHT = [65.0, 68.75, 72.5, 76.25, 80.0]
STOPS = [0.01, 0.015, 0.02, 0.025, 0.03]
TARGETS = [round(0.02 + k * 0.04 / 7, 6) for k in range(8)]
COMBOS = len(OVERSOLD) * len(OVERBOUGHT) * len(STOPS) * len(TARGETS)
FEE, CASH = 0.0004, 10_000.0


def _csv(vals: list[float]) -> str:
    return ",".join(f"{v:g}" for v in vals)


def product_cmd(data: Path, honest: bool = False) -> list[str]:
    cmd = [
        str(VENV_BIN / "tradeconsole"),
        "optimize",
        "--strategy",
        "basic",
        "--data",
        str(data),
        "--fill-model",
        "seed",
        "--param",
        f"rsi_oversold={_csv(OVERSOLD)}",
        "--param",
        f"rsi_overbought={_csv(OVERBOUGHT)}",
        "--param",
        f"stop_loss_pct={_csv(STOPS)}",
        "--param",
        f"take_profit_pct={_csv(TARGETS)}",
        "--workers",
        "2",
        "--json",
    ]
    return cmd if honest else [*cmd, "--folds", "0", "--pbo-blocks", "0"]


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, dict]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {cmd[1]} failed ({p.returncode}): {p.stderr.strip()[-800:]}")
    return wall, json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- indicators file
def write_indicators(path: Path) -> None:
    """The seed model's indicators (research style) once, for both competitors."""
    import numpy as np
    from tradeconsole.backtest.data import load_candles
    from tradeconsole.core.broker import FILL_MODELS
    from tradeconsole.core.indicators import compute_history

    c, _ = load_candles(DATA_5M, interval="5m")
    ind = compute_history(c.open, c.high, c.low, c.close, FILL_MODELS["seed"].indicator_settings())
    np.savez(
        path,
        open_time=c.open_time,
        open=c.open,
        high=c.high,
        low=c.low,
        close=c.close,
        volume=c.volume,
        rsi=ind["rsi"],
        macd=ind["macd"],
        signal=ind["macd_signal"],
        cci=ind["cci"],
    )


# ----------------------------------------------------------------------------- backtesting.py worker
def worker_btpy(npz: str, combos: int) -> dict:
    t0 = time.perf_counter()
    import warnings

    import numpy as np
    import pandas as pd
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    d = np.load(npz)
    df = pd.DataFrame(
        {
            "Open": d["open"],
            "High": d["high"],
            "Low": d["low"],
            "Close": d["close"],
            "Volume": d["volume"],
            "RSI": d["rsi"],
            "MACD": d["macd"],
            "Signal": d["signal"],
            "CCI": d["cci"],
        },
        index=pd.to_datetime(d["open_time"], unit="ms"),
    )

    class Basic(Strategy):
        os_ = 30.0
        ob = 70.0
        sl = 0.015
        tp = 0.03

        def init(self):
            pass

        def next(self):
            if self.position:
                return
            x = self.data
            c = x.Close[-1]
            if x.MACD[-1] > x.Signal[-1] and x.RSI[-1] < self.os_ and x.CCI[-1] > -100:
                self.buy(sl=c * (1 - self.sl), tp=c * (1 + self.tp))
            elif x.MACD[-1] < x.Signal[-1] and x.RSI[-1] > self.ob and x.CCI[-1] < 100:
                self.sell(sl=c * (1 + self.sl), tp=c * (1 - self.tp))

    # backtesting.py pickles the strategy class to its worker processes: make it a module global
    Basic.__qualname__ = Basic.__name__ = "BtBasic"
    globals()["BtBasic"] = Basic
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = FractionalBacktest(df, Basic, cash=CASH, commission=FEE, trade_on_close=True, fractional_unit=1e-6)
        stats = bt.optimize(
            os_=OVERSOLD, ob=OVERBOUGHT, sl=STOPS, tp=TARGETS, maximize="Sharpe Ratio", max_tries=combos, random_state=0
        )
    t2 = time.perf_counter()
    return {
        "combos": combos,
        "import_load_s": t1 - t0,
        "optimize_s": t2 - t1,
        "best_sharpe": float(stats["Sharpe Ratio"]),
    }


# ----------------------------------------------------------------------------- vectorbt worker
def worker_vbt(npz: str) -> dict:
    t0 = time.perf_counter()
    import numpy as np
    import pandas as pd
    import vectorbt as vbt

    d = np.load(npz)
    t1 = time.perf_counter()
    close = pd.Series(d["close"], index=pd.to_datetime(d["open_time"], unit="ms"))
    macd, sig, rsi, cci = d["macd"], d["signal"], d["rsi"], d["cci"]
    with np.errstate(invalid="ignore"):
        long_base = (macd > sig) & (cci > -100)
        short_base = (macd < sig) & (cci < 100)
    cols, longs, shorts, sls, tps = [], [], [], [], []
    for a in OVERSOLD:
        for b in OVERBOUGHT:
            with np.errstate(invalid="ignore"):
                le = long_base & (rsi < a)
                se = short_base & (rsi > b) & ~le
            for s in STOPS:
                for t in TARGETS:
                    cols.append((a, b, s, t))
                    longs.append(le)
                    shorts.append(se)
                    sls.append(s)
                    tps.append(t)
    idx = pd.MultiIndex.from_tuples(cols, names=["os", "ob", "sl", "tp"])
    entries = pd.DataFrame(np.column_stack(longs), index=close.index, columns=idx)
    short_entries = pd.DataFrame(np.column_stack(shorts), index=close.index, columns=idx)
    pf = vbt.Portfolio.from_signals(
        close,
        entries=entries,
        short_entries=short_entries,
        sl_stop=np.array(sls),
        tp_stop=np.array(tps),
        fees=FEE,
        init_cash=CASH,
        freq="5min",
    )
    sharpe = pf.sharpe_ratio()
    ret = pf.total_return()
    t2 = time.perf_counter()
    return {
        "combos": len(cols),
        "import_load_s": t1 - t0,
        "optimize_s": t2 - t1,
        "best_sharpe": float(np.nanmax(sharpe.values)),
        "best_return": float(np.nanmax(ret.values)),
    }


def ensure_vectorbt() -> str | None:
    """A python that can import vectorbt (this one, or a venv made under the cache dir), or None."""
    for py in (PYTHON, str(VBT_VENV / "bin" / "python")):
        if Path(py).exists() and subprocess.run([py, "-c", "import vectorbt"], capture_output=True).returncode == 0:
            return py
    print(f"vectorbt not importable: installing it into {VBT_VENV} ...", file=sys.stderr)
    VBT_VENV.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "venv", str(VBT_VENV)], capture_output=True, text=True)
    if r.returncode == 0:
        r = subprocess.run([str(VBT_VENV / "bin" / "pip"), "install", "-q", "vectorbt"], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"vectorbt install failed, its row is left out: {r.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    return str(VBT_VENV / "bin" / "python")


def _worker_proc(py: str, kind: str, npz: Path, combos: int = 0) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": ""}
    return timed(
        [py, str(Path(__file__).resolve()), "--worker", kind, "--npz", str(npz), "--bt-combos", str(combos)], env
    )


def big_run(tmp: Path) -> None:
    """10,000 random trials over five years of 5m candles (stitched), whole process."""
    from bench_backtest import build_long_series

    data = build_long_series(tmp / "long", copies=10)
    cmd = [
        str(VENV_BIN / "tradeconsole"),
        "optimize",
        "--strategy",
        "basic",
        "--data",
        str(data),
        "--fill-model",
        "seed",
        "--param",
        "rsi_oversold=15:40:1",
        "--param",
        "rsi_overbought=60:85:1",
        "--param",
        "stop_loss_pct",
        "--param",
        "take_profit_pct",
        "--search",
        "random",
        "--trials",
        "10000",
        "--folds",
        "0",
        "--pbo-blocks",
        "0",
        "--workers",
        "2",
        "--json",
    ]
    cmd[cmd.index("stop_loss_pct")] = "stop_loss_pct=0.005:0.05:0.0005"
    cmd[cmd.index("take_profit_pct")] = "take_profit_pct=0.005:0.1:0.0005"
    wall, out = timed(cmd)
    print(
        f"\n10,000 random trials, {out['data']['bars']:,} bars of 5m (five years, stitched): {wall:.1f} s whole process, "
        f"{10_000 / wall:,.0f} combinations/s, {out['verified_against_backtest']} verified against backtest; "
        f"load {os.getloadavg()[0]:.2f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bt-combos", type=int, default=12, help="backtesting.py combinations per round (of the 1,000)")
    ap.add_argument("--skip", action="append", default=[], choices=("btpy", "vbt", "honest"))
    ap.add_argument("--big", action="store_true", help="also 10,000 random trials over five years of 5m data")
    ap.add_argument("--worker", choices=("btpy", "vbt"), help=argparse.SUPPRESS)
    ap.add_argument("--npz", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "btpy":
        print(json.dumps(worker_btpy(args.npz, args.bt_combos)))
        return 0
    if args.worker == "vbt":
        print(json.dumps(worker_vbt(args.npz)))
        return 0

    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores "
        "(shared machine)"
    )
    vbt_py = None if "vbt" in args.skip else ensure_vectorbt()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        npz = tmp / "ind.npz"
        write_indicators(npz)
        cold, _ = timed(product_cmd(DATA_5M))  # first run may compile/cache the numba kernel
        rows: dict[str, list[float]] = {"product": [], "honest": [], "btpy": [], "vbt": []}
        info: dict[str, dict] = {}
        for r in range(args.rounds):
            wall, out = timed(product_cmd(DATA_5M))
            assert out["evaluated"] == COMBOS and out["verified_against_backtest"] == 5
            rows["product"].append(COMBOS / wall)
            info["product"] = {"wall": wall, "best": out["best"]}
            if "honest" not in args.skip:
                wall, out = timed(product_cmd(DATA_5M, honest=True))
                rows["honest"].append(COMBOS / wall)
                info["honest"] = {"wall": wall, "pbo": out["pbo"]["pbo"], "dsr": out["deflated_sharpe"]["dsr"]}
            if "btpy" not in args.skip:
                wall, out = _worker_proc(PYTHON, "btpy", npz, args.bt_combos)
                rows["btpy"].append(args.bt_combos / wall)
                info["btpy"] = {"wall": wall, **out}
            if vbt_py:
                wall, out = _worker_proc(vbt_py, "vbt", npz)
                rows["vbt"].append(out["combos"] / wall)
                info["vbt"] = {"wall": wall, **out}
            print(
                f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.1f}/s" for k, v in rows.items() if v), file=sys.stderr
            )
        med = {k: statistics.median(v) for k, v in rows.items() if v}
        print(
            f"\n1,000-combination grid (basic, seed rules) over {52_992:,} 5m bars, whole processes, 2 workers, "
            f"median of {args.rounds} interleaved rounds (first, cold run: {cold:.1f} s)"
        )
        print(f"  {'engine':<52} {'combos/s':>10} {'1,000 in':>9} {'product is':>11}")
        names = {
            "product": "tradeconsole optimize (in-sample, top 5 self-checked)",
            "honest": "tradeconsole optimize, default honest report",
            "btpy": f"backtesting.py Backtest.optimize ({args.bt_combos} of 1,000)",
            "vbt": "vectorbt from_signals broadcast (1,000 columns)",
        }
        for k, v in med.items():
            ratio = "" if k == "product" else f"{med['product'] / v:>10.1f}x"
            print(f"  {names[k]:<52} {v:>10,.1f} {COMBOS / v:>8.1f}s {ratio:>11}")
        if "vbt" in info:
            print(
                f"  vectorbt in-process compute alone: {info['vbt']['optimize_s']:.2f} s (imports+load "
                f"{info['vbt']['import_load_s']:.2f} s)"
            )
        if "btpy" in info:
            print(
                f"  backtesting.py in-process optimize alone: {info['btpy']['optimize_s'] / args.bt_combos:.2f} s "
                "per combination"
            )
        if "honest" in info:
            print(f"  honest report: PBO {info['honest']['pbo']:.3f}, deflated Sharpe {info['honest']['dsr']:.3f}")
        if vbt_py is None and "vbt" not in args.skip:
            print("  vectorbt: not measured (install failed, see above)")
        if args.big:
            big_run(tmp)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
