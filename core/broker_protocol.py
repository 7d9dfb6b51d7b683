"""The whole surface a broker offers the engine and the strategy session, as one Protocol.

Why a Protocol here, in ``core``: the engine and ``StrategySession`` drive the simulated broker
(``tradeconsole.core.broker.SimulatedFuturesBroker``) and the live Binance broker
(``tradeconsole.infra.binance.execution.broker.BinanceFuturesBroker``) through the same calls.
When the engine had to find the optional ones with ``getattr``/``hasattr``, a typo or a missing
method went unnoticed and silently switched a behaviour off (no restore after a restart, no
reconcile). Both brokers now subclass :class:`Broker` explicitly and define every method, with a
documented no-op where a broker has nothing to do (the simulator has no exchange to reconcile;
the live broker's market entries are never pending). The broker contract suite
(``tests/brokers``) checks ``isinstance(b, Broker)`` and that each member below is defined by
both classes themselves, not inherited from this Protocol.

Not in the Protocol: the simulator's managed-exit hooks (``submit_exit``,
``fill_pending_exit``, ``pending_exit``), which the live broker does not support, so a
strategy with managed exits cannot run live by mistake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tradeconsole.core.domain import Candle, Fill, FillReason, Position, Side, Trade

if TYPE_CHECKING:  # core.broker imports this module
    from tradeconsole.core.broker import ExitPlan

__all__ = ["BROKER_MEMBERS", "Broker", "PendingEntry"]


class PendingEntry(Protocol):
    """An entry decided on a closed candle but not filled yet (realistic paper fills at the next
    open); the engine needs its side and client order id to publish its cancellation."""

    @property
    def side(self) -> Side: ...
    @property
    def order_id(self) -> str: ...


@runtime_checkable
class Broker(Protocol):
    """One symbol's account: entries, exits, equity, persistence and exchange checks."""

    symbol: str
    position: Position | None
    cash: float
    #: the entry waiting for the next open, if any (None for brokers that fill at once); a plain
    #: attribute, not a property, so the simulator can assign it
    pending: PendingEntry | None

    # ------------------------------------------------------------------ account
    @property
    def is_flat(self) -> bool:
        """No position and no pending entry."""
        ...

    def equity(self, mark: float) -> float:
        """Cash plus unrealised PnL at ``mark``; never an exchange call."""
        ...

    def start(self) -> None:
        """Prepare the account before the first candle (live: clock, filters, modes, leverage).
        Idempotent; raises on an account the broker refuses."""
        ...

    # ------------------------------------------------------------------ per-candle flow
    def check_feed(self, source: str) -> None:
        """Raise when a candle from ``source`` must not drive this broker (live: a replay)."""
        ...

    def on_candle_open(self, candle: Candle) -> Fill | None:
        """A new candle opened: fill a pending entry at its open, if any."""
        ...

    def on_candle(self, candle: Candle) -> list[tuple[Fill, Trade | None]]:
        """A candle closed: the fills (and round trips) it caused."""
        ...

    def submit_entry(
        self,
        side: Side,
        candle: Candle,
        order_id: str,
        stop_loss_pct: float,
        take_profit_pct: float,
        stake_fraction: float = 1.0,
        plan: ExitPlan | None = None,
    ) -> Fill | None:
        """Enter on a signal at ``candle``'s close; None when not filled now (or not flat).
        ``plan`` carries a strategy's declared exits and sizing (paper only: the live runtime
        refuses such strategies before start)."""
        ...

    def cancel_pending(self) -> bool:
        """Drop a pending entry; True when there was one."""
        ...

    # ------------------------------------------------------------------ managed exits (paper)
    # A strategy's exit signal or time exit is decided by the session on a closed candle. Only
    # the simulator trades them; the live runtime refuses such strategies before anything is sent
    # (``Runtime._refuse_unsupported_exits``), and the live broker says so if it is ever asked.
    #: the FillReason value of an exit decided but not filled yet (fills at the next open); a
    #: plain attribute like ``pending``
    pending_exit: str | None

    def submit_exit(self, candle: Candle, reason: FillReason) -> tuple[Fill, Trade] | None:
        """Close on a decision taken at ``candle``'s close; None when it fills at the next open."""
        ...

    def fill_pending_exit(self, candle: Candle) -> tuple[Fill, Trade] | None:
        """Fill the pending exit at ``candle``'s open, if any."""
        ...

    def take_dropped(self) -> Sequence[Any]:
        """Entries dropped since the last call (each with ``side``, ``order_id``,
        ``next_open_time`` and ``note``), for the session to publish once."""
        ...

    def flatten(self, price: float, time: int, reason: FillReason = ...) -> tuple[Fill, Trade] | None:
        """Close the position now (kill switch); None when already flat."""
        ...

    # ------------------------------------------------------------------ live exchange
    def apply_stream_event(self, event: dict[str, Any]) -> list[tuple[Fill, Trade | None]]:
        """Apply one account stream event; the exits it completed."""
        ...

    def on_stream_gap(self) -> list[tuple[Fill, Trade | None]]:
        """The account stream was interrupted: reconcile and return the exits found."""
        ...

    def reconcile(self) -> Sequence[Any]:
        """Compare with the exchange and resolve each mismatch; one finding (``str()`` gives its
        one-line message) per mismatch, empty when everything matched."""
        ...

    def take_stop_move(self) -> tuple[float, float] | None:
        """The trailing stop's move since the last call as (from, to) prices, or None (a broker
        without trailing stops always returns None)."""
        ...

    @property
    def entry_order_id(self) -> str:
        """The client order id of the open position's entry ("" when flat): the stem of its
        exit and protective orders' ids."""
        ...

    def take_alerts(self) -> list[str]:
        """Alerts raised since the last call (e.g. protection could not be placed)."""
        ...

    # ------------------------------------------------------------------ persistence
    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state to journal (never credentials)."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``snapshot()``."""
        ...


#: Every member of the Protocol, for the contract suite's "defined by both brokers" check.
BROKER_MEMBERS: tuple[str, ...] = (
    "symbol",
    "position",
    "cash",
    "is_flat",
    "pending",
    "equity",
    "start",
    "check_feed",
    "on_candle_open",
    "on_candle",
    "submit_entry",
    "cancel_pending",
    "take_dropped",
    "flatten",
    "apply_stream_event",
    "on_stream_gap",
    "reconcile",
    "take_alerts",
    "snapshot",
    "restore",
    "pending_exit",
    "submit_exit",
    "fill_pending_exit",
    "take_stop_move",
    "entry_order_id",
)
