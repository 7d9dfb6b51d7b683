"""The simulated futures broker: fill timing, intrabar exits, fees, funding, liquidation."""

from __future__ import annotations

import pytest
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, SimulatedFuturesBroker, client_order_id
from tradeconsole.core.domain import Candle, FillReason, OrderSide, Side

H = 3_600_000


def bar(i: int, o: float, h: float, lo: float, c: float) -> Candle:
    return Candle(i * H, o, h, lo, c, 1.0, i * H + H - 1)


def realistic(**kw) -> SimulatedFuturesBroker:
    return SimulatedFuturesBroker("ETHUSDT", BrokerSettings(**kw), FILL_MODELS["realistic"])


def seed(**kw) -> SimulatedFuturesBroker:
    return SimulatedFuturesBroker("ETHUSDT", BrokerSettings(**kw), FILL_MODELS["seed"])


def test_realistic_entry_fills_at_next_open_with_slippage_and_fee_on_notional():
    b = realistic(slippage_bps=10)
    assert b.submit_entry(Side.LONG, bar(0, 100, 101, 99, 100), "id1", 0.015, 0.03) is None
    assert b.pending is not None and b.position is None
    fills = b.on_candle(bar(1, 102, 102.5, 101.5, 102))
    ((fill, trade),) = fills
    assert trade is None and fill.side is OrderSide.BUY and fill.reason is FillReason.ENTRY_LONG
    assert fill.price == pytest.approx(102 * 1.001)
    assert fill.time == 1 * H
    # margin + fee == whole equity at leverage 1
    assert fill.qty * fill.price + fill.fee == pytest.approx(10_000)
    assert fill.fee == pytest.approx(fill.qty * fill.price * 0.0004)
    assert b.position.stop_price == pytest.approx(fill.price * 0.985)
    assert b.position.target_price == pytest.approx(fill.price * 1.03)


def test_stop_and_target_in_same_candle_assumes_the_stop():
    b = realistic()
    b.submit_entry(Side.LONG, bar(0, 100, 100, 100, 100), "id", 0.015, 0.03)
    b.on_candle(bar(1, 100, 100.5, 99.5, 100))
    ((fill, trade),) = b.on_candle(bar(2, 100, 104, 98, 101))  # both 98.5 and 103 inside the range
    assert fill.reason is FillReason.STOP_LOSS and fill.price == pytest.approx(98.5)
    assert trade.pnl < 0 and b.position is None


def test_gap_through_stop_fills_at_open_short():
    b = realistic()
    b.submit_entry(Side.SHORT, bar(0, 100, 100, 100, 100), "id", 0.015, 0.03)
    b.on_candle(bar(1, 100, 100.2, 99.8, 100))
    ((fill, trade),) = b.on_candle(bar(2, 105, 106, 104, 105))
    assert fill.reason is FillReason.STOP_LOSS and fill.price == 105 and fill.side is OrderSide.BUY
    assert trade.side is Side.SHORT and trade.pnl < -0.04 * 10_000


def test_take_profit_intrabar_short_and_accounting_identity():
    b = realistic()
    b.submit_entry(Side.SHORT, bar(0, 100, 100, 100, 100), "id", 0.015, 0.03)
    ((entry, _),) = b.on_candle(bar(1, 100, 100.5, 99.5, 100))
    ((fill, trade),) = b.on_candle(bar(2, 99, 99.5, 96, 97))
    assert fill.reason is FillReason.TAKE_PROFIT and fill.price == pytest.approx(97.0)
    expected_pnl = entry.qty * (100 - 97) - entry.fee - fill.fee
    assert trade.pnl == pytest.approx(expected_pnl)
    assert b.cash == pytest.approx(10_000 + expected_pnl)
    assert b.fees_paid == pytest.approx(entry.fee + fill.fee)


