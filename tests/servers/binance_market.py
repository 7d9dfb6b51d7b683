"""A local stand-in for Binance's public market-data API, with fault injection.

Binance is unreachable from our machines, so tests point python-binance's real client code and
our websocket client at this server instead. It implements the documented endpoints the
console uses, in Binance's own formats:

* REST, spot:    ``GET /api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo`` (minimal),
  ``/api/v3/klines`` (limit <= 1000);
* REST, USD-M:   ``GET /fapi/v1/ping``, ``/fapi/v1/time``, ``/fapi/v1/exchangeInfo`` (minimal),
  ``/fapi/v1/klines`` (limit <= 1500);
* websockets:    spot ``/ws/<stream>`` and ``/stream?streams=a/b`` (wss://stream.binance.com:9443,
  unchanged). USD-M futures (``/futures`` stands for the host fstream.binance.com) as documented
  since the "Important WebSocket Change Notice — Base URL Split & Migration" (Binance USD-M
  futures docs, WebSocket Market Streams; legacy URLs retired 2026-04-23):

  - ``/futures/market/ws/<stream>`` and ``/futures/market/stream?streams=a/b``: the Market route
    ("regular market data"), where ``<symbol>@kline_<interval>`` lives (binance-connector-python
    ``websocket_streams/streams/market_api.py`` ``kline_candlestick_streams``:
    ``stream_url="market"``; python-binance ``ws/streams.py``: "URL PATH: /market");
  - ``/futures/public/...``: the Public route (book streams only). A kline subscription there
    is accepted and silent (the notice: "ensure streams are routed to the correct endpoint
    category");
  - ``/futures/ws/...`` and ``/futures/stream?...``: the retired legacy routes. The handshake
    still succeeds but only /public data is delivered, so klines never arrive: Binance developer
    docs, "Market Data Streams" (CAAS): "A connection with no routed path only receives /public
    data ... btcusdt@markPrice belongs to /market and will not deliver. This fails silently
    rather than erroring."

  Kline events carry the ``x`` closed flag; combined streams wrap them as
  ``{"stream": ..., "data": ...}``. Spot prices are sent with 8 decimals, futures prices
  trimmed, as Binance does.

The market is a deterministic candle series per (symbol, interval) (the real public-data CSVs,
or a generated random walk) and a **controllable clock**: nothing happens until the test calls
``advance()``, which walks the clock forward and broadcasts, for every candle it crosses,
``updates_per_candle`` open-candle updates (the synthetic path of ``tradeconsole.backtest.replay``) and the
closing ``x: true`` event. REST answers from the same clock, so the open candle it returns is
the one the stream is showing.

Faults (each affects what the *stream* sends; REST always tells the truth, as Binance's does):
``drop_connections`` (abrupt, mid-candle), ``close_connections`` (graceful, like the 24-hour
disconnect, which also happens by itself after ``connection_lifetime_ms`` of server time),
``set_silent``, ``skip_stream_candles``, ``duplicate_next``, ``delay_next_close`` (a closed
candle arrives after its successor), ``swap_next_update`` (an older update after a newer one),
``send_malformed``, ``send_kline`` (a well-formed kline frame with any field forced: future,
off-grid, NaN, price 1.0... the hostile frames of the feed-sanity tests), ``reject_connections``; and for REST ``fail_rest`` (429/418 with
Retry-After, or 5xx) and ``used_weight``. ``request_counts`` counts requests per path.

Usage::

    with BinanceMarketServer() as server:
        endpoints = server.endpoints()      # tradeconsole.core.config.BinanceEndpoints pointing here
        server.advance(3)                   # three candles of the first series
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from tradeconsole.backtest.data import load_candles
from tradeconsole.backtest.replay import partial_candle
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.config import BinanceEndpoints
from tradeconsole.core.domain import Candle, interval_ms

__all__ = [
    "SHARED_DATA",
    "BinanceMarketServer",
    "generated_series",
    "shared_series",
]

SHARED_DATA = Path("/work/shared/data/binance/spot")
#: streams per websocket connection ("WebSocket Market Streams": "A single connection can listen
#: to a maximum of 1024 streams")
MAX_STREAMS = 1024
_PAGE_LIMIT = {"spot": 1000, "futures": 1500}
_DEFAULT_LIMIT = 500


@functools.lru_cache(maxsize=8)
def shared_series(symbol: str = "ETHUSDT", interval: str = "5m") -> CandleArrays:
    """Real candles from the public-data CSVs under ``SHARED_DATA`` (read in place, once per
    process; treat the arrays as read-only)."""
    arrays, _ = load_candles(SHARED_DATA / symbol / interval, interval=interval)
    return arrays


def generated_series(
    interval: str, start_ms: int, count: int, *, seed: int = 0, price: float = 100.0, missing: Iterable[int] = ()
) -> CandleArrays:
    """A deterministic random walk of ``count`` candles from ``start_ms``; the candle indices in
    ``missing`` are left out (an exchange gap, as during Binance maintenance)."""
    rng = np.random.default_rng(seed)
    step = interval_ms(interval)
    skip = set(missing)
    candles: list[Candle] = []
    p = price
    for i in range(count):
        o = round(p, 2)
        c = round(max(0.01, o * (1 + rng.normal(0, 0.004))), 2)
        h = round(max(o, c) * (1 + abs(rng.normal(0, 0.002))), 2)
        lo = round(min(o, c) * (1 - abs(rng.normal(0, 0.002))), 2)
        v = round(float(rng.uniform(10, 1000)), 4)
        p = c
        if i in skip:
            continue
        t = start_ms + i * step
        candles.append(Candle(t, o, h, max(lo, 0.01), c, v, t + step - 1))
    return CandleArrays.from_candles(candles)


def _fmt_spot(x: float) -> str:
    return f"{x:.8f}"


def _fmt_futures(x: float) -> str:
    s = f"{x:.8f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


_FMT = {"spot": _fmt_spot, "futures": _fmt_futures}


@dataclass(eq=False)
class _Series:
    symbol: str
    interval: str
    arrays: CandleArrays
    step: int = 0
    index: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.step = interval_ms(self.interval)
        self.index = {int(t): i for i, t in enumerate(self.arrays.open_time.tolist())}

    @property
    def stream(self) -> str:
        return f"{self.symbol.lower()}@kline_{self.interval}"


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    transport: Any
    market: str
    streams: frozenset[str]
    combined: bool
    connected_at: int  # server clock
    # False on a futures route that does not carry klines (legacy unrouted, or /public): the
    # connection stays open and answers pings, but no kline is ever sent on it (see module doc)
    klines: bool = True
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    writer: asyncio.Task | None = None


@dataclass(frozen=True)
class _Close:
    """Queued after a connection's pending messages: close it gracefully."""

    code: int
    message: str


