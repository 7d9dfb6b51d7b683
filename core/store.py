"""What the engine needs from a durable store (``tradeconsole.infra.persistence.journal.Journal`` implements it).

Defined in ``core`` so the engine depends on an interface, not on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from tradeconsole.core.events import Event

__all__ = ["EventStore", "SessionState", "StoreError"]


class StoreError(Exception):
    """A durable-store failure whose message already names the root cause in one line.

    Why a ``core`` type: the engine must tell "the journal cannot write" (report exactly that and
    stop, a supervisor restarts the process) from a bug (report with a traceback) without
    importing the SQLite adapter. ``tradeconsole.infra.persistence.journal.JournalError`` derives from it.
    """


@dataclass(frozen=True, slots=True)
class SessionState:
    """A session's account state at the last processed candle."""

    session_key: str
    run_id: str
    snapshot: dict[str, Any]
    last_open_time: int


class EventStore(Protocol):
    def commit(self, events: Iterable[Event], states: Iterable[SessionState] = ()) -> set[str]:
        """Persist atomically; return the ids that were already stored (not to deliver again)."""

    def session_state(self, session_key: str) -> SessionState | None: ...
    def begin_run(self, run_id: str, mode: str, config: dict[str, Any]) -> None: ...
    def end_run(self, run_id: str, status: str = "stopped") -> None: ...
