"""Live Binance kline streams as a supervised ``MarketDataSource``.

``BinanceKlineStream`` subscribes to ``<symbol>@kline_<interval>`` for one or more pairs on one
combined-stream connection (spot, or USD-M futures: the plain futures klines, not python-binance's
``kline_futures_socket``, which is the continuous-contract stream) and emits ``CandleUpdate``
for the open candle, ``CandleClosed`` exactly once per candle and in order, and ``FeedStatus``
(connecting, backfilling, connected, stale, reconnecting, stopped; with the lag in ms).

**Why the ``websockets`` library directly, with python-binance only for REST.** python-binance's
socket manager is built to be convenient, not to run for days: its reconnecting socket gives up
after a handful of attempts, its message queue (100 entries) raises on overflow when the consumer
is slow, and recovery after a disconnect (the missed candles) is left to the caller. Every one of
those has to be solved here anyway, and they are simpler to solve around a plain connection than
around a second supervisor: we own the reconnect loop (never gives up; exponential backoff with
jitter, reset after a healthy connection), silence detection (a watchdog aborts a connection that
has been quiet for ``silence_timeout``), the scheduled reconnect before Binance's 24-hour cut, and
back-pressure (see below). REST stays on python-binance's ``Client`` (``tradeconsole.infra.binance.http.rest``), so
the rate-limit rules live in one place.

**Exactly once, in order.** For each pair a ``KlineSequencer`` remembers the open time of the
last delivered closed candle. A stream message about a candle at ``t`` proves every candle before
``t`` has closed; if any of them was not delivered (messages lost in a drop, a silent spell,
a skipped run, a close that arrives after its successor), they are fetched over REST and
delivered first. Anything at or before the last delivered candle is a duplicate or stale
update and is dropped. On every (re)connect the stream first connects, then backfills over REST
everything closed since the last delivered candle (or the ``backfill`` warm-up candles on the
first connect), then reads the messages that queued up meanwhile; overlaps are dropped by the
same rule. REST is the authority: a candle REST confirms does not exist (maintenance) is counted
as an exchange gap, never waited for forever.

**Back-pressure.** The sink is called from a dispatcher thread, not from the event loop, so a
sink that blocks never stalls reading (and Binance's pings). Closed candles and statuses queue
without limit (a few per minute); open-candle updates are coalesced to the newest per pair
while the sink is busy, which ``tradeconsole.core.feed`` allows. If the loop itself falls behind, the
websocket library stops reading the socket (TCP back-pressure, nothing is dropped) and any
disconnect that follows is repaired by the REST backfill.

Malformed messages (``KlineParseError``) and unexpected ones (not a kline of a subscribed pair)
are counted in ``counters`` and logged (rate-limited), never fatal.

**Feed sanity.** Every candle, from the websocket and from REST backfill, passes
``tradeconsole.core.feed_guard.check_candle`` before it can touch anything: open time on the grid and not
beyond the currently open candle of the exchange clock, a closed flag only after the close time,
finite positive prices within a band of the pair's last accepted close, consistent OHLC, the
documented close time. The exchange clock is the local clock plus the offset measured from REST
server time on every (re)connect; a frame that looks future is re-checked once against a fresh
server time (the clock may have drifted), and after a futile re-check further ones wait a
cooldown, so a hostile stream cannot turn into a REST flood. A rejected frame is counted per
reason (``counters.rejections``), logged and raised as a rate-limited ``FeedAlarm``; it never
moves the sequencer, the lag, the price band's reference or the "healthy" mark. Gap fill asks
REST only up to the currently open candle. A pair that receives no valid message for longer
than one interval plus ``degraded_grace`` (or ``degraded_after``) while messages keep coming
puts the stream in state ``degraded`` instead of ``connected`` until valid candles return.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tradeconsole.core.config import BinanceEndpoints
from tradeconsole.core.domain import Candle, interval_ms
from tradeconsole.core.feed import CandleClosed, CandleUpdate, FeedAlarm, FeedStatus, MarketEvent, MarketSink
from tradeconsole.core.feed_guard import AlarmLimiter, ExchangeClock, GuardSettings, check_candle, current_open_time
from tradeconsole.infra.binance.http.endpoints import combined_stream_url, make_client, resolve_endpoints
from tradeconsole.infra.binance.http.rest import DEFAULT_RETRY, MARKETS, KlineRestClient, RestError
from tradeconsole.infra.binance.market.klines import (
    InvalidKline,
    KlineParseError,
    UnexpectedMessage,
    align_down,
    kline_stream_name,
    parse_ws_message,
)
from tradeconsole.infra.binance.reconnect import ReconnectLoop, SessionOutcome
from tradeconsole.infra.retry import RetryPolicy

__all__ = ["BinanceKlineStream", "KlineSequencer", "StreamCounters", "StreamStopped"]

log = logging.getLogger(__name__)


class StreamStopped(Exception):
    """Raised inside a REST wait when the stream is being stopped."""


@dataclass(slots=True)
class StreamCounters:
    """What the stream has seen and done; a snapshot is returned by ``counters``."""

    messages: int = 0  # websocket messages received
    updates: int = 0  # open-candle updates accepted (before coalescing)
    closed_stream: int = 0  # closed candles delivered from the websocket
    closed_backfill: int = 0  # closed candles delivered from REST (warm-up, reconnect, gap fill)
    duplicates: int = 0  # closed candles already delivered, dropped
    stale_updates: int = 0  # updates of an already closed candle or older than the last, dropped
    malformed: int = 0  # messages that are not valid kline JSON
    unexpected: int = 0  # valid messages that are not klines of a subscribed pair
    gap_fills: int = 0  # REST fills triggered while streaming
    exchange_gaps: int = 0  # candles REST confirmed do not exist
    connects: int = 0  # websocket connections opened
    reconnects: int = 0  # sessions that ended and were retried
    silences: int = 0  # connections aborted for silence
    scheduled_reconnects: int = 0  # connections renewed before the 24 h limit
    errors: int = 0  # failed connects and REST failures
    coalesced_updates: int = 0  # updates replaced by a newer one while the sink was busy
    sink_errors: int = 0  # exceptions raised by the sink (logged, swallowed)
    rejected: int = 0  # candles (websocket or REST) refused by the feed guard
    rejections: dict[str, int] = field(default_factory=dict)  # ... per tradeconsole.core.feed_guard reason
    alarms: int = 0  # FeedAlarm events emitted (rate-limited)
    clock_syncs: int = 0  # exchange clock offset measurements (REST server time)
    degraded: int = 0  # times the stream went from connected to degraded


class KlineSequencer:
    """Ordering state of one (symbol, interval): what has been delivered, what is stale.

    It decides nothing about the network; the stream asks it whether a candle is new, and
    which closed candles must be fetched before a candle at a given open time can be delivered.
    """

    __slots__ = (
        "symbol",
        "interval",
        "step",
        "last_closed",
        "_upd_open",
        "_upd_event",
        "ref_close",
        "ref_open",
        "last_valid",
    )

    def __init__(self, symbol: str, interval: str, last_closed: int | None = None) -> None:
        self.symbol = symbol.upper()
        self.interval = interval
        self.step = interval_ms(interval)
        self.last_closed = last_closed  # open time of the last delivered closed candle
        self._upd_open: int | None = None
        self._upd_event = 0
        self.ref_close: float | None = None  # close of the last accepted candle (price band reference)
        self.ref_open: int | None = None  # ... and that candle's open time
        self.last_valid = 0.0  # loop time of the last accepted message (degraded detection)

    def note_price(self, candle: Candle) -> None:
        """Make an accepted closed candle the price band's reference (never a rejected one, and
        never an open-candle update: a hostile stream could walk the reference away in steps)."""
        if candle.closed and (self.ref_open is None or candle.open_time >= self.ref_open):
            self.ref_close, self.ref_open = candle.close, candle.open_time

    def is_old(self, open_time: int) -> bool:
        """True if the candle at ``open_time`` closed and was delivered already."""
        return self.last_closed is not None and open_time <= self.last_closed

    def missing_before(self, open_time: int) -> tuple[int, int] | None:
        """``[first, open_time)``: closed candles not yet delivered that precede ``open_time``."""
        if self.last_closed is None:
            return None
        first = self.last_closed + self.step
        return (first, open_time) if open_time > first else None

    def accept_closed(self, candle: Candle) -> bool:
        """Record a closed candle as delivered; False if it is not newer than the last one."""
        if self.is_old(candle.open_time):
            return False
        self.last_closed = candle.open_time
        return True

    def accept_update(self, candle: Candle, event_time: int) -> bool:
        """False for an update of a delivered candle or older than the newest update seen."""
        t = candle.open_time
        if self.is_old(t):
            return False
        if self._upd_open is not None and (
            t < self._upd_open or (t == self._upd_open and event_time < self._upd_event)
        ):
            return False
        self._upd_open, self._upd_event = t, event_time
        return True

    def skip_to(self, open_time: int) -> None:
        """Treat everything up to ``open_time`` as delivered (an exchange gap)."""
        if self.last_closed is None or open_time > self.last_closed:
            self.last_closed = open_time


class _Outbox:
    """Events waiting for the sink: an ordered queue for closed candles and statuses (never
    dropped) and the newest update per pair (coalesced while the sink is busy)."""

    def __init__(self, counters: StreamCounters) -> None:
        self._cond = threading.Condition()
        self._queue: deque[MarketEvent] = deque()
        self._updates: dict[tuple[str, str], CandleUpdate] = {}
        self._closed = False
        self._counters = counters

    def put(self, event: MarketEvent) -> None:
        with self._cond:
            if isinstance(event, CandleClosed):
                pending = self._updates.get((event.symbol, event.interval))
                if pending is not None and pending.candle.open_time <= event.candle.open_time:
                    del self._updates[(event.symbol, event.interval)]
            self._queue.append(event)
            self._cond.notify()

    def put_update(self, event: CandleUpdate) -> None:
        key = (event.symbol, event.interval)
        with self._cond:
            if key in self._updates:
                self._counters.coalesced_updates += 1
            self._updates[key] = event
            self._cond.notify()

    def get(self) -> MarketEvent | None:
        """Next event (ordered ones first); None once closed and drained."""
        with self._cond:
            while True:
                if self._queue:
                    return self._queue.popleft()
                if self._updates:
                    return self._updates.pop(next(iter(self._updates)))
                if self._closed:
                    return None
                self._cond.wait()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


#: streams one combined websocket connection may carry (Binance "WebSocket Market Streams")
MAX_STREAMS_PER_CONNECTION = 1024


class BinanceKlineStream:
    """Supervised kline websocket for ``pairs`` on ``market`` ("spot" or "futures").

    Parameters (seconds unless stated): ``backfill`` closed candles per pair fetched over REST
    on the first connect for indicator warm-up; ``silence_timeout`` without any message before a
    connection counts as stale and is replaced; ``backoff_initial``/``backoff_max`` for
    reconnects (doubling, with jitter); ``max_connection_age`` after which the connection is
    renewed on our schedule rather than Binance's 24-hour cut; ``status_interval`` between
    periodic ``connected`` statuses carrying the current lag; ``gap_retries`` REST attempts to
    find a missed candle before it is declared an exchange gap.

    Feed sanity (see the module doc): ``guard`` holds the bounds; ``exchange_clock`` returns the
    exchange's time in ms if the caller has an authoritative one (default: local clock plus the
    offset measured from REST server time); ``clock_resync_cooldown`` between futile re-checks
    of the clock; ``degraded_after`` seconds without a valid message of a pair before the
    stream says ``degraded`` (default: the pair's interval plus ``degraded_grace``);
    ``alarm_period`` between rate-limited ``FeedAlarm``s (after a burst of 3).
    """

    def __init__(
        self,
        pairs: Iterable[tuple[str, str]],
        market: str = "futures",
        *,
        endpoints: BinanceEndpoints | None = None,
        backfill: int = 1000,
        silence_timeout: float = 30.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        max_connection_age: float = 23.5 * 3600,
        status_interval: float = 5.0,
        open_timeout: float = 10.0,
        gap_retries: int = 3,
        rest_retry: RetryPolicy = DEFAULT_RETRY,
        rest_factory: Callable[[Callable[[float], None]], KlineRestClient] | None = None,
        seed: int | None = None,
        name: str | None = None,
        guard: GuardSettings = GuardSettings(),
        exchange_clock: Callable[[], int] | None = None,
        clock_resync_cooldown: float = 5.0,
        degraded_after: float | None = None,
        degraded_grace: float = 30.0,
        alarm_period: float = 10.0,
    ) -> None:
        if market not in MARKETS:
            raise ValueError(f"market must be one of {MARKETS}, not {market!r}")
        self.market = market
        self.endpoints = endpoints if endpoints is not None else resolve_endpoints()
        self._seq: dict[tuple[str, str], KlineSequencer] = {}
        for symbol, interval in pairs:
            kline_stream_name(symbol, interval)  # validates the interval
            self._seq.setdefault((symbol.upper(), interval), KlineSequencer(symbol, interval))
        if not self._seq:
            raise ValueError("at least one (symbol, interval) pair is required")
        if len(self._seq) > MAX_STREAMS_PER_CONNECTION:
            # "A single connection can listen to a maximum of 1024 streams" (Binance spot and
            # USD-M futures docs, "WebSocket Market Streams"): more would be refused at connect
            raise ValueError(
                f"{len(self._seq)} (symbol, interval) streams is more than the "
                f"{MAX_STREAMS_PER_CONNECTION} one Binance websocket connection carries"
            )
        if backfill < 0 or silence_timeout <= 0 or backoff_initial < 0 or backoff_max < backoff_initial:
            raise ValueError("invalid stream timing settings")
        if (
            (degraded_after is not None and not degraded_after > 0)
            or not degraded_grace >= 0
            or not clock_resync_cooldown >= 0
            or not alarm_period > 0
        ):
            raise ValueError("invalid feed guard timing settings")
        self.guard = guard
        self._exchange_clock = exchange_clock
        self._clock = ExchangeClock()
        self.clock_resync_cooldown = clock_resync_cooldown
        self._resync_blocked_until = 0.0
        self.degraded_after = degraded_after
        self.degraded_grace = degraded_grace
        self._alarms = AlarmLimiter(period_s=alarm_period)
        self._suppressed: Counter[str] = Counter()
        self.backfill = backfill
        self.silence_timeout = silence_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_connection_age = max_connection_age
        self.status_interval = status_interval
        self.open_timeout = open_timeout
        self.gap_retries = gap_retries
        self.name = name or f"binance-{market}"
        self.url = combined_stream_url(self.endpoints, market, [kline_stream_name(s, iv) for s, iv in self._seq])
        self._rest_retry = rest_retry
        self._rest_factory = rest_factory
        self._rng = random.Random(seed)
        self._counters = StreamCounters()
        self._stopping = threading.Event()
        self._outbox = _Outbox(self._counters)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._rest: KlineRestClient | None = None
        self._lag_ms: float | None = None
        self._last_rx = 0.0
        self._rest_busy = 0
        self._close_reason: str | None = None
        self._healthy = False
        self._bad_logged = {"malformed": 0, "unexpected": 0, "rejected": 0}
        self.state = "new"

    # ================================================================== public API
    def start(self, sink: MarketSink) -> None:
        """Connect and deliver events to ``sink`` from background threads; returns at once."""
        if self._thread is not None:
            raise RuntimeError("stream already started")
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-rest")
        self._dispatcher = threading.Thread(target=self._dispatch, args=(sink,), name=f"{self.name}-sink", daemon=True)
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-loop", daemon=True)
        self._dispatcher.start()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connection, deliver what is queued, emit ``stopped``; idempotent."""
        self._stopping.set()
        loop, main = self._loop, self._main
        if loop is not None and main is not None:
            try:
                loop.call_soon_threadsafe(main.cancel)
            except RuntimeError:  # loop already closed
                pass
        me = threading.current_thread()
        for t in (self._thread, self._dispatcher):
            if t is not None and t is not me:
                t.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the stream's loop thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def counters(self) -> StreamCounters:
        """A snapshot of the counters."""
        return dataclasses.replace(self._counters, rejections=dict(self._counters.rejections))

    @property
    def lag_ms(self) -> float | None:
        """Local receive time minus Binance's event time of the last message."""
        return self._lag_ms

    def last_closed(self, symbol: str, interval: str) -> int | None:
        """Open time of the last closed candle delivered for the pair."""
        return self._seq[(symbol.upper(), interval)].last_closed

    # ================================================================== threads
    def _dispatch(self, sink: MarketSink) -> None:
        while True:
            event = self._outbox.get()
            if event is None:
                return
            try:
                sink(event)
            except Exception:
                self._counters.sink_errors += 1
                if self._counters.sink_errors <= 10 or self._counters.sink_errors % 1000 == 0:
                    log.exception(
                        "%s: sink raised on %s (error #%d); continuing",
                        self.name,
                        type(event).__name__,
                        self._counters.sink_errors,
                    )

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            if self._rest_factory is not None:
                self._rest = self._rest_factory(self._interruptible_sleep)
            else:  # built here: python-binance attaches itself to this thread's loop
                self._rest = KlineRestClient(
                    make_client(self.endpoints), self.market, retry=self._rest_retry, sleep=self._interruptible_sleep
                )
            self._main = loop.create_task(self._supervise())
            self._loop = loop
            if self._stopping.is_set():
                self._main.cancel()
            loop.run_until_complete(self._main)
        except asyncio.CancelledError:
            pass
        except Exception:  # the supervisor catches everything it expects; this is a bug
            log.exception("%s: stream supervisor crashed", self.name)
        finally:
            self._status("stopped")
            self._outbox.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            asyncio.set_event_loop(None)
            loop.close()

    def _interruptible_sleep(self, seconds: float) -> None:
        """REST waits (Retry-After, backoff) that end early when the stream stops."""
        if self._stopping.wait(seconds):
            raise StreamStopped()

    # ================================================================== supervision
    def _status(self, state: str, detail: str = "") -> None:
        self.state = state
        self._outbox.put(FeedStatus(self.name, state, self._lag_ms, detail, int(time.time() * 1000)))

    async def _supervise(self) -> None:
        """The shared reconnect loop (``tradeconsole.infra.binance.reconnect``) around ``_session``;
        never gives up, backs off from ``backoff_initial`` to ``backoff_max``."""
        self._status("connecting", self.url)
        policy = RetryPolicy(initial_s=self.backoff_initial, max_s=self.backoff_max, jitter=0.25)
        loop = ReconnectLoop(
            self.name, self._stopping, policy, rng=self._rng, logger=log, on_reconnect=self._on_reconnect
        )
        try:
            await loop.run(self._session)
        except StreamStopped:
            return

    def _on_reconnect(self, outcome: SessionOutcome, delay: float) -> None:
        self._counters.reconnects += 1
        log.info("%s: %s; reconnecting in %.2f s", self.name, outcome.reason, delay)
        self._status("reconnecting", f"{outcome.reason}; retry in {delay:.1f} s")

    async def _session(self) -> SessionOutcome:
        """One connection: connect, backfill, read until it ends. Never raises for network or
        REST trouble (that is an ``SessionOutcome``); ``StreamStopped``/cancellation propagate."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

        self._close_reason = None
        self._healthy = False
        try:
            ws = await connect(
                self.url,
                open_timeout=self.open_timeout,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                max_queue=1024,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self._counters.errors += 1
            return SessionOutcome(False, False, f"connect failed: {type(exc).__name__}: {exc}")
        self._counters.connects += 1
        try:
            self._status("backfilling", "catching up over REST")
            await self._backfill_since_last()
            now = asyncio.get_running_loop().time()
            for seq in self._seq.values():
                seq.last_valid = now  # a fresh connection gets a full interval to prove itself
            self._status("connected")
            return await self._read(ws)
        except RestError as exc:
            self._counters.errors += 1
            return SessionOutcome(self._healthy, False, f"REST backfill failed: {exc}")
        except ConnectionClosed as exc:
            return SessionOutcome(self._healthy, False, f"connection closed: {exc}")
        finally:
            try:
                await asyncio.wait_for(ws.close(), 2)
            except (TimeoutError, OSError, asyncio.CancelledError):
                ws.transport.abort()

    async def _read(self, ws: Any) -> SessionOutcome:
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        watchdog = loop.create_task(self._watchdog(ws, loop.time()))
        try:
            async for raw in ws:
                self._last_rx = loop.time()
                self._counters.messages += 1
                await self._on_message(raw)
            reason = "server closed the connection"
        except ConnectionClosedOK:
            reason = "server closed the connection"
        except (ConnectionClosed, OSError) as exc:
            reason = f"connection lost: {type(exc).__name__}: {exc}"
        except (RestError, StreamStopped):
            raise
        except Exception as exc:  # a bug in message handling: never fatal, but loud
            log.exception("%s: error while handling a message; reconnecting", self.name)
            self._counters.errors += 1
            reason = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            watchdog.cancel()
        if self._close_reason == "scheduled":
            return SessionOutcome(True, True, "scheduled reconnect before the 24 h limit")
        if self._close_reason == "stale":
            return SessionOutcome(False, False, f"no message for {self.silence_timeout:g} s")
        return SessionOutcome(self._healthy, False, reason)

    async def _watchdog(self, ws: Any, connected_at: float) -> None:
        loop = asyncio.get_running_loop()
        period = max(0.01, min(self.silence_timeout / 4, 1.0))
        last_status = loop.time()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            if self._rest_busy:
                continue
            if now - self._last_rx > self.silence_timeout:
                self._counters.silences += 1
                self._close_reason = "stale"
                self._status("stale", f"no message for {now - self._last_rx:.1f} s")
                ws.transport.abort()
                return
            if now - connected_at > self.max_connection_age:
                self._counters.scheduled_reconnects += 1
                self._close_reason = "scheduled"
                await ws.close(1000, "scheduled reconnect")
                return
            self._flush_suppressed_alarms()
            degraded = self._degraded_pairs(now)
            if degraded and self.state != "degraded":
                self._counters.degraded += 1
                log.warning("%s: feed degraded: %s", self.name, degraded)
                self._status("degraded", degraded)
                last_status = now
            elif not degraded and self.state == "degraded":
                self._status("connected", "valid candles again")
                last_status = now
            elif now - last_status >= self.status_interval:
                last_status = now
                self._status("degraded" if degraded else "connected", degraded)

    # ================================================================== feed guard
    def _degraded_after(self, seq: KlineSequencer) -> float:
        if self.degraded_after is not None:
            return self.degraded_after
        return seq.step / 1000 + self.degraded_grace

    def _degraded_pairs(self, now: float) -> str:
        """'' while every pair had a valid message recently, else what is wrong (for the status)."""
        bad = [
            f"{seq.symbol} {seq.interval}: no valid candle for {now - seq.last_valid:.1f} s"
            for seq in self._seq.values()
            if now - seq.last_valid > self._degraded_after(seq)
        ]
        if not bad:
            return ""
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self._counters.rejections.items()))
        return "; ".join(bad) + (f" (rejected so far: {rejected})" if rejected else "")

    def _exchange_now(self) -> int:
        """The exchange's current time in ms (estimate)."""
        if self._exchange_clock is not None:
            return int(self._exchange_clock())
        return self._clock.now(time.time() * 1000)

    async def _sync_clock(self) -> int:
        """Measure the exchange clock over REST; returns the server time."""
        assert self._rest is not None
        sent = time.time() * 1000
        server = await self._rest_call(self._rest.server_time_ms)
        self._clock.sync(server, sent, time.time() * 1000)
        self._counters.clock_syncs += 1
        return server

    async def _check(self, seq: KlineSequencer, candle: Candle) -> str | None:
        """``check_candle`` against the exchange clock; a candle that looks future is re-checked
        once against a fresh server time, unless a recent re-check was futile (cooldown)."""
        reason = check_candle(
            candle,
            seq.interval,
            self._exchange_now(),
            last_close=seq.ref_close,
            last_open_time=seq.ref_open,
            settings=self.guard,
        )
        if reason not in ("future", "early_close") or self._exchange_clock is not None or self._rest is None:
            return reason
        loop = asyncio.get_running_loop()
        if loop.time() < self._resync_blocked_until:
            return reason
        try:
            now = await self._sync_clock()
        except RestError as exc:
            self._counters.errors += 1
            log.warning("%s: exchange clock re-check failed: %s", self.name, exc)
            self._resync_blocked_until = loop.time() + self.clock_resync_cooldown
            return reason
        reason = check_candle(
            candle, seq.interval, now, last_close=seq.ref_close, last_open_time=seq.ref_open, settings=self.guard
        )
        if reason is not None:  # the clock was right: the frame is wrong; do not ask again soon
            self._resync_blocked_until = loop.time() + self.clock_resync_cooldown
        return reason

    def _reject(self, symbol: str, interval: str, reason: str, what: str, candle: Any, raw: Any = None) -> None:
        """Count, log (rate-limited) and raise an alarm (rate-limited) for a refused candle."""
        self._counters.rejected += 1
        # copy on write: ``counters`` copies this dict from other threads without a lock
        self._counters.rejections = {**self._counters.rejections, reason: self._counters.rejections.get(reason, 0) + 1}
        detail = f"{what} {symbol} {interval} refused ({reason}): {candle!r}"[:240]
        self._log_bad("rejected", ValueError(detail), raw if raw is not None else "")
        if self._alarms.allow(time.monotonic()):
            self._alarms.take_suppressed()
            earlier = sum(self._suppressed.values())
            if earlier:  # name every reason folded into this alarm, so the journal counts each one
                detail += f" (+{earlier} more rejected since the last alarm: {self._reasons()})"
            self._suppressed.clear()
            self._emit_alarm(symbol, interval, reason, detail, 1 + earlier)
        else:
            self._suppressed[reason] += 1

    def _reasons(self) -> str:
        """The suppressed rejections as ``reason count, ...`` (most frequent first)."""
        return ", ".join(f"{k} {v}" for k, v in self._suppressed.most_common())

    def _emit_alarm(self, symbol: str, interval: str, reason: str, detail: str, count: int) -> None:
        """Queue one FeedAlarm; ``detail`` already states what ``count`` covers."""
        self._counters.alarms += 1
        self._outbox.put(FeedAlarm(self.name, symbol, interval, reason, detail, count, int(time.time() * 1000)))

    def _flush_suppressed_alarms(self) -> None:
        """Report rejections whose alarms were suppressed, once the rate limit allows."""
        if not self._suppressed or not self._alarms.allow(time.monotonic(), record=False):
            return
        self._alarms.take_suppressed()
        count = sum(self._suppressed.values())
        reasons = self._reasons()
        reason = self._suppressed.most_common(1)[0][0]
        self._suppressed.clear()
        self._emit_alarm("", "", reason, f"{count} more candle(s) refused: {reasons}", count)

    # ================================================================== messages
    def _log_bad(self, kind: str, exc: Exception, raw: Any) -> None:
        n = self._bad_logged[kind] = self._bad_logged[kind] + 1
        if n <= 10 or n % 1000 == 0:
            log.warning("%s: %s message #%d ignored (%s): %.120r", self.name, kind, n, exc, raw)

    async def _on_message(self, raw: str | bytes) -> None:
        try:
            ev = parse_ws_message(raw)
        except UnexpectedMessage as exc:
            self._counters.unexpected += 1
            self._log_bad("unexpected", exc, raw)
            return
        except InvalidKline as exc:
            key = (exc.symbol, exc.interval)
            if key in self._seq:
                self._reject(exc.symbol, exc.interval, exc.reason, "stream kline", str(exc), raw)
            else:
                self._counters.malformed += 1
                self._log_bad("malformed", exc, raw)
            return
        except KlineParseError as exc:
            self._counters.malformed += 1
            self._log_bad("malformed", exc, raw)
            return
        seq = self._seq.get((ev.symbol, ev.interval))
        if seq is None:
            self._counters.unexpected += 1
            self._log_bad("unexpected", UnexpectedMessage(f"unsubscribed pair {ev.symbol} {ev.interval}"), raw)
            return
        c = ev.candle
        if seq.is_old(c.open_time):
            if c.closed:
                self._counters.duplicates += 1
            else:
                self._counters.stale_updates += 1
            return
        reason = await self._check(seq, c)
        if reason is not None:  # nothing below runs: no state, lag or sequence moves for it
            self._reject(seq.symbol, seq.interval, reason, "stream kline", c, raw)
            return
        self._healthy = True
        received_ms = int(time.time() * 1000)
        self._lag_ms = float(received_ms - ev.event_time)
        seq.last_valid = asyncio.get_running_loop().time()
        gap = seq.missing_before(c.open_time)
        if gap is not None:
            await self._fill_gap(seq, *gap)
        if c.closed:
            if seq.accept_closed(c):
                seq.note_price(c)
                self._counters.closed_stream += 1
                self._outbox.put(CandleClosed(seq.symbol, seq.interval, c, received_ms, False))
            else:
                self._counters.duplicates += 1
        elif seq.accept_update(c, ev.event_time):
            seq.note_price(c)
            self._counters.updates += 1
            self._outbox.put_update(CandleUpdate(seq.symbol, seq.interval, c, received_ms))
        else:
            self._counters.stale_updates += 1

    # ================================================================== REST backfill
    async def _rest_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        self._rest_busy += 1
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        finally:
            self._rest_busy -= 1
            self._last_rx = loop.time()  # time spent on REST is not silence

    def _deliver_backfill(self, seq: KlineSequencer, candles: list[Candle], now_ms: int) -> None:
        """Deliver REST candles in order, each through the feed guard against exchange time
        ``now_ms``. A refused one is skipped (counted, alarmed) and never moves the sequence."""
        received_ms = int(time.time() * 1000)
        refused = 0
        for c in candles:
            if seq.is_old(c.open_time):
                continue
            reason = check_candle(
                c, seq.interval, now_ms, last_close=seq.ref_close, last_open_time=seq.ref_open, settings=self.guard
            )
            if reason is not None:
                refused += 1
                self._reject(seq.symbol, seq.interval, reason, "REST kline", c)
                continue
            if seq.last_closed is not None and c.open_time > seq.last_closed + seq.step:
                missing = (c.open_time - seq.last_closed) // seq.step - 1 - refused
                if missing > 0:
                    self._counters.exchange_gaps += missing
                    log.warning(
                        "%s: %s %s: exchange has no candles for %d interval(s) before %d",
                        self.name,
                        seq.symbol,
                        seq.interval,
                        missing,
                        c.open_time,
                    )
            refused = 0
            seq.accept_closed(c)
            seq.note_price(c)
            self._counters.closed_backfill += 1
            self._outbox.put(CandleClosed(seq.symbol, seq.interval, c, received_ms, True))

    async def _backfill_since_last(self) -> None:
        """After (re)connecting: every candle closed since the last delivered one, or the
        warm-up candles on the first connect."""
        assert self._rest is not None
        now = await self._sync_clock()
        for seq in self._seq.values():
            current = align_down(now, seq.interval)
            if seq.last_closed is not None:
                start = seq.last_closed + seq.step
            elif self.backfill > 0:
                start = current - self.backfill * seq.step
            else:
                continue
            if start < current:
                candles = await self._rest_call(self._rest.closed_range, seq.symbol, seq.interval, start, current)
                self._deliver_backfill(seq, candles, now)

    async def _fill_gap(self, seq: KlineSequencer, start: int, end: int) -> None:
        """Deliver the closed candles in ``[start, end)`` the stream did not (they are closed:
        the stream has shown the candle at ``end``).

        The request includes the candle at ``end`` as proof: when REST already knows it but not
        some candle before it, that candle does not exist on the exchange (REST serves klines in
        order from one store), and waiting for it would be pointless. Only when REST does not
        know ``end`` yet (it lags the stream) is the request retried a few times.
        """
        assert self._rest is not None
        self._counters.gap_fills += 1
        self._status("backfilling", f"{seq.symbol} {seq.interval}: {(end - start) // seq.step} candle(s) missed")
        for attempt in range(self.gap_retries + 1):
            now = self._exchange_now()
            # never ask beyond "now": at most up to the currently open candle (the proof row)
            limit = min(end + seq.step, current_open_time(now + self.guard.max_skew_ms, seq.interval) + seq.step)
            rows = await self._rest_call(self._rest.closed_range, seq.symbol, seq.interval, start, limit)
            self._deliver_backfill(seq, [c for c in rows if c.open_time < end], self._exchange_now())
            if seq.last_closed is not None and seq.last_closed >= end - seq.step:
                break
            start = seq.last_closed + seq.step if seq.last_closed is not None else start
            if any(c.open_time >= end for c in rows):
                break  # proof of an exchange gap
            if attempt < self.gap_retries:
                await asyncio.sleep(0.2 * 2**attempt)  # REST may lag the stream by a moment
        if seq.last_closed is None or seq.last_closed < end - seq.step:
            missing = (end - start) // seq.step
            self._counters.exchange_gaps += missing
            log.warning(
                "%s: %s %s: REST has no candles for %d interval(s) before %d; treating as an exchange gap",
                self.name,
                seq.symbol,
                seq.interval,
                missing,
                end,
            )
            seq.skip_to(end - seq.step)
        self._status("connected")
