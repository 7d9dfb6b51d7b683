"""The futures stand-in behaves like Binance where the broker depends on it: authentication and
timestamps, filters, reduce-only, margin, conditional orders and the accounting. Exercised with
python-binance's own client so request signing is the real one."""

from __future__ import annotations

from decimal import Decimal

import pytest
from binance.client import Client
from binance.exceptions import BinanceAPIException

from tests.brokers.conftest import API_KEY, API_SECRET, SYMBOL
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(30)


def client(server: FuturesStandIn, key: str = API_KEY, secret: str = API_SECRET) -> Client:
    c = Client(key, secret, ping=False)
    c.FUTURES_URL = server.base_url
    return c


def code_of(fn, **kw) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(BinanceAPIException) as info:
        fn(**kw)
    return int(info.value.code)


def buy(c: Client, qty: str, **kw: str) -> dict:  # type: ignore[type-arg]
    return c.futures_create_order(
        symbol=SYMBOL, side="BUY", type="MARKET", quantity=qty, newOrderRespType="RESULT", **kw
    )


def test_authentication_and_clock(server: FuturesStandIn) -> None:
    assert client(server).futures_ping() == {}
    assert code_of(client(server, secret="nope").futures_account_balance) == -1022
    assert code_of(client(server, key="nope").futures_account_balance) == -2015
    server.clock_skew_ms = 20_000
    assert code_of(client(server).futures_account_balance) == -1021
    c = client(server)
    c.timestamp_offset = 20_000
    assert c.futures_account_balance()[0]["asset"] == "USDT"
    server.clock_skew_ms = -5_000
    assert code_of(c.futures_account_balance) == -1021  # now 25 s ahead


def test_filters_and_order_rules(server: FuturesStandIn) -> None:
    c = client(server)
    assert code_of(buy, c=c, qty="0.0005") == -1111
    assert code_of(buy, c=c, qty="0.005") == -4164  # 10 USDT < 20 notional
    assert code_of(buy, c=c, qty="5000") == -4005
    assert code_of(c.futures_create_order, symbol="XYZUSDT", side="BUY", type="MARKET", quantity="1") == -1121
    assert (
        code_of(c.futures_create_order, symbol=SYMBOL, side="SELL", type="MARKET", quantity="1", reduceOnly="true")
        == -2022
    )
    assert code_of(buy, c=c, qty="100") == -2019  # 200k notional / 20x > 10k wallet
    assert (
        code_of(
            c._request_futures_api,
            method="post",
            path="order",
            signed=True,
            data={
                "symbol": SYMBOL,
                "side": "SELL",
                "type": "STOP_MARKET",
                "stopPrice": "1900",
                "closePosition": "true",
            },
        )
        == -4120
    )
    assert c.futures_change_margin_type(symbol=SYMBOL, marginType="ISOLATED")["code"] == 200
    assert code_of(c.futures_change_margin_type, symbol=SYMBOL, marginType="ISOLATED") == -4046
    buy(c, "1")
    assert code_of(c.futures_change_margin_type, symbol=SYMBOL, marginType="CROSSED") == -4048
    algo = dict(symbol=SYMBOL, side="SELL", type="STOP_MARKET", closePosition="true", clientAlgoId="x1")
    assert code_of(c.futures_create_algo_order, triggerPrice="1900.005", **algo) == -1111
    assert code_of(c.futures_create_algo_order, triggerPrice="2100", **algo) == -2021  # already crossed
    c.futures_create_algo_order(triggerPrice="1900", **algo)
    assert code_of(c.futures_create_algo_order, triggerPrice="1901", **algo) == -4116


def test_walk_fills_at_trigger_and_jump_fills_at_price(server: FuturesStandIn) -> None:
    c = client(server)
    buy(c, "2")
    c.futures_create_algo_order(
        symbol=SYMBOL, side="SELL", type="STOP_MARKET", triggerPrice="1950", closePosition="true", clientAlgoId="s1"
    )
    server.walk(1900)
    assert c.futures_get_algo_order(clientAlgoId="s1")["actualPrice"] == "1950"
    server.jump(2000)
    buy(c, "2")
    c.futures_create_algo_order(
        symbol=SYMBOL, side="SELL", type="STOP_MARKET", triggerPrice="1950", closePosition="true", clientAlgoId="s2"
    )
    server.jump(1930)
    algo = c.futures_get_algo_order(clientAlgoId="s2")
    assert (algo["algoStatus"], algo["actualPrice"]) == ("FINISHED", "1930")
    assert server.position_amt() == 0


