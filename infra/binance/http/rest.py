"""Paged kline fetching over python-binance's REST client, within Binance's rate limits.

Shared by the history downloader and the live stream's backfill, so both obey the same rules:

* at most 1000 klines per spot request and 1500 per USD-M futures request;
* after every response the used request weight (``X-MBX-USED-WEIGHT-1M``) is read, and when it
  nears the per-minute limit the client waits for the next minute instead of provoking a 429;
* HTTP 429 (rate limited) and 418 (IP banned for ignoring 429s) are answered by waiting
  ``Retry-After`` seconds (at least), and every later call of this client also waits until then,
  because any request during a ban lengthens it; a Retry-After longer than the policy's
  ``max_retry_after_s`` raises ``RateLimited`` rather than blocking for hours;
* 5xx answers and connection errors are retried with exponential backoff and jitter; other 4xx
  answers (unknown symbol, bad interval) raise at once since retrying cannot fix them.

The back-off is the one policy of ``tradeconsole.infra.retry`` (``RetryPolicy``/``Backoff``:
stop-aware, Retry-After-aware) and failures are typed by the one error map,
``tradeconsole.infra.binance.http.errors`` (``RestError`` is its ``BinanceError``). ``sleep`` is
injectable: the stream passes one that aborts when the stream stops, tests pass one that records
the waits instead of sleeping; ``stop`` ends a wait early with ``tradeconsole.infra.retry.Stopped``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tradeconsole.core.domain import Candle, interval_ms
from tradeconsole.infra.binance.http.errors import ExchangeUnavailable, RateLimited, RestError, error_from_exception
from tradeconsole.infra.binance.market.klines import KlineParseError, parse_rest_klines
from tradeconsole.infra.retry import Backoff, RetryPolicy, Stopped, StopSignal

if TYPE_CHECKING:
    from binance.client import Client

__all__ = [
    "MARKETS",
    "PAGE_LIMIT",
    "WEIGHT_LIMIT_1M",
    "KlinePage",
    "KlineRestClient",
    "DEFAULT_RETRY",
    "RateLimited",
    "RestError",
    "RestStats",
]

log = logging.getLogger(__name__)

MARKETS = ("spot", "futures")
#: Largest ``limit`` each kline endpoint accepts.
PAGE_LIMIT = {"spot": 1000, "futures": 1500}
#: Default request-weight budget per minute (Binance's published IP limits).
WEIGHT_LIMIT_1M = {"spot": 6000, "futures": 2400}
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


#: The market-data client's default share of the one retry policy: 8 attempts per call, backing
#: off from 0.5 s to 30 s; a Retry-After over 15 minutes raises ``RateLimited`` instead of waiting.
DEFAULT_RETRY = RetryPolicy(initial_s=0.5, max_s=30.0, jitter=0.25, max_retry_after_s=900.0, max_attempts=8)


@dataclass(slots=True)
class RestStats:
    """Counters for logs, tests and the status bar."""

    requests: int = 0  # HTTP requests, retries included
    kline_requests: int = 0  # kline pages asked for (a retried page counts once)
    retries: int = 0
    rate_limited: int = 0  # 429/418 answers
    waited_s: float = 0.0  # time spent sleeping for Retry-After, backoff or weight
    last_used_weight: int | None = None
    by_status: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KlinePage:
    """One kline response, clipped to the asked range. ``covered_until`` (exclusive) is how far
    the exchange has answered for: every candle with ``start <= open_time < covered_until`` that
    is not in ``candles`` does not exist on the exchange (maintenance gap, before listing)."""

    candles: list[Candle]
    start: int
    covered_until: int


class KlineRestClient:
    """Kline and server-time requests for one market through a python-binance ``Client``
    (build it with ``tradeconsole.infra.binance.http.endpoints.make_client``)."""

    def __init__(
        self,
        client: Client,
        market: str = "spot",
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        stop: StopSignal | Iterable[StopSignal | None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        weight_limit: int | None = None,
        weight_headroom: float = 0.9,
        seed: int | None = None,
    ) -> None:
        if market not in MARKETS:
            raise ValueError(f"market must be one of {MARKETS}, not {market!r}")
        if retry.max_attempts is None:
            raise ValueError("the kline client's retry policy needs max_attempts (every call must end)")
        self.client = client
        self.market = market
        self.retry = retry
        self.page_limit = PAGE_LIMIT[market]
        self.weight_limit = weight_limit if weight_limit is not None else WEIGHT_LIMIT_1M[market]
        self.weight_headroom = weight_headroom
        self.stats = RestStats()
        self._sleep = sleep
        self._stop = stop
        self._monotonic = monotonic
        self._wall = wall
        self._rng = random.Random(seed)
        self._blocked_until = 0.0

    # ------------------------------------------------------------------ public calls
    def server_time_ms(self) -> int:
        """The exchange's clock (decides which candles are closed, independent of ours)."""
        fn = self.client.get_server_time if self.market == "spot" else self.client.futures_time
        result = self._call(fn)
        try:
            return int(result["serverTime"])
        except (KeyError, TypeError, ValueError):
            raise RestError(f"unexpected server time response: {result!r}") from None

    def klines_page(
        self, symbol: str, interval: str, start_ms: int, end_ms: int | None = None, limit: int | None = None
    ) -> list[Candle]:
        """One raw kline request (rows with ``start_ms <= open_time <= end_ms``). Every row is
        marked closed; the last one may be the open candle if ``end_ms`` reaches into it."""
        limit = self.page_limit if limit is None else limit
        if not 1 <= limit <= self.page_limit:
            raise ValueError(f"limit must be 1..{self.page_limit} for {self.market}, not {limit}")
        params: dict[str, Any] = {
            "symbol": symbol.upper(),
            "interval": interval,
            "startTime": int(start_ms),
            "limit": limit,
        }
        if end_ms is not None:
            params["endTime"] = int(end_ms)
        fn = self.client.get_klines if self.market == "spot" else self.client.futures_klines
        self.stats.kline_requests += 1
        rows = self._call(fn, **params)
        try:
            return parse_rest_klines(rows)
        except KlineParseError as exc:
            raise RestError(f"{self.market} klines {symbol} {interval}: bad response: {exc}") from None

    def iter_pages(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> Iterator[KlinePage]:
        """Pages of candles with ``start_ms <= open_time < end_ms`` in order, as few requests as
        the page limit allows. ``start_ms`` must be on the interval's grid, and ``end_ms`` no later
        than the open time of the current candle: everything returned is treated as closed."""
        step = interval_ms(interval)
        cursor = start_ms
        while cursor < end_ms:
            rows = self.klines_page(symbol, interval, cursor, end_ms - 1, self.page_limit)
            candles = [c for c in rows if cursor <= c.open_time < end_ms]
            prev = cursor - step
            for c in candles:
                if c.open_time <= prev or (c.open_time - cursor) % step:
                    raise RestError(
                        f"{symbol} {interval}: kline at {c.open_time} is out of order or "
                        f"off the {interval} grid (after {prev})"
                    )
                prev = c.open_time
            if len(rows) >= self.page_limit:
                if not candles:
                    raise RestError(f"{symbol} {interval}: full page without a candle in range")
                covered = candles[-1].open_time + step
            else:
                covered = end_ms
            yield KlinePage(candles, cursor, covered)
            cursor = covered

    def closed_range(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[Candle]:
        """All candles with ``start_ms <= open_time < end_ms`` (same preconditions as
        ``iter_pages``)."""
        out: list[Candle] = []
        for page in self.iter_pages(symbol, interval, start_ms, end_ms):
            out.extend(page.candles)
        return out

    # ------------------------------------------------------------------ machinery
    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.waited_s += seconds
            self._sleep(seconds)

    def _note_weight(self) -> None:
        response = getattr(self.client, "response", None)
        headers = getattr(response, "headers", None) or {}
        raw = headers.get(WEIGHT_HEADER)
        if raw is None:
            return
        try:
            used = int(raw)
        except ValueError:
            return
        self.stats.last_used_weight = used
        if used >= self.weight_headroom * self.weight_limit:
            # Binance's weight window is the clock minute; wait for the next one
            wait = 60.0 - (self._wall() % 60.0) + 0.5
            log.warning("request weight %d of %d used this minute; pausing %.1f s", used, self.weight_limit, wait)
            self._wait(wait)

    def _call(self, fn: Callable[..., Any], **params: Any) -> Any:
        """One request under the retry policy (see the module docstring)."""
        op = f"{self.market} {fn.__name__}"
        backoff = Backoff(op, self.retry, stop=self._stop, logger=log, rng=self._rng, sleep=self._wait)
        while True:
            blocked = self._blocked_until - self._monotonic()
            if blocked > 0:
                if not backoff.wait(blocked):
                    raise Stopped(f"{op}: stopped while rate limited")
                self._blocked_until = 0.0  # served (``sleep`` may be simulated)
            if backoff.failures:
                self.stats.retries += 1
            self.stats.requests += 1
            try:
                result = fn(**params)
            except Exception as exc:
                err = error_from_exception(exc, op)
                if err is None:
                    raise
            else:
                self._note_weight()
                backoff.succeeded()
                return result
            if err.http_status is not None:
                self.stats.by_status[err.http_status] = self.stats.by_status.get(err.http_status, 0) + 1
            if isinstance(err, RateLimited):
                self.stats.rate_limited += 1
                if err.retry_after is not None and err.retry_after > self.retry.max_retry_after_s:
                    raise RateLimited(
                        f"{err}; asked to wait {err.retry_after:.0f} s",
                        retry_after=err.retry_after,
                        code=err.code,
                        http_status=err.http_status,
                        operation=op,
                    ) from None
                delay = backoff.failed(str(err), err.retry_after)
                if backoff.exhausted:
                    raise RateLimited(
                        f"still rate limited after {backoff.failures} attempts: {err}",
                        retry_after=err.retry_after,
                        code=err.code,
                        http_status=err.http_status,
                        operation=op,
                    ) from None
                self._blocked_until = self._monotonic() + delay  # later calls of this client wait too
                continue
            if not isinstance(err, ExchangeUnavailable):
                raise err from None  # a 4xx: retrying cannot fix it
            delay = backoff.failed(str(err))
            if backoff.exhausted:
                raise ExchangeUnavailable(
                    f"{op} failed after {backoff.failures} attempts: {err}",
                    code=err.code,
                    http_status=err.http_status,
                    operation=op,
                ) from None
            if not backoff.wait(delay):
                raise Stopped(f"{op}: stopped while waiting to retry")
