"""Sanity bounds for incoming candles, whatever their transport (websocket or REST backfill).

Why: a source's ordering logic trusts open times. One frame with ``t = now + 1 day`` used to
move a stream's "last delivered" mark a day ahead (every true candle after it was then dropped
as old), made gap fill ask REST for the future, and was journalled as the engine's
``last_open_time`` so a restart did not trade for a day either; ``t = 10**18`` crashed date
formatting; a frame at price 1.0 was traded on. These rules decide, before anything advances,
whether a candle is believable. Pure functions and small value classes: no I/O, no clock of
their own (the caller passes the exchange time), so they are unit-tested directly and shared by
``tradeconsole.infra.binance.market.stream`` (websocket and REST paths) and the engine's restart check.

Rules (each rejection has a short reason code, counted per reason by the caller):

* ``bad_value``: prices not finite and positive, volume not finite and >= 0;
* ``ohlc``: not ``low <= open, close <= high``;
* ``future``: open time beyond the currently open candle (exchange now + allowed skew);
* ``off_grid``: open time not on the interval's grid (weeks open on Mondays, see ``grid_start``);
* ``close_time``: ``close_time != open_time + interval - 1`` (Binance's kline layout);
* ``early_close``: a candle marked closed whose close time has not been reached yet;
* ``price_band``: open or close more than ``price_band`` (relative) away from the last accepted
  close of the pair, when that close is recent (``band_intervals`` intervals at most: after a
  longer silence the market may really have moved, and REST backfill re-anchors the band).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tradeconsole.core.domain import INTERVAL_MS, Candle

__all__ = [
    "REASONS",
    "AlarmLimiter",
    "ExchangeClock",
    "GuardSettings",
    "check_candle",
    "check_values",
    "current_open_time",
    "grid_start",
]

#: Every reason code ``check_candle`` can return, in the order the checks run.
REASONS = ("bad_value", "ohlc", "future", "off_grid", "close_time", "early_close", "price_band")

#: Weekly klines open on Mondays 00:00 UTC; 1970-01-05 was the first Monday after the epoch.
_GRID_ORIGIN_MS = {"1w": 4 * 86_400_000}


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Bounds, configurable per source.

    ``max_skew_ms``: how far the exchange clock estimate may be off (network delay, offset
    measurement error) before a timestamp counts as future. ``price_band``: largest believable
    relative move from the last accepted close (0.5 = 50%). ``band_intervals``: the band applies
    only while the reference close is at most this many intervals old.
    """

    max_skew_ms: int = 5_000
    price_band: float = 0.5
    band_intervals: int = 3

    def __post_init__(self) -> None:
        if not (isinstance(self.max_skew_ms, int) and self.max_skew_ms >= 0):
            raise ValueError(f"max_skew_ms must be an integer >= 0, not {self.max_skew_ms!r}")
        if not (isinstance(self.price_band, (int, float)) and math.isfinite(self.price_band) and 0 < self.price_band):
            raise ValueError(f"price_band must be a finite number > 0, not {self.price_band!r}")
        if not (isinstance(self.band_intervals, int) and self.band_intervals >= 1):
            raise ValueError(f"band_intervals must be an integer >= 1, not {self.band_intervals!r}")


def grid_start(ms: int, interval: str) -> int:
    """Open time of the ``interval`` candle that contains ``ms``."""
    step = INTERVAL_MS[interval]
    origin = _GRID_ORIGIN_MS.get(interval, 0)
    return origin + (ms - origin) // step * step


def current_open_time(now_ms: int, interval: str) -> int:
    """Open time of the candle that is open at exchange time ``now_ms``."""
    return grid_start(now_ms, interval)


def check_values(candle: Candle) -> str | None:
    """Reason code if prices/volume are not finite and positive or OHLC is inconsistent."""
    o, h, lo, c, v = candle.open, candle.high, candle.low, candle.close, candle.volume
    if not all(isinstance(x, float | int) and math.isfinite(x) and x > 0 for x in (o, h, lo, c)):
        return "bad_value"
    if not (isinstance(v, float | int) and math.isfinite(v) and v >= 0):
        return "bad_value"
    if not (lo <= min(o, c) and h >= max(o, c)):
        return "ohlc"
    return None


def check_candle(
    candle: Candle,
    interval: str,
    now_ms: int,
    *,
    last_close: float | None = None,
    last_open_time: int | None = None,
    settings: GuardSettings = GuardSettings(),
) -> str | None:
    """The first rule ``candle`` breaks (a code from ``REASONS``), or None if it is believable.

    ``now_ms`` is the exchange's current time (estimate). ``last_close``/``last_open_time`` are
    the pair's last accepted close and its candle's open time, the price band's reference.
    """
    reason = check_values(candle)
    if reason is not None:
        return reason
    step = INTERVAL_MS[interval]
    t = candle.open_time
    horizon = now_ms + settings.max_skew_ms
    if t > current_open_time(horizon, interval):  # first: the rule whose breach costs the most
        return "future"
    if grid_start(t, interval) != t:
        return "off_grid"
    if candle.close_time != t + step - 1:
        return "close_time"
    if candle.closed and candle.close_time > horizon:
        return "early_close"
    if (
        last_close is not None
        and last_open_time is not None
        and last_close > 0
        and 0 <= t - last_open_time <= settings.band_intervals * step
    ):
        band = settings.price_band
        for price in (candle.open, candle.high, candle.low, candle.close):  # a wick trips stops too
            if abs(price - last_close) > band * last_close:
                return "price_band"
    return None


@dataclass(slots=True)
class ExchangeClock:
    """The exchange's time as local clock plus a measured offset.

    ``sync`` takes a server time together with the local times just before the request was
    sent and just after the answer arrived; the server stamped its time somewhere in between,
    so the midpoint is the best estimate and half the round trip bounds the error.
    """

    offset_ms: float | None = None
    error_ms: float = 0.0

    def sync(self, server_ms: int, sent_local_ms: float, received_local_ms: float) -> None:
        rtt = max(0.0, received_local_ms - sent_local_ms)
        self.offset_ms = server_ms - (sent_local_ms + rtt / 2)
        self.error_ms = rtt / 2

    @property
    def synced(self) -> bool:
        return self.offset_ms is not None

    def now(self, local_ms: float) -> int:
        """Estimated exchange time at local time ``local_ms`` (the local clock if never synced)."""
        return int(local_ms + (self.offset_ms or 0.0))


@dataclass(slots=True)
class AlarmLimiter:
    """Rate limit for alarms, so a hostile stream cannot flood the UI and the journal: at most
    ``burst`` alarms, then one per ``period_s``; suppressed alarms are counted and reported
    with the next one that passes."""

    period_s: float = 10.0
    burst: int = 3
    _tokens: float = field(default=-1.0, repr=False)
    _last: float | None = field(default=None, repr=False)
    suppressed: int = 0

    def allow(self, now_s: float, record: bool = True) -> bool:
        """True if an alarm may be raised at monotonic time ``now_s``. A refusal is counted as
        a suppressed alarm unless ``record`` is False (a retry of an already counted one)."""
        if self._last is None:
            self._tokens = float(self.burst)
        else:
            self._tokens = min(float(self.burst), self._tokens + (now_s - self._last) / self.period_s)
        self._last = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if record:
            self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        """How many alarms were suppressed since the last call (and reset)."""
        n, self.suppressed = self.suppressed, 0
        return n
