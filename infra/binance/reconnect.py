"""The one reconnect loop of the Binance websockets (market klines, user data stream).

Why one loop: the kline stream and the user data stream each had a hand-written supervisor
(connect, read until the connection ends, back off, reconnect) whose back-off, jitter and stop
handling had drifted apart. Both now run :class:`ReconnectLoop`: the back-off comes from the one
retry policy (``tradeconsole.infra.retry``: exponential with jitter, one log line per failure),
every wait ends as soon as the stop event is set, and a connection that worked starts the
back-off over. What a session is (the URL, the backfill, the listenKey, the reading) stays with
each stream; the loop only decides when to run the next one.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tradeconsole.infra.retry import Backoff, RetryPolicy, async_wait_or_stop, stop_requested

__all__ = ["ReconnectLoop", "SessionOutcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """How one connection ended. ``healthy``: it delivered valid messages, so the back-off
    starts over; ``scheduled``: we closed it on purpose (e.g. before Binance's 24-hour cut), so
    the next one connects at once; ``reason`` is shown in the status and the log."""

    healthy: bool
    scheduled: bool
    reason: str


class ReconnectLoop:
    """Run ``session()`` until ``stop`` is set, waiting the policy's back-off between sessions.

    ``on_reconnect(outcome, delay)`` runs after every session that ended while not stopping
    (for counters and statuses), before the wait. The session must return a
    :class:`SessionOutcome` for network trouble; what it raises ends the loop (cancellation,
    a stream's own stop signal)."""

    def __init__(
        self,
        name: str,
        stop: threading.Event,
        policy: RetryPolicy,
        *,
        rng: random.Random | None = None,
        logger: logging.Logger | None = None,
        on_reconnect: Callable[[SessionOutcome, float], None] | None = None,
    ) -> None:
        if policy.max_attempts is not None:
            raise ValueError("a reconnect loop never gives up: its policy must have max_attempts=None")
        self.name = name
        self.stop = stop
        self.backoff = Backoff(name, policy, stop=stop, logger=logger or log, rng=rng)
        self._on_reconnect = on_reconnect

    async def run(self, session: Callable[[], Awaitable[SessionOutcome]]) -> None:
        """Connect, read, reconnect, until stopped."""
        while not stop_requested(self.stop):
            outcome = await session()
            if stop_requested(self.stop):
                return
            if outcome.healthy:
                self.backoff.succeeded()
            delay = 0.0 if outcome.scheduled else self.backoff.failed(outcome.reason)
            if self._on_reconnect is not None:
                self._on_reconnect(outcome, delay)
            if not await async_wait_or_stop(delay, self.stop):
                return
