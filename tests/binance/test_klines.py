"""Kline parsing: REST rows and websocket events (spot, futures, combined) -> Candle."""

from __future__ import annotations

import json

import pytest
from tradeconsole.core.domain import Candle
from tradeconsole.infra.binance.market.klines import (
    KlineParseError,
    UnexpectedMessage,
    align_down,
    align_up,
    kline_stream_name,
    parse_rest_kline,
    parse_rest_klines,
    parse_ws_message,
)

# Shaped like the examples in Binance's stream documentation (spot and USD-M futures); the documented
# example has low (0.0015) above open (0.0010), which our validation rightly rejects, so low is 0.0009
SPOT_EVENT = {
    "e": "kline",
    "E": 1672515782136,
    "s": "BNBBTC",
    "k": {
        "t": 1672515780000,
        "T": 1672515839999,
        "s": "BNBBTC",
        "i": "1m",
        "f": 100,
        "L": 200,
        "o": "0.0010",
        "c": "0.0020",
        "h": "0.0025",
        "l": "0.0009",
        "v": "1000",
        "n": 100,
        "x": False,
        "q": "1.0000",
        "V": "500",
        "Q": "0.500",
        "B": "123456",
    },
}
FUTURES_EVENT = {
    "e": "kline",
    "E": 1638747660000,
    "s": "BTCUSDT",
    "k": {
        "t": 1638747660000,
        "T": 1638747719999,
        "s": "BTCUSDT",
        "i": "1m",
        "f": 100,
        "L": 200,
        "o": "0.0010",
        "c": "0.0020",
        "h": "0.0025",
        "l": "0.0009",
        "v": "1000",
        "n": 100,
        "x": True,
        "q": "1.0000",
        "V": "500",
        "Q": "0.500",
        "B": "123456",
    },
}
REST_ROW = [
    1499040000000,
    "0.01634790",
    "0.80000000",
    "0.01575800",
    "0.01577100",
    "148976.11427815",
    1499644799999,
    "2434.19055334",
    308,
    "1756.87402397",
    "28.46694368",
    "0",
]


def test_rest_row():
    c = parse_rest_kline(REST_ROW)
    assert c == Candle(1499040000000, 0.0163479, 0.8, 0.015758, 0.015771, 148976.11427815, 1499644799999, True)
    assert parse_rest_kline(REST_ROW, closed=False).closed is False
    assert parse_rest_klines([REST_ROW, REST_ROW]) == [c, c]


@pytest.mark.parametrize(
    "row",
    [
        REST_ROW[:6],
        [*REST_ROW[:1], "x", *REST_ROW[2:]],
        [*REST_ROW[:2], "0.001", *REST_ROW[3:]],  # high below open
        [1.5, *REST_ROW[1:]],
        [*REST_ROW[:6], REST_ROW[0], *REST_ROW[7:]],  # close time not after open time
        "not a row",
    ],
)
def test_bad_rest_rows(row):
    with pytest.raises(KlineParseError):
        parse_rest_kline(row)


def test_bad_rest_response():
    with pytest.raises(KlineParseError):
        parse_rest_klines({"code": -1121, "msg": "Invalid symbol."})


@pytest.mark.parametrize("wrap", [False, True])
def test_spot_and_futures_events(wrap):
    for event, closed in ((SPOT_EVENT, False), (FUTURES_EVENT, True)):
        raw = {"stream": "x@kline_1m", "data": event} if wrap else event
        ev = parse_ws_message(json.dumps(raw))
        k = event["k"]
        assert ev.symbol == event["s"] and ev.interval == "1m" and ev.event_time == event["E"]
        assert ev.candle == Candle(k["t"], 0.001, 0.0025, 0.0009, 0.002, 1000.0, k["T"], closed)
        assert parse_ws_message(json.dumps(raw).encode()) == ev  # bytes frames too
        assert parse_ws_message(raw) == ev  # already decoded


def _with(**changes):
    ev = json.loads(json.dumps(FUTURES_EVENT))
    for key, value in changes.items():
        if value is None:
            del ev["k"][key]
        else:
            ev["k"][key] = value
    return json.dumps(ev)


@pytest.mark.parametrize(
    "raw",
    [
        "nope",
        "{",
        "[]",
        "null",
        b"\xff\xfe\x00",
        _with(o=None),
        _with(x="true"),
        _with(x=1),
        _with(c="NaN"),
        _with(c="-1"),
        _with(v="-5"),
        _with(h="0.0001"),
        _with(i="2m"),
        _with(t=True),
        _with(T=1638747660000),
        _with(s=None).replace('"s": "BTCUSDT", ', ""),  # no symbol anywhere
        json.dumps({"e": "kline", "E": 1, "s": "X", "k": [1, 2]}),
        json.dumps({"stream": "a", "data": "oops"}),
    ],
)
def test_malformed_events(raw):
    with pytest.raises(KlineParseError) as info:
        parse_ws_message(raw)
    assert not isinstance(info.value, UnexpectedMessage)


@pytest.mark.parametrize(
    "raw",
    [
        {"result": None, "id": 1},
        {"e": "24hrTicker", "s": "BTCUSDT"},
        {"e": "continuous_kline", "ps": "BTCUSDT", "ct": "PERPETUAL", "k": FUTURES_EVENT["k"]},
        {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade"}},
    ],
)
def test_unexpected_messages(raw):
    with pytest.raises(UnexpectedMessage):
        parse_ws_message(json.dumps(raw))


def test_stream_names_and_grid():
    assert kline_stream_name("ETHUSDT", "5m") == "ethusdt@kline_5m"
    with pytest.raises(ValueError):
        kline_stream_name("ETHUSDT", "7m")
    t = 1672531200000  # 2023-01-01T00:00Z, a Sunday
    assert align_down(t + 299_999, "5m") == t and align_up(t + 1, "5m") == t + 300_000 and align_up(t, "5m") == t
    monday = 1672617600000  # 2023-01-02T00:00Z
    assert align_down(t, "1w") == monday - 7 * 86_400_000
    assert align_up(t, "1w") == monday
