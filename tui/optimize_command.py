"""Where an optimisation's events go: one composition for ``tradeconsole optimize`` and the
console's optimise screen.

The optimiser (``tradeconsole.backtest.optimize``, no ``infra``) publishes an ``optimization_run``
start and finish (or interrupted) event and one ``optimization_trial`` per reported top trial
through the ``publish`` callable it is given. Here they are committed to the optimisation journal
(``journal-optimize.sqlite`` in the data directory, or ``--journal``) as they come, the run is
registered in its ``runs`` table and ended with its outcome, and afterwards the journal is shipped
to the sinks asked for with the same ``JournalShipper`` protocol as every run (exactly once: a
sink that does not acknowledge in time leaves the events in the journal, and whichever run ships
this journal next - CLI or console - sends them).

The CLI (``tradeconsole.tui.cli.optimize_main``) and the screen
(``tradeconsole.tui.screens.optimize``) both go through :func:`journalled` and :func:`ship_journal`,
so a console optimisation lands in the same journal with the same events as a command-line one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeconsole.core.errors import EnvironmentFailure

if TYPE_CHECKING:
    import argparse

    from tradeconsole.tui.runtime import SinkTargets

__all__ = ["OPTIMIZE_JOURNAL", "OptimisationJournal", "journalled", "optimize_journal_path", "ship_journal"]

#: the optimisation journal's file name in the data directory
OPTIMIZE_JOURNAL = "journal-optimize.sqlite"
#: seconds a sink gets to acknowledge an optimisation's events before they are left for later
SHIP_TIMEOUT_S = 30.0

# two shippers on one journal cursor at once (a console run finishing while the last one still
# ships) would race for the same cursor: shipping is one at a time in a process
_SHIP_LOCK = threading.Lock()


def optimize_journal_path(explicit: str | Path | None = None) -> Path:
    """``--journal`` when given, else ``journal-optimize.sqlite`` in the data directory."""
    if explicit:
        return Path(explicit)
    from tradeconsole.core.paths import journal_path

    return Path(journal_path(OPTIMIZE_JOURNAL))


class OptimisationJournal:
    """The optimisation journal, open for one run: ``publish`` is the optimiser's callable.

    The run is registered (``runs`` table, mode ``backtest``, with what was searched) on its first
    event, every event is committed at once (an optimisation publishes a handful), and ``close``
    ends the run with ``status``. Journal failures are ``EnvironmentFailure`` in one line: the
    CLI prints them, the screen shows them."""

    def __init__(self, path: str | Path | None, args: argparse.Namespace) -> None:
        from tradeconsole.infra.persistence.journal import Journal, JournalError

        self.path = optimize_journal_path(path)
        self.config = {
            "command": "optimize",
            "strategy": args.strategy,
            "objective": args.objective,
            "search": args.search,
        }
        try:
            self._journal = Journal(self.path, sync="normal")
        except JournalError as exc:  # in use by another process, damaged, not a journal
            raise EnvironmentFailure(f"cannot open the optimisation journal: {exc}") from None
        self.run_id: str | None = None
        #: how the run ended, stored by ``close``: finished, interrupted or failed
        self.status = "finished"

    def publish(self, event: Any) -> None:
        from tradeconsole.infra.persistence.journal import JournalError

        try:
            if self.run_id is None:
                self._journal.begin_run(event.run_id, "backtest", self.config)
                self.run_id = event.run_id
            self._journal.commit([event])
        except JournalError as exc:  # e.g. the disk is full: the run's events cannot be kept
            raise EnvironmentFailure(f"cannot journal the optimisation's events: {exc}") from None

    def close(self) -> None:
        try:
            if self.run_id is not None:
                self._journal.end_run(self.run_id, self.status)
        finally:
            self._journal.close()


@contextmanager
def journalled(path: str | Path | None, args: argparse.Namespace) -> Iterator[OptimisationJournal]:
    """The optimisation journal for the run of ``args`` (the ``optimize`` options): give the
    body's optimiser ``publish=journal.publish``. The run ends ``finished`` unless the body sets
    ``status``, ``interrupted`` on ``Interrupted``, ``failed`` on any other exception."""
    from tradeconsole.backtest.optimize.cli import Interrupted

    journal = OptimisationJournal(path, args)
    try:
        yield journal
    except Interrupted:
        journal.status = "interrupted"
        raise
    except BaseException:
        journal.status = "failed"
        raise
    finally:
        journal.close()


def ship_journal(path: str | Path, targets: SinkTargets, *, timeout: float = SHIP_TIMEOUT_S) -> list[str]:
    """Ship what the journal at ``path`` holds to ``targets``; returns one line per sink that did
    not acknowledge everything in time (the events stay journalled for the next run that ships)."""
    from tradeconsole.infra.persistence.shipper import JournalShipper

    problems: list[str] = []
    with _SHIP_LOCK:
        for sink in targets.build(path):
            try:
                done = JournalShipper(path, sink, name=sink.kind).start().stop(timeout=timeout)
            finally:
                sink.close()
            if not done:
                problems.append(
                    f"{sink.kind} did not acknowledge every event; they stay in the journal {path} "
                    "and are shipped by the next run"
                )
    return problems
