"""The strategy API's exits and sizing in the simulated broker, both fill models, on hand-made
candles whose fills can be worked out by hand (the numbers in each test)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from tradeconsole import Backtest
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, ExitPlan, SimulatedFuturesBroker
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.domain import Candle, FillReason, Side
from tradeconsole.core.strategies import (
    Strategy,
    StrategyDefinitionError,
    StrategyParams,
    atr,
    custom,
    fixed,
    fixed_notional,
    level,
    param,
    per_side,
    risk_per_trade,
    trailing,
)

H = 3_600_000
NOFEE = BrokerSettings(fee_rate=0.0)


def bars(*ohlc: tuple[float, float, float, float]) -> CandleArrays:
    return CandleArrays.from_candles(
        [Candle(i * H, o, h, lo, c, 1.0, (i + 1) * H - 1) for i, (o, h, lo, c) in enumerate(ohlc)]
    )


class _Once(Strategy):
    """Long on the first bar only, no target."""

    name = "t_once"
    default_interval = "1h"
    take_profit = None
    stop_loss = None

    def entry_signal(self, candle, ind):
        return Side.LONG if candle.open_time == 0 else None


def run(cls: type[Strategy], data: CandleArrays, model: str, settings: BrokerSettings = NOFEE):
    return Backtest(data, cls(), interval="1h", fill_model=model, settings=settings).run().result


def test_trailing_stop_moves_with_the_high_realistic_and_the_close_seed():
    class T(_Once):
        name = "t_trail"
        trailing_stop = trailing(0.10)

    data = bars((100, 100, 100, 100), (100, 120, 99, 118), (115, 116, 107, 110), (110, 110, 110, 110))
    r = run(T, data, "realistic")
    # entry at bar 1's open 100, initial stop 90; bar 1's high 120 moves it to 108; bar 2's low 107 hits it
    (trade,) = r.trades
    assert (trade.entry_price, trade.exit_price, trade.exit_reason) == (100, pytest.approx(108), FillReason.STOP_LOSS)
    assert trade.exit_time == 3 * H - 1  # intrabar: stamped at the candle's close
    s = run(T, data, "seed")
    # seed: entry at bar 0's close 100; closes 118 -> stop 106.2; bar 2 closes 110 (no hit); bar 3 at 110 no hit
    assert s.trades == [] and s.open_position is not None
    s2 = run(T, bars((100, 100, 100, 100), (100, 120, 99, 118), (115, 116, 104, 105)), "seed")
    assert s2.trades[0].exit_price == 105 and s2.trades[0].exit_reason is FillReason.STOP_LOSS


def test_time_exit_counts_candles_held_in_both_models():
    class T(_Once):
        name = "t_time"
        max_bars_in_trade = 2

    data = bars(*[(100 + i, 101 + i, 99 + i, 100.5 + i) for i in range(6)])
    r = run(T, data, "realistic")
    # filled at bar 1's open; held bars 1 and 2; decided at bar 2's close, filled at bar 3's open
    (t,) = r.trades
    assert (t.entry_time, t.exit_time, t.exit_price, t.exit_reason) == (H, 3 * H, 103, FillReason.TIME_EXIT)
    s = run(T, data, "seed")
    # filled at bar 0's close; held bars 1 and 2; out at bar 2's close
    (t,) = s.trades
    assert (t.exit_time, t.exit_price, t.exit_reason) == (3 * H - 1, 102.5, FillReason.TIME_EXIT)


def test_exit_signal_fills_next_open_realistic_and_that_close_seed():
    class T(_Once):
        name = "t_sig"

        def exit_signal(self, candle, ind, position):
            return candle.close < candle.open

    data = bars((100, 101, 99, 100), (100, 102, 99, 101), (101, 102, 95, 96), (97, 98, 96, 97), (97, 97, 97, 97))
    r = run(T, data, "realistic")
    (t,) = r.trades
    assert (t.exit_time, t.exit_price, t.exit_reason) == (3 * H, 97, FillReason.EXIT_SIGNAL)
    s = run(T, data, "seed")
    (t,) = s.trades
    assert (t.exit_time, t.exit_price, t.exit_reason) == (3 * H - 1, 96, FillReason.EXIT_SIGNAL)
    # realistic: the pending exit keeps the broker busy, so no new entry on the deciding candle
    assert len(r.fills) == 2


def test_atr_stop_and_indicator_target_per_side():
    class T(_Once):
        name = "t_atr"
        indicators = {
            "atr": custom(lambda df: df.close * 0 + 5.0, window=5),
            "lvl": custom(lambda df: df.close + 7.0, window=5),
        }
        stop_loss = atr(2.0)
        take_profit = per_side(long=level("lvl"), short=None)

    data = bars((100, 100, 100, 100), (101, 106, 100, 104), (104, 109, 103, 108))
    r = run(T, data, "realistic")
    # fill 101, stop 101 - 2 x 5 = 91, target = bar 0's close + 7 = 107: hit in bar 2
    (t,) = r.trades
    assert (t.exit_price, t.exit_reason) == (107, FillReason.TAKE_PROFIT)


def test_sizing_fixed_notional_and_risk_per_trade():
    class N(_Once):
        name = "t_notional"
        sizing = fixed_notional(2_500.0)

    class R(_Once):
        name = "t_risk"
        stop_loss = fixed(0.02)
        sizing = risk_per_trade(0.01)

    data = bars((100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 100, 100))
    n = run(N, data, "realistic")
    assert n.fills[0].qty == pytest.approx(25.0)
    r = run(R, data, "realistic")
    # 1% of 10,000 at a 2.00 stop distance: 50 units (notional 5,000 fits the wallet)
    assert r.fills[0].qty == pytest.approx(50.0)
    big = run(R, data, "realistic", settings=BrokerSettings(fee_rate=0.0, initial_cash=100.0))
    assert big.fills[0].qty == pytest.approx(0.5)  # 1 / 2.00; far below the cap of 1 unit


def test_levels_on_the_wrong_side_drop_the_entry_with_a_reason():
    class T(_Once):
        name = "t_wrong"
        indicators = {"lvl": custom(lambda df: df.close - 50.0, window=5)}
        take_profit = level("lvl")  # below a long's entry: not a target

    r = run(T, bars((100, 100, 100, 100), (100, 101, 99, 100)), "realistic")
    assert r.fills == [] and "wrong side" in r.dropped_entries[0].note


def test_trailing_and_pending_exit_survive_a_restart():
    fm = FILL_MODELS["realistic"]
    b = SimulatedFuturesBroker("X", NOFEE, fm)
    c0 = Candle(0, 100, 100, 100, 100, 1, H - 1)
    b.submit_entry(Side.LONG, c0, "tcabc", 0, 0, 1, plan=ExitPlan(("pct", 0.05), None, ("pct", 0.1)))
    b.on_candle(Candle(H, 100, 120, 99, 118, 1, 2 * H - 1))
    b.submit_exit(Candle(H, 100, 120, 99, 118, 1, 2 * H - 1), FillReason.EXIT_SIGNAL)
    import json

    state = json.loads(json.dumps(b.snapshot()))
    b2 = SimulatedFuturesBroker("X", NOFEE, fm)
    b2.restore(state)
    assert b2.position.stop_price == pytest.approx(108) and b2.trail == ("pct", 0.1)
    ((fill, trade),) = b2.on_candle(Candle(2 * H, 117, 118, 116, 117, 1, 3 * H - 1))
    assert (fill.price, fill.reason, fill.order_id) == (117, FillReason.EXIT_SIGNAL, "tcabcxs")


def test_bad_declarations_are_refused_at_class_creation():
    with pytest.raises(StrategyDefinitionError, match="risk_per_trade sizing needs a stop_loss"):

        class _A(_Once):
            name = "t_bad1"
            sizing = risk_per_trade(0.01)

    with pytest.raises(StrategyDefinitionError, match="pandas-ta has no indicator"):
        from tradeconsole.core.strategies import ta

        ta("no_such_indicator")
    with pytest.raises(StrategyDefinitionError, match="base values"):

        class _B(_Once):
            name = "t_bad2"
            indicators = {"rsi": custom(lambda df: df.close)}

    @dataclass(frozen=True, slots=True)
    class P(StrategyParams):
        k: float = param(2.0, 0.0, 10.0)

    class C(_Once):
        name = "t_bad3"
        Params = P
        stop_loss = atr("nope")

    with pytest.raises(StrategyDefinitionError, match="parameter 'nope'"):
        C()
    assert math.isfinite(P().k)


def test_live_broker_features_are_listed_for_refusal():
    from tradeconsole.core.strategies import make_strategy

    assert make_strategy("basic").live_unsupported() == []

    class T(_Once):
        name = "t_live"
        trailing_stop = trailing(0.1)
        max_bars_in_trade = 3

    missing = T().live_unsupported()
    assert "a trailing stop" in missing and "a time exit (max_bars_in_trade)" in missing


def test_orders_published_match_what_exists():
    """No target declared: no take-profit order is placed, so none is cancelled either; a time
    exit publishes its market order when decided and fills it at the next open."""

    class T(_Once):
        name = "t_orders"
        stop_loss = fixed(0.5)
        max_bars_in_trade = 1

    events = []
    data = bars((100, 101, 99, 100), (100, 101, 99, 100), (100, 101, 99, 100), (100, 101, 99, 100))
    run_backtest(data, T(), interval="1h", fill_model="realistic", settings=NOFEE, publish=events.append)
    orders = [(e.order.client_id[-2:], e.status) for e in events if e.type == "order"]
    assert ("tp", "new") not in orders and ("tp", "canceled") not in orders
    assert ("sl", "new") in orders and ("sl", "canceled") in orders
    assert ("xt", "new") in orders and ("xt", "filled") in orders