@dataclass(eq=False)
class _Reorder:
    """Hold one message of ``kind`` on ``stream`` and send it after the next one of that kind."""

    stream: str
    kind: str  # "close" or "update"
    conn: _Conn | None = None
    held: list[str] = field(default_factory=list)


@dataclass
class _RestFault:
    status: int
    count: int
    retry_after: float | None
    path_contains: str | None
    after: int = 0  # matching requests to let through first


class BinanceMarketServer:
    """See the module docstring. All public methods are thread-safe (they run on the server's
    own event loop and wait for it)."""

    def __init__(
        self,
        series: dict[tuple[str, str], CandleArrays] | None = None,
        *,
        start_time_ms: int | None = None,
        updates_per_candle: int = 3,
        connection_lifetime_ms: int = 24 * 3_600_000,
    ) -> None:
        if series is None:
            series = {
                ("ETHUSDT", "5m"): shared_series("ETHUSDT", "5m"),
                ("ETHUSDT", "1h"): shared_series("ETHUSDT", "1h"),
            }
        self._series = {(s.upper(), iv): _Series(s.upper(), iv, arr) for (s, iv), arr in series.items()}
        first = next(iter(self._series.values()))
        if start_time_ms is None:
            start_time_ms = int(first.arrays.open_time[min(1500, len(first.arrays) - 1)])
            biggest = max(s.step for s in self._series.values())
            start_time_ms -= start_time_ms % biggest
        self._now = start_time_ms
        self.updates_per_candle = updates_per_candle
        self.connection_lifetime_ms = connection_lifetime_ms
        # counters (read them from tests; they are only written on the server loop)
        self.request_counts: collections.Counter[str] = collections.Counter()
        self.request_log: list[tuple[str, dict[str, str]]] = []
        self.ws_connects = 0
        self.refused_over_limit = 0  # combined-stream handshakes refused for more than MAX_STREAMS
        self.messages_sent = 0
        # faults
        self._silent = False
        self._skip: dict[str, set[int]] = collections.defaultdict(set)
        self._duplicate_left = 0
        self._reorder: list[_Reorder] = []
        self._reject_left = 0
        self._reject_status = 503
        self._rest_faults: list[_RestFault] = []
        self._rest_lies: dict[tuple[str, str, int], dict[int, str]] = {}
        self.used_weight: int | None = None
        self._weight_minute = 0
        self._weight = 0
        self._conns: set[_Conn] = set()
        self.on_send: Callable[[str, int], None] | None = None  # (stream, perf_counter_ns) for benchmarks
        # runtime
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ================================================================== lifecycle
    def start(self) -> BinanceMarketServer:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="binance-market-server", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._astart(), loop).result(10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._astop(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> BinanceMarketServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _astart(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info_spot)
        app.router.add_get("/api/v3/klines", self._klines_spot)
        app.router.add_get("/fapi/v1/ping", self._ping)
        app.router.add_get("/fapi/v1/time", self._time)
        app.router.add_get("/fapi/v1/exchangeInfo", self._exchange_info_futures)
        app.router.add_get("/fapi/v1/klines", self._klines_futures)
        # (prefix, market, carries klines): spot unchanged; USD-M futures per the 2026 route split
        routes = (
            ("", "spot", True),
            ("/futures/market", "futures", True),  # Market route: klines live here
            ("/futures/public", "futures", False),  # Public route: book streams only
            ("/futures", "futures", False),
        )  # retired legacy route: opens, klines silent
        for prefix, market, klines in routes:
            app.router.add_get(prefix + "/ws/{stream}", self._ws_raw(market, klines))
            app.router.add_get(prefix + "/stream", self._ws_combined(market, klines))
        # request lines up to 64 KiB (aiohttp's default is 8 KiB): a combined stream of 1024 kline
        # streams is a ~25 KB URL, and Binance documents no URL limit, only the stream count
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5, max_line_size=65_536)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def _astop(self) -> None:
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.abort()
            if conn.writer:
                conn.writer.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` on the server loop and return its result."""
        assert self._loop is not None, "server not started"

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    # ================================================================== addresses
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def endpoints(self) -> BinanceEndpoints:
        """Endpoints pointing at this server (what ``resolve_endpoints`` would build from the
        ``TRADECONSOLE_BINANCE_*`` variables in ``env()``)."""
        return BinanceEndpoints(
            spot_rest=f"{self.base_url}/api",
            futures_rest=f"{self.base_url}/fapi",
            spot_ws=f"ws://127.0.0.1:{self.port}/",
            futures_ws=f"ws://127.0.0.1:{self.port}/futures/market/",
        )

    def legacy_futures_ws(self) -> str:
        """The retired unrouted USD-M futures base (``wss://fstream.binance.com/``) on this
        server: connections open, klines never arrive."""
        return f"ws://127.0.0.1:{self.port}/futures/"

    def env(self) -> dict[str, str]:
        e = self.endpoints()
        return {
            "TRADECONSOLE_BINANCE_SPOT_REST": e.spot_rest,
            "TRADECONSOLE_BINANCE_FUTURES_REST": e.futures_rest,
            "TRADECONSOLE_BINANCE_SPOT_WS": e.spot_ws,
            "TRADECONSOLE_BINANCE_FUTURES_WS": e.futures_ws,
        }

    # ================================================================== market truth
    @property
    def now_ms(self) -> int:
        return self._now

    def series(self, symbol: str, interval: str) -> CandleArrays:
        return self._series[(symbol.upper(), interval)].arrays

    def closed_candles(
        self, symbol: str, interval: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Candle]:
        """The true closed candles at the current server time with
        ``start_ms <= open_time <= end_ms`` (what every client must end up with)."""
        s = self._series[(symbol.upper(), interval)]
        a = s.arrays
        lo = 0 if start_ms is None else int(np.searchsorted(a.open_time, start_ms, "left"))
        hi = int(np.searchsorted(a.close_time, self._now, "left"))  # close_time < now
        if end_ms is not None:
            hi = min(hi, int(np.searchsorted(a.open_time, end_ms, "right")))
        return a.take(slice(lo, max(lo, hi))).candles()

    def last_closed_open_time(self, symbol: str, interval: str) -> int:
        last = self.closed_candles(symbol, interval)[-1:]
        if not last:
            raise LookupError("no closed candle yet")
        return last[0].open_time

    def current_candle(self, symbol: str, interval: str) -> Candle | None:
        """The open candle as REST and the stream show it now (None in a data gap)."""
        s = self._series[(symbol.upper(), interval)]
        return self._visible(s, self._now - self._now % s.step)

    def _visible(self, s: _Series, open_time: int) -> Candle | None:
        i = s.index.get(open_time)
        if i is None or open_time > self._now:
            return None
        c = s.arrays.candle(i)
        if c.close_time < self._now:
            return c
        n = self.updates_per_candle
        passed = sum(1 for j in range(n) if open_time + (j + 1) * s.step // (n + 1) <= self._now)
        return partial_candle(c, passed / (n + 1))

    # ================================================================== clock
    def advance(self, candles: int = 1, interval: str | None = None) -> None:
        """Move the clock to the close of the ``candles``-th candle of ``interval`` (default:
        the first series' interval) from now, broadcasting every update and close on the way."""
        step = interval_ms(interval) if interval else next(iter(self._series.values())).step
        target = self._now - self._now % step + candles * step
        self._call(self._advance_to, target)

    def advance_ms(self, ms: int) -> None:
        """Move the clock by ``ms`` (e.g. into the middle of a candle)."""
        self._call(self._advance_to, self._now + ms)

    def _advance_to(self, target: int) -> None:
        events: list[tuple[int, int, int, _Series, int, int]] = []
        order = itertools.count()
        n = self.updates_per_candle
        for s in self._series.values():
            o = self._now - self._now % s.step
            while o <= target:
                for j in range(n):
                    tp = o + (j + 1) * s.step // (n + 1)
                    if self._now < tp <= target:
                        events.append((tp, next(order), 0, s, o, j + 1))
                tc = o + s.step
                if self._now < tc <= target:
                    events.append((tc, next(order), 1, s, o, n + 1))
                o += s.step
        events.sort(key=lambda e: (e[0], e[1]))
        for tp, _, closing, s, o, j in events:
            if tp != self._now:  # all messages of the previous instant are out
                self._expire_connections()
            self._now = tp
            i = s.index.get(o)
            if i is not None:
                full = s.arrays.candle(i)
                candle = full if closing else partial_candle(full, j / (n + 1))
                self._broadcast(s, candle, tp, bool(closing))
        self._expire_connections()
        self._now = max(self._now, target)
        self._expire_connections()

    def _expire_connections(self) -> None:
        for conn in list(self._conns):
            if self._now - conn.connected_at >= self.connection_lifetime_ms:
                self._conns.discard(conn)
                conn.queue.put_nowait(_Close(1001, "24h connection limit"))

    # ================================================================== stream output
    def _payload(self, s: _Series, c: Candle, event_time: int, closed: bool, market: str) -> dict[str, Any]:
        f = _FMT[market]
        return {
            "e": "kline",
            "E": event_time,
            "s": s.symbol,
            "k": {
                "t": c.open_time,
                "T": c.close_time,
                "s": s.symbol,
                "i": s.interval,
                "f": 1000 + c.open_time // 1000,
                "L": 1000 + c.open_time // 1000 + int(c.volume),
                "o": f(c.open),
                "c": f(c.close),
                "h": f(c.high),
                "l": f(c.low),
                "v": f(c.volume),
                "n": int(c.volume) + 1,
                "x": closed,
                "q": f(c.volume * c.close),
                "V": f(c.volume / 2),
                "Q": f(c.volume * c.close / 2),
                "B": "0",
            },
        }

    def _broadcast(self, s: _Series, c: Candle, event_time: int, closed: bool) -> None:
        if self._silent or c.open_time in self._skip.get(s.stream, ()):
            return
        texts: dict[tuple[str, bool], str] = {}
        for conn in list(self._conns):
            if s.stream not in conn.streams or not conn.klines:
                continue
            key = (conn.market, conn.combined)
            if key not in texts:
                payload = self._payload(s, c, event_time, closed, conn.market)
                texts[key] = json.dumps({"stream": s.stream, "data": payload} if conn.combined else payload)
            self._deliver(conn, s.stream, texts[key], closed)
        if texts and self._duplicate_left > 0:  # count only messages someone was subscribed to
            self._duplicate_left -= 1

    def _deliver(self, conn: _Conn, stream: str, text: str, closed: bool) -> None:
        """Queue one message for a connection, applying the reordering faults. Each reordering
        fault is bound to the first connection it meets, so other connections are unaffected."""
        out = [text, text] if self._duplicate_left > 0 else [text]
        kind = "close" if closed else "update"
        for fault in self._reorder:
            if fault.stream != stream or fault.kind != kind or fault.conn not in (None, conn):
                continue
            if fault.conn is None:  # hold this message back
                fault.conn, fault.held = conn, out
                return
            self._reorder.remove(fault)  # the next one goes first, then the held one
            out = out + fault.held
            break
        for item in out:
            self._send(conn, stream, item)

    def _send(self, conn: _Conn, stream: str, text: str | bytes) -> None:
        self.messages_sent += 1
        if self.on_send is not None:
            self.on_send(stream, time.perf_counter_ns())
        conn.queue.put_nowait(text)

    async def _writer(self, conn: _Conn) -> None:
        while True:
            item = await conn.queue.get()
            try:
                if isinstance(item, _Close):
                    await conn.ws.close(code=item.code, message=item.message.encode())
                    return
                if isinstance(item, bytes):
                    await conn.ws.send_bytes(item)
                else:
                    await conn.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    # ================================================================== faults: stream
    def set_silent(self, silent: bool = True) -> None:
        """Keep connections open (and answering pings) but send no kline message; the
        candles that close meanwhile are lost for the stream, REST still has them."""
        self._call(setattr, self, "_silent", silent)

    def skip_stream_candles(self, count: int, symbol: str = "ETHUSDT", interval: str = "5m") -> None:
        """Send nothing about the current open candle and the ``count - 1`` after it (no updates,
        no close) on the stream: a gap the client must fill over REST."""

        def run() -> None:
            s = self._series[(symbol.upper(), interval)]
            first = self._now - self._now % s.step
            self._skip[s.stream].update(first + k * s.step for k in range(count))

        self._call(run)

    def duplicate_next(self, count: int = 1) -> None:
        """Send each of the next ``count`` broadcast messages twice."""
        self._call(setattr, self, "_duplicate_left", count)

    def delay_next_close(self, symbol: str = "ETHUSDT", interval: str = "5m") -> None:
        """Hold back the next closing (``x: true``) message and send it after the following close:
        closed candles arrive out of order."""
        stream = self._series[(symbol.upper(), interval)].stream
        self._call(self._reorder.append, _Reorder(stream, "close"))

    def swap_next_update(self, symbol: str = "ETHUSDT", interval: str = "5m") -> None:
        """Send the next open-candle update after the one following it (an older update arrives
        after a newer one)."""
        stream = self._series[(symbol.upper(), interval)].stream
        self._call(self._reorder.append, _Reorder(stream, "update"))

    def send_malformed(self, symbol: str = "ETHUSDT", interval: str = "5m") -> tuple[int, int]:
        """Send every kind of bad frame to every connection now. Returns
        ``(malformed, unexpected)``: how many are broken kline data and how many are valid
        messages that are not klines of a subscribed pair."""
        s = self._series[(symbol.upper(), interval)]
        c = self.current_candle(symbol, interval) or s.arrays.candle(len(s.arrays) - 1)
        good = self._payload(s, c, self._now, False, "spot")

        def variant(**changes: Any) -> dict[str, Any]:
            p = json.loads(json.dumps(good))
            for k, v in changes.items():
                if v is None:
                    p["k"].pop(k, None)
                else:
                    p["k"][k] = v
            return p

        malformed: list[Any] = [
            "not json at all",
            '{"stream": "' + s.stream + '", "data": {"e": "kline", ',  # truncated
            "[1, 2, 3]",
            b"\xff\xfe\x00binary",
            variant(o=None),
            variant(c="abc"),
            variant(x="false"),
            variant(i="7m"),
            variant(t="soon"),
            {"e": "kline", "E": self._now, "s": s.symbol, "k": "not an object"},
        ]
        unexpected: list[Any] = [
            {"result": None, "id": 1},
            {"e": "24hrTicker", "E": self._now, "s": s.symbol},
            {"e": "continuous_kline", "E": self._now, "ps": s.symbol, "k": good["k"]},
            {**good, "s": "NOSUCHPAIR", "k": {**good["k"], "s": "NOSUCHPAIR"}},
        ]

        def run() -> None:
            for conn in list(self._conns):
                for item in malformed + unexpected:
                    if isinstance(item, dict) and conn.combined:
                        item = {"stream": s.stream, "data": item}
                    self._send(conn, s.stream, item if isinstance(item, (str, bytes)) else json.dumps(item))

        self._call(run)
        return len(malformed), len(unexpected)

    def send_kline(
        self,
        symbol: str = "ETHUSDT",
        interval: str = "5m",
        *,
        closed: bool = True,
        event_time: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send one kline event, built from the current candle with ``fields`` (``t``, ``T``,
        ``o``, ``h``, ``l``, ``c``, ``v``...) forced, to every connection that carries klines and
        subscribed the pair. Fault injection: the real exchange never sends such frames, a bug,
        a proxy or a hostile network can. Forcing ``t`` alone also moves ``T`` to ``t + step -
        1`` so only the intended rule is broken. Returns the payload sent."""
        s = self._series[(symbol.upper(), interval)]
        c = self.current_candle(symbol, interval) or s.arrays.candle(len(s.arrays) - 1)

        def run() -> dict[str, Any]:
            payload = self._payload(s, c, self._now if event_time is None else event_time, closed, "futures")
            if "t" in fields and "T" not in fields and isinstance(fields["t"], int):
                fields["T"] = fields["t"] + s.step - 1
            payload["k"].update(fields)
            for conn in list(self._conns):
                if s.stream in conn.streams and conn.klines:
                    body = {"stream": s.stream, "data": payload} if conn.combined else payload
                    self._send(conn, s.stream, json.dumps(body))
            return payload

        return self._call(run)

    def drop_connections(self) -> int:
        """Abort every websocket connection at the TCP level (no close frame), e.g. mid-candle."""

        def run() -> int:
            conns = list(self._conns)
            for conn in conns:
                self._conns.discard(conn)
                conn.transport.abort()
            return len(conns)

        return self._call(run)

    def close_connections(self, code: int = 1001, message: str = "going away") -> int:
        """Close every websocket gracefully (what Binance does at the 24-hour mark)."""

        def run() -> int:
            conns = list(self._conns)
            for conn in conns:
                self._conns.discard(conn)
                conn.queue.put_nowait(_Close(code, message))  # after what is already queued
            return len(conns)

        return self._call(run)

    def reject_connections(self, count: int, status: int = 503) -> None:
        """Refuse the next ``count`` websocket handshakes with an HTTP error."""

        def run() -> None:
            self._reject_left, self._reject_status = count, status

        self._call(run)

    def active_connections(self) -> int:
        return self._call(lambda: len(self._conns))

    # ================================================================== faults: REST
    def fail_rest(
        self,
        status: int = 429,
        count: int = 1,
        retry_after: float | None = 1,
        path_contains: str | None = "klines",
        after: int = 0,
    ) -> None:
        """Let ``after`` matching requests through, then answer the next ``count`` with
        ``status`` (429/418 carry ``Retry-After``), then serve normally again."""
        self._call(self._rest_faults.append, _RestFault(status, count, retry_after, path_contains, after))

    def clear_rest_faults(self) -> None:
        self._call(self._rest_faults.clear)
        self._call(self._rest_lies.clear)

    def corrupt_rest_kline(self, open_time: int, symbol: str = "ETHUSDT", interval: str = "5m", **fields: str) -> None:
        """From now on REST serves the candle at ``open_time`` with ``fields`` (``o``, ``h``,
        ``l``, ``c``, ``v`` as strings) replaced. Fault injection: Binance's REST does not lie;
        this checks that REST backfill goes through the same feed guard as the stream."""
        index = {"o": 1, "h": 2, "l": 3, "c": 4, "v": 5}
        lie = {index[k]: v for k, v in fields.items()}
        self._call(self._rest_lies.__setitem__, (symbol.upper(), interval, open_time), lie)

    def reset_counts(self) -> None:
        def run() -> None:
            self.request_counts.clear()
            self.request_log.clear()

        self._call(run)

    # ================================================================== REST handlers
    def _account(self, request: web.Request, weight: int) -> web.Response | None:
        path = request.path
        self.request_counts[path] += 1
        self.request_log.append((path, dict(request.query)))
        minute = int(time.time() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight = minute, 0
        self._weight += weight
        for fault in self._rest_faults:
            if fault.path_contains is None or fault.path_contains in path:
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.count -= 1
                if fault.count <= 0:
                    self._rest_faults.remove(fault)
                headers = {}
                if fault.retry_after is not None and fault.status in (418, 429):
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                msg = {
                    429: "Too many requests; current limit of IP is 6000 requests per minute.",
                    418: "Way too many requests; IP banned.",
                }.get(fault.status, "Internal error.")
                return web.json_response(
                    {"code": -1003 if fault.status in (418, 429) else -1000, "msg": msg},
                    status=fault.status,
                    headers=headers,
                )
        return None

    def _json(self, body: Any) -> web.Response:
        used = self.used_weight if self.used_weight is not None else self._weight
        return web.json_response(body, headers={"X-MBX-USED-WEIGHT-1M": str(used)})

    @staticmethod
    def _error(code: int, msg: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    async def _ping(self, request: web.Request) -> web.Response:
        return self._account(request, 1) or self._json({})

    async def _time(self, request: web.Request) -> web.Response:
        return self._account(request, 1) or self._json({"serverTime": self._now})

    def _exchange_info(self, request: web.Request, market: str) -> web.Response:
        fault = self._account(request, 20 if market == "spot" else 1)
        if fault:
            return fault
        limit = 6000 if market == "spot" else 2400
        symbols = sorted({s.symbol for s in self._series.values()})
        return self._json(
            {
                "timezone": "UTC",
                "serverTime": self._now,
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": limit}
                ],
                "exchangeFilters": [],
                "symbols": [
                    {"symbol": sym, "status": "TRADING", "baseAsset": sym[:-4], "quoteAsset": sym[-4:]}
                    for sym in symbols
                ],
            }
        )

    async def _exchange_info_spot(self, request: web.Request) -> web.Response:
        return self._exchange_info(request, "spot")

    async def _exchange_info_futures(self, request: web.Request) -> web.Response:
        return self._exchange_info(request, "futures")

    async def _klines_spot(self, request: web.Request) -> web.Response:
        return self._klines(request, "spot")

    async def _klines_futures(self, request: web.Request) -> web.Response:
        return self._klines(request, "futures")

    def _klines(self, request: web.Request, market: str) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", _DEFAULT_LIMIT))
        except ValueError:
            limit = -1
        if market == "spot":
            weight = 2
        else:
            weight = 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
        fault = self._account(request, weight)
        if fault:
            return fault
        if not 1 <= limit <= _PAGE_LIMIT[market]:
            return self._error(-1130, "Data sent for parameter 'limit' is not valid.")
        symbol, interval = q.get("symbol", ""), q.get("interval", "")
        if not symbol:
            return self._error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        try:
            interval_ms(interval)
        except ValueError:
            return self._error(-1120, "Invalid interval.")
        s = self._series.get((symbol.upper(), interval))
        if s is None:
            return self._error(-1121, "Invalid symbol.")
        try:
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
        except ValueError:
            return self._error(-1100, "Illegal characters found in a parameter.")
        a = s.arrays
        visible = int(np.searchsorted(a.open_time, self._now, "right"))  # open_time <= now
        hi = visible if end is None else min(visible, int(np.searchsorted(a.open_time, end, "right")))
        if start is not None:
            lo = int(np.searchsorted(a.open_time, start, "left"))
            idx = range(lo, min(hi, lo + limit))
        else:
            idx = range(max(0, hi - limit), hi)
        f = _FMT[market]
        rows = []
        for i in idx:
            c = self._visible(s, int(a.open_time[i]))
            if c is None:
                continue
            row = [
                c.open_time,
                f(c.open),
                f(c.high),
                f(c.low),
                f(c.close),
                f(c.volume),
                c.close_time,
                f(c.volume * c.close),
                int(c.volume) + 1,
                f(c.volume / 2),
                f(c.volume * c.close / 2),
                "0",
            ]
            for k, v in self._rest_lies.get((s.symbol, s.interval, c.open_time), {}).items():
                row[k] = v
            rows.append(row)
        return self._json(rows)

    # ================================================================== websocket handlers
    def _ws_raw(self, market: str, klines: bool) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            # ws mode: "streams are composed in the URL path" (change notice, access modes)
            names = request.match_info["stream"].lower().split("/")
            return await self._ws(request, market, frozenset(n for n in names if n), False, klines)

        return handler

    def _ws_combined(self, market: str, klines: bool) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            # stream mode: "streams are passed via query (e.g., ?streams=)" (change notice)
            names = request.query.get("streams", "")
            streams = frozenset(n.lower() for n in names.split("/") if n)
            if not streams:
                return self._error(-1100, "no streams", 400)
            if len(streams) > MAX_STREAMS:
                # "A single connection can listen to a maximum of 1024 streams" (spot and USD-M
                # docs, "WebSocket Market Streams"). How Binance refuses more is not documented;
                # the stand-in refuses the handshake, so a client over the limit fails loudly
                self.refused_over_limit += 1
                return self._error(-1100, f"too many streams: {len(streams)} > {MAX_STREAMS}", 400)
            return await self._ws(request, market, streams, True, klines)

        return handler

    async def _ws(
        self, request: web.Request, market: str, streams: frozenset[str], combined: bool, klines: bool = True
    ) -> web.StreamResponse:
        self.request_counts[request.path] += 1
        if self._reject_left > 0:
            self._reject_left -= 1
            return web.Response(status=self._reject_status, text="unavailable")
        ws = web.WebSocketResponse(autoping=True)
        transport = request.transport
        await ws.prepare(request)
        conn = _Conn(ws, transport, market, streams, combined, self._now, klines=klines)
        conn.writer = asyncio.ensure_future(self._writer(conn))
        self._conns.add(conn)
        self.ws_connects += 1
        try:
            async for msg in ws:  # clients send nothing we need; read to process control frames
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(conn)
            conn.writer.cancel()
        return ws
