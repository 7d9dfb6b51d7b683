"""Market-data events and the source interface the engine consumes.

A source (the supervised Binance websocket in ``infra.binance.stream``, or the history replay in
``backtest.replay``) pushes these values into a sink callable, typically the engine's input
queue. Contract every source keeps: for each (symbol, interval) the ``CandleClosed`` events
arrive exactly once each and in open-time order, with no gap the source could have filled
(reconnects backfill over REST); ``CandleUpdate`` events for the open candle may be dropped or
coalesced freely, they only refresh the live view. Sources bound what they deliver with
``core.feed_guard`` and report what they refused as ``FeedAlarm`` (rate-limited).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.domain import Candle

__all__ = ["CandleClosed", "CandleUpdate", "FeedAlarm", "FeedStatus", "MarketDataSource", "MarketEvent",
           "MarketSink"]


@dataclass(frozen=True, slots=True)
class CandleClosed:
    symbol: str
    interval: str
    candle: Candle
    received_ms: int = 0  # local wall clock when the message arrived (for lag), 0 in replays
    backfill: bool = False  # True when it came from REST (warm-up or gap fill), not the stream


@dataclass(frozen=True, slots=True)
class CandleUpdate:
    symbol: str
    interval: str
    candle: Candle  # candle.closed is False
    received_ms: int = 0


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
    ``core.feed_guard``). Visible on purpose: the engine journals it as an ``ErrorEvent``, so
    the UI, the journal and Kafka see that the feed is being fed nonsense. Sources rate-limit
    these; ``count`` is how many rejections this alarm stands for (suppressed ones included)."""

    source: str
    symbol: str
    interval: str
    reason: str  # a core.feed_guard reason code
    detail: str
    count: int = 1
    time_ms: int = 0


MarketEvent = CandleClosed | CandleUpdate | FeedStatus | FeedAlarm
MarketSink = Callable[[MarketEvent], None]


class MarketDataSource(Protocol):
    """Something that feeds market events to a sink from its own thread(s)."""

    def start(self, sink: MarketSink) -> None:
        """Begin delivering events to ``sink``; returns immediately."""

    def stop(self) -> None:
        """Stop delivering and release connections/threads; idempotent."""
