#!/usr/bin/env python3
"""Backtest throughput benchmark (issue 2, last Must-show bullet).

Runs the seed rules of both strategies over

* the six months of real 5m ETHUSDT candles in ``../shared/data`` (Aug 2022 - Jan 2023),
* a three-fold longer 5m series built from them (see ``build_long_series``),
* and, for information, ``engulfing`` on its own interval: the 13 months of 1h candles,

with three implementations, all in the same run and interleaved round by round so that load from
other work on the machine hits all of them alike:

1. **the product**, as whole ``tradeconsole backtest --mode seed --json`` processes (interpreter
   start, imports, CSV load and validation, indicators, simulation, metrics, JSON); the
   in-process ``tradeconsole.backtest.runner.run_backtest`` alone is timed too, for information;
2. **a per-bar pandas loop** of the same rules in the style of a research notebook
   (pandas-computed indicators, then ``for i in range(len(df))`` with ``df['Close'][i]``);
3. **backtesting.py** (``FractionalBacktest``) with a ``Strategy`` subclass reading precomputed
   indicator columns, stop/target as ``sl``/``tp`` on the orders, commission 0.0004.

The two competitors also run as whole processes (this file re-invoked with ``--worker``), so the
ratios compare like with like; each worker also reports its in-process stage times, and the
table shows a second, harsher ratio against the competitor's in-process compute alone
(indicators + simulation, data already in memory).

Usage (from the repository root)::

    .venv/bin/python bench/bench_backtest.py            # full run, several minutes
    .venv/bin/python bench/bench_backtest.py --quick    # fewer repetitions, for a smoke test

Timings on a shared machine are noisy: the table shows medians (and minima) of several
repetitions; ratios are ratios of medians measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT.parent / "shared" / "data" / "binance" / "spot" / "ETHUSDT").resolve()
DATA_5M = SHARED / "5m"
DATA_1H = SHARED / "1h"
VENV_BIN = ROOT / ".venv" / "bin"
TRADECONSOLE = VENV_BIN / "tradeconsole"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable

# The seed rules, with the product's default parameters (core/strategies, core/broker).
CASH = 10_000.0
FEE = 0.0004
STOP = 0.015
TARGET = 0.03
BASIC = {"rsi_lo": 30.0, "rsi_hi": 70.0, "cci_lo": -100.0, "cci_hi": 100.0}
ENGULF = {"rsi_lo": 25.0, "rsi_hi": 70.0}

PUBLIC_COLS = [
    "open_time",
    "Open",
    "High",
    "Low",
    "Close",
    "Volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_base",
    "taker_quote",
    "ignore",
]


# ============================================================================ data sets


def _csv_files(path: Path) -> list[Path]:
    return sorted(p for p in Path(path).iterdir() if p.suffix.lower() == ".csv")


def build_long_series(dest: Path, copies: int = 3, src: Path = DATA_5M) -> Path:
    """Write ``copies`` back-to-back copies of the six months of 5m candles as public-data CSVs.

    Copy k is shifted in time by k spans (so the 5m grid continues without gap or overlap) and
    its prices (OHLC, quote volumes) are multiplied by one factor per copy, chosen so that the
    copy's first open equals the previous copy's last close: the stitched series has no price
    jump at the seams. Base volumes and trade counts are unchanged.

    Why stitching rather than resampling the 1h data: the 1h files hold 13 months, i.e. ~113k
    5m slots, only ~2.1x the six months, and every 5m candle would have to be invented
    (interpolated OHLC), which changes the very patterns the strategies react to. Stitching
    keeps genuine 5m market structure, gives exactly 3x the bars, and because RSI, CCI, the
    MACD crossing and the engulfing pattern are scale-invariant, each copy triggers nearly the
    same trades, so trade counts ~3x the six-month ones are a sanity check of the data set.
    """
    import pandas as pd

    frames = [pd.read_csv(f, header=None, names=PUBLIC_COLS) for f in _csv_files(src)]
    first_open = float(frames[0]["Open"].iloc[0])
    last_close = float(frames[-1]["Close"].iloc[-1])
    t0 = int(frames[0]["open_time"].iloc[0])
    t1 = int(frames[-1]["open_time"].iloc[-1])
    step = int(frames[0]["open_time"].iloc[1] - frames[0]["open_time"].iloc[0])
    span = t1 - t0 + step
    out = dest / "ETHUSDT" / "5m"
    out.mkdir(parents=True, exist_ok=True)
    factor = 1.0
    names: set[str] = set()
    for k in range(copies):
        for f, df in zip(_csv_files(src), frames):
            part = df.copy()
            for c in ("open_time", "close_time"):
                part[c] = part[c] + k * span
            for c in ("Open", "High", "Low", "Close", "quote_volume", "taker_quote"):
                part[c] = (part[c] * factor).round(8)
            first = pd.Timestamp(int(part["open_time"].iloc[0]), unit="ms")
            name = f"ETHUSDT-5m-{first:%Y-%m-%d}.csv"
            assert name not in names, name
            names.add(name)
            part.to_csv(out / name, header=False, index=False, float_format="%.8f")
        factor *= last_close / first_open
    return out


def synth_years(dest: Path, interval: str, years: int = 5, src: Path = DATA_5M, start: str = "2020-01-01") -> Path:
    """``years`` of ``interval`` (``5m`` or ``1m``) candles in the Binance public-data layout
    (monthly ``ETHUSDT-<iv>-YYYY-MM.csv``, 12 columns, no header), built deterministically from the
    six real months of 5m candles.

    The real months are cycled; each cycle is scaled so its first open equals the previous
    cycle's last close (no jump at the seams) and every bar is multiplied by one deterministic
    factor ``1 + 0.002 * sin(bar / 97 + cycle)``, the same for its open, high, low and close, so
    OHLC stays consistent but no cycle repeats the previous one exactly. For ``1m`` every 5m
    candle becomes five 1m candles along the path open -> low -> mid -> high -> (high+close)/2 ->
    close (high first for a falling candle), so the 5m candle's range is reached inside it and its
    volume is split evenly. Nothing here is random: the same inputs always give the same files.
    """
    import numpy as np
    import pandas as pd

    base = pd.concat([pd.read_csv(f, header=None, names=PUBLIC_COLS) for f in _csv_files(src)], ignore_index=True)
    o0, h0, l0, c0 = (base[c].to_numpy(np.float64) for c in ("Open", "High", "Low", "Close"))
    v0 = base["Volume"].to_numpy(np.float64)
    step = 60_000 if interval == "1m" else 300_000
    t_start = int(pd.Timestamp(start, tz="UTC").value // 1_000_000)
    t_end = int((pd.Timestamp(start, tz="UTC") + pd.DateOffset(years=years)).value // 1_000_000)
    bars5 = (t_end - t_start) // 300_000
    cycles = -(-bars5 // len(o0))
    parts = {k: [] for k in ("o", "h", "l", "c", "v")}
    scale = 1.0
    for k in range(cycles):
        f = scale * (1 + 0.002 * np.sin(np.arange(len(o0)) / 97.0 + k))
        for key, col in (("o", o0), ("h", h0), ("l", l0), ("c", c0)):
            parts[key].append(col * f)
        parts["v"].append(v0)
        scale = parts["c"][-1][-1] / o0[0]
    o, h, lo, c, v = (np.concatenate(parts[key])[:bars5] for key in ("o", "h", "l", "c", "v"))
    if interval == "1m":
        up = c >= o
        a = np.where(up, lo, h)
        b = np.where(up, h, lo)
        pts = np.stack([o, a, (a + b) / 2, b, (b + c) / 2, c], axis=1)  # 6 points, 5 one-minute legs
        o = pts[:, :-1].reshape(-1)
        c = pts[:, 1:].reshape(-1)
        h, lo = np.maximum(o, c), np.minimum(o, c)
        v = np.repeat(v / 5, 5)
    n = len(o)
    ot = t_start + np.arange(n, dtype=np.int64) * step
    o, h, lo, c = (np.round(x, 2) for x in (o, h, lo, c))
    h = np.maximum(h, np.maximum(o, c))  # rounding must not break OHLC order
    lo = np.minimum(lo, np.minimum(o, c))
    v = np.round(v, 4)
    df = pd.DataFrame(
        {
            "open_time": ot,
            "Open": o,
            "High": h,
            "Low": lo,
            "Close": c,
            "Volume": v,
            "close_time": ot + step - 1,
            "quote_volume": np.round(v * c, 4),
            "trades": (v * 3).astype(np.int64) + 1,
            "taker_base": np.round(v / 2, 4),
            "taker_quote": np.round(v * c / 2, 4),
            "ignore": 0,
        }
    )
    out = dest / "ETHUSDT" / interval
    out.mkdir(parents=True, exist_ok=True)
    month = pd.to_datetime(ot, unit="ms").strftime("%Y-%m").to_numpy()
    cuts = np.flatnonzero(month[1:] != month[:-1]) + 1
    for lo_i, hi_i in zip(np.r_[0, cuts], np.r_[cuts, n]):
        df.iloc[lo_i:hi_i].to_csv(out / f"ETHUSDT-{interval}-{month[lo_i]}.csv", header=False, index=False)
    return out


def build_floor_series(dest: Path, bars: int = 288, src: Path = DATA_5M) -> Path:
    """One day of 5m candles: a whole-process run on it measures the fixed cost (start-up, imports)."""
    out = dest / "floor" / "ETHUSDT" / "5m"
    out.mkdir(parents=True, exist_ok=True)
    lines = _csv_files(src)[0].read_text().splitlines(keepends=True)[:bars]
    (out / "ETHUSDT-5m-2022-08-01.csv").write_text("".join(lines))
    return out


# ============================================================================ competitor 1: notebook loop


def notebook_load(path: str):
    """Read a directory of Binance public-data CSVs (no header) the way a notebook would."""
    import pandas as pd

    df = pd.concat(
        [
            pd.read_csv(f, header=None, usecols=range(6), names=["open_time", "Open", "High", "Low", "Close", "Volume"])
            for f in _csv_files(Path(path))
        ],
        ignore_index=True,
    )
    return df


def _ema(s, n: int):
    """EMA seeded with the SMA of its first n values, then ewm(adjust=False) (what pandas-ta does)."""
    import numpy as np

    s = s.copy()
    first = int(s.notna().to_numpy().argmax())  # position of the first defined value
    s.iloc[first + n - 1] = s.iloc[first : first + n].mean()
    s.iloc[: first + n - 1] = np.nan
    return s.ewm(span=n, adjust=False).mean()


def notebook_indicators(df, rsi: str = "sma") -> None:
    """The product's indicators with plain pandas/numpy: RSI(14) on simple means (seed) or
    Wilder's smoothing (``rsi="wilder"``, realistic: the SMA of the first 14 changes, then
    ``ewm(alpha=1/14, adjust=False)``, as pandas-ta's ``rma`` after the product's seed),
    MACD(12,26,9) with pandas-ta's SMA-seeded EMAs, CCI(20). Shared by both competitors, so
    their indicator cost is the same and small."""
    import numpy as np

    delta = df["Close"].diff()
    if rsi == "wilder":
        gain, loss = delta.clip(lower=0), (-delta).clip(lower=0)
        for s in (gain, loss):  # seed bar 14 with the mean of changes 1..14, earlier bars NaN
            s.iloc[14] = s.iloc[1:15].mean()
            s.iloc[:14] = np.nan
        gain = gain.ewm(alpha=1 / 14, adjust=False).mean()
        loss = loss.ewm(alpha=1 / 14, adjust=False).mean()
    else:
        gain = delta.clip(lower=0).rolling(14).mean()
        loss = (-delta).clip(lower=0).rolling(14).mean()
    df["RSI"] = 100 * gain / (gain + loss)
    df["MACD"] = _ema(df["Close"], 12) - _ema(df["Close"], 26)
    df["Signal"] = _ema(df["MACD"], 9)
    tp = (df["High"] + df["Low"] + df["Close"]) / 3
    # Mean absolute deviation over 20 bars, vectorised. The usual notebook line
    # ``tp.rolling(20).apply(lambda x: np.abs(x - x.mean()).mean(), raw=True)`` gives the same
    # numbers ~10x slower (~0.4 s per 53k bars); it is not used, to keep the baselines fast.
    win = np.lib.stride_tricks.sliding_window_view(tp.to_numpy(), 20)
    mad = np.full(len(tp), np.nan)
    mad[19:] = np.abs(win - win.mean(axis=1, keepdims=True)).mean(axis=1)
    df["CCI"] = (tp - tp.rolling(20).mean()) / (0.015 * mad)


def notebook_loop(df, strategy: str) -> dict:
    """The seed rules, bar by bar: decide and fill at the close, stop/target checked on closes
    (stop first), no new entry on the bar that closed a position, fee on the stake."""
    cash = CASH
    position = 0  # +1 long, -1 short
    qty = entry = stop = target = 0.0
    trades = []
    equity = []
    for i in range(len(df)):
        close = df["Close"][i]
        exited = False
        if position == 1:
            if close <= stop or close >= target:
                exited = True
        elif position == -1:
            if close >= stop or close <= target:
                exited = True
        if exited:
            pnl = position * qty * (close - entry)
            fee = qty * close * FEE
            cash += pnl - fee
            trades.append({"side": position, "entry": entry, "exit": close, "pnl": pnl - fee, "bar": i})
            position = 0
        if position == 0 and not exited:
            signal = 0
            if strategy == "basic":
                if (
                    df["MACD"][i] > df["Signal"][i]
                    and df["RSI"][i] < BASIC["rsi_lo"]
                    and df["CCI"][i] > BASIC["cci_lo"]
                ):
                    signal = 1
                elif (
                    df["MACD"][i] < df["Signal"][i]
                    and df["RSI"][i] > BASIC["rsi_hi"]
                    and df["CCI"][i] < BASIC["cci_hi"]
                ):
                    signal = -1
            elif i > 0:
                o, po, pc = df["Open"][i], df["Open"][i - 1], df["Close"][i - 1]
                if close > o and pc < po and pc >= o and po <= close and df["RSI"][i] < ENGULF["rsi_lo"]:
                    signal = 1
                elif close < o and pc > po and pc <= o and po >= close and df["RSI"][i] > ENGULF["rsi_hi"]:
                    signal = -1
            if signal:
                fee = cash * FEE
                qty = (cash - fee) / close
                cash -= fee
                position, entry = signal, close
                stop = close * (1 - STOP) if signal == 1 else close * (1 + STOP)
                target = close * (1 + TARGET) if signal == 1 else close * (1 - TARGET)
        equity.append(cash + position * qty * (close - entry) if position else cash)
    return {"trades": len(trades), "final_equity": equity[-1] if equity else cash}


def run_notebook(path: str, strategy: str) -> dict:
    t0 = time.perf_counter()
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    t1 = time.perf_counter()
    df = notebook_load(path)
    t2 = time.perf_counter()
    notebook_indicators(df)
    t3 = time.perf_counter()
    res = notebook_loop(df, strategy)
    t4 = time.perf_counter()
    return {
        **res,
        "bars": len(df),
        "import_s": t1 - t0,
        "load_s": t2 - t1,
        "indicators_s": t3 - t2,
        "sim_s": t4 - t3,
        "compute_s": t4 - t2,
    }


# ============================================================================ competitor 2: backtesting.py


def run_backtesting_py(path: str, strategy: str) -> dict:
    """The seed rules in backtesting.py. Entries fill at the signal candle's close
    (``trade_on_close=True``, the closest it gets to seed mode), but its ``sl``/``tp`` are
    contingent orders hit intrabar from high/low on later bars and filled at the level, where
    seed mode checks closes and fills at the close. So trade counts differ somewhat."""
    t0 = time.perf_counter()
    import pandas as pd
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    t1 = time.perf_counter()
    df = notebook_load(path)
    t2 = time.perf_counter()
    notebook_indicators(df)
    df.index = pd.to_datetime(df["open_time"], unit="ms")  # backtesting.py wants a DatetimeIndex
    t3 = time.perf_counter()

    class SeedRules(Strategy):
        kind = strategy

        def init(self):
            pass

        def next(self):
            if self.position:
                return
            # seed rule: no new entry on the bar that closed a position
            ct = self.closed_trades
            if ct and ct[-1].exit_bar == len(self.data) - 1:
                return
            d = self.data
            close = d.Close[-1]
            side = 0
            if self.kind == "basic":
                macd, sig, rsi, cci = d.MACD[-1], d.Signal[-1], d.RSI[-1], d.CCI[-1]
                if macd > sig and rsi < BASIC["rsi_lo"] and cci > BASIC["cci_lo"]:
                    side = 1
                elif macd < sig and rsi > BASIC["rsi_hi"] and cci < BASIC["cci_hi"]:
                    side = -1
            elif len(d) > 1:
                o, po, pc, rsi = d.Open[-1], d.Open[-2], d.Close[-2], d.RSI[-1]
                if close > o and pc < po and pc >= o and po <= close and rsi < ENGULF["rsi_lo"]:
                    side = 1
                elif close < o and pc > po and pc <= o and po >= close and rsi > ENGULF["rsi_hi"]:
                    side = -1
            if side == 1:
                self.buy(sl=close * (1 - STOP), tp=close * (1 + TARGET))
            elif side == -1:
                self.sell(sl=close * (1 + STOP), tp=close * (1 - TARGET))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = FractionalBacktest(
            df[["Open", "High", "Low", "Close", "Volume", "RSI", "MACD", "Signal", "CCI"]],
            SeedRules,
            cash=CASH,
            commission=FEE,
            trade_on_close=True,
            fractional_unit=1e-6,
        )
        stats = bt.run()
    t4 = time.perf_counter()
    return {
        "trades": int(stats["# Trades"]),
        "final_equity": float(stats["Equity Final [$]"]),
        "bars": len(df),
        "import_s": t1 - t0,
        "load_s": t2 - t1,
        "indicators_s": t3 - t2,
        "sim_s": t4 - t3,
        "compute_s": t4 - t2,
    }


def run_backtesting_py_realistic(path: str, strategy: str) -> dict:
    """The realistic rules in backtesting.py (``--scale``): decide on the closed candle, fill at
    the next open (its default, ``trade_on_close=False``), ``sl``/``tp`` hit intrabar from the
    high/low, commission on notional, the whole equity as stake. Only ``basic`` is run."""
    t0 = time.perf_counter()
    import pandas as pd
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    t1 = time.perf_counter()
    df = notebook_load(path)
    t2 = time.perf_counter()
    notebook_indicators(df, rsi="wilder")
    df.index = pd.to_datetime(df["open_time"], unit="ms")
    t3 = time.perf_counter()

    class RealisticRules(Strategy):
        def init(self):
            pass

        def next(self):
            if self.position or self.orders:
                return
            d = self.data
            close = d.Close[-1]
            macd, sig, rsi, cci = d.MACD[-1], d.Signal[-1], d.RSI[-1], d.CCI[-1]
            if macd > sig and rsi < BASIC["rsi_lo"] and cci > BASIC["cci_lo"]:
                self.buy(sl=close * (1 - STOP), tp=close * (1 + TARGET))
            elif macd < sig and rsi > BASIC["rsi_hi"] and cci < BASIC["cci_hi"]:
                self.sell(sl=close * (1 + STOP), tp=close * (1 - TARGET))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = FractionalBacktest(
            df[["Open", "High", "Low", "Close", "Volume", "RSI", "MACD", "Signal", "CCI"]],
            RealisticRules,
            cash=CASH,
            commission=FEE,
            fractional_unit=1e-6,
        )
        stats = bt.run()
    t4 = time.perf_counter()
    return {
        "trades": int(stats["# Trades"]),
        "final_equity": float(stats["Equity Final [$]"]),
        "bars": len(df),
        "import_s": t1 - t0,
        "load_s": t2 - t1,
        "indicators_s": t3 - t2,
        "sim_s": t4 - t3,
        "compute_s": t4 - t2,
    }


def run_vectorbt_realistic(path: str, strategy: str) -> dict:
    """The realistic rules in vectorbt (``--scale``): signals on the closed candle, shifted one
    bar and filled at that bar's open (``price=open``), stop/target as ``sl_stop``/``tp_stop``
    checked intrabar from the high/low, fees on notional, the whole equity as stake, one
    position at a time. Only ``basic`` is run."""
    t0 = time.perf_counter()
    import numpy as np
    import vectorbt as vbt

    t1 = time.perf_counter()
    df = notebook_load(path)
    t2 = time.perf_counter()
    notebook_indicators(df, rsi="wilder")
    with np.errstate(invalid="ignore"):
        long = (df["MACD"] > df["Signal"]) & (df["RSI"] < BASIC["rsi_lo"]) & (df["CCI"] > BASIC["cci_lo"])
        short = (df["MACD"] < df["Signal"]) & (df["RSI"] > BASIC["rsi_hi"]) & (df["CCI"] < BASIC["cci_hi"])
    t3 = time.perf_counter()
    pf = vbt.Portfolio.from_signals(
        df["Close"],
        entries=long.shift(1, fill_value=False),
        short_entries=short.shift(1, fill_value=False),
        price=df["Open"],
        open=df["Open"],
        high=df["High"],
        low=df["Low"],
        sl_stop=STOP,
        tp_stop=TARGET,
        fees=FEE,
        init_cash=CASH,
        size=np.inf,
        accumulate=False,
        freq="1min",
    )
    trades = int(pf.trades.count())
    final = float(pf.final_value())
    t4 = time.perf_counter()
    return {
        "trades": trades,
        "final_equity": final,
        "bars": len(df),
        "import_s": t1 - t0,
        "load_s": t2 - t1,
        "indicators_s": t3 - t2,
        "sim_s": t4 - t3,
        "compute_s": t4 - t2,
    }


WORKERS = {
    "loop": run_notebook,
    "btpy": run_backtesting_py,
    "btpy_real": run_backtesting_py_realistic,
    "vbt_real": run_vectorbt_realistic,
}


# ============================================================================ the product


def run_product_process(data: Path, strategy: str, interval: str) -> tuple[float, dict]:
    cmd = [
        str(TRADECONSOLE),
        "backtest",
        "--strategy",
        strategy,
        "--data",
        str(data),
        "--interval",
        interval,
        "--fill-model",
        "seed",
        "--json",
    ]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_user_env())
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    r = json.loads(out.stdout)
    return wall, {"trades": r["trades"], "final_equity": r["final_equity"]}


def run_worker_process(kind: str, data: Path, strategy: str) -> tuple[float, dict]:
    cmd = [PYTHON, str(Path(__file__).resolve()), "--worker", kind, "--strategy", strategy, "--data", str(data)]
    t0 = time.perf_counter()
    env = {**_user_env(), "TQDM_DISABLE": "1"}  # no progress bar for backtesting.py
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


_IMPORT_PROBE = """
import time, json
t0 = time.perf_counter(); import numpy
t1 = time.perf_counter(); import pandas
t2 = time.perf_counter(); import pandas_ta
t3 = time.perf_counter(); import tradeconsole.backtest.data, tradeconsole.backtest.runner, tradeconsole.backtest.metrics, tradeconsole.backtest.report, tradeconsole.core.strategies
t4 = time.perf_counter()
print(json.dumps({"numpy": t1 - t0, "pandas": t2 - t1, "pandas_ta (numba, talib)": t3 - t2, "product modules": t4 - t3}))
"""


def probe_imports() -> dict[str, float]:
    """Import cost of what ``tradeconsole backtest`` loads, in a fresh interpreter (same order as the
    command, so each line is the increment over the previous ones)."""
    out = subprocess.run([PYTHON, "-c", _IMPORT_PROBE], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout)


class InProcess:
    """``run_backtest`` alone on candles already loaded (information only)."""

    def __init__(self) -> None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tradeconsole.backtest.data import load_candles
        from tradeconsole.backtest.runner import run_backtest
        from tradeconsole.core.strategies import make_strategy

        self.load_candles, self.run_backtest, self.make_strategy = load_candles, run_backtest, make_strategy
        self.cache: dict[tuple[str, str], object] = {}

    def time(self, data: Path, strategy: str, interval: str) -> tuple[float, dict]:
        key = (str(data), interval)
        if key not in self.cache:
            self.cache[key] = self.load_candles(data, interval=interval)[0]
            # warm-up: the first call pays for importing pandas-ta (and numba under it)
            self.run_backtest(self.cache[key], self.make_strategy(strategy), interval=interval, fill_model="seed")
        candles = self.cache[key]
        t0 = time.perf_counter()
        r = self.run_backtest(candles, self.make_strategy(strategy), interval=interval, fill_model="seed")
        wall = time.perf_counter() - t0
        return wall, {"trades": len(r.trades), "final_equity": float(r.equity[-1])}


# ============================================================================ driver


@dataclass
class Case:
    strategy: str
    label: str
    data: Path
    interval: str
    desc: str = ""
    bars: int = 0
    times: dict[str, list[float]] = field(default_factory=dict)
    stages: dict[str, list[dict]] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)

    def add(self, impl: str, wall: float, res: dict) -> None:
        self.times.setdefault(impl, []).append(wall)
        self.stages.setdefault(impl, []).append(res)
        self.results[impl] = res

    def _vals(self, impl: str, key: str | None) -> list[float]:
        return self.times[impl] if key is None else [st[key] for st in self.stages[impl]]

    def paired(self, impl: str, key: str | None = None, against: str = "product") -> float:
        """Median over rounds of impl's time / against's time in the same round (both ran back to
        back, so a burst of load from elsewhere hits both)."""
        a, b = self._vals(impl, key), self._vals(against, None)
        return statistics.median(x / y for x, y in zip(a, b))

    def med(self, impl: str, key: str | None = None) -> float:
        if key is None:
            return statistics.median(self.times[impl])
        return statistics.median(s[key] for s in self.stages[impl])


IMPL_NAMES = {
    "product": "tradeconsole backtest (whole process)",
    "inproc": "  run_backtest in-process (info)",
    "loop": "per-bar pandas loop (whole process)",
    "btpy": "backtesting.py 0.6.6 (whole process)",
}


def _fmt_rate(bars: int, secs: float) -> str:
    r = bars / secs if secs > 0 else float("inf")
    return f"{r / 1e6:.2f}M" if r >= 1e6 else f"{r / 1e3:.1f}k"


def print_table(cases: list[Case], floor: list[float], imports: list[dict[str, float]], args) -> None:
    w = 100
    print("\n" + "=" * w)
    print("Backtest throughput, seed rules. Times are medians (and minima) of the repetitions. ratio = median over")
    print("rounds of (that row's time / the product's whole-process time P in the same round, run just before it):")
    print("above 1 means the product is that many times faster. bars/s = bars / median time.")
    print("=" * w)
    hdr = f"{'implementation':<44}{'reps':>5}{'median s':>10}{'min s':>9}{'bars/s':>10}{'ratio':>10}"
    for c in cases:
        print(f"\n{c.strategy} on {c.label} {c.desc}: {c.bars:,} bars")
        print(hdr)
        p = c.med("product")
        for impl in ("product", "inproc", "loop", "btpy"):
            if impl not in c.times:
                continue
            m = c.med(impl)
            ratio = "" if impl in ("product", "inproc") else f"{c.paired(impl):8.1f}x"
            if impl == "inproc":
                ratio = f"{m / p:.0%} of P"
            print(
                f"{IMPL_NAMES[impl]:<44}{len(c.times[impl]):>5}{m:>10.3f}{min(c.times[impl]):>9.3f}"
                f"{_fmt_rate(c.bars, m):>10}{ratio:>10}"
            )
            if impl in ("loop", "btpy"):
                comp = c.med(impl, "compute_s")
                sim = c.med(impl, "sim_s")
                what = "loop" if impl == "loop" else "bt.run()"
                print(
                    f"{'    in-process indicators+' + what:<44}{'':>5}{comp:>10.3f}{'':>9}"
                    f"{_fmt_rate(c.bars, comp):>10}{c.paired(impl, 'compute_s'):>9.1f}x"
                )
                print(
                    f"{'    in-process ' + what + ' alone':<44}{'':>5}{sim:>10.3f}{'':>9}"
                    f"{_fmt_rate(c.bars, sim):>10}{'':>10}"
                )
    if floor:
        print(
            f"\nproduct start-up floor (whole process on {args.floor_bars} bars): median {statistics.median(floor):.3f} s, "
            f"min {min(floor):.3f} s over {len(floor)} runs"
        )
        if imports:
            parts = [f"{k} {statistics.median(d[k] for d in imports):.3f} s" for k in imports[0]]
            print(f"  imports in a fresh interpreter (medians): {', '.join(parts)}")
        f = min(floor)
        print("  cost above the floor (min - min, the least noisy estimate) and the marginal rate it implies:")
        for c in cases:
            extra = min(c.times["product"]) - f
            if extra > 0:
                print(f"    {c.strategy} on {c.label}: {extra:.3f} s -> {_fmt_rate(c.bars, extra)} bars/s")

    print("\n" + "-" * w)
    print("Trade counts and final equity (seed rules)")
    print("-" * w)
    print(f"{'case':<28}{'product':>22}{'per-bar loop':>22}{'backtesting.py':>22}")
    for c in cases:
        cells = []
        for impl in ("product", "loop", "btpy"):
            r = c.results.get(impl)
            cells.append("-" if r is None else f"{r['trades']:>4} / {r['final_equity']:>10.2f}")
        same = ""
        if "loop" in c.results:
            p, lp = c.results["product"], c.results["loop"]
            same = (
                "  = " if p["trades"] == lp["trades"] and abs(p["final_equity"] - lp["final_equity"]) < 1e-6 else "  !="
            )
        print(f"{c.strategy + ' / ' + c.label:<28}{cells[0]:>22}{cells[1]:>22}{cells[2]:>22}{same}")
    print("(trades / final equity from 10000; '=' marks product and loop identical to 1e-6. The per-bar loop")
    print(
        " implements the seed rules exactly and must match the product. backtesting.py fills entries at the signal close"
    )
    print(" (trade_on_close=True) but executes them when the next bar is processed and hits sl/tp intrabar")
    print(" from high/low at the level, not on closes, so its counts and equity differ.)")

    print("\n" + "-" * w)
    print("Goals (issue 2)")
    print("-" * w)
    six = [c for c in cases if c.label == "5m 6 months"]
    long = [c for c in cases if c.label == "5m 3x long"]
    for c in six:
        m, lo = c.med("product"), min(c.times["product"])
        verdict = "PASS" if m < 1.0 else ("FAIL" if lo >= 1.0 else "MIXED: median over, min under")
        print(f"[{verdict}] {c.strategy} six months, whole process < 1 s: median {m:.3f} s (min {lo:.3f} s)")
    for c in long:
        if "loop" in c.times:
            r, rc = c.paired("loop"), c.paired("loop", "compute_s")
            print(
                f"[{'PASS' if r >= 10 else 'FAIL'}] {c.strategy} long run >= 10x per-bar loop: {r:.1f}x process vs process "
                f"({rc:.1f}x vs its in-process compute alone)"
            )
        if "btpy" in c.times:
            r, rc = c.paired("btpy"), c.paired("btpy", "compute_s")
            print(
                f"[{'PASS' if r >= 3 else 'FAIL'}] {c.strategy} long run >= 3x backtesting.py: {r:.1f}x process vs process "
                f"({rc:.1f}x vs its in-process compute alone)"
            )
    print("For information, in-process engine against in-process engine (indicators + simulation, data in memory,")
    print("no interpreter start-up or imports): median over rounds of competitor's time / run_backtest's time")
    for c in long:
        q = c.med("inproc")
        parts = [
            f"{name} {c.paired(impl, 'compute_s', 'inproc'):.1f}x"
            for impl, name in (("loop", "per-bar loop"), ("btpy", "backtesting.py"))
            if impl in c.stages
        ]
        print(f"  {c.strategy} long run: run_backtest {q:.3f} s; " + ", ".join(parts))


def _versions() -> str:
    out = subprocess.run(
        [
            PYTHON,
            "-c",
            "import pandas, numpy, backtesting; print(pandas.__version__, numpy.__version__, backtesting.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    pd_v, np_v, bt_v = (out.stdout.split() + ["?", "?", "?"])[:3]
    return f"python {platform.python_version()}, pandas {pd_v}, numpy {np_v}, backtesting {bt_v}"


# ============================================================================ --scale (issue 15)

VBT_VENV = Path(tempfile.gettempdir()) / "tcbench-vectorbt-venv"


def vectorbt_python() -> str:
    """A Python that can import vectorbt: this one if it can, else a separate venv (built once,
    with ``pip install vectorbt`` from PyPI) so the product's own venv stays as it is."""
    if subprocess.run([PYTHON, "-c", "import vectorbt"], capture_output=True).returncode == 0:
        return PYTHON
    py = VBT_VENV / "bin" / "python"
    if (
        not py.exists()
        or subprocess.run([str(py), "-c", "import vectorbt, backtesting"], capture_output=True).returncode != 0
    ):
        print(f"installing vectorbt into {VBT_VENV} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VBT_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "vectorbt", "backtesting==0.6.6"], check=True)
    return str(py)


def _user_env() -> dict[str, str]:
    """The environment as a user's shell has it: without ``PYTHONDONTWRITEBYTECODE`` (set on
    these sandboxes), which would make every run compile the product's own modules from source
    (~50 ms) while the competitors, installed with pip, load bytecode compiled at install."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _peak_rss_mb(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one whole child process, the peak being that
    process's own (``/usr/bin/time -f %M``), not the maximum over every child so far."""
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    rss_kb = float(out.stderr.strip().splitlines()[-1])
    return wall, rss_kb / 1024, out.stdout


def scale_main(args) -> int:
    """Issue 15: ``basic``, realistic rules, 53k / 525k / 2.6M bars, whole processes, the product
    (from its Parquet cache after a first, cold run; the cold run is reported too) vs
    backtesting.py and vectorbt, interleaved round by round, with peak RSS per process."""
    root = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="tcbench-scale-"))
    sets = [("6 months 5m", DATA_5M, "5m")]
    for iv, label in (("5m", "5 years 5m"), ("1m", "5 years 1m")):
        d = root / "ETHUSDT" / iv
        if not d.is_dir():
            t = time.perf_counter()
            synth_years(root, iv)
            print(f"synthesised {label} in {d} ({time.perf_counter() - t:.0f} s)", flush=True)
        sets.append((label, d, iv))
    vpy = None if "vbt" in args.skip else vectorbt_python()
    cache = Path(tempfile.mkdtemp(prefix="tcbench-cache-"))
    env = {**_user_env(), "TRADECONSOLE_DATA_DIR": str(cache), "TQDM_DISABLE": "1"}
    rows = []
    for label, d, iv in sets:
        prod = [
            str(TRADECONSOLE),
            "backtest",
            "--strategy",
            "basic",
            "--data",
            str(d),
            "--interval",
            iv,
            "--fill-model",
            "realistic",
            "--json",
        ]
        cold = _peak_rss_mb(prod, env)  # first run: CSV parse, writes the cache (and compiles once)
        res: dict[str, list[tuple[float, float]]] = {"product": [], "btpy": [], "vbt": []}
        out: dict[str, dict] = {"product": json.loads(cold[2])}
        for _ in range(args.reps):
            w, r, o = _peak_rss_mb(prod, env)
            res["product"].append((w, r))
            if "btpy" not in args.skip:
                w, r, o = _peak_rss_mb(
                    [
                        PYTHON,
                        str(Path(__file__).resolve()),
                        "--worker",
                        "btpy_real",
                        "--strategy",
                        "basic",
                        "--data",
                        str(d),
                    ],
                    env,
                )
                res["btpy"].append((w, r))
                out["btpy"] = json.loads(o.strip().splitlines()[-1])
            if vpy is not None:
                w, r, o = _peak_rss_mb(
                    [
                        vpy,
                        str(Path(__file__).resolve()),
                        "--worker",
                        "vbt_real",
                        "--strategy",
                        "basic",
                        "--data",
                        str(d),
                    ],
                    env,
                )
                res["vbt"].append((w, r))
                out["vbt"] = json.loads(o.strip().splitlines()[-1])
        rows.append((label, d, cold, res, out))
        # each set's raw numbers at once: a run cut short still leaves what it measured
        print(
            f"{label} done (load avg {os.getloadavg()[0]:.1f}): product cold {cold[0]:.2f} s {cold[1]:.0f} MB; "
            + "; ".join(f"{k} " + ", ".join(f"{w:.2f} s {r:.0f} MB" for w, r in v) for k, v in res.items())
            + "; "
            + "; ".join(f"{k} {v['trades']} trades {v['final_equity']:.2f}" for k, v in out.items()),
            flush=True,
        )
    print("\n| history | product cold (CSV) | product (cache) | backtesting.py | vectorbt | ratio btpy | ratio vbt |")
    print("|---|---|---|---|---|---|---|")
    for label, d, cold, res, out in rows:

        def cell(k: str, res: dict = res) -> str:
            if not res[k]:
                return "-"
            return f"{statistics.median(w for w, _ in res[k]):.2f} s, {statistics.median(r for _, r in res[k]):.0f} MB"

        def ratio(k: str, res: dict = res) -> str:
            if not res[k]:
                return "-"
            return f"{statistics.median(a[0] / b[0] for a, b in zip(res[k], res['product'])):.1f}x"

        print(
            f"| {label} | {cold[0]:.2f} s, {cold[1]:.0f} MB | {cell('product')} | {cell('btpy')} | {cell('vbt')} "
            f"| {ratio('btpy')} | {ratio('vbt')} |"
        )
    print("\ntrades / final equity:")
    for label, d, cold, res, out in rows:
        print(f"  {label}: " + "; ".join(f"{k} {v['trades']} / {v['final_equity']:.2f}" for k, v in out.items()))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7, help="repetitions for the product (default 7)")
    ap.add_argument(
        "--baseline-reps", type=int, default=3, help="repetitions for the per-bar loop and backtesting.py (default 3)"
    )
    ap.add_argument("--quick", action="store_true", help="2 product reps, 1 baseline rep")
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("loop", "btpy", "1h", "vbt"),
        help="leave out an implementation or the 1h case",
    )
    ap.add_argument("--floor-bars", type=int, default=288, help=argparse.SUPPRESS)
    # worker mode (internal): one competitor run in a fresh process, JSON on stdout
    ap.add_argument("--worker", choices=tuple(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--strategy", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument(
        "--scale",
        action="store_true",
        help="issue 15: basic, realistic rules, 53k/525k/2.6M bars vs backtesting.py and vectorbt",
    )
    ap.add_argument("--data-dir", help="--scale: where the synthesised 5-year series are (built if missing)")
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.data, args.strategy)))
        return 0
    if args.quick:
        args.reps, args.baseline_reps = 2, 1
    if args.scale:
        args.reps = 1 if args.quick else 3
        return scale_main(args)
    args.reps = max(args.reps, args.baseline_reps)  # every baseline round needs its product run
    for p in (DATA_5M, DATA_1H, TRADECONSOLE):
        if not p.exists():
            raise SystemExit(f"missing: {p}")

    print(
        f"tradeconsole backtest benchmark  ({_versions()}, {os.cpu_count()} CPUs, "
        f"load avg {os.getloadavg()[0]:.2f} at start)"
    )
    with tempfile.TemporaryDirectory(prefix="tcbench-") as tmp:
        t = time.perf_counter()
        long_dir = build_long_series(Path(tmp))
        floor_dir = build_floor_series(Path(tmp), args.floor_bars)
        print(f"built the 3x series in {long_dir} ({time.perf_counter() - t:.1f} s)")
        cases = [
            Case("basic", "5m 6 months", DATA_5M, "5m", "(Aug 2022 - Jan 2023, real)"),
            Case("engulfing", "5m 6 months", DATA_5M, "5m", "(Aug 2022 - Jan 2023, real)"),
            Case("basic", "5m 3x long", long_dir, "5m", "(18 months: the 6 months stitched 3 times)"),
            Case("engulfing", "5m 3x long", long_dir, "5m", "(18 months: the 6 months stitched 3 times)"),
        ]
        if "1h" not in args.skip:
            cases.append(
                Case("engulfing", "1h 13 months", DATA_1H, "1h", "(Jan 2022 - Jan 2023, real; its own interval)")
            )
        inproc = InProcess()
        floor: list[float] = []
        imports: list[dict[str, float]] = []
        rounds = max(args.reps, args.baseline_reps)
        for rnd in range(rounds):
            t_round = time.perf_counter()
            if rnd < args.reps:
                floor.append(run_product_process(floor_dir, "basic", "5m")[0])
                imports.append(probe_imports())
            for c in cases:
                if rnd < args.reps:
                    c.add("product", *run_product_process(c.data, c.strategy, c.interval))
                    c.add("inproc", *inproc.time(c.data, c.strategy, c.interval))
                if rnd < args.baseline_reps:
                    for kind in ("loop", "btpy"):
                        if kind not in args.skip:
                            wall, res = run_worker_process(kind, c.data, c.strategy)
                            c.bars = res["bars"]
                            c.add(kind, wall, res)
                if not c.bars:
                    c.bars = len(inproc.cache[(str(c.data), c.interval)])
            print(
                f"round {rnd + 1}/{rounds} done in {time.perf_counter() - t_round:.1f} s "
                f"(load avg {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    print_table(cases, floor, imports, args)
    print(f"\nload avg at end {os.getloadavg()[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