def test_seed_fills_at_close_checks_closes_only_and_sizes_like_the_research_code():
    b = seed()
    fill = b.submit_entry(Side.LONG, bar(0, 100, 100, 100, 100), "id", 0.015, 0.03)
    assert fill is not None and fill.price == 100 and fill.time == H - 1
    assert fill.qty == pytest.approx(10_000 * (1 - 0.0004) / 100)
    assert fill.fee == pytest.approx(10_000 * 0.0004)
    # low pierces the stop but the close does not: seed ignores it
    assert b.on_candle(bar(1, 100, 100, 97, 99)) == []
    ((x, trade),) = b.on_candle(bar(2, 99, 99, 98, 98.4))
    assert x.reason is FillReason.STOP_LOSS and x.price == 98.4
    # the research code's arithmetic: cash = qty * price * (1 - fee)
    assert b.cash == pytest.approx(fill.qty * 98.4 * (1 - 0.0004))


def test_liquidation_with_high_leverage_caps_loss_at_margin():
    b = realistic(leverage=100)
    b.submit_entry(Side.LONG, bar(0, 100, 100, 100, 100), "id", 0.5, 0.5)  # stop beyond liquidation
    ((entry, _),) = b.on_candle(bar(1, 100, 100, 100, 100))
    margin = entry.qty * entry.price / 100
    ((fill, trade),) = b.on_candle(bar(2, 100, 100, 98, 99))
    assert fill.reason is FillReason.LIQUIDATION
    assert fill.price == pytest.approx(100 * (1 - 1 / 100 + 0.004))
    gross = entry.qty * (fill.price - entry.price)
    assert -margin <= gross < 0
    assert trade.pnl == pytest.approx(gross - entry.fee - fill.fee)
    # a candle opening far below the liquidation price still loses at most the margin
    g = realistic(leverage=100)
    g.submit_entry(Side.LONG, bar(0, 100, 100, 100, 100), "id", 0.5, 0.5)
    g.on_candle(bar(1, 100, 100, 100, 100))
    ((fill2, trade2),) = g.on_candle(bar(2, 90, 90, 89, 89))
    assert fill2.reason is FillReason.LIQUIDATION and fill2.time == 2 * H
    assert trade2.pnl - (-trade2.fees) >= -margin - 1e-6


def test_funding_paid_by_longs_every_8h():
    b = realistic(funding_rate_8h=0.0001)
    b.submit_entry(Side.LONG, bar(6, 100, 100, 100, 100), "id", 0.5, 0.5)
    ((entry, _),) = b.on_candle(bar(7, 100, 100, 100, 100))
    b.on_candle(bar(8, 100, 100, 100, 100))  # 08:00 UTC funding
    assert b.funding_paid == pytest.approx(entry.qty * 100 * 0.0001)
    b.on_candle(bar(9, 100, 100, 100, 100))
    assert b.funding_paid == pytest.approx(entry.qty * 100 * 0.0001)


def test_one_position_at_a_time_and_flatten():
    b = realistic()
    b.submit_entry(Side.LONG, bar(0, 100, 100, 100, 100), "a", 0.015, 0.03)
    assert b.submit_entry(Side.SHORT, bar(0, 100, 100, 100, 100), "b", 0.015, 0.03) is None
    b.on_candle(bar(1, 100, 100, 100, 100))
    assert b.submit_entry(Side.SHORT, bar(1, 100, 100, 100, 100), "c", 0.015, 0.03) is None
    fill, trade = b.flatten(101, 2 * H)
    assert fill.reason is FillReason.FLATTEN and fill.order_id == "afx" and b.is_flat
    assert b.flatten(101, 2 * H) is None


def test_snapshot_restore_roundtrip():
    b = realistic()
    b.submit_entry(Side.SHORT, bar(0, 100, 100, 100, 100), "x", 0.015, 0.03)
    b.on_candle(bar(1, 100, 100, 100, 100))
    c = realistic()
    c.restore(b.snapshot())
    assert c.position == b.position and c.cash == b.cash
    assert c.on_candle(bar(2, 96, 96, 96, 96))[0][0].reason is FillReason.TAKE_PROFIT


