"""The user data stream against the stand-in: listenKey creation, keepalive, expiry and reconnects
(each followed by a gap marker so the broker reconciles), and the three event types applied to
the live broker the moment they arrive."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from tradeconsole.core.config import BinanceEndpoints
from tradeconsole.core.domain import FillReason, Side
from tradeconsole.core.feed import AccountStreamEvent
from tradeconsole.infra.binance.execution.user_stream import UserDataStream, user_stream_url
from tradeconsole.infra.binance.http.endpoints import make_client

from tests.brokers.conftest import API_KEY, API_SECRET, LiveHarness, flat
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(30)


class Collector:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, ev: Any) -> None:
        with self.lock:
            self.items.append(ev)

    def events(self, kind: str | None = None) -> list[AccountStreamEvent]:
        with self.lock:
            return [
                e
                for e in self.items
                if isinstance(e, AccountStreamEvent) and not e.gap and (kind is None or e.payload.get("e") == kind)
            ]

    def gaps(self) -> int:
        with self.lock:
            return sum(1 for e in self.items if isinstance(e, AccountStreamEvent) and e.gap)


def wait(pred, timeout: float = 10.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def endpoints(server: FuturesStandIn) -> BinanceEndpoints:
    return BinanceEndpoints(futures_rest=server.base_url, futures_user_ws=server.user_ws_url)


def stream(server: FuturesStandIn, **kw: Any) -> tuple[UserDataStream, Collector]:
    e = endpoints(server)
    s = UserDataStream(make_client(e, API_KEY, API_SECRET), e, backoff_s=0.05, **kw)
    c = Collector()
    s.start(c)
    wait(lambda: server.user_connections() == 1, what="the stream to connect")
    return s, c


def test_url_is_the_2026_private_route() -> None:
    from tradeconsole.core.config import DEFAULT_ENDPOINTS, TESTNET_ENDPOINTS

    assert user_stream_url(DEFAULT_ENDPOINTS, "K") == "wss://fstream.binance.com/private/ws?listenKey=K"
    assert user_stream_url(TESTNET_ENDPOINTS, "K") == "wss://fstream.binancefuture.com/private/ws?listenKey=K"


def test_keepalive_extends_the_key(server: FuturesStandIn) -> None:
    s, c = stream(server, keepalive_s=0.2)
    try:
        key = s.listen_key
        assert key is not None and key in server.listen_keys
        first = server.listen_keys[key]
        wait(lambda: s.keepalives >= 2, what="two keepalives")
        assert server.listen_keys[key] > first
        puts = [r for r in server.requests if r.method == "PUT" and r.path == "/fapi/v1/listenKey"]
        assert len(puts) >= 2 and all(r.status == 200 for r in puts)
        assert s.state == "connected" and c.gaps() == 1  # the first connect reconciles too
    finally:
        s.stop()
    assert key not in server.listen_keys  # closed on stop


def test_expired_key_is_replaced_and_the_gap_reconciled(server: FuturesStandIn) -> None:
    s, c = stream(server)
    try:
        old = s.listen_key
        server.expire_listen_key()
        wait(lambda: s.connects == 2 and server.user_connections() == 1, what="a reconnect with a new key")
        assert s.expired == 1 and s.listen_key != old
        assert c.gaps() == 2
        server.drop_user_connections()  # a network blip: same key, reconnect, another gap
        wait(lambda: s.connects == 3 and server.user_connections() == 1, what="a reconnect after a drop")
        assert c.gaps() == 3
    finally:
        s.stop()


def test_keepalive_on_a_vanished_key_reconnects(server: FuturesStandIn) -> None:
    s, c = stream(server, keepalive_s=0.2)
    try:
        server.listen_keys.clear()  # the key vanished server-side without the expiry event
        wait(lambda: s.connects >= 2, what="a reconnect after -1125")
        assert any(r.code == -1125 for r in server.requests if r.path == "/fapi/v1/listenKey")
    finally:
        s.stop()


def test_stop_fill_is_applied_from_the_stream_at_once(server: FuturesStandIn) -> None:
    """The broker records the stop's exit from the stream's events alone (no candle)."""
    h = LiveHarness(server)
    c0 = flat(0, 2000.0)
    h.feed(c0)
    s, c = stream(server)
    try:
        h.enter(Side.LONG, c0, 0, sl=0.02, tp=0.04)
        n = len(c.events())
        server.walk(1950.0)

        # the stop's market order is linked to the algo order by id only (ALGO_UPDATE ``ai``)
        def stop_order_filled() -> bool:
            ai = {
                e.payload["o"]["ai"]
                for e in c.events("ALGO_UPDATE")
                if e.payload["o"]["caid"].endswith("sl") and e.payload["o"]["ai"]
            }
            return any(
                str(e.payload["o"]["i"]) in {str(a) for a in ai} and e.payload["o"]["X"] == "FILLED"
                for e in c.events("ORDER_TRADE_UPDATE")
            )

        wait(stop_order_filled, what="the stop's order update")
        # the three event types are separate frames with no documented order among them: wait
        # for the account update too instead of assuming it came first
        wait(
            lambda: {"ORDER_TRADE_UPDATE", "ALGO_UPDATE", "ACCOUNT_UPDATE"} <= {e.payload["e"] for e in c.events()[n:]},
            what="the account update",
        )
        exits = []
        for ev in c.events()[n:]:
            exits += h.broker.apply_stream_event(ev.payload)
        assert [f.reason for f, _ in exits] == [FillReason.STOP_LOSS]
        fill, trade = exits[0]
        assert fill.price == pytest.approx(1960.0) and trade is not None and h.broker.position is None
        assert h.broker.cash == pytest.approx(float(server.wallet))  # ACCOUNT_UPDATE wb
        assert server.open_algo_orders() == []  # the target was canceled
    finally:
        s.stop()


def test_dead_trigger_seen_on_the_stream_reprotects(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    c0 = flat(0, 2000.0)
    h.feed(c0)
    s, c = stream(server)
    try:
        h.enter(Side.LONG, c0, 0, sl=0.02, tp=0.04)
        n = len(c.events())
        server.cancel_next_trigger()
        server.walk(1955.0, 1990.0)
        wait(
            lambda: any(e.payload["e"] == "ALGO_UPDATE" and e.payload["o"]["X"] == "FINISHED" for e in c.events()[n:]),
            what="the FINISHED algo update",
        )
        for ev in c.events()[n:]:
            assert h.broker.apply_stream_event(ev.payload) == []
        assert h.broker.position is not None and len(server.open_algo_orders()) == 2
    finally:
        s.stop()


def test_liquidation_from_account_update(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    c0 = flat(0, 2000.0)
    h.feed(c0)
    s, c = stream(server)
    try:
        h.enter(Side.LONG, c0, 0, sl=0.02, tp=0.04)
        n = len(c.events())
        server.jump(1970.0)
        server.liquidate()
        wait(lambda: any(e.payload["e"] == "ACCOUNT_UPDATE" for e in c.events()[n:]), what="the account update")
        acct = [e for e in c.events()[n:] if e.payload["e"] == "ACCOUNT_UPDATE"]
        exits = h.broker.apply_stream_event(acct[-1].payload)  # the account update alone suffices
        assert [f.reason for f, _ in exits] == [FillReason.LIQUIDATION] and exits[0][0].price == 1970.0
    finally:
        s.stop()


def test_legacy_route_is_closed(server: FuturesStandIn) -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def go() -> None:
        async with connect(f"ws://127.0.0.1:{server.port}/ws/anykey", open_timeout=5):
            pass

    with pytest.raises(InvalidStatus):
        asyncio.run(go())


def test_legacy_user_stream_base_is_refused_at_configuration() -> None:
    from tradeconsole.infra.binance.http.endpoints import resolve_endpoints

    with pytest.raises(ValueError, match="/private"):
        resolve_endpoints({"futures_user_ws": "wss://fstream.binance.com/"}, {})
    e = resolve_endpoints({}, {"TRADECONSOLE_BINANCE_FUTURES_USER_WS": "wss://fstream.binance.com/private"})
    assert e.futures_user_ws == "wss://fstream.binance.com/private/"
