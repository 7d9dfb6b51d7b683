"""Market-data events and the source interface the engine consumes.

A source (the supervised Binance websocket in ``tradeconsole.infra.binance.market.stream``, or the history replay in
``tradeconsole.backtest.replay``) pushes these values into a sink callable, typically the engine's input
queue. Contract every source keeps: for each (symbol, interval) the ``CandleClosed`` events
arrive exactly once each and in open-time order, with no gap the source could have filled
(reconnects backfill over REST); ``CandleUpdate`` events for the open candle may be dropped or
coalesced freely, they only refresh the live view. Sources bound what they deliver with
``tradeconsole.core.feed_guard`` and report what they refused as ``FeedAlarm`` (rate-limited).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tradeconsole.core.domain import Candle

__all__ = [
    "CANDLE_SOURCE_EXCHANGE",
    "CANDLE_SOURCE_REPLAY",
    "AccountStreamEvent",
    "CandleClosed",
    "CandleUpdate",
    "FeedAlarm",
    "FeedStatus",
    "MarketDataSource",
    "MarketEvent",
    "MarketSink",
]

#: ``source`` of candles from the exchange itself (live websocket or its REST backfill). Live and
#: testnet brokers act only on these; anything else (a replay, an untagged test feed) is refused.
CANDLE_SOURCE_EXCHANGE = "exchange"
CANDLE_SOURCE_REPLAY = "replay"


@dataclass(frozen=True, slots=True)
class CandleClosed:
    symbol: str
    interval: str
    candle: Candle
    received_ms: int = 0  # local wall clock when the message arrived (for lag), 0 in replays
    backfill: bool = False  # True when it came from REST (warm-up or gap fill), not the stream
    source: str = ""  # CANDLE_SOURCE_EXCHANGE / CANDLE_SOURCE_REPLAY; tagged by the runtime's wiring


@dataclass(frozen=True, slots=True)
class CandleUpdate:
    symbol: str
    interval: str
    candle: Candle  # candle.closed is False
    received_ms: int = 0
    source: str = ""


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Connection state of a source: ``connecting``, ``connected``, ``reconnecting``, ``stale``
    (no message at all), ``degraded`` (messages arrive but no valid candle for longer than an
    interval plus grace), ``backfilling``, ``stopped`` or ``finished`` (a replay reached the end
    of its data)."""

    source: str
    state: str
    lag_ms: float | None = None
    detail: str = ""
    time_ms: int = 0


@dataclass(frozen=True, slots=True)
class FeedAlarm:
    """A source refused data it received (a candle that cannot be true, see
    ``tradeconsole.core.feed_guard``). Visible on purpose: the engine journals it as an ``ErrorEvent``, so
    the UI, the journal and Kafka see that the feed is being fed nonsense. Sources rate-limit
    these; ``count`` is how many rejections this alarm stands for (suppressed ones included)."""

    source: str
    symbol: str
    interval: str
    reason: str  # a tradeconsole.core.feed_guard reason code
    detail: str
    count: int = 1
    time_ms: int = 0


@dataclass(frozen=True, slots=True)
class AccountStreamEvent:
    """One message of the exchange's user data stream (``payload``: the event's JSON, e.g.
    ``ORDER_TRADE_UPDATE``), or ``gap=True`` when the stream was interrupted and events may be
    missing (the broker then reconciles over REST). Goes through the engine's input queue so the
    broker is only ever touched on the engine thread. ``symbol`` "" means every session."""

    symbol: str
    payload: dict[str, Any]
    received_ms: int = 0
    gap: bool = False


MarketEvent = CandleClosed | CandleUpdate | FeedStatus | FeedAlarm | AccountStreamEvent
MarketSink = Callable[[MarketEvent], None]


class MarketDataSource(Protocol):
    """Something that feeds market events to a sink from its own thread(s)."""

    def start(self, sink: MarketSink) -> None:
        """Begin delivering events to ``sink``; returns immediately."""

    def stop(self) -> None:
        """Stop delivering and release connections/threads; idempotent."""
