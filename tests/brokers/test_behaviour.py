"""The behaviour every broker must share, run against the paper broker and against the live Binance
broker (through python-binance's real client and the local futures stand-in).

The paper broker fills an entry at the next candle's open; the live one fills at market right after
the signal candle closed. The scenarios make the next open equal to the signal close, so both give
the same prices; quantities differ only by the live broker's step rounding and margin buffer.
"""

from __future__ import annotations

import json

import pytest
from tradeconsole.core.domain import FillReason, OrderSide, Side

from tests.brokers.conftest import (
    CASH,
    FEE,
    LEVERAGE,
    Harness,
    LiveHarness,
    PaperHarness,
    candle,
    flat,
)

pytestmark = pytest.mark.timeout(30)

QTY_TOL = 0.005  # relative: step rounding plus the live broker's 0.2% margin buffer


def expected_qty(stake: float, price: float) -> float:
    """Margin plus entry fee equals the stake (the realistic simulation's sizing)."""
    return stake / (price * (1 / LEVERAGE + FEE))


def test_long_take_profit_round_trip(harness: Harness) -> None:
    h = harness
    cash0 = h.broker.cash
    h.feed(flat(0, 2000))
    h.enter(Side.LONG, flat(0, 2000), 0, sl=0.02, tp=0.04, stake=0.1)
    h.feed(candle(1, 2000, 2010, 1990, 2005))  # neither level
    assert not h.trades
    h.feed(candle(2, 2005, 2090, 2000, 2085))  # through the 2080 target
    entry, exit_ = h.fills
    assert (entry.side, entry.reason, entry.price) == (OrderSide.BUY, FillReason.ENTRY_LONG, 2000.0)
    assert entry.qty == pytest.approx(expected_qty(0.1 * cash0, 2000.0), rel=QTY_TOL)
    assert (exit_.side, exit_.reason, exit_.price) == (OrderSide.SELL, FillReason.TAKE_PROFIT, 2080.0)
    assert exit_.qty == pytest.approx(entry.qty)
    [trade] = h.trades
    assert trade.side is Side.LONG and trade.exit_reason is FillReason.TAKE_PROFIT
    assert entry.fee == pytest.approx(entry.qty * 2000 * FEE)
    assert exit_.fee == pytest.approx(exit_.qty * 2080 * FEE)
    assert trade.pnl == pytest.approx(entry.qty * 80 - entry.fee - exit_.fee)
    assert h.broker.cash - cash0 == pytest.approx(trade.pnl, abs=1e-6)
    assert h.broker.is_flat and h.broker.position is None


def test_short_stop_loss_round_trip(harness: Harness) -> None:
    h = harness
    cash0 = h.broker.cash
    h.feed(flat(0, 2000))
    h.enter(Side.SHORT, flat(0, 2000), 0, sl=0.02, tp=0.04, stake=0.2)
    h.feed(candle(1, 2000, 2050, 1995, 2045))  # through the 2040 stop
    entry, exit_ = h.fills
    assert (entry.side, entry.reason) == (OrderSide.SELL, FillReason.ENTRY_SHORT)
    assert (exit_.side, exit_.reason, exit_.price) == (OrderSide.BUY, FillReason.STOP_LOSS, 2040.0)
    [trade] = h.trades
    assert trade.side is Side.SHORT
    assert trade.pnl == pytest.approx(-entry.qty * 40 - entry.fee - exit_.fee)
    assert trade.pnl < 0
    assert h.broker.cash - cash0 == pytest.approx(trade.pnl, abs=1e-6)
    assert h.broker.is_flat


def test_both_levels_in_one_candle_assume_the_stop(harness: Harness) -> None:
    h = harness
    h.feed(flat(0, 2000))
    h.enter(Side.LONG, flat(0, 2000), 0, sl=0.02, tp=0.04)
    h.feed(flat(1, 2000))
    h.feed(candle(2, 2000, 2100, 1900, 2050))  # touches 1960 and 2080
    assert h.fills[-1].reason is FillReason.STOP_LOSS and h.fills[-1].price == 1960.0


def test_gap_through_the_stop_fills_at_the_open(harness: Harness) -> None:
    h = harness
    h.feed(flat(0, 2000))
    h.enter(Side.LONG, flat(0, 2000), 0, sl=0.02, tp=0.04)
    h.feed(flat(1, 2000))
    h.feed(candle(2, 1950, 1970, 1940, 1965))  # opens below the 1960 stop
    exit_ = h.fills[-1]
    assert exit_.reason is FillReason.STOP_LOSS and exit_.price == 1950.0


def test_flatten_closes_at_market(harness: Harness) -> None:
    h = harness
    cash0 = h.broker.cash
    h.feed(flat(0, 2000))
    h.enter(Side.LONG, flat(0, 2000), 0)
    c1 = candle(1, 2000, 2020, 1995, 2010)
    h.feed(c1)
    assert not h.broker.is_flat
    res = h.flatten(c1)
    assert res is not None
    fill, trade = res
    assert (fill.side, fill.reason, fill.price) == (OrderSide.SELL, FillReason.FLATTEN, 2010.0)
    assert trade.exit_reason is FillReason.FLATTEN
    assert trade.pnl == pytest.approx(fill.qty * 10 - trade.fees)
    assert h.broker.is_flat
    assert h.broker.cash - cash0 == pytest.approx(trade.pnl, abs=1e-6)
    assert h.flatten(c1) is None  # already flat
    h.feed(candle(2, 2010, 2200, 1800, 2000))  # the old levels must not fire any more
    assert len(h.trades) == 1
    if isinstance(h, LiveHarness):
        assert h.server.open_algo_orders() == [] and h.server.position_amt() == 0


