"""Risk limits applied before any new entry, in every mode.

* ``max_notional``: cap on a position's notional (USDT); the stake is reduced to fit.
* ``max_daily_loss``: once equity has fallen this much (USDT) below the day's starting equity
  (UTC day), no new entries until the next day; the engine publishes an alert.
* ``max_orders_per_minute``: entries beyond this many in a rolling minute are refused.

Exits are never blocked by risk limits: protecting a position always goes through.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["RiskGuard", "RiskLimits"]

_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_notional: float | None = None
    max_daily_loss: float | None = None
    max_orders_per_minute: int | None = 10


class RiskGuard:
    """Stateful checker for one session (times are the engine's event times, in ms)."""

    def __init__(self, limits: RiskLimits = RiskLimits()) -> None:
        self.limits = limits
        self._day = -1
        self._day_start_equity = 0.0
        self._orders: deque[int] = deque()
        self.halted_reason = ""

    def stake_fraction(self, wanted: float, equity: float, leverage: float) -> float:
        cap = self.limits.max_notional
        if cap is None or equity <= 0:
            return wanted
        return min(wanted, cap / (equity * leverage))

    def observe_equity(self, now_ms: int, equity: float) -> str | None:
        """Track the day's loss; returns an alert message when the limit is first crossed."""
        day = now_ms // _DAY_MS
        if day != self._day:
            self._day, self._day_start_equity = day, equity
            self.halted_reason = ""
        lim = self.limits.max_daily_loss
        if lim is not None and not self.halted_reason and self._day_start_equity - equity >= lim:
            self.halted_reason = (f"daily loss limit reached ({self._day_start_equity - equity:,.2f} >= {lim:,.2f} USDT):"
                                  " no new entries until 00:00 UTC")
            return self.halted_reason
        return None

    def allow_entry(self, now_ms: int) -> tuple[bool, str]:
        if self.halted_reason:
            return False, self.halted_reason
        lim = self.limits.max_orders_per_minute
        if lim is not None:
            while self._orders and now_ms - self._orders[0] >= 60_000:
                self._orders.popleft()
            if len(self._orders) >= lim:
                return False, f"order rate limit: {lim} entries per minute"
        return True, ""

    def record_order(self, now_ms: int) -> None:
        self._orders.append(now_ms)
