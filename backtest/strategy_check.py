"""``tradeconsole strategy check``: evidence that a strategy behaves the same live as in its
backtest, on the user's own data. Three checks, each with a verdict and the first failing bar:

(a) **look-ahead**: the values and signals at bar t must not change when the bars after t are
    removed. Sampled truncation points (evenly spread, plus bars where the full run signals),
    each compared over its last few bars.
(b) **live == backtest**: the first ``live_bars`` candles go candle by candle through the live
    path (``tradeconsole.core.indicators.LiveIndicators``: O(1) and windowed indicators, the engine's own) and
    ``StrategySession`` with the simulated broker; every value must equal the whole-history
    computation (within ``TOLERANCE``) and every fill the backtest's.
(c) **warm-up**: at sampled bars t, the values computed from only the strategy's warm-up
    (``warmup_bars``: ``startup_candle_count`` or derived) candles ending at t must equal those
    from the whole history before t. That is what the live engine starts from (its REST
    backfill) and what the windowed indicators see, so a failure means live values would differ.

Values compare equal when both are NaN or ``|a - b| <= TOLERANCE * max(1, |a|, |b|)``; signals
(entry side, exit signal for a long and a short held since that bar) must be identical.
A strategy that passes is recorded by the hash of its file (``record_pass``), and backtests
say when theirs never passed (``check_status``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, SimulatedFuturesBroker
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.domain import Candle, Position, Side, iso_ms
from tradeconsole.core.indicators import LiveIndicators
from tradeconsole.core.strategies import Strategy

__all__ = ["TOLERANCE", "CheckResult", "check_status", "check_strategy", "record_pass"]

TOLERANCE = 1e-6
_TAIL = 5  # bars compared at the end of each truncated history


@dataclass(slots=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    first_bar: int | None = None
    first_time: int | None = None

    def line(self) -> str:
        where = "" if self.first_bar is None else f" at bar {self.first_bar} ({iso_ms(self.first_time or 0)})"
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}{where}: {self.detail}"


def _same(a: float, b: float) -> bool:
    if a != a or b != b:
        return a != a and b != b
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))


def _signals(strategy: Strategy, c: Candle, vals: Any) -> tuple[Any, ...]:
    """What the strategy decides on one bar: its entry side, and its exit signal for a long and a
    short position entered at this bar's close (only if it has exit signals)."""
    side = strategy.entry_signal(c, vals)
    if type(strategy).exit_signal is Strategy.exit_signal:
        return (side,)
    out: list[Side | bool | None] = [side]
    for s in (Side.LONG, Side.SHORT):
        pos = Position("X", s, 1.0, c.close, c.close_time, 0.0, 1.0, 0.0, math.inf, 0.0)
        out.append(bool(strategy.exit_signal(c, vals, pos)))
    return tuple(out)


class _Values:
    """Indicator values of one history, with per-bar tuples built on demand."""

    def __init__(self, strategy: Strategy, candles: CandleArrays, settings: Any) -> None:
        self.plan = strategy.indicator_plan(settings)
        self.cols = self.plan.compute_history(candles.open, candles.high, candles.low, candles.close, candles.volume)
        self.candles = candles

    def at(self, i: int) -> Any:
        return self.plan.values_type._make(self.cols[k][i].item() for k in self.plan.fields)

    def diff(self, i: int, other: _Values, j: int) -> str | None:
        for k in self.plan.fields:
            a, b = float(self.cols[k][i]), float(other.cols[k][j])
            if not _same(a, b):
                return f"{k} = {b:.10g} instead of {a:.10g}"
        return None


def _sample(lo: int, hi: int, k: int, extra: Sequence[int] = ()) -> list[int]:
    if hi < lo:
        return []
    pts = set(np.linspace(lo, hi, num=min(k, hi - lo + 1)).round().astype(int).tolist())
    pts.update(e for e in extra if lo <= e <= hi)
    return sorted(pts)


