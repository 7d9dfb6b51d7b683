"""Binance as documented in 2026, through python-binance's real client against the stand-in:
every algo order status (a triggered stop whose market order dies must never leave the position
bare), account modes read at start (hedge refused, Multi-Assets traded CROSSED), userTrades read
in 7-day windows with paging, and live brokers refusing candles that are not from the exchange."""

from __future__ import annotations

import time

import pytest
from tradeconsole.core.domain import FillReason, Side
from tradeconsole.core.feed import CANDLE_SOURCE_EXCHANGE, CANDLE_SOURCE_REPLAY
from tradeconsole.infra.binance.http.errors import AccountModeUnsupported, FeedRefused

from tests.brokers.conftest import LiveHarness, flat, make_live_broker
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(30)

DAY = 24 * 3600 * 1000


def _open_long(server: FuturesStandIn) -> LiveHarness:
    h = LiveHarness(server)
    c = flat(0, 2000.0)
    h.feed(c)
    fill = h.enter(Side.LONG, c, 0, sl=0.02, tp=0.04)  # stop 1960, target 2080
    assert fill is not None
    assert {o["clientAlgoId"][-2:] for o in server.open_algo_orders()} == {"sl", "tp"}
    return h


def _algo(server: FuturesStandIn, cid: str) -> list[dict]:
    return [o for o in server.algo_orders if o["clientAlgoId"] == cid]


# ------------------------------------------------------------------ algo statuses
def test_finished_without_a_trade_is_reprotected_when_the_price_is_back(server: FuturesStandIn) -> None:
    """FINISHED = "filled or canceled in the matching engine": canceled, with no trade, the
    position is still open; the stop is placed again (the price is back above it)."""
    h = _open_long(server)
    sl = h.broker._entry_order_id + "sl"
    server.cancel_next_trigger()
    server.walk(1955.0, 1990.0)  # through the stop and back
    first = _algo(server, sl)[0]
    assert first["algoStatus"] == "FINISHED" and first["actualOrderId"]
    assert server.position_amt() > 0  # not closed: the market order was canceled
    out = h.broker.on_candle(flat(1, 1990.0))
    assert out == [] and h.broker.position is not None
    assert [o["algoStatus"] for o in _algo(server, sl)] == ["FINISHED", "NEW"]
    assert {o["clientAlgoId"] for o in server.open_algo_orders()} == {sl, sl[:-2] + "tp"}
    assert any("did not close the position" in a for a in h.broker.take_alerts())
    # and the new stop works
    server.walk(1950.0)
    exits = h.feed(flat(2, 1950.0))
    assert [f.reason for f, _ in exits] == [FillReason.STOP_LOSS] and server.position_amt() == 0


def test_finished_without_a_trade_below_the_stop_flattens(server: FuturesStandIn) -> None:
    """Re-placing is impossible while the price is beyond the stop (-2021 would trigger at once):
    the position is closed at market instead, never left bare."""
    h = _open_long(server)
    server.cancel_next_trigger()
    server.walk(1950.0)
    assert server.position_amt() > 0
    out = h.broker.on_candle(flat(1, 1950.0))
    assert len(out) == 1
    fill, trade = out[0]
    assert fill.reason is FillReason.FLATTEN and trade is not None and fill.price == 1950.0
    assert server.position_amt() == 0 and h.broker.position is None and server.open_algo_orders() == []


@pytest.mark.parametrize("fault", ["reject", "stall"])
def test_rejected_or_stuck_trigger_is_replaced(server: FuturesStandIn, fault: str) -> None:
    """REJECTED (e.g. a margin check) is dead at once; TRIGGERING longer than the grace period
    is treated as dead too (canceled, then replaced)."""
    h = _open_long(server)
    h.broker.trigger_grace_ms = 50 if fault == "stall" else 60_000
    sl = h.broker._entry_order_id + "sl"
    getattr(server, f"{fault}_next_trigger")()
    server.walk(1958.0, 1985.0)
    assert _algo(server, sl)[0]["algoStatus"] == ("REJECTED" if fault == "reject" else "TRIGGERING")
    time.sleep(0.3)  # past the grace period (well beyond the measured clock offset)
    assert h.broker.on_candle(flat(1, 1985.0)) == []
    assert _algo(server, sl)[-1]["algoStatus"] == "NEW" and server.position_amt() > 0


