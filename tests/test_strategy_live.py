"""The live path for declared indicators (tradeconsole.core.indicators.LiveIndicators) equals the backtest's
whole-history computation, previews an open candle without committing it, and survives a
strategy switch in the engine."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tradeconsole.backtest.strategy_loader import load_file
from tradeconsole.core.broker import FILL_MODELS
from tradeconsole.core.indicators import LiveIndicators
from tradeconsole.core.strategies import make_strategy, register_strategy

STRATS = Path(__file__).parent / "strategies"


@pytest.fixture(scope="module")
def loaded():
    for f in ("bollinger_trail.py", "signal_time_exit.py"):
        for cls in load_file(STRATS / f):
            register_strategy(cls, str(STRATS / f))


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


@pytest.mark.parametrize("name", ["bollinger_trail", "signal_time_exit"])
@pytest.mark.parametrize("model", ["realistic", "seed"])
def test_live_values_equal_whole_history(loaded, candles_1h, name, model):
    c = candles_1h.take(slice(0, 700))
    plan = make_strategy(name).indicator_plan(FILL_MODELS[model].indicator_settings())
    whole = plan.compute_history(c.open, c.high, c.low, c.close, c.volume)
    live = LiveIndicators(plan)
    extra = [f for f in plan.fields if f not in ("rsi", "macd", "macd_signal", "macd_hist", "cci", "bull", "engulfing")]
    assert extra  # the declared ones are there
    for i, candle in enumerate(c.candles()):
        peek = live.preview(candle._replace(closed=False))
        vals = live.update(candle)
        assert peek == vals or all(_close(float(a), float(b)) for a, b in zip(peek, vals))
        for k in plan.fields:
            assert _close(float(whole[k][i]), float(getattr(vals, k))), (i, k)
    assert not np.isnan(whole[extra[0]][-1])


def test_switching_to_a_strategy_with_declared_indicators_warms_them_up(loaded, candles_1h):
    c = candles_1h.take(slice(0, 600))
    settings = FILL_MODELS["realistic"].indicator_settings()
    live = LiveIndicators(make_strategy("basic").indicator_plan(settings))
    bars = c.candles()
    for candle in bars[:500]:
        live.update(candle)
    plan = make_strategy("bollinger_trail").indicator_plan(settings)
    switched = live.switched(plan)
    assert switched.base is live.base and live.switched(live.plan) is live
    whole = plan.compute_history(c.open, c.high, c.low, c.close, c.volume)
    for i in range(500, 600):
        vals = switched.update(bars[i])
        for k in ("bb_lower", "bb_upper", "rsi", "macd"):
            assert _close(float(whole[k][i]), float(getattr(vals, k))), (i, k)


def test_engine_switch_strategy_uses_the_new_indicators(loaded, candles_1h):
    from tradeconsole.core.engine import Engine, SessionSpec, SwitchStrategy
    from tradeconsole.core.feed import CandleClosed

    eng = Engine([SessionSpec("ETHUSDT", "1h", "basic")], mode="paper")
    eng.start()
    try:
        bars = candles_1h.take(slice(0, 300)).candles()
        for candle in bars[:200]:
            eng.feed(CandleClosed("ETHUSDT", "1h", candle))
        assert eng.wait_idle(20)
        eng.send(SwitchStrategy("ETHUSDT:1h:basic", "bollinger_trail", {}))
        for candle in bars[200:]:
            eng.feed(CandleClosed("ETHUSDT", "1h", candle))
        assert eng.wait_idle(20)
        slot = eng._slots["ETHUSDT:1h:basic"]
        assert slot.session.strategy.name == "bollinger_trail"
        vals = slot.indicators.update(candles_1h.take(slice(300, 301)).candles()[0])
        assert not math.isnan(vals.bb_upper)
    finally:
        eng.stop()