def test_client_order_id_is_stable_and_binance_safe():
    a = client_order_id("basic", "ETHUSDT", "5m", 1_660_000_000_000, Side.LONG)
    assert a == client_order_id("basic", "ETHUSDT", "5m", 1_660_000_000_000, Side.LONG)
    assert a != client_order_id("basic", "ETHUSDT", "5m", 1_660_000_000_000, Side.SHORT)
    assert len(a) + 2 <= 36 and a.isalnum()


def test_settings_validation():
    with pytest.raises(ValueError):
        BrokerSettings(leverage=0.5)
    with pytest.raises(ValueError):
        BrokerSettings(initial_cash=0)


# ---------------------------------------------------------------- issue 12, item 2: fills across gaps


def test_gap_after_signal_drops_the_pending_entry_and_records_it():
    # signal on the last candle before a 3-day gap: the first open after it is days later, at a
    # price the strategy never saw, so the entry must not fill there
    b = realistic()
    b.submit_entry(Side.LONG, bar(10, 100, 101, 99, 100), "gapid", 0.015, 0.03)
    assert b.on_candle(bar(10 + 72 + 1, 130, 131, 129, 130)) == []
    assert b.position is None and b.pending is None and b.fills == []
    (d,) = b.dropped_entries
    assert d.order_id == "gapid" and d.side is Side.LONG and d.signal_time == 10 * H and d.next_open_time == 83 * H
    assert "not the immediate successor" in d.note
    assert b.take_dropped() == [d] and b.take_dropped() == []  # each published once
    # the broker is flat again: the next signal can enter normally
    b.submit_entry(Side.LONG, bar(83, 130, 131, 129, 130), "next", 0.015, 0.03)
    ((fill, _),) = b.on_candle(bar(84, 131, 132, 130, 131))
    assert fill.order_id == "next" and fill.price == 131


def test_immediate_successor_still_fills_and_paper_open_drops_too():
    b = realistic()
    b.submit_entry(Side.SHORT, bar(0, 100, 101, 99, 100), "a", 0.015, 0.03)
    assert b.on_candle_open(bar(1, 100.5, 100.5, 100.5, 100.5)).price == 100.5
    b2 = realistic()
    b2.submit_entry(Side.SHORT, bar(0, 100, 101, 99, 100), "b", 0.015, 0.03)
    assert b2.on_candle_open(bar(2, 100.5, 100.5, 100.5, 100.5)) is None  # one candle missing
    assert len(b2.dropped_entries) == 1 and b2.position is None


def test_snapshot_without_signal_close_time_restores_and_fills():
    b = realistic()
    b.submit_entry(Side.LONG, bar(0, 100, 101, 99, 100), "old", 0.015, 0.03)
    state = b.snapshot()
    assert state["pending"]["signal_close_time"] == H - 1
    del state["pending"]["signal_close_time"]  # written before the field existed
    r = realistic()
    r.restore(state)
    ((fill, _),) = r.on_candle(bar(5, 101, 102, 100, 101))
    assert fill.order_id == "old"


@pytest.mark.parametrize("side", [Side.LONG, Side.SHORT])
def test_target_gapped_through_at_the_open_is_a_take_profit_even_if_the_stop_is_reached_later(side):
    b = realistic()
    b.submit_entry(side, bar(0, 100, 100, 100, 100), "id", 0.015, 0.03)
    b.on_candle(bar(1, 100, 100.2, 99.8, 100))  # entry at 100: target 103 / 97, stop 98.5 / 101.5
    gapped = bar(2, 104, 104, 98, 99) if side is Side.LONG else bar(2, 96, 102, 96, 101)
    ((fill, trade),) = b.on_candle(gapped)
    assert fill.reason is FillReason.TAKE_PROFIT and fill.price == gapped.open and fill.time == 2 * H
    assert trade.pnl > 0.03 * 10_000 - 10  # more than the target: the open was beyond it


def test_seed_model_ignores_gaps_and_opens():
    b = seed()
    b.submit_entry(Side.LONG, bar(0, 100, 100, 100, 100), "id", 0.015, 0.03)  # filled now, at the close
    assert b.position is not None and b.dropped_entries == []
    assert b.on_candle(bar(50, 104, 104, 98, 99)) == []  # seed: closes only, 99 is neither level
