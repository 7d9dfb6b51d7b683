"""Binance kline payloads (REST rows and websocket events) -> ``tradeconsole.core.domain.Candle``.

One strict parser for both transports, so a candle backfilled over REST and the same candle
closed on the websocket compare equal (the stream dedupes on that). Anything that does not
parse raises ``KlineParseError`` (``UnexpectedMessage`` for well-formed JSON that simply is not
a kline event, such as a subscription reply): the stream counts both kinds and carries on,
the downloader treats them as a server fault.

Spot and USD-M futures kline events share one layout::

    {"e": "kline", "E": 1672531500001, "s": "ETHUSDT",
     "k": {"t": 1672531200000, "T": 1672531499999, "s": "ETHUSDT", "i": "5m",
           "o": "1196.13", "c": "1196.32", "h": "1196.32", "l": "1195.65", "v": "334.5592",
           "x": true, ...}}

and a combined stream wraps it as ``{"stream": "ethusdt@kline_5m", "data": {...}}``.
The futures *continuous-contract* event (``"e": "continuous_kline"``) is deliberately not
accepted: it describes a contract type, not the symbol's own klines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from tradeconsole.core.domain import INTERVAL_MS, Candle
from tradeconsole.core.feed_guard import check_values, grid_start

__all__ = [
    "InvalidKline",
    "KlineEvent",
    "align_down",
    "align_up",
    "KlineParseError",
    "UnexpectedMessage",
    "kline_stream_name",
    "parse_rest_kline",
    "parse_rest_klines",
    "parse_ws_message",
]


class KlineParseError(ValueError):
    """A kline payload that cannot be turned into a valid candle (malformed JSON, missing or
    non-numeric fields, inconsistent OHLC)."""


class InvalidKline(KlineParseError):
    """A kline that parses but cannot be true (NaN or non-positive prices, negative volume,
    inconsistent OHLC, close before open). ``reason`` is the ``tradeconsole.core.feed_guard`` reason code, so
    the stream counts it with the other rejected candles rather than as line noise."""

    def __init__(self, reason: str, message: str, symbol: str = "", interval: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.symbol = symbol  # filled in by parse_ws_message, so the stream can say which pair
        self.interval = interval


class UnexpectedMessage(KlineParseError):
    """Well-formed JSON that is not a kline event (subscription reply, other event type)."""


class KlineEvent(NamedTuple):
    """A parsed websocket kline event. ``event_time`` is Binance's ``E`` (ms), used for lag
    and to drop an older update of the same candle that arrives late."""

    symbol: str
    interval: str
    candle: Candle
    event_time: int


def kline_stream_name(symbol: str, interval: str) -> str:
    """Stream name of a symbol's klines, e.g. ``ethusdt@kline_5m`` (Binance wants lower case)."""
    if interval not in INTERVAL_MS:
        raise ValueError(f"unknown interval {interval!r}")
    return f"{symbol.lower()}@kline_{interval}"


def _int(value: Any, name: str) -> int:
    # bool is an int subclass; a JSON true where a timestamp belongs is malformed
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise KlineParseError(f"{name} is not an integer timestamp: {value!r}")


def _checked(candle: Candle) -> Candle:
    if candle.close_time <= candle.open_time:
        raise InvalidKline("close_time", f"close time {candle.close_time} is not after open time {candle.open_time}")
    reason = check_values(candle)
    if reason is not None:
        raise InvalidKline(reason, f"invalid prices or volume ({reason}) in {candle!r}")
    return candle


def parse_rest_kline(row: Sequence[Any], closed: bool = True) -> Candle:
    """One row of ``GET /api/v3/klines`` or ``/fapi/v1/klines``:
    ``[open_time, "open", "high", "low", "close", "volume", close_time, ...]``.

    REST rows do not say whether the candle is closed; the caller knows (from the server time or
    from the requested range) and passes ``closed``.
    """
    if not isinstance(row, (list, tuple)) or len(row) < 7:
        raise KlineParseError(f"kline row must be a list of at least 7 fields, not {row!r}")
    try:
        candle = Candle(
            _int(row[0], "open time"),
            float(row[1]),
            float(row[2]),
            float(row[3]),
            float(row[4]),
            float(row[5]),
            _int(row[6], "close time"),
            closed,
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, KlineParseError):
            raise
        raise KlineParseError(f"non-numeric field in kline row {row!r}: {exc}") from None
    return _checked(candle)


def parse_rest_klines(rows: Any) -> list[Candle]:
    """A whole REST kline response (all rows marked closed; filter the open one yourself)."""
    if not isinstance(rows, list):
        raise KlineParseError(f"kline response must be a JSON array, not {type(rows).__name__}")
    return [parse_rest_kline(r) for r in rows]


def parse_ws_message(raw: str | bytes | Mapping[str, Any]) -> KlineEvent:
    """A websocket message (raw or combined-stream wrapped, spot or futures) -> ``KlineEvent``.

    Raises ``UnexpectedMessage`` for valid JSON objects that are not kline events and
    ``KlineParseError`` for everything else that is wrong.
    """
    if isinstance(raw, Mapping):
        msg: Any = raw
    else:
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KlineParseError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise KlineParseError(f"message is not a JSON object: {type(msg).__name__}")
    data = msg.get("data")
    if data is not None and "stream" in msg:
        if not isinstance(data, dict):
            raise KlineParseError("combined-stream 'data' is not an object")
        msg = data
    etype = msg.get("e")
    if etype != "kline":
        raise UnexpectedMessage(f"not a kline event (e={etype!r}, keys={sorted(msg)[:6]})")
    k = msg.get("k")
    if not isinstance(k, dict):
        raise KlineParseError("kline event without a 'k' object")
    try:
        symbol = k.get("s") or msg["s"]
        interval = k["i"]
        closed = k["x"]
        candle = Candle(
            _int(k["t"], "t"),
            float(k["o"]),
            float(k["h"]),
            float(k["l"]),
            float(k["c"]),
            float(k["v"]),
            _int(k["T"], "T"),
            closed,
        )
        event_time = _int(msg.get("E", candle.close_time), "E")
    except KeyError as exc:
        raise KlineParseError(f"kline event lacks field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, KlineParseError):
            raise
        raise KlineParseError(f"non-numeric kline field: {exc}") from None
    if type(closed) is not bool:
        raise KlineParseError(f"kline 'x' (closed) must be true/false, not {closed!r}")
    if not isinstance(symbol, str) or not symbol:
        raise KlineParseError(f"kline symbol must be a string, not {symbol!r}")
    if interval not in INTERVAL_MS:
        raise KlineParseError(f"unknown kline interval {interval!r}")
    try:
        checked = _checked(candle)
    except InvalidKline as exc:
        exc.symbol, exc.interval = symbol.upper(), interval
        raise
    return KlineEvent(symbol.upper(), interval, checked, event_time)


def align_down(ms: int, interval: str) -> int:
    """Open time of the candle that contains ``ms`` (weeks open on Mondays: ``tradeconsole.core.feed_guard``)."""
    return grid_start(ms, interval)


def align_up(ms: int, interval: str) -> int:
    """First candle open time at or after ``ms``."""
    down = align_down(ms, interval)
    return down if down == ms else down + INTERVAL_MS[interval]
