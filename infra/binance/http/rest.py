"""Paged kline fetching over python-binance's REST client, within Binance's rate limits.

Shared by the history downloader and the live stream's backfill, so both obey the same rules:

* at most 1000 klines per spot request and 1500 per USD-M futures request;
* after every response the used request weight (``X-MBX-USED-WEIGHT-1M``) is read, and when it
  nears the per-minute limit the client waits for the next minute instead of provoking a 429;
* HTTP 429 (rate limited) and 418 (IP banned for ignoring 429s) are answered by waiting exactly
  ``Retry-After`` seconds, and every later call of this client also waits until then, because
  any request during a ban lengthens it; a wait longer than ``max_wait`` raises ``RateLimited``
  rather than blocking for hours;
* 5xx answers and connection errors are retried with exponential backoff and jitter; other 4xx
  answers (unknown symbol, bad interval) raise at once since retrying cannot fix them.

``sleep`` is injectable: the stream passes one that aborts when the stream stops, tests pass
one that records the waits instead of sleeping.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tradeconsole.core.domain import Candle, interval_ms
from tradeconsole.infra.binance.market.klines import KlineParseError, parse_rest_klines

if TYPE_CHECKING:
    from binance.client import Client

__all__ = [
    "MARKETS",
    "PAGE_LIMIT",
    "WEIGHT_LIMIT_1M",
    "KlinePage",
    "KlineRestClient",
    "RateLimited",
    "RestError",
    "RestStats",
    "RetryPolicy",
]

log = logging.getLogger(__name__)

MARKETS = ("spot", "futures")
#: Largest ``limit`` each kline endpoint accepts.
PAGE_LIMIT = {"spot": 1000, "futures": 1500}
#: Default request-weight budget per minute (Binance's published IP limits).
WEIGHT_LIMIT_1M = {"spot": 6000, "futures": 2400}
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class RestError(RuntimeError):
    """A REST call failed for good: a 4xx that retrying cannot fix, or retries exhausted."""


class RateLimited(RestError):
    """Binance asked us to wait (429/418) longer than we may, or kept refusing."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 8  # per call, counting the first
    base_delay: float = 0.5  # seconds, doubled per failed attempt
    max_delay: float = 30.0
    max_wait: float = 900.0  # longest Retry-After we sit out before raising RateLimited


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


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class KlineRestClient:
    """Kline and server-time requests for one market through a python-binance ``Client``
    (build it with ``tradeconsole.infra.binance.http.endpoints.make_client``)."""

    def __init__(
        self,
        client: Client,
        market: str = "spot",
        *,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        weight_limit: int | None = None,
        weight_headroom: float = 0.9,
        seed: int | None = None,
    ) -> None:
        if market not in MARKETS:
            raise ValueError(f"market must be one of {MARKETS}, not {market!r}")
        self.client = client
        self.market = market
        self.retry = retry
        self.page_limit = PAGE_LIMIT[market]
        self.weight_limit = weight_limit if weight_limit is not None else WEIGHT_LIMIT_1M[market]
        self.weight_headroom = weight_headroom
        self.stats = RestStats()
        self._sleep = sleep
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

    def klines_page(self, symbol: str, interval: str, start_ms: int, end_ms: int | None = None,
                    limit: int | None = None) -> list[Candle]:
        """One raw kline request (rows with ``start_ms <= open_time <= end_ms``). Every row is
        marked closed; the last one may be the open candle if ``end_ms`` reaches into it."""
        limit = self.page_limit if limit is None else limit
        if not 1 <= limit <= self.page_limit:
            raise ValueError(f"limit must be 1..{self.page_limit} for {self.market}, not {limit}")
        params: dict[str, Any] = {"symbol": symbol.upper(), "interval": interval,
                                  "startTime": int(start_ms), "limit": limit}
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
                    raise RestError(f"{symbol} {interval}: kline at {c.open_time} is out of order or "
                                    f"off the {interval} grid (after {prev})")
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

    def _backoff(self, attempt: int) -> float:
        d = min(self.retry.max_delay, self.retry.base_delay * 2 ** attempt)
        return d * (0.5 + 0.5 * self._rng.random())

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
            log.warning("request weight %d of %d used this minute; pausing %.1f s", used,
                        self.weight_limit, wait)
            self._wait(wait)

    def _call(self, fn: Callable[..., Any], **params: Any) -> Any:
        from binance.exceptions import BinanceAPIException, BinanceRequestException
        from requests import RequestException

        last_error = "no attempt made"
        for attempt in range(self.retry.attempts):
            blocked = self._blocked_until - self._monotonic()
            if blocked > 0:
                self._wait(blocked)
                self._blocked_until = 0.0  # served (``sleep`` may be simulated)
            if attempt:
                self.stats.retries += 1
            self.stats.requests += 1
            try:
                result = fn(**params)
            except BinanceAPIException as exc:
                status = int(exc.status_code)
                self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
                last_error = f"HTTP {status} (code {exc.code}): {exc.message}"
                if status in (429, 418):
                    self.stats.rate_limited += 1
                    retry_after = _retry_after(exc.response)
                    delay = retry_after if retry_after is not None else self._backoff(attempt)
                    if delay > self.retry.max_wait:
                        raise RateLimited(f"Binance {last_error}; asked to wait {delay:.0f} s", delay) from None
                    log.warning("%s: rate limited (%s); waiting %.1f s", fn.__name__, last_error, delay)
                    self._blocked_until = self._monotonic() + delay
                    if attempt + 1 == self.retry.attempts:
                        raise RateLimited(f"still rate limited after {attempt + 1} attempts: {last_error}",
                                          retry_after) from None
                    continue
                if status < 500:
                    raise RestError(f"{fn.__name__} {params}: {last_error}") from None
            except (BinanceRequestException, RequestException) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                self._note_weight()
                return result
            if attempt + 1 < self.retry.attempts:
                delay = self._backoff(attempt)
                log.warning("%s failed (%s); retry %d in %.2f s", fn.__name__, last_error, attempt + 1, delay)
                self._wait(delay)
        raise RestError(f"{fn.__name__} failed after {self.retry.attempts} attempts: {last_error}")
