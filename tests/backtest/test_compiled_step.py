"""The broker's compiled step: the compiled backtest loop and the per-candle calls give identical
results on the shared data (both strategies, both fill models, with slippage, funding, leverage).

``run_backtest`` runs ``tradeconsole.core.broker_step.simulate`` over the arrays; with
``per_candle=True`` it drives ``StrategySession`` and ``SimulatedFuturesBroker`` candle by candle
(which call the same functions per candle). Everything a result holds must agree
exactly, and the vectorised entry signals must equal ``entry_signal`` on every bar."""

from __future__ import annotations

import numpy as np
import pytest
from tradeconsole.backtest.optimize.vector import VECTOR_SIGNALS
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core import broker_step
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings
from tradeconsole.core.domain import Side
from tradeconsole.core.indicators import IndicatorValues
from tradeconsole.core.strategies import make_strategy

SETTINGS = {
    "default": BrokerSettings(),
    # slippage on every market fill, funding every 8h, 100x leverage: the liquidation price sits
    # inside the 1.5% stop, so liquidations happen
    "costly": BrokerSettings(slippage_bps=3.0, funding_rate_8h=0.0003, leverage=100.0),
}


def _result_dict(r) -> dict:
    return {
        "fills": [f.to_dict() for f in r.fills],
        "trades": r.trades,
        "equity": r.equity.tolist(),
        "in_position": r.in_position.tolist(),
        "fees": r.fees_paid,
        "funding": r.funding_paid,
        "dropped": r.dropped_entries,
        "open": r.open_position,
        "bars": len(r.open_time),
    }


@pytest.mark.parametrize("settings", list(SETTINGS))
@pytest.mark.parametrize("model", ["seed", "realistic"])
@pytest.mark.parametrize("strategy,which", [("engulfing", "1h"), ("basic", "5m"), ("engulfing", "5m")])
def test_compiled_loop_equals_per_candle_calls(strategy, which, model, settings, candles_1h, candles_5m):
    candles = candles_1h if which == "1h" else candles_5m
    s = SETTINGS[settings]
    events: list = []
    compiled = run_backtest(candles, make_strategy(strategy), interval=which, fill_model=model, settings=s)
    per_candle = run_backtest(
        candles,
        make_strategy(strategy),
        interval=which,
        fill_model=model,
        settings=s,
        publish=events.append,
        per_candle=True,
    )
    assert events, "the per-candle path ran (it published events)"
    assert len(compiled.trades) > 10
    a, b = _result_dict(compiled), _result_dict(per_candle)
    for key in a:
        assert a[key] == b[key], key
    if settings == "costly":
        assert compiled.funding_paid != 0.0
        assert any(f.reason.value == "liquidation" for f in compiled.fills)


def test_compiled_loop_with_a_warmup_window_and_gaps(candles_5m):
    """A window after a warm-up, and data with holes (realistic drops entries after a gap)."""
    keep = np.ones(len(candles_5m), dtype=bool)
    keep[5_000:5_040] = False
    keep[20_000:20_003] = False
    candles = candles_5m.take(keep)
    for model in ("seed", "realistic"):
        compiled = run_backtest(candles, make_strategy("basic"), fill_model=model, warmup=3_000)
        per_candle = run_backtest(candles, make_strategy("basic"), fill_model=model, warmup=3_000, per_candle=True)
        assert _result_dict(compiled) == _result_dict(per_candle)


@pytest.mark.parametrize("model", ["seed", "realistic"])
@pytest.mark.parametrize("strategy", ["basic", "engulfing"])
def test_vector_signals_equal_entry_signal(strategy, model, candles_5m):
    """The compiled loop's signals are the strategy's own decisions, bar by bar."""
    strat = make_strategy(strategy)
    plan = strat.indicator_plan(FILL_MODELS[model].indicator_settings())
    c = candles_5m
    ind = plan.compute_history(c.open, c.high, c.low, c.close, c.volume)
    vec = VECTOR_SIGNALS[type(strat)](ind, strat.params)
    cols = [ind[k].tolist() for k in plan.fields]
    make = plan.values_type._make
    sides = {Side.LONG: 1, Side.SHORT: -1, None: 0}
    for i, (candle, row) in enumerate(zip(c.candles(), zip(*cols))):
        values: IndicatorValues = make(row)
        assert sides[strat.entry_signal(candle, values)] == vec[i], i
    assert (vec != 0).sum() > 50


def test_protective_exit_rules():
    """The compiled exit rule on hand-made candles (long: stop 95, target 110, liquidation 50)."""
    pe = broker_step.protective_exit
    # realistic: the open gaps through the stop -> stop at the open, slippage applies
    assert pe(1.0, 94.0, 96.0, 90.0, 95.5, 95.0, 110.0, 50.0, True) == (broker_step.R_STOP, 94.0, True, True)
    # both levels inside one candle: the worse (the stop) is assumed, at its level
    assert pe(1.0, 100.0, 111.0, 94.0, 100.0, 95.0, 110.0, 50.0, True) == (broker_step.R_STOP, 95.0, False, True)
    # the open beyond the target: a take-profit even if the candle later reaches the stop
    assert pe(1.0, 112.0, 113.0, 90.0, 100.0, 95.0, 110.0, 50.0, True) == (broker_step.R_TARGET, 112.0, True, True)
    # opened beyond liquidation: liquidated at its level, no slippage
    assert pe(1.0, 40.0, 45.0, 39.0, 41.0, 95.0, 110.0, 50.0, True) == (broker_step.R_LIQ, 50.0, True, False)
    # seed: closes only; a low through the stop with a close above it is no exit
    assert pe(1.0, 100.0, 101.0, 90.0, 99.0, 95.0, 110.0, 50.0, False)[0] == broker_step.R_NONE
    assert pe(-1.0, 100.0, 106.0, 99.0, 105.5, 105.0, 90.0, 150.0, False) == (broker_step.R_STOP, 105.5, False, False)
    # liquidation caps the loss at the margin (10x, 1 unit at 100: margin 10)
    px, gross, fee = broker_step.close_amounts(1.0, 1.0, 100.0, 10.0, 80.0, False, True, 0.0004, 0.0)
    assert (px, gross) == (80.0, -10.0) and fee == pytest.approx(0.032)