def test_stuck_trigger_within_grace_is_left_alone(server: FuturesStandIn) -> None:
    h = _open_long(server)
    sl = h.broker._entry_order_id + "sl"
    server.stall_next_trigger()
    server.walk(1958.0, 1985.0)
    assert h.broker.on_candle(flat(1, 1985.0)) == []
    assert len(_algo(server, sl)) == 1  # in flight: not replaced (yet)


def test_expired_protective_order_is_replaced(server: FuturesStandIn) -> None:
    h = _open_long(server)
    tp = h.broker._entry_order_id + "tp"
    server.expire_algo_externally(tp)
    assert h.broker.on_candle(flat(1, 2000.0)) == []
    assert [o["algoStatus"] for o in _algo(server, tp)] == ["EXPIRED", "NEW"]


def test_reconcile_reprotects_after_a_dead_trigger(server: FuturesStandIn) -> None:
    h = _open_long(server)
    server.cancel_next_trigger()
    server.walk(1955.0, 1990.0)
    findings = h.broker.reconcile()
    assert [f.kind.value for f in findings] == ["protection_missing"]
    assert len(server.open_algo_orders()) == 2


# ------------------------------------------------------------------ account modes
def test_hedge_mode_is_refused_at_start_with_one_line(server: FuturesStandIn) -> None:
    server.dual_side = True
    b = make_live_broker(server)
    with pytest.raises(AccountModeUnsupported) as e:
        b.start()
    assert "hedge mode" in str(e.value) and "\n" not in str(e.value)
    assert not [r for r in server.requests if r.method == "POST"]  # nothing was changed or sent


