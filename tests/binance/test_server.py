"""The stand-in server itself behaves like Binance's documented endpoints; the other tests'
verdicts are only as good as this."""

from __future__ import annotations

import asyncio
import json

import pytest
import requests

from tests.servers.binance_market import BinanceMarketServer

pytestmark = pytest.mark.timeout(30)
STEP = 300_000


def _get(server, path, **params):
    return requests.get(server.base_url + path, params=params, timeout=5)


def test_kline_paging_semantics(market_server):
    now = market_server.now_ms
    series = market_server.series("ETHUSDT", "5m")
    first = int(series.open_time[0])
    rows = _get(market_server, "/api/v3/klines", symbol="ETHUSDT", interval="5m", startTime=first, limit=3).json()
    assert [r[0] for r in rows] == [first, first + STEP, first + 2 * STEP]
    assert rows[0][6] == first + STEP - 1 and len(rows[0]) == 12 and isinstance(rows[0][1], str)
    # startTime inside a candle starts at the next one; endTime bounds open times inclusively
    rows = _get(
        market_server, "/api/v3/klines", symbol="ETHUSDT", interval="5m", startTime=first + 1, endTime=first + 3 * STEP
    ).json()
    assert [r[0] for r in rows] == [first + STEP, first + 2 * STEP, first + 3 * STEP]
    # no startTime: the latest candles, ending with the open one (which is never in the future)
    latest = _get(market_server, "/fapi/v1/klines", symbol="ETHUSDT", interval="5m", limit=2).json()
    assert [r[0] for r in latest] == [now - STEP, now]
    assert latest[-1][6] >= now  # still open
    resp = _get(market_server, "/fapi/v1/klines", symbol="ETHUSDT", interval="5m", limit=1501)
    assert resp.status_code == 400 and resp.json()["code"] == -1130
    assert _get(market_server, "/api/v3/klines", symbol="ETHUSDT", interval="5m", limit=1001).status_code == 400
    assert _get(market_server, "/api/v3/klines", symbol="NOPE", interval="5m").json()["code"] == -1121
    assert _get(market_server, "/api/v3/klines", symbol="ETHUSDT", interval="7m").json()["code"] == -1120


def test_open_candle_grows_with_the_clock(market_server):
    def current():
        return _get(market_server, "/api/v3/klines", symbol="ETHUSDT", interval="5m", limit=1).json()[0]

    flat = current()
    assert flat[1] == flat[2] == flat[3] == flat[4] and float(flat[5]) == 0
    market_server.advance_ms(STEP // 2)
    mid = current()
    assert mid[0] == flat[0] and float(mid[5]) > 0
    market_server.advance_ms(STEP // 2)
    closed = _get(market_server, "/api/v3/klines", symbol="ETHUSDT", interval="5m", limit=2).json()[0]
    truth = market_server.closed_candles("ETHUSDT", "5m")[-1]
    assert closed[0] == truth.open_time and float(closed[4]) == truth.close


def test_rest_faults_and_weight_header(market_server):
    market_server.fail_rest(429, count=1, retry_after=3)
    resp = _get(market_server, "/api/v3/klines", symbol="ETHUSDT", interval="5m")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "3" and resp.json()["code"] == -1003
    ok = _get(market_server, "/api/v3/klines", symbol="ETHUSDT", interval="5m")
    assert ok.status_code == 200 and int(ok.headers["X-MBX-USED-WEIGHT-1M"]) >= 2
    assert _get(market_server, "/api/v3/time").json() == {"serverTime": market_server.now_ms}
    assert market_server.request_counts["/api/v3/klines"] == 2


def test_websocket_formats_and_faults(market_server):
    import websockets

    async def read(url, n):
        async with websockets.connect(url) as ws:
            while market_server.active_connections() == 0:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(market_server.advance, 1)
            return [json.loads(await ws.recv()) for _ in range(n)]

    port = market_server.port
    raw = asyncio.run(read(f"ws://127.0.0.1:{port}/ws/ethusdt@kline_5m", 4))
    assert [m["k"]["x"] for m in raw] == [False, False, False, True]
    assert raw[0]["e"] == "kline" and raw[0]["k"]["o"].endswith("000000")  # spot: 8 decimals
    assert raw[-1]["E"] == raw[-1]["k"]["T"] + 1
    combined = asyncio.run(read(f"ws://127.0.0.1:{port}/futures/market/stream?streams=ethusdt@kline_5m", 4))
    assert combined[0]["stream"] == "ethusdt@kline_5m" and "data" in combined[0]
    assert not combined[0]["data"]["k"]["o"].endswith("000000")  # futures: trimmed
    market_server.duplicate_next(4)
    doubled = asyncio.run(read(f"ws://127.0.0.1:{port}/ws/ethusdt@kline_5m", 8))
    assert doubled[0] == doubled[1] and doubled[-1] == doubled[-2]


def test_connections_expire_after_24h_of_server_time():
    with BinanceMarketServer(connection_lifetime_ms=2 * 3_600_000) as server:
        import websockets

        async def run():
            async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws/ethusdt@kline_1h") as ws:
                while server.active_connections() == 0:
                    await asyncio.sleep(0.01)
                await asyncio.to_thread(server.advance, 3, "1h")
                got = []
                try:
                    while True:
                        got.append(json.loads(await ws.recv()))
                except websockets.ConnectionClosedOK as exc:
                    return got, exc.rcvd.code

        messages, code = asyncio.run(run())
        assert code == 1001
        assert sum(m["k"]["x"] for m in messages) == 2  # closed at the two-hour mark


@pytest.mark.parametrize(
    "path",
    [
        "/futures/stream?streams=ethusdt@kline_5m",  # legacy wss://fstream.binance.com/stream?...
        "/futures/ws/ethusdt@kline_5m",  # legacy wss://fstream.binance.com/ws/...
        "/futures/public/stream?streams=ethusdt@kline_5m",  # klines are not a /public stream
    ],
)
def test_retired_and_wrong_futures_routes_open_but_stay_silent(market_server, path):
    """As Binance does since 2026-04-23: the handshake succeeds, no kline ever arrives; the
    /market route on the same server delivers the same candles."""
    import websockets

    async def run():
        async with (
            websockets.connect(f"ws://127.0.0.1:{market_server.port}{path}") as silent,
            websockets.connect(f"ws://127.0.0.1:{market_server.port}/futures/market/ws/ethusdt@kline_5m") as good,
        ):
            while market_server.active_connections() < 2:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(market_server.advance, 1)
            got = [json.loads(await asyncio.wait_for(good.recv(), 5)) for _ in range(4)]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(silent.recv(), 0.5)
            return got

    got = asyncio.run(run())
    assert got[-1]["k"]["x"] is True
