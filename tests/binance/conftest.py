"""Fixtures for the Binance market-data tests: the local market server, a recording sink that
checks the feed contract as events arrive, and a stream factory that always cleans up."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest
from tradeconsole.core.domain import Candle
from tradeconsole.core.feed import CandleClosed, CandleUpdate, FeedAlarm, FeedStatus, MarketEvent

from tests.servers.binance_market import BinanceMarketServer


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` (a generous bound for slow
    machines, never an assertion about speed)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


class RecordingSink:
    """Thread-safe sink that records events and notes contract violations as they happen:
    closed candles not strictly in order per pair, updates for an already closed candle, and
    updates of one candle going backwards (volume shrinking)."""

    def __init__(self, on_event: Callable[[MarketEvent], None] | None = None) -> None:
        self._lock = threading.Lock()
        self.closed: dict[tuple[str, str], list[CandleClosed]] = defaultdict(list)
        self.updates: dict[tuple[str, str], list[CandleUpdate]] = defaultdict(list)
        self.statuses: list[FeedStatus] = []
        self.alarms: list[FeedAlarm] = []
        self.violations: list[str] = []
        self.on_event = on_event

    def __call__(self, event: MarketEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
        with self._lock:
            if isinstance(event, CandleClosed):
                key = (event.symbol, event.interval)
                seen = self.closed[key]
                if seen and event.candle.open_time <= seen[-1].candle.open_time:
                    self.violations.append(f"closed {event.candle.open_time} after {seen[-1].candle.open_time}")
                if not event.candle.closed:
                    self.violations.append(f"CandleClosed with an open candle {event.candle}")
                seen.append(event)
            elif isinstance(event, CandleUpdate):
                key = (event.symbol, event.interval)
                done = self.closed[key]
                if done and event.candle.open_time <= done[-1].candle.open_time:
                    self.violations.append(f"update for closed candle {event.candle.open_time}")
                if event.candle.closed:
                    self.violations.append(f"CandleUpdate with a closed candle {event.candle}")
                ups = self.updates[key]
                if (
                    ups
                    and ups[-1].candle.open_time == event.candle.open_time
                    and event.candle.volume < ups[-1].candle.volume
                ):
                    self.violations.append(f"update went backwards at {event.candle.open_time}")
                ups.append(event)
            elif isinstance(event, FeedStatus):
                self.statuses.append(event)
            elif isinstance(event, FeedAlarm):
                self.alarms.append(event)

    def candles(self, symbol: str = "ETHUSDT", interval: str = "5m") -> list[Candle]:
        with self._lock:
            return [e.candle for e in self.closed[(symbol, interval)]]

    def last_open_time(self, symbol: str = "ETHUSDT", interval: str = "5m") -> int | None:
        with self._lock:
            seen = self.closed[(symbol, interval)]
            return seen[-1].candle.open_time if seen else None

    def states(self) -> list[str]:
        with self._lock:
            return [s.state for s in self.statuses]

    def has_state(self, state: str) -> bool:
        return state in self.states()


@pytest.fixture
def market_server() -> Iterator[BinanceMarketServer]:
    server = BinanceMarketServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_stream() -> Iterator[Callable[..., object]]:
    """Build ``BinanceKlineStream``s with fast test timings; every one is stopped afterwards and
    must have ended its threads."""
    from tradeconsole.infra.binance.market.stream import BinanceKlineStream

    streams: list[BinanceKlineStream] = []

    def factory(
        server: BinanceMarketServer, pairs=(("ETHUSDT", "5m"),), market: str = "spot", **kwargs
    ) -> BinanceKlineStream:
        settings = dict(
            backfill=50, silence_timeout=0.5, backoff_initial=0.02, backoff_max=0.2, status_interval=0.2, seed=7
        )
        settings.update(kwargs)
        settings.setdefault("endpoints", server.endpoints())
        stream = BinanceKlineStream(list(pairs), market, **settings)
        streams.append(stream)
        return stream

    yield factory
    for stream in streams:
        stream.stop()
        assert not stream.alive, "stream loop thread still running after stop()"
        assert stream._dispatcher is None or not stream._dispatcher.is_alive(), "dispatcher thread still running"


def assert_true_sequence(
    sink: RecordingSink, server: BinanceMarketServer, symbol: str = "ETHUSDT", interval: str = "5m"
) -> list[Candle]:
    """The sink's closed candles are exactly the server's closed candles from the first one the
    sink got up to the server's last closed candle: no gap, no duplicate, same order, same values."""
    got = sink.candles(symbol, interval)
    assert got, "no closed candle delivered"
    truth = server.closed_candles(symbol, interval, got[0].open_time)
    assert [c.open_time for c in got] == [c.open_time for c in truth]
    assert got == truth
    assert not sink.violations, sink.violations[:5]
    return got


def wait_caught_up(
    sink: RecordingSink,
    server: BinanceMarketServer,
    symbol: str = "ETHUSDT",
    interval: str = "5m",
    timeout: float = 15.0,
) -> None:
    target = server.last_closed_open_time(symbol, interval)
    wait_until(
        lambda: sink.last_open_time(symbol, interval) == target, timeout, f"{symbol} {interval} closed candle {target}"
    )