def check_strategy(
    strategy: Strategy,
    candles: CandleArrays,
    *,
    fill_model: str = "realistic",
    samples: int = 40,
    live_bars: int = 3000,
    symbol: str = "ETHUSDT",
    interval: str = "5m",
) -> list[CheckResult]:
    """Run the three checks; see the module docstring."""
    fm = FILL_MODELS[fill_model]
    settings = fm.indicator_settings()
    n = len(candles)
    full = _Values(strategy, candles, settings)
    bars = candles.candles()
    full_sig = [_signals(strategy, bars[i], full.at(i)) for i in range(n)]
    results = []

    # (a) look-ahead
    signal_bars = [i for i, s in enumerate(full_sig) if s[0] is not None or any(s[1:])]
    step = max(1, len(signal_bars) // max(1, samples))
    points = _sample(1, n - 2, samples, signal_bars[::step][:samples])
    first: tuple[int, str] | None = None
    for t in points:
        trunc = _Values(strategy, candles.take(slice(0, t + 1)), settings)
        for j in range(max(0, t - _TAIL + 1), t + 1):
            why = full.diff(j, trunc, j)
            if why is None and _signals(strategy, bars[j], trunc.at(j)) != full_sig[j]:
                why = f"signals {_signals(strategy, bars[j], trunc.at(j))} instead of {full_sig[j]}"
            if why is not None:
                if first is None or j < first[0]:
                    first = (j, why + f" when the history ends at bar {t}")
                break
        if first is not None and first[0] <= points[0]:
            break
    results.append(
        CheckResult(
            "look-ahead",
            first is None,
            f"{len(points)} truncation points: values and signals unchanged"
            if first is None
            else f"{first[1]}: it reads candles after the bar it decides on",
            None if first is None else first[0],
            None if first is None else int(candles.open_time[first[0]]),
        )
    )

    # (b) live path == backtest
    m = min(n, int(live_bars))
    head = candles.take(slice(0, m))
    ref = _Values(strategy, head, settings) if m < n else full
    from tradeconsole.backtest.runner import run_backtest
    from tradeconsole.core.session import StrategySession  # here: check_status, on every backtest, needs none of it

    bt = run_backtest(head, strategy, symbol=symbol, interval=interval, fill_model=fm)
    live = LiveIndicators(strategy.indicator_plan(settings))
    broker = SimulatedFuturesBroker(symbol, BrokerSettings(), fm)
    session = StrategySession(
        symbol=symbol,
        interval=interval,
        strategy=strategy,
        broker=broker,
        run_id="check",
        mode="backtest",
        initial_cash=broker.settings.initial_cash,
        reenter_on_exit_candle=fm.reenter_on_exit_candle,
    )
    bad: tuple[int, str] | None = None
    t0 = time.perf_counter()
    for i, c in enumerate(bars[:m]):
        vals = live.update(c)
        if bad is None:
            for k, v in zip(ref.plan.fields, vals):
                if not _same(float(ref.cols[k][i]), float(v)):
                    bad = (i, f"live {k} = {float(v):.10g}, backtest {float(ref.cols[k][i]):.10g}")
                    break
        session.on_closed_candle(c, vals)
    live_s = time.perf_counter() - t0
    if bad is None:
        for a, b in zip(bt.fills, broker.fills):
            if (
                (a.time, a.reason, a.side) != (b.time, b.reason, b.side)
                or not _same(a.price, b.price)
                or not _same(a.qty, b.qty)
            ):
                i = int(np.searchsorted(head.open_time, b.time, side="right") - 1)
                bad = (
                    max(i, 0),
                    f"live fill {b.reason} {b.price:.8g} x {b.qty:.6g}, backtest {a.reason} "
                    f"{a.price:.8g} x {a.qty:.6g}",
                )
                break
        else:
            if len(bt.fills) != len(broker.fills):
                bad = (m - 1, f"{len(broker.fills)} live fills, {len(bt.fills)} in the backtest")
    results.append(
        CheckResult(
            "live == backtest",
            bad is None,
            f"{m} candles through the live path ({1000 * live_s / max(m, 1):.3f} ms/candle): "
            f"values equal, {len(bt.fills)} fills identical"
            if bad is None
            else bad[1],
            None if bad is None else bad[0],
            None if bad is None else int(head.open_time[bad[0]]),
        )
    )

    # (c) warm-up
    w = strategy.warmup_bars(settings)
    if n <= w:
        results.append(
            CheckResult(
                "warm-up",
                False,
                f"the data ({n} candles) is not longer than the warm-up ({w} candles): give more history",
            )
        )
        return results
    first = None
    pts = _sample(w, n - 1, samples)
    for t in pts:
        win = _Values(strategy, candles.take(slice(t - w + 1, t + 1)), settings)
        why = full.diff(t, win, w - 1)
        if why is None and _signals(strategy, bars[t], win.at(w - 1)) != full_sig[t]:
            why = "signals differ"
        if why is not None:
            first = (t, why)
            break
    results.append(
        CheckResult(
            "warm-up",
            first is None,
            f"{w} candles of history give the whole history's values at {len(pts)} sampled bars"
            if first is None
            else f"from only {w} candles of history {first[1]}: raise startup_candle_count (or the indicator's window)",
            None if first is None else first[0],
            None if first is None else int(candles.open_time[first[0]]),
        )
    )
    return results


# ---------------------------------------------------------------------------- record of passes


def _records(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def record_pass(cls: type[Strategy], data: str) -> None:
    """Remember that this exact strategy file passed (atomic write to the user data dir)."""
    from tradeconsole.backtest.strategy_loader import strategy_fingerprint
    from tradeconsole.core.paths import strategy_checks_path

    path = strategy_checks_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    recs = _records(path)
    recs[strategy_fingerprint(cls)] = {"strategy": cls.name, "data": data, "passed_at": iso_ms(int(time.time() * 1000))}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".strategy-checks-")
    with os.fdopen(fd, "w") as fh:
        json.dump(recs, fh, indent=1)
    os.replace(tmp, path)


def check_status(cls: type[Strategy]) -> str:
    """ "passed <when> on <data>" or a sentence saying the strategy never passed the check."""
    from tradeconsole.backtest.strategy_loader import strategy_fingerprint
    from tradeconsole.core.paths import strategy_checks_path

    rec = _records(strategy_checks_path()).get(strategy_fingerprint(cls))
    if rec is None:
        return (
            f"never passed `tradeconsole strategy check {cls.name}` (look-ahead, live == backtest, warm-up) "
            "in this form"
        )
    return f"passed {rec.get('passed_at', '?')} on {rec.get('data', '?')}"
