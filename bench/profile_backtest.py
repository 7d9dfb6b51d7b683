#!/usr/bin/env python3
"""Where a backtest's time and memory go, stage by stage (issue 15, "profile first").

For each history (the six months of real 5m candles, and the five-year 5m and 1m series that
``bench_backtest.py --scale`` synthesises), one fresh process per run does what ``tradeconsole
backtest --json`` does, timing each stage and reading the process's resident memory after it:

  start+imports | load (Parquet cache) | indicators | signal | step loop | result objects | metrics+JSON

plus the peak resident memory of the whole process. The first run of a history fills the
Parquet cache (its load is CSV parsing); the table shows the median of the later runs.

Usage (repository root; the synthesised series are built by ``bench_backtest.py --scale`` into
``--data-dir``, or pass any directories)::

    .venv/bin/python bench/profile_backtest.py --data-dir /tmp/tcdata [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
SHARED_5M = (ROOT.parent / "shared" / "data" / "binance" / "spot" / "ETHUSDT" / "5m").resolve()

STAGES = ("imports", "load", "indicators", "signal", "loop", "objects", "metrics")

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
def rss():
    s = open("/proc/self/status").read()
    return int(s.split("VmRSS:")[1].split()[0]) / 1024, int(s.split("VmHWM:")[1].split()[0]) / 1024
out = {}
def mark(name, t):
    out[name] = (time.perf_counter() - t, *rss())
    return time.perf_counter()
from tradeconsole.backtest.data import load_candles
from tradeconsole.backtest.metrics import compute_metrics
from tradeconsole.backtest.report import to_json
from tradeconsole.backtest.runner import _vector_signal, result_from_simulation, simulate_signal, use_compiled
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings
from tradeconsole.core.strategies import make_strategy
out["python_start"] = t0
t = mark("imports", t0)
candles, _ = load_candles(sys.argv[1], interval=sys.argv[2])
t = mark("load", t)
strategy, fm = make_strategy("basic"), FILL_MODELS["realistic"]
jit = use_compiled(len(candles))
plan = strategy.indicator_plan(fm.indicator_settings())
ind = plan.compute_history(candles.open, candles.high, candles.low, candles.close, candles.volume, compiled=jit)
t = mark("indicators", t)
signal = _vector_signal(strategy, ind)
del ind
t = mark("signal", t)
arrays = simulate_signal(candles, strategy, signal, fm, BrokerSettings(), compiled=jit)
t = mark("loop", t)
result = result_from_simulation(arrays, candles, strategy, fm=fm, settings=BrokerSettings(),
                                ind_settings=fm.indicator_settings(), symbol="ETHUSDT", interval=sys.argv[2])
t = mark("objects", t)
text = to_json(compute_metrics(result))
t = mark("metrics", t)
print(json.dumps({"bars": len(candles), "compiled": jit, "trades": len(result.trades), "stages": out}))
"""


def run_once(data: Path, interval: str, env: dict[str, str]) -> dict:
    """One fresh process; its stage times and memory, and its whole wall time and peak RSS."""
    import time

    t = time.perf_counter()
    res = subprocess.run(
        ["/usr/bin/time", "-f", "%M", PYTHON, "-c", _CHILD, str(data), interval],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    got = json.loads(res.stdout.strip().splitlines()[-1])
    got["wall"], got["peak_mb"] = wall, float(res.stderr.strip().splitlines()[-1]) / 1024
    return got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", help="where bench_backtest.py --scale put ETHUSDT/{5m,1m} (skipped if absent)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    sets = [("6 months 5m", SHARED_5M, "5m")]
    if args.data_dir:
        for iv, label in (("5m", "5 years 5m"), ("1m", "5 years 1m")):
            d = Path(args.data_dir) / "ETHUSDT" / iv
            if d.is_dir():
                sets.append((label, d, iv))
    cache = tempfile.mkdtemp(prefix="tcprofile-cache-")
    # as a user's shell: bytecode cached (these sandboxes set PYTHONDONTWRITEBYTECODE)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "TRADECONSOLE_DATA_DIR": cache}
    print(f"load average {os.getloadavg()[0]:.1f}; seconds per stage (median of {args.reps}), RSS after it (MB)\n")
    print(f"| history | bars | loop | {' | '.join(STAGES)} | whole process | peak RSS |")
    print("|---|---|---|" + "---|" * len(STAGES) + "---|---|")
    for label, d, iv in sets:
        run_once(d, iv, env)  # fills the Parquet cache
        runs = [run_once(d, iv, env) for _ in range(args.reps)]
        cells = []
        for st in STAGES:
            secs = statistics.median(r["stages"][st][0] for r in runs)
            mb = statistics.median(r["stages"][st][1] for r in runs)
            cells.append(f"{secs:.3f} s / {mb:.0f}")
        wall = statistics.median(r["wall"] for r in runs)
        peak = statistics.median(r["peak_mb"] for r in runs)
        kind = "compiled" if runs[0]["compiled"] else "interpreted"
        print(f"| {label} | {runs[0]['bars']:,} | {kind} | {' | '.join(cells)} | {wall:.2f} s | {peak:.0f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
