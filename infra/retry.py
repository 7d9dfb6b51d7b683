"""One retry/backoff policy for every adapter and sink: stop-aware, Retry-After-aware, one log line.

Why one module: retry loops written separately in each sink drifted apart (one slept without
looking at the stop event, so ``tradeconsole forward`` ignored SIGTERM for minutes while
Elasticsearch was down; others logged a traceback per attempt). Everything that retries uses
:class:`Backoff` now:

* the delay grows exponentially from ``initial_s`` to ``max_s`` with a little jitter (so many
  clients do not retry in lock-step), and a server's ``Retry-After`` is honoured as a lower bound
  (capped by ``max_retry_after_s`` so a hostile or broken header cannot park us for hours);
* every wait is interruptible: it returns (or raises :class:`Stopped`) as soon as any of the stop
  signals is set, checked at least every ``tick_s`` (0.1 s);
* each failed attempt logs exactly one line (WARNING, no traceback) with the reason, the attempt
  number and the delay; the first success after failures logs one INFO line.

Which errors are worth retrying is the caller's knowledge (a 503 is, an authentication failure or
a refused media type is not); :func:`retry_call` takes a ``classify`` function for that.
Non-blocking users (a worker thread that must keep draining its queue) call
:meth:`Backoff.failed` to get the delay and schedule the next try themselves; asyncio users (the
Binance websocket supervisors) await :func:`async_wait_or_stop` with it. Callers whose waits must
be observable or interruptible in their own way (tests recording the back-off, a stream whose sleep
raises when it stops) pass ``sleep=``; the stop signals are still checked before and after it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = [
    "REPORT_MODES",
    "Backoff",
    "RetryPolicy",
    "StopSignal",
    "Stopped",
    "async_wait_or_stop",
    "parse_retry_after",
    "retry_call",
    "stop_requested",
    "wait_or_stop",
]

#: Something that says "stop now": an Event, or a callable returning True when stop was asked.
StopSignal = threading.Event | Callable[[], bool]


#: How a :class:`Backoff` logs failed attempts: ``"each"`` one line per attempt (the default);
#: ``"distinct"`` one line per distinct reason until the next success (a service that retries every
#: second would otherwise repeat the same line every second); ``"none"`` nothing, for a caller that
#: reports its own state (a sink's status says "down" once, with what happens to the events).
REPORT_MODES = ("each", "distinct", "none")


class Stopped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A stop was requested while waiting to retry; the operation was not completed."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before attempt ``n + 1`` after ``n`` consecutive failures.

    ``max_attempts`` None retries until stopped (services); a number gives up after that many
    failures (one-shot commands) by re-raising the last error.
    """

    initial_s: float = 0.2
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.1
    max_retry_after_s: float = 300.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"inconsistent retry policy {self!r}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None for no limit)")

    def delay(self, failures: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` (>= 1) consecutive failures.

        The server's ``retry_after`` (seconds) wins when it asks for longer than our backoff."""
        base = min(self.max_s, self.initial_s * self.multiplier ** max(0, min(failures - 1, 60)))
        if self.jitter:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        if retry_after is not None and retry_after > 0:
            base = max(base, min(retry_after, self.max_retry_after_s))
        return max(0.0, base)


def parse_retry_after(value: str | bytes | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, or None when absent or unreadable.

    RFC 9110 section 10.2.3: either a non-negative number of seconds (``delay-seconds``) or an
    HTTP-date; a date in the past means "now" (0)."""
    if value is None:
        return None
    text = (value.decode("latin-1") if isinstance(value, bytes) else str(value)).strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _as_list(stop: StopSignal | Iterable[StopSignal | None] | None) -> list[StopSignal]:
    if stop is None:
        return []
    if isinstance(stop, threading.Event) or callable(stop):
        return [stop]
    return [s for s in stop if s is not None]


def stop_requested(stop: StopSignal | Iterable[StopSignal | None] | None) -> bool:
    """True when any of the stop signals is set."""
    return any(s.is_set() if isinstance(s, threading.Event) else bool(s()) for s in _as_list(stop))


def wait_or_stop(seconds: float, stop: StopSignal | Iterable[StopSignal | None] | None, tick_s: float = 0.1) -> bool:
    """Sleep up to ``seconds``; False as soon as a stop is requested (checked every ``tick_s``)."""
    stops = _as_list(stop)
    end = time.monotonic() + max(0.0, seconds)
    events = [s for s in stops if isinstance(s, threading.Event)]
    while True:
        if stop_requested(stops):
            return False
        left = end - time.monotonic()
        if left <= 0:
            return True
        step = min(tick_s, left)
        if len(events) == 1 and len(stops) == 1:
            if events[0].wait(step):
                return False
        else:
            time.sleep(step)


async def async_wait_or_stop(
    seconds: float, stop: StopSignal | Iterable[StopSignal | None] | None, tick_s: float = 0.05
) -> bool:
    """``wait_or_stop`` for a coroutine: sleeps without blocking the event loop; False as soon as
    a stop is requested (checked every ``tick_s``)."""
    stops = _as_list(stop)
    deadline = time.monotonic() + max(0.0, seconds)
    # the stop signals are threading.Events and callables, not asyncio ones: polled
    while not stop_requested(stops) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(max(0.0, min(tick_s, deadline - time.monotonic())))
    return not stop_requested(stops)


class Backoff:
    """The retry state of one activity (start-up, a batch, a sink's connection).

    ``failed`` counts a failure, logs one line and returns the delay; ``wait`` sleeps it
    interruptibly; ``succeeded`` resets. ``name`` says what is being retried in the log line.
    ``report`` (see :data:`REPORT_MODES`) says which failures are logged.
    """

    def __init__(
        self,
        name: str,
        policy: RetryPolicy | None = None,
        *,
        stop: StopSignal | Iterable[StopSignal | None] | None = None,
        logger: logging.Logger | None = None,
        rng: random.Random | None = None,
        report: str = "each",
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if report not in REPORT_MODES:
            raise ValueError(f"report must be one of {', '.join(REPORT_MODES)}")
        self.name = name
        self.policy = policy or RetryPolicy()
        self.stop = _as_list(stop)
        self.report = report
        self.failures = 0
        self.total_failures = 0
        self.last_reason = ""
        self._log = logger or logging.getLogger(__name__)
        self._rng = rng
        self._sleep = sleep

    @property
    def exhausted(self) -> bool:
        """True once ``max_attempts`` failures in a row were counted."""
        return self.policy.max_attempts is not None and self.failures >= self.policy.max_attempts

    def failed(self, reason: str, retry_after: float | None = None) -> float:
        """Count a failure; log it in one line (as ``report`` says); return the seconds to wait
        before the next try."""
        repeated = self.failures > 0 and reason == self.last_reason
        self.failures += 1
        self.total_failures += 1
        self.last_reason = reason
        delay = self.policy.delay(self.failures, retry_after, self._rng)
        hint = f" (server asked for {retry_after:.1f}s)" if retry_after else ""
        quiet = self.report == "none" or (self.report == "distinct" and repeated)
        if quiet:
            return delay
        if self.exhausted:
            self._log.warning("%s failed (attempt %d, giving up): %s", self.name, self.failures, _one_line(reason))
        else:
            self._log.warning(
                "%s failed (attempt %d): %s; retrying in %.1fs%s",
                self.name,
                self.failures,
                _one_line(reason),
                delay,
                hint,
            )
        return delay

    def succeeded(self) -> None:
        """Reset after a success (one INFO line when it follows failures)."""
        if self.failures and self.report != "none":
            self._log.info("%s succeeded after %d failed attempt(s)", self.name, self.failures)
        self.failures = 0

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless stopped first; False when stopped. With an injected ``sleep``
        the stop signals are checked before and after it (the sleep itself may raise to stop)."""
        if self._sleep is None:
            return wait_or_stop(seconds, self.stop)
        if stop_requested(self.stop):
            return False
        if seconds > 0:
            self._sleep(seconds)
        return not stop_requested(self.stop)

    def pause(self, reason: str, retry_after: float | None = None) -> None:
        """``failed`` + ``wait``; raises :class:`Stopped` when a stop came first."""
        if not self.wait(self.failed(reason, retry_after)):
            raise Stopped(f"{self.name}: stopped while waiting to retry ({_one_line(reason)})")


#: ``classify(exc)`` says what to do with an error: ``None`` re-raises it at once (not worth
#: retrying), a float retries after at least that many seconds (a Retry-After), ``True``/0.0
#: retries with the policy's backoff.
Classifier = Callable[[BaseException], float | bool | None]


def retry_call[T](
    fn: Callable[[], T],
    *,
    name: str,
    classify: Classifier,
    policy: RetryPolicy | None = None,
    stop: StopSignal | Iterable[StopSignal | None] | None = None,
    logger: logging.Logger | None = None,
    describe: Callable[[BaseException], str] | None = None,
    sleep: Callable[[float], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Call ``fn`` until it succeeds, a non-retryable error (re-raised), ``max_attempts``
    failures (the last error re-raised) or a stop (:class:`Stopped`).

    ``describe(exc)`` gives the reason in the log line (default ``Type: message``; a client
    whose message hides the cause, like elastic_transport's "Connection error", wants more).
    ``sleep``/``rng`` as for :class:`Backoff`."""
    backoff = Backoff(name, policy, stop=stop, logger=logger, rng=rng, sleep=sleep)
    while True:
        if stop_requested(backoff.stop):
            raise Stopped(f"{name}: stopped before it succeeded")
        try:
            result = fn()
        except Stopped:
            raise
        except Exception as exc:
            verdict = classify(exc)
            if verdict is None or verdict is False:
                raise
            retry_after = float(verdict) if not isinstance(verdict, bool) and verdict > 0 else None
            delay = backoff.failed(describe(exc) if describe else f"{type(exc).__name__}: {exc}", retry_after)
            if backoff.exhausted:
                raise
            if not backoff.wait(delay):
                raise Stopped(f"{name}: stopped while waiting to retry") from exc
            continue
        backoff.succeeded()
        return result


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
