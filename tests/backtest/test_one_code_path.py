"""One code path: a backtest and the live path (incremental indicators, candle by candle, through
the same StrategySession and broker) produce identical fills on the same candles."""

from __future__ import annotations

import pytest
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, SimulatedFuturesBroker
from tradeconsole.core.indicators import IncrementalIndicators
from tradeconsole.core.session import StrategySession
from tradeconsole.core.strategies import make_strategy


def live_path_fills(candles, strategy_name: str, model: str, interval: str):
    fm = FILL_MODELS[model]
    broker = SimulatedFuturesBroker("ETHUSDT", BrokerSettings(), fm)
    events = []
    session = StrategySession(
        symbol="ETHUSDT",
        interval=interval,
        strategy=make_strategy(strategy_name),
        broker=broker,
        run_id="live",
        mode="paper",
        initial_cash=10_000,
        reenter_on_exit_candle=fm.reenter_on_exit_candle,
        publish=events.append,
    )
    ind = IncrementalIndicators(fm.indicator_settings())
    for c in candles.candles():
        session.on_closed_candle(c, ind.update(c))
    return broker.fills, events


@pytest.mark.parametrize("model", ["seed", "realistic"])
@pytest.mark.parametrize("strategy,which", [("engulfing", "1h"), ("basic", "5m")])
def test_backtest_equals_live_path(strategy, which, model, candles_1h, candles_5m):
    candles = candles_1h if which == "1h" else candles_5m.take(slice(0, 20_000))
    bt = run_backtest(candles, make_strategy(strategy), interval=which, fill_model=model)
    live, events = live_path_fills(candles, strategy, model, which)
    assert len(bt.fills) > 10
    assert [f.to_dict() for f in bt.fills] == [f.to_dict() for f in live]
    # the published fill events carry exactly those fills, each once, with stable ids
    fill_events = [e for e in events if e.type == "fill"]
    assert [e.fill for e in fill_events] == live
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids))
