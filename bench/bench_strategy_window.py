#!/usr/bin/env python3
"""Per-closed-candle cost of the live path for declared indicators (issue 14, item 4).

A strategy's pandas-ta indicators without an O(1) form are recomputed live over a bounded window
of recent closed candles (``tradeconsole.core.indicators.LiveIndicators``). This measures, with 1,000 closed
candles of real 5m ETHUSDT history already seen, the time of one ``update`` (a closed candle)
and one ``preview`` (an open-candle update) for:

* the built-in base values only (O(1), the baseline measured in the same run),
* Bollinger Bands (pandas-ta ``bbands(20)``) over the default window (200) and over all 1,000 bars,
* Supertrend (pandas-ta ``supertrend(7, 3)``): its O(1) form (``IncrementalSupertrend``, what the
  live path uses), and for comparison recomputed over a 200-candle window as before it existed,
* a user function (rolling max/min channel) over a 200-candle window.

Usage: ``.venv/bin/python bench/bench_strategy_window.py [--candles 300]``. Medians of the
per-candle times (a shared machine is noisy). Target: < 2 ms per closed candle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tradeconsole.backtest.data import load_candles  # noqa: E402
from tradeconsole.core.broker import FILL_MODELS  # noqa: E402
from tradeconsole.core.indicators import LiveIndicators  # noqa: E402
from tradeconsole.core.strategies import Side, Strategy, custom, ta  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binance" / "spot" / "ETHUSDT" / "5m"


def _channel(df):
    return df.assign(hi=df.high.rolling(24).max(), lo=df.low.rolling(24).min())[["hi", "lo"]]


def make(name: str, indicators: dict) -> type[Strategy]:
    return type(
        name,
        (Strategy,),
        {
            "name": name,
            "default_interval": "5m",
            "indicators": indicators,
            "entry_signal": lambda self, c, ind: None if c.close else Side.LONG,
        },
    )


_ST = make("b_st", {"st": ta("supertrend", length=7, multiplier=3.0, window=200)})
CASES = [
    ("base values only (O(1))", make("b_base", {}), False),
    ("bbands(20), window 200", make("b_bb200", {"bb": ta("bbands", length=20, std=2.0, window=200)}), False),
    ("bbands(20), window 1000", make("b_bb1000", {"bb": ta("bbands", length=20, std=2.0, window=1000)}), False),
    ("supertrend(7,3), O(1)", _ST, False),
    ("supertrend(7,3), window 200", _ST, True),
    ("custom channel, window 200", make("b_cu", {"ch": custom(_channel, window=200)}), False),
]


def _recomputed(live: LiveIndicators) -> LiveIndicators:
    """The same plan with its O(1) Supertrend recomputed over the window instead (the live path
    before ``IncrementalSupertrend``), for the comparison row."""
    live._windowed += [s for s in live.plan.specs if s.key in live._inc]
    live._inc = {}
    return live


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candles", type=int, default=300, help="closed candles timed after the 1,000 of history")
    args = ap.parse_args()
    candles = load_candles(DATA, interval="5m")[0].candles()
    history, timed = candles[:1000], candles[1000 : 1000 + args.candles]
    settings = FILL_MODELS["realistic"].indicator_settings()
    print(f"live path per candle, 1,000 closed candles of history, {len(timed)} timed (median ms; p90)")
    base_ms = None
    for label, cls, recompute in CASES:
        live = LiveIndicators(cls.indicator_plan(settings))
        if recompute:
            live = _recomputed(live)
        for c in history:
            live.update(c)
        upd, prev = [], []
        for c in timed:
            open_c = c._replace(closed=False)
            t0 = time.perf_counter()
            live.preview(open_c)
            t1 = time.perf_counter()
            live.update(c)
            t2 = time.perf_counter()
            prev.append((t1 - t0) * 1e3)
            upd.append((t2 - t1) * 1e3)
        med = statistics.median(upd)
        p90 = statistics.quantiles(upd, n=10)[-1]
        base_ms = base_ms or med
        print(
            f"  {label:32s} update {med:8.3f} ms (p90 {p90:7.3f})  preview {statistics.median(prev):8.3f} ms"
            f"  x{med / base_ms:7.1f} base  {'< 2 ms: ok' if med < 2 else '>= 2 ms: over target'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