def test_one_position_at_a_time(harness: Harness) -> None:
    h = harness
    h.feed(flat(0, 2000))
    assert h.enter(Side.LONG, flat(0, 2000), 0) is not None or isinstance(h, PaperHarness)
    assert h.enter(Side.SHORT, flat(0, 2000), 0) is None
    h.feed(flat(1, 2000))
    assert h.enter(Side.LONG, flat(1, 2000), 1) is None
    h.feed(flat(2, 2000))
    entries = [f for f in h.fills if f.reason in (FillReason.ENTRY_LONG, FillReason.ENTRY_SHORT)]
    assert len(entries) == 1 and entries[0].reason is FillReason.ENTRY_LONG
    if isinstance(h, LiveHarness):
        assert len([r for r in h.server.requests if r.path == "/fapi/v1/order" and r.method == "POST"]) == 1
        assert h.server.position_amt() == pytest.approx(entries[0].qty)


def test_equity_marks_the_position_to_market(harness: Harness) -> None:
    h = harness
    h.feed(flat(0, 2000))
    h.enter(Side.SHORT, flat(0, 2000), 0)
    h.feed(flat(1, 2000))
    p = h.broker.position
    assert p is not None
    assert h.broker.equity(1990.0) == pytest.approx(h.broker.cash + p.qty * 10)
    assert h.broker.equity(2000.0) == pytest.approx(h.broker.cash)


def test_snapshot_restore_round_trip_then_exit(harness: Harness) -> None:
    h = harness
    h.feed(flat(0, 2000))
    h.enter(Side.LONG, flat(0, 2000), 0, sl=0.02, tp=0.04)
    h.feed(flat(1, 2000))
    snap = h.broker.snapshot()
    json.dumps(snap)  # JSON-ready
    h2 = h.reborn()
    assert h2.broker.position == h.broker.position
    assert h2.broker.cash == pytest.approx(h.broker.cash)
    assert h2.broker.snapshot() == snap
    h2.feed(candle(2, 2000, 2085, 1995, 2082))
    [(fill, trade)] = h2.results
    assert fill.reason is FillReason.TAKE_PROFIT and fill.price == 2080.0
    assert trade is not None and trade.entry_price == 2000.0
    assert h2.broker.is_flat


def test_paper_and_live_give_the_same_fills(server) -> None:  # type: ignore[no-untyped-def]
    """The same candles through both brokers: same sequence of fills, same prices, quantities
    within the live rounding, same round-trip results."""
    paper, live = PaperHarness(), LiveHarness(server)
    script = [
        ("feed", flat(0, 2000)),
        ("enter", Side.LONG, 0),
        ("feed", candle(1, 2000, 2030, 1990, 2020)),
        ("feed", candle(2, 2020, 2095, 2010, 2090)),  # TP 2080
        ("enter", Side.SHORT, 2),
        ("feed", candle(3, 2090, 2100, 2060, 2070)),
        ("feed", candle(4, 2070, 2140, 2065, 2135)),  # SL 2131.80
        ("enter", Side.LONG, 4),
        ("feed", candle(5, 2135, 2150, 2120, 2140)),
        ("flatten", 5),
    ]
    candles = {
        0: flat(0, 2000),
        2: candle(2, 2020, 2095, 2010, 2090),
        4: candle(4, 2070, 2140, 2065, 2135),
        5: candle(5, 2135, 2150, 2120, 2140),
    }
    for h in (paper, live):
        for step in script:
            if step[0] == "feed":
                h.feed(step[1])
            elif step[0] == "enter":
                h.enter(step[1], candles[step[2]], step[2], sl=0.02, tp=0.04, stake=0.25)
            else:
                h.flatten(candles[step[1]])
    assert (
        [f.reason for f in paper.fills]
        == [f.reason for f in live.fills]
        == [
            FillReason.ENTRY_LONG,
            FillReason.TAKE_PROFIT,
            FillReason.ENTRY_SHORT,
            FillReason.STOP_LOSS,
            FillReason.ENTRY_LONG,
            FillReason.FLATTEN,
        ]
    )
    for p, lv in zip(paper.fills, live.fills, strict=True):
        assert lv.side == p.side
        assert lv.price == pytest.approx(p.price, abs=0.01)  # trigger prices rounded to the 0.01 tick
        assert lv.qty == pytest.approx(p.qty, rel=QTY_TOL)
    for p, lv in zip(paper.trades, live.trades, strict=True):
        assert lv.exit_reason is p.exit_reason
        assert lv.pnl == pytest.approx(p.pnl, rel=0.01, abs=0.05)
    assert live.broker.cash == pytest.approx(paper.broker.cash, abs=2.0)
    assert float(live.server.wallet) == pytest.approx(live.broker.cash)
    assert paper.broker.cash != CASH  # the scenario really moved money
