"""reconcile(): every kind of mismatch between the exchange and the broker's state is reported
with a message and resolved by its documented rule, never ignored."""

from __future__ import annotations

import json

import pytest
from binance.client import Client
from tradeconsole.core.domain import FillReason, Side
from tradeconsole.infra.binance.execution.broker import FindingKind

from tests.brokers.conftest import API_KEY, API_SECRET, SYMBOL, LiveHarness, flat, oid, posts
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(30)


def raw_client(server: FuturesStandIn) -> Client:
    """Someone else's python-binance client on the same account (a human, another tool)."""
    c = Client(API_KEY, API_SECRET, ping=False)
    c.FUTURES_URL = server.base_url
    return c


def kinds(findings: list) -> list[str]:  # type: ignore[type-arg]
    return [f.kind.value for f in findings]


def restarted(h: LiveHarness) -> LiveHarness:
    """A new process: fresh broker, state restored from the journalled snapshot."""
    return h.reborn()


def test_nothing_to_report_when_in_sync(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    assert h.broker.reconcile() == []
    h.enter(Side.LONG, flat(0, 2000), 0)
    assert h.broker.reconcile() == []
    assert restarted(h).broker.reconcile() == []


def test_stop_fired_while_the_console_was_down(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.enter(Side.LONG, flat(0, 2000), 0)
    server.walk(1950)  # console is dead; the exchange-side stop does its job
    h2 = restarted(h)
    [f] = h2.broker.reconcile()
    assert f.kind is FindingKind.POSITION_CLOSED and "flat on the exchange" in f.message
    assert f.fill is not None and f.fill.reason is FillReason.STOP_LOSS and f.fill.price == 1960.0
    assert h2.broker.is_flat and server.open_algo_orders() == []
    # the exit is delivered exactly once, through on_candle, like any other exit
    [(fill, trade)] = h2.feed(flat(1, 1950))
    assert fill == f.fill and trade is not None and trade.exit_reason is FillReason.STOP_LOSS
    assert h2.feed(flat(2, 1950)) == []
    assert h2.broker.cash == pytest.approx(float(server.wallet))


@pytest.mark.parametrize(
    ("close", "reason"),
    [
        ("close_position_externally", FillReason.FLATTEN),
        ("liquidate", FillReason.LIQUIDATION),
    ],
)
def test_position_closed_outside_the_console(server: FuturesStandIn, close: str, reason: FillReason) -> None:
    h = LiveHarness(server)
    h.enter(Side.SHORT, flat(0, 2000), 0)
    server.jump(2010)
    getattr(server, close)()
    [f] = h.broker.reconcile()
    assert f.kind is FindingKind.POSITION_CLOSED
    assert f.fill is not None and f.fill.reason is reason and f.fill.price == 2010.0
    assert f.trade is not None and f.trade.pnl < 0
    assert server.open_algo_orders() == []  # the orphaned stop/target are canceled
    [(fill, _)] = h.feed(flat(1, 2010))
    assert fill.reason is reason


def test_missing_protective_order_is_replaced(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.enter(Side.LONG, flat(0, 2000), 0)
    sl = oid(0, Side.LONG) + "sl"
    server.cancel_algo_externally(sl)
    h2 = restarted(h)
    [f] = h2.broker.reconcile()
    assert f.kind is FindingKind.PROTECTION_MISSING and sl in f.message and "re-placed" in f.action
    again = [o for o in server.open_algo_orders() if o["clientAlgoId"] == sl]
    assert len(again) == 1 and again[0]["triggerPrice"] == "1960"
    assert h2.broker.reconcile() == []


def test_missing_protection_that_cannot_be_replaced_closes_the_position(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.enter(Side.LONG, flat(0, 2000), 0)
    server.cancel_algo_externally(oid(0, Side.LONG) + "sl")
    server.jump(1950)  # below the stop: re-placing it would trigger immediately (-2021)
    [f] = h.broker.reconcile()
    assert f.kind is FindingKind.PROTECTION_MISSING and "closed the position" in f.action
    assert f.fill is not None and f.fill.price == 1950.0
    assert server.position_amt() == 0 and h.broker.is_flat


def test_stray_orders_are_canceled(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    other = raw_client(server)
    other.futures_create_algo_order(
        symbol=SYMBOL,
        side="SELL",
        type="STOP_MARKET",
        triggerPrice="1500",
        closePosition="true",
        clientAlgoId="manualstop1",
    )
    [f] = h.broker.reconcile()
    assert f.kind is FindingKind.STRAY_ORDER and "manualstop1" in f.problem and f.action == "canceled it"
    assert str(f) == f.message and "manualstop1" in f.message and "canceled it" in f.message
    assert server.open_algo_orders() == []


def test_quantity_changed_outside_is_adopted(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    fill = h.enter(Side.LONG, flat(0, 2000), 0, stake=0.2)
    assert fill is not None
    raw_client(server).futures_create_order(
        symbol=SYMBOL, side="SELL", type="MARKET", quantity="1", reduceOnly="true", newClientOrderId="manualcut"
    )
    [f] = h.broker.reconcile()
    assert f.kind is FindingKind.QTY_MISMATCH
    p = h.broker.position
    assert p is not None and p.qty == pytest.approx(fill.qty - 1)
    assert len(server.open_algo_orders()) == 2  # closePosition orders cover any size


def test_unknown_position_traced_to_our_entry_is_adopted(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.enter(Side.SHORT, flat(0, 2000), 0)
    # died after the fill and protection, before the journal recorded anything
    fresh = LiveHarness(server)
    [f] = fresh.broker.reconcile()
    assert f.kind is FindingKind.UNKNOWN_POSITION and "adopted" in f.action and oid(0, Side.SHORT) in f.action
    assert fresh.broker.position == h.broker.position
    assert len(posts(server, "/fapi/v1/order")) == 1  # nothing sent
    assert fresh.broker.reconcile() == []
    fresh.feed(flat(1, 1900))  # 2000 * 0.96 = 1920 target
    assert fresh.fills[-1].reason is FillReason.TAKE_PROFIT


def test_unknown_position_without_our_protection_is_closed(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    server.open_position_externally("BUY", 1.5)
    [f] = h.broker.reconcile()
    assert f.kind is FindingKind.UNKNOWN_POSITION and "closed it" in f.action
    assert f.fill is not None and f.fill.qty == 1.5 and f.trade is None
    assert server.position_amt() == 0 and h.broker.is_flat
    last = posts(server, "/fapi/v1/order")[-1]
    assert last.params["reduceOnly"] == "true" and last.params["side"] == "SELL"


def test_opposite_side_on_the_exchange(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.enter(Side.LONG, flat(0, 2000), 0)
    server.close_position_externally()
    server.open_position_externally("SELL", 1.0)
    findings = h.broker.reconcile()
    assert kinds(findings) == ["side_mismatch", "unknown_position"]
    assert findings[0].fill is not None and findings[0].fill.reason is FillReason.FLATTEN
    assert server.position_amt() == 0 and h.broker.is_flat
    [(fill, trade)] = h.feed(flat(1, 2000))
    assert trade is not None and trade.side is Side.LONG


def test_snapshot_carries_undelivered_exits_across_a_restart(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.enter(Side.LONG, flat(0, 2000), 0)
    server.walk(2100)
    [f] = h.broker.reconcile()  # exit found, not yet delivered by on_candle...
    snap = json.loads(json.dumps(h.broker.snapshot()))
    h2 = LiveHarness(server)  # ...and the process dies here
    h2.broker.restore(snap)
    assert h2.broker.reconcile() == []
    [(fill, trade)] = h2.feed(flat(1, 2100))
    assert fill == f.fill and trade == f.trade