def test_wallet_changes_by_realised_pnl_minus_commission(server: FuturesStandIn) -> None:
    c = client(server)
    buy(c, "1.5")
    server.walk(2100)
    c.futures_create_order(symbol=SYMBOL, side="SELL", type="MARKET", quantity="1.5", reduceOnly="true")
    trades = c.futures_account_trades(symbol=SYMBOL)
    fees = sum(Decimal(t["commission"]) for t in trades)
    assert fees == Decimal("1.5") * (2000 + 2100) * Decimal("0.0004")
    assert sum(Decimal(t["realizedPnl"]) for t in trades) == 150
    assert server.wallet == Decimal(10_000) + 150 - fees
    assert Decimal(c.futures_account_balance()[0]["balance"]) == server.wallet


def test_requests_are_recorded_without_the_signature_or_credentials(server: FuturesStandIn) -> None:
    c = client(server)
    buy(c, "1", newClientOrderId="abc")
    rec = [r for r in server.requests if r.path == "/fapi/v1/order"][-1]
    assert rec.params["newClientOrderId"] == "abc" and "signature" not in rec.params
    assert API_KEY not in repr(server.requests) and API_SECRET not in repr(server.requests)


# ------------------------------------------------------------------ 2026 rules (user data stream, modes)
def test_listen_key_lives_sixty_minutes_unless_kept_alive(server: FuturesStandIn) -> None:
    """Start/Keepalive User Data Stream: valid 60 minutes after creation, a PUT extends it by 60
    minutes, a POST on an account with an active key returns that key; gone: -1125."""
    c = client(server)
    key = c.futures_stream_get_listen_key()
    assert c.futures_stream_get_listen_key() == key  # the active key, extended
    server.clock_skew_ms = 59 * 60_000
    c.futures_stream_keepalive(listenKey=key)  # extends to 59 + 60 minutes
    server.clock_skew_ms = 118 * 60_000
    c.futures_stream_keepalive(listenKey=key)
    server.clock_skew_ms = 179 * 60_000  # 61 minutes after the last keepalive
    assert code_of(c.futures_stream_keepalive, listenKey=key) == -1125
    assert c.futures_stream_get_listen_key() != key  # a new one
    unsigned = Client(None, None, ping=False)
    unsigned.FUTURES_URL = server.base_url
    with pytest.raises(BinanceAPIException) as info:
        unsigned.futures_stream_get_listen_key()
    assert info.value.code == -2014  # USER_STREAM endpoints still need the API key


def test_expired_key_ends_the_stream_with_the_documented_event(server: FuturesStandIn) -> None:
    """A key not kept alive for 60 minutes: ``listenKeyExpired`` is sent and the stream closes."""
    import asyncio
    import json

    from websockets.asyncio.client import connect

    key = client(server).futures_stream_get_listen_key()

    async def go() -> list[dict]:
        got = []
        async with connect(f"{server.user_ws_url}ws?listenKey={key}", open_timeout=5) as ws:
            server.clock_skew_ms = 60 * 60_000 + 1000
            async for raw in ws:
                got.append(json.loads(raw))
        return got

    msgs = asyncio.run(asyncio.wait_for(go(), 10))
    assert [m["e"] for m in msgs] == ["listenKeyExpired"] and msgs[0]["listenKey"] == key


def test_account_modes(server: FuturesStandIn) -> None:
    c = client(server)
    assert c.futures_get_position_mode() == {"dualSidePosition": False}
    assert c.futures_get_multi_assets_mode() == {"multiAssetsMargin": False}
    server.dual_side, server.multi_assets = True, True
    assert c.futures_get_position_mode() == {"dualSidePosition": True}
    assert code_of(buy, c=c, qty="0.1") == -4061  # no positionSide in hedge mode
    assert code_of(c.futures_change_margin_type, symbol=SYMBOL, marginType="ISOLATED") == -4168
    server.dual_side = False
    assert code_of(buy, c=c, qty="0.1", positionSide="LONG") == -4061  # LONG/SHORT only in hedge mode
