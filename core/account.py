"""One paper account shared by several sessions (several symbols, strategies, intervals).

Why: a user who paper-trades ETHUSDT and BTCUSDT together has one wallet on the exchange, so the
risk limits that protect that wallet (``tradeconsole.core.risk``: maximum notional, daily loss,
orders per minute, number of open positions) must hold for the account, not once per session:
two sessions each under a 5,000 USDT notional cap can together hold 10,000.

How the money is kept: the account's cash is split equally across the sessions as their
*allocation*. Each session's broker (``SimulatedFuturesBroker``) keeps the ledger of its
allocation and sizes its entries from it, exactly as a backtest of that session alone with that
cash would, so a multi-symbol run gives per-session fills equal to single-symbol backtests
whenever no account-level limit binds. Because no session can stake more than its allocation,
the margin of all open positions together never exceeds the account's cash. The account's
equity is the sum of its sessions' equities (initial cash plus every session's realised and
unrealised PnL), and the limits are checked against that sum and against the positions open in
every session:

* ``max_positions``: no new entry while that many sessions hold a position or an entry waiting
  for its fill;
* ``max_notional``: the open notional of all sessions (positions at their last mark, waiting
  entries at the notional their stake buys) plus the new entry's stays under the cap; the new
  entry is reduced to fit, and refused once nothing fits;
* ``max_daily_loss``: measured on the account's equity since the UTC day's start; once crossed
  every session stops entering until 00:00 UTC;
* ``max_orders_per_minute``: entries of all sessions together.

A refused entry is published by the session as a signal with ``acted=False`` and the reason, and
the engine journals the reason as a ``risk`` error event naming the session (see
``AccountRisk.take_refusals``). Exits are never blocked.

Restart: the sessions' ledgers are journalled as their broker snapshots already; the account's
own state (the day's starting equity, a daily-loss halt, recent order times, the last equity and
mark of each session) is journalled with them (``SharedAccount.snapshot``) in the same
transaction, so a restart restores the account exactly.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from tradeconsole.core.risk import RiskLimits
from tradeconsole.core.session import Broker

__all__ = ["ACCOUNT_STATE_KEY", "AccountRisk", "SharedAccount"]

#: the journal key of the account's own state (session keys are ``SYMBOL:INTERVAL:STRATEGY``)
ACCOUNT_STATE_KEY = "@account"

_DAY_MS = 86_400_000


@dataclass(slots=True)
class _Member:
    key: str
    broker: Broker
    allocation: float
    leverage: float
    equity: float
    mark: float | None = None


class SharedAccount:
    """The account behind several sessions: its equity and the limits on it (see module doc)."""

    def __init__(self, initial_cash: float, limits: RiskLimits = RiskLimits()) -> None:
        if not (math.isfinite(initial_cash) and initial_cash > 0):
            raise ValueError("the account's initial cash must be a positive number")
        self.initial_cash = initial_cash
        self.limits = limits
        self._members: dict[str, _Member] = {}
        self._day = -1
        self._day_start_equity = 0.0
        self.halted_reason = ""
        self._orders: deque[int] = deque()

    # ------------------------------------------------------------------ membership
    def join(self, key: str, broker: Broker, allocation: float, leverage: float = 1.0) -> AccountRisk:
        """Add a session's broker with its allocation; returns the risk guard the session uses."""
        if key in self._members:
            raise ValueError(f"session {key} is already in the account")
        self._members[key] = _Member(key, broker, allocation, leverage, broker.cash)
        return AccountRisk(self, key)

    @property
    def keys(self) -> list[str]:
        return list(self._members)

    def mark(self, key: str, price: float) -> None:
        """The latest price of a session's symbol (the engine calls it on every price it sees)."""
        m = self._members[key]
        m.mark = price
        m.equity = m.broker.equity(price)

    # ------------------------------------------------------------------ queries
    def equity(self) -> float:
        """Initial cash plus every session's realised and unrealised PnL at its last mark."""
        return self.initial_cash + sum(m.equity - m.allocation for m in self._members.values())

    def cash(self) -> float:
        return self.initial_cash + sum(m.broker.cash - m.allocation for m in self._members.values())

    def open_keys(self, exclude: str | None = None) -> list[str]:
        """Sessions holding a position or an entry waiting for its fill."""
        return [k for k, m in self._members.items() if k != exclude and not m.broker.is_flat]

    def open_notional(self, exclude: str | None = None) -> float:
        """Notional (USDT) of every open position at its last mark, plus what each waiting entry
        will buy (its stake times leverage: the most it can fill at)."""
        total = 0.0
        for k, m in self._members.items():
            if k == exclude:
                continue
            pos = m.broker.position
            if pos is not None:
                total += pos.qty * (m.mark if m.mark is not None else pos.entry_price)
            pending = getattr(m.broker, "pending", None)
            if pending is not None:
                total += _pending_notional(pending, m.broker.cash, m.leverage)
        return total

    # ------------------------------------------------------------------ limits
    def observe(self, key: str, now_ms: int, equity: float) -> str | None:
        """A session's equity at ``now_ms``; tracks the account's daily loss. Returns the alert
        once, when the account first crosses the daily loss limit."""
        self._members[key].equity = equity
        account = self.equity()
        day = now_ms // _DAY_MS
        if day > self._day:
            self._day, self._day_start_equity = day, account
            self.halted_reason = ""
        lim = self.limits.max_daily_loss
        if lim is not None and not self.halted_reason and self._day_start_equity - account >= lim:
            self.halted_reason = (
                f"account daily loss limit reached ({self._day_start_equity - account:,.2f} >= "
                f"{lim:,.2f} USDT across {len(self._members)} sessions): no new entries until 00:00 UTC"
            )
            return self.halted_reason
        return None

    def allow_entry(self, key: str, now_ms: int) -> tuple[bool, str]:
        if self.halted_reason:
            return False, self.halted_reason
        lim = self.limits.max_orders_per_minute
        if lim is not None:
            while self._orders and now_ms - self._orders[0] >= 60_000:
                self._orders.popleft()
            if len(self._orders) >= lim:
                return False, f"account order rate limit: {lim} entries per minute across all sessions"
        n = self.limits.max_positions
        if n is not None:
            others = self.open_keys(exclude=key)
            if len(others) >= n:
                return False, (
                    f"account position limit: {len(others)} of {n} open ({', '.join(others)}); no entry for {key}"
                )
        cap = self.limits.max_notional
        if cap is not None:
            used = self.open_notional(exclude=key)
            if used >= cap:
                return False, (
                    f"account notional limit: {used:,.2f} of {cap:,.2f} USDT already open "
                    f"({', '.join(self.open_keys(exclude=key))}); no entry for {key}"
                )
        return True, ""

    def remaining_notional(self, key: str) -> float | None:
        cap = self.limits.max_notional
        return None if cap is None else max(0.0, cap - self.open_notional(exclude=key))

    def record_order(self, now_ms: int) -> None:
        self._orders.append(now_ms)

    # ------------------------------------------------------------------ persistence
    def snapshot(self) -> dict[str, Any]:
        """The account's own state, JSON-ready (the ledgers are the brokers' snapshots)."""
        return {
            "initial_cash": self.initial_cash,
            "day": self._day,
            "day_start_equity": self._day_start_equity,
            "halted_reason": self.halted_reason,
            "orders": list(self._orders),
            "sessions": {
                k: {"equity": m.equity, "mark": m.mark, "allocation": m.allocation} for k, m in self._members.items()
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from ``snapshot`` (after the brokers were restored). A journal of an account
        with other cash or sessions is refused: its numbers would mean nothing here."""
        if float(state["initial_cash"]) != self.initial_cash:
            raise ValueError(
                f"the journalled account started with {float(state['initial_cash']):,.2f} USDT, "
                f"not {self.initial_cash:,.2f}"
            )
        self._day = int(state["day"])
        self._day_start_equity = float(state["day_start_equity"])
        self.halted_reason = str(state["halted_reason"])
        self._orders = deque(int(t) for t in state["orders"])
        for k, s in state["sessions"].items():
            m = self._members.get(k)
            if m is None:
                continue  # a session no longer run: the resume identity check refuses that earlier
            m.equity = float(s["equity"])
            m.mark = None if s["mark"] is None else float(s["mark"])


def _pending_notional(pending: Any, cash: float, leverage: float) -> float:
    plan = getattr(pending, "plan", None)
    if plan is None:
        return cash * float(getattr(pending, "stake_fraction", 1.0)) * leverage
    if plan.sizing == "notional":
        return float(plan.size)
    if plan.sizing == "fraction":
        return cash * float(plan.size) * leverage
    return cash * leverage  # risk-based: at most what the wallet can margin


class AccountRisk:
    """The risk guard of one session in a shared account: the ``RiskGuard`` surface
    (``allow_entry``, ``stake_fraction``, ``observe_equity``, ``record_order``, ``limits``) that
    ``StrategySession`` calls, answered by the account for all sessions together."""

    def __init__(self, account: SharedAccount, key: str) -> None:
        self.account = account
        self.key = key
        self._refusals: list[str] = []

    @property
    def limits(self) -> RiskLimits:
        """The limits as they apply to this session's next entry: ``max_notional`` is what is
        left of the account's cap after the other sessions' open notional."""
        left = self.account.remaining_notional(self.key)
        lim = self.account.limits
        if left is None or left <= 0:
            return lim
        return RiskLimits(
            max_notional=left,
            max_daily_loss=lim.max_daily_loss,
            max_orders_per_minute=lim.max_orders_per_minute,
            max_positions=lim.max_positions,
        )

    @property
    def halted_reason(self) -> str:
        return self.account.halted_reason

    def allow_entry(self, now_ms: int) -> tuple[bool, str]:
        ok, why = self.account.allow_entry(self.key, now_ms)
        if not ok:
            self._refusals.append(why)
        return ok, why

    def stake_fraction(self, wanted: float, equity: float, leverage: float) -> float:
        left = self.account.remaining_notional(self.key)
        if left is None or equity <= 0:
            return wanted
        return min(wanted, left / (equity * leverage))

    def observe_equity(self, now_ms: int, equity: float) -> str | None:
        return self.account.observe(self.key, now_ms, equity)

    def record_order(self, now_ms: int) -> None:
        self.account.record_order(now_ms)

    def take_refusals(self) -> list[str]:
        """Entries the account refused since the last call (the engine journals each)."""
        out, self._refusals = self._refusals, []
        return out
