"""Endpoint configuration and python-binance clients pointed at our local server."""

from __future__ import annotations

import asyncio

import pytest
from tradeconsole.core.config import DEFAULT_ENDPOINTS, TESTNET_ENDPOINTS, BinanceEndpoints
from tradeconsole.infra.binance.http.endpoints import (
    combined_stream_url,
    make_async_client,
    make_client,
    resolve_endpoints,
)

pytestmark = pytest.mark.timeout(30)


def test_defaults_and_testnet():
    assert resolve_endpoints(None, {}) == DEFAULT_ENDPOINTS
    assert resolve_endpoints(None, {}, testnet=True) == TESTNET_ENDPOINTS


def test_config_then_env_precedence():
    config = {
        "spot_rest": "https://api.binance.us/api/",
        "futures_ws": "wss://fstream.example/market",
        "api_key_env": "IGNORED",
    }
    env = {"TRADECONSOLE_BINANCE_SPOT_REST": "http://127.0.0.1:9/api", "TRADECONSOLE_BINANCE_SPOT_WS": ""}
    e = resolve_endpoints(config, env)
    assert e.spot_rest == "http://127.0.0.1:9/api"  # env wins over config
    assert e.futures_ws == "wss://fstream.example/market/"  # websocket bases end with '/'
    assert e.spot_ws == DEFAULT_ENDPOINTS.spot_ws  # empty variable = unset
    assert e.futures_rest == DEFAULT_ENDPOINTS.futures_rest
    assert resolve_endpoints({"futures_rest": "https://fapi.example/fapi/"}, {}, testnet=True) == BinanceEndpoints(
        spot_rest=TESTNET_ENDPOINTS.spot_rest,
        futures_rest="https://fapi.example/fapi",
        spot_ws=TESTNET_ENDPOINTS.spot_ws,
        futures_ws=TESTNET_ENDPOINTS.futures_ws,
        futures_user_ws=TESTNET_ENDPOINTS.futures_user_ws,
    )


@pytest.mark.parametrize(
    "config, env, fragment",
    [
        ({"spot_rest": "wss://x/api"}, {}, "config [binance] spot_rest"),
        ({"spot_ws": "https://x/"}, {}, "spot_ws"),
        ({}, {"TRADECONSOLE_BINANCE_FUTURES_REST": "fapi.binance.com"}, "TRADECONSOLE_BINANCE_FUTURES_REST"),
        ({"futures_ws": 42}, {}, "futures_ws"),
        ({"spot_rest": "https://x/api?a=1"}, {}, "query"),
    ],
)
def test_bad_urls_name_their_source(config, env, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        resolve_endpoints(config, env)


@pytest.mark.parametrize(
    "url",
    [
        "wss://fstream.binance.com/",
        "wss://fstream.binance.com",
        "wss://fstream.binance.com/ws",
        "wss://fstream.binance.com/public/",
        "wss://fstream.binancefuture.com/",
        "wss://fstream.binance.com/marketx/",
    ],
)
@pytest.mark.parametrize("source", ["config", "env"])
def test_retired_futures_routes_are_refused_with_the_fix(url, source):
    """The legacy unrouted base (and /public) opens but never delivers klines since 2026-04-23,
    so a config naming it is refused at start, with the /market URL to use instead."""
    config, env = ({"futures_ws": url}, {}) if source == "config" else ({}, {"TRADECONSOLE_BINANCE_FUTURES_WS": url})
    with pytest.raises(ValueError, match=r"retired or wrong route.*/market/"):
        resolve_endpoints(config, env)


def test_market_route_and_other_hosts_stay_configurable():
    for url in (
        "wss://fstream.binance.com/market",
        "wss://fstream.binancefuture.com/market/",
        "ws://127.0.0.1:9/futures/",
        "wss://proxy.example/",
    ):
        assert resolve_endpoints({"futures_ws": url}, {}).futures_ws == url.rstrip("/") + "/"
    assert DEFAULT_ENDPOINTS.futures_ws == "wss://fstream.binance.com/market/"
    assert TESTNET_ENDPOINTS.futures_ws == "wss://fstream.binancefuture.com/market/"
    assert DEFAULT_ENDPOINTS.spot_ws == "wss://stream.binance.com:9443/"  # spot routes unchanged


def test_combined_stream_url():
    url = combined_stream_url(DEFAULT_ENDPOINTS, "futures", ["ETHUSDT@kline_5m", "btcusdt@kline_1h"])
    # the 2026 Market route (Important WebSocket Change Notice), combined-stream ("stream") mode
    assert url == "wss://fstream.binance.com/market/stream?streams=ethusdt@kline_5m/btcusdt@kline_1h"
    testnet = combined_stream_url(TESTNET_ENDPOINTS, "futures", ["ethusdt@kline_5m"])
    assert testnet == "wss://fstream.binancefuture.com/market/stream?streams=ethusdt@kline_5m"
    assert combined_stream_url(DEFAULT_ENDPOINTS, "spot", ["a@kline_1m"]).startswith(
        "wss://stream.binance.com:9443/stream?"
    )
    with pytest.raises(ValueError):
        combined_stream_url(DEFAULT_ENDPOINTS, "margin", ["a@kline_1m"])
    with pytest.raises(ValueError):
        combined_stream_url(DEFAULT_ENDPOINTS, "spot", [])


def test_env_resolved_client_talks_to_local_server(market_server):
    client = make_client(resolve_endpoints(None, market_server.env()))
    assert market_server.request_counts == {}, "building a client must not make a request"
    assert client.ping() == {}
    assert client.get_server_time()["serverTime"] == market_server.now_ms
    assert client.futures_time()["serverTime"] == market_server.now_ms
    spot = client.get_klines(symbol="ETHUSDT", interval="5m", limit=3)
    futures = client.futures_klines(symbol="ETHUSDT", interval="5m", limit=3)
    assert [r[0] for r in spot] == [r[0] for r in futures] and len(spot) == 3
    assert spot[0][1].endswith("000000") and not futures[0][1].endswith("000000")  # 8 decimals vs trimmed
    assert client.get_exchange_info()["symbols"][0]["symbol"] == "ETHUSDT"
    assert client.futures_exchange_info()["rateLimits"][0]["limit"] == 2400
    counts = market_server.request_counts
    assert counts["/api/v3/klines"] == 1 and counts["/fapi/v1/klines"] == 1
    assert counts["/api/v3/exchangeInfo"] == 1 and counts["/fapi/v1/exchangeInfo"] == 1


def test_async_client_talks_to_local_server(market_server):
    async def run():
        client = make_async_client(market_server.endpoints())
        try:
            rows = await client.futures_klines(symbol="ETHUSDT", interval="1h", limit=2)
            return rows, await client.get_server_time()
        finally:
            await client.close_connection()

    rows, server_time = asyncio.run(run())
    assert len(rows) == 2 and server_time["serverTime"] == market_server.now_ms
    assert market_server.request_counts["/fapi/v1/klines"] == 1