def test_standin_refuses_orders_without_position_side_in_hedge_mode(server: FuturesStandIn) -> None:
    """What the refusal avoids: -4061 on every order of a hedge-mode account."""
    b = make_live_broker(server)
    b.start()
    server.dual_side = True
    with pytest.raises(Exception, match="-4061"):
        b._request("x", b._client.futures_create_order, symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.1")


def test_multi_assets_mode_trades_crossed(server: FuturesStandIn) -> None:
    server.multi_assets = True
    b = make_live_broker(server)
    b.start()
    assert b.margin_type == "CROSSED" and server.state["ETHUSDT"].margin_type == "CROSSED"
    assert any("Multi-Assets" in a for a in b.take_alerts())
    margin = [r for r in server.requests if r.path == "/fapi/v1/marginType"]
    assert [r.params["marginType"] for r in margin] == ["CROSSED"]


def test_standin_refuses_isolated_in_multi_assets(server: FuturesStandIn) -> None:
    server.multi_assets = True
    b = make_live_broker(server)
    with pytest.raises(Exception, match="-4168"):
        b._request("x", b._client.futures_change_margin_type, symbol="ETHUSDT", marginType="ISOLATED")


# ------------------------------------------------------------------ userTrades
def test_standin_refuses_more_than_seven_days(server: FuturesStandIn) -> None:
    b = make_live_broker(server)
    now = server.now_ms()
    with pytest.raises(Exception, match="-1127"):
        b._trades(startTime=now - 8 * DAY, endTime=now)
    with pytest.raises(Exception, match="-1128"):
        b._trades(fromId=1, startTime=now - DAY)


def test_trades_are_read_in_week_windows_with_paging(server: FuturesStandIn) -> None:
    """2,600 trades over 20 days, 1,500 of them inside one week: every one is read, once."""
    b = make_live_broker(server)
    b.start()
    now = server.now_ms()
    start = now - 20 * DAY
    ids = []
    for i in range(1100):
        ids.append(server.add_past_trade(side="BUY", qty=0.01, price=2000, time_ms=start + i * 60_000)["id"])
    for i in range(1500):  # 1500 in 2.5 days: more than one page inside a window
        ids.append(
            server.add_past_trade(side="SELL", qty=0.01, price=2000, time_ms=start + 9 * DAY + i * 150_000)["id"]
        )
    for i in range(5):  # five in one millisecond next to a page boundary
        ids.append(server.add_past_trade(side="BUY", qty=0.01, price=2001, time_ms=now - DAY)["id"])
    got = b._trades_between(start, now)
    assert [t["id"] for t in got] == sorted(ids, key=lambda i: next(t["time"] for t in server.trades if t["id"] == i))
    assert len({t["id"] for t in got}) == len(ids)
    calls = [r for r in server.requests if r.path == "/fapi/v1/userTrades"]
    for r in calls:
        if "startTime" in r.params:
            assert int(r.params["endTime"]) - int(r.params["startTime"]) <= 7 * DAY
        assert int(r.params.get("limit", "500")) <= 1000


def test_exit_outside_the_console_of_a_ten_day_old_position(server: FuturesStandIn) -> None:
    """A position entered 10 days ago, closed on the web: reconcile records the close with its
    true price and fee, read through the 7-day windows."""
    h = _open_long(server)
    b = h.broker
    p = b.position
    assert p is not None
    ten_days = p.entry_time - 10 * DAY
    b.position = type(p)(
        p.symbol,
        p.side,
        p.qty,
        p.entry_price,
        ten_days,
        p.entry_fee,
        p.leverage,
        p.stop_price,
        p.target_price,
        p.liquidation_price,
    )
    for i in range(30):  # someone else's history in between (other side, other orders)
        server.add_past_trade(side="BUY", qty=0.001, price=1990, time_ms=ten_days + (i + 1) * 6 * 3600_000)
    server.jump(2012.5)
    server.close_position_externally()
    close = server.trades[-1]
    findings = b.reconcile()
    assert findings[0].kind.value == "position_closed"
    fill, trade = findings[0].fill, findings[0].trade
    assert fill is not None and trade is not None
    assert fill.price == 2012.5 and fill.reason is FillReason.FLATTEN
    assert fill.fee == pytest.approx(float(close["commission"]))
    assert trade.entry_time == ten_days


# ------------------------------------------------------------------ feed provenance
def test_live_broker_refuses_replay_candles(server: FuturesStandIn) -> None:
    b = make_live_broker(server)
    b.check_feed(CANDLE_SOURCE_EXCHANGE)
    for src in (CANDLE_SOURCE_REPLAY, ""):
        with pytest.raises(FeedRefused, match="only candles from the Binance live feed"):
            b.check_feed(src)
    assert not server.requests  # refused before anything was sent


def test_trigger_grace_is_measured_on_the_exchange_clock(server: FuturesStandIn) -> None:
    b = make_live_broker(server)
    b.start()
    server.clock_skew_ms = 120_000
    b.sync_time()
    assert abs(b._now_ms() - server.now_ms()) < 1000


def test_outside_close_takes_only_the_closing_trades(server: FuturesStandIn) -> None:
    """Trades on the symbol after our position was closed (someone opened and closed another one)
    are not part of our exit."""
    h = _open_long(server)
    b = h.broker
    qty = b.position.qty
    server.jump(2010.0)
    server.close_position_externally()
    close = server.trades[-1]
    server.jump(2030.0)
    server.open_position_externally("BUY", 0.5)
    server.jump(2050.0)
    server.close_position_externally()  # another SELL, later
    findings = b.reconcile()
    fill = findings[0].fill
    assert fill is not None and fill.price == 2010.0 and fill.qty == pytest.approx(qty)
    assert fill.fee == pytest.approx(float(close["commission"]))
