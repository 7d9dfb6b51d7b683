"""Risk limits applied before any new entry, in every mode.

* ``max_notional``: cap on a position's notional (USDT); the stake is reduced to fit.
* ``max_daily_loss``: once equity has fallen this much (USDT) below the day's starting equity
  (UTC day), no new entries until the next day; the engine publishes an alert.
* ``max_orders_per_minute``: entries beyond this many in a rolling minute are refused.
* ``max_positions``: no new entry while this many positions (or entries waiting for their
  fill) are open; it matters for an account shared by several sessions
  (``tradeconsole.core.account``), where every limit above applies to the account as a whole.

Exits are never blocked by risk limits: protecting a position always goes through.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tradeconsole.core.broker import ExitPlan

__all__ = ["RiskGuard", "RiskLimits"]

_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The limits; None disables one. Checked on construction: a negative, zero, NaN or infinite
    limit would silently block every entry or none, so it is refused with the allowed range."""

    max_notional: float | None = None
    max_daily_loss: float | None = None
    max_orders_per_minute: int | None = 10
    max_positions: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_notional", "max_daily_loss"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{name} must be a number (USDT), not {type(v).__name__}")
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name}={v:g} is out of range: allowed a finite number > 0 (USDT)")
        n = self.max_orders_per_minute
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int):
                raise ValueError(f"max_orders_per_minute must be a whole number, not {type(n).__name__}")
            if not 1 <= n <= 10_000:
                raise ValueError(f"max_orders_per_minute={n} is out of range: allowed 1..10000")
        m = self.max_positions
        if m is not None:
            if isinstance(m, bool) or not isinstance(m, int):
                raise ValueError(f"max_positions must be a whole number, not {type(m).__name__}")
            if not 1 <= m <= 10_000:
                raise ValueError(f"max_positions={m} is out of range: allowed 1..10000")


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

    def limit_plan(self, plan: ExitPlan, equity: float, leverage: float) -> ExitPlan:
        """``plan`` under the limits, whatever its sizing rule: a fraction of equity is reduced
        as ``stake_fraction`` does, and every rule (fraction, fixed notional, risk per trade,
        whose size depends on the stop distance known only at the fill) carries ``max_notional``
        for the broker to cap the quantity at the fill price. The leverage cap (margin + fee
        within the wallet) is the broker's, for every rule too."""
        cap = self.limits.max_notional
        if cap is None:
            return plan
        if plan.sizing == "fraction":
            plan = replace(plan, size=self.stake_fraction(plan.size, equity, leverage))
        return replace(plan, max_notional=cap if plan.max_notional is None else min(cap, plan.max_notional))

    def observe_equity(self, now_ms: int, equity: float) -> str | None:
        """Track the day's loss; returns an alert message when the limit is first crossed."""
        day = now_ms // _DAY_MS
        if day != self._day:
            self._day, self._day_start_equity = day, equity
            self.halted_reason = ""
        lim = self.limits.max_daily_loss
        if lim is not None and not self.halted_reason and self._day_start_equity - equity >= lim:
            self.halted_reason = (
                f"daily loss limit reached ({self._day_start_equity - equity:,.2f} >= {lim:,.2f} USDT):"
                " no new entries until 00:00 UTC"
            )
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
