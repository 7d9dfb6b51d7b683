"""``tradeconsole backtest``'s composition: where a backtest's events go.

The run and its report are ``tradeconsole.backtest.cli.main`` (which never imports ``infra``).
Without ``--kafka`` this is a plain call. With ``--kafka`` the events take the path every other
run's events take (README "How it fits together"): the engine's writer appends them to a
journal, and a ``JournalShipper`` delivers the journal to a journal-fed ``KafkaSink`` with the
exactly-once protocol (ids and journal seqs; the shipper reads back what Kafka already holds
before sending, so nothing arrives twice). Before, the command published straight to a spooled
Kafka sink, around the journal.

Which journal: ``--journal PATH`` when given (a later ``backtest --kafka --journal PATH`` then
resumes shipping whatever Kafka did not acknowledge, as the console does), else a temporary one
that is deleted when the command ends. A temporary journal is the default because a backtest is a
pure function of its data and settings: nothing is lost that a rerun cannot recreate, and a
journal kept in the data directory would grow by every candle of every backtest ever run. What
Kafka has not acknowledged when the command ends is therefore reported as an error (exit 1),
never silently dropped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeconsole.core.errors import EnvironmentFailure, UserError

if TYPE_CHECKING:
    from tradeconsole.core.events import Event
    from tradeconsole.infra.persistence.journal import Journal

__all__ = ["JournalWriter", "main"]

#: seconds the shipper gets to have every event acknowledged, and to wait for an unreachable broker
SHIP_TIMEOUT_S = 120.0
UNREACHABLE_GRACE_S = 5.0


class JournalWriter:
    """The backtest's event writer: buffers events and commits them to the journal in batches
    (one SQLite transaction per event would cost more than the backtest itself); the shipper
    tails the journal meanwhile. Registers the run (``runs`` table, mode ``backtest``) on its
    first event so the journal says what wrote it."""

    def __init__(self, journal: Journal, *, batch: int = 2_000) -> None:
        self.journal = journal
        self.batch = batch
        self._buf: list[Event] = []
        self.run_id: str | None = None
        self.written = 0

    def publish(self, event: Event) -> None:
        if self.run_id is None:
            self.run_id = event.run_id
            self.journal.begin_run(event.run_id, "backtest", {"command": "backtest"})
        self._buf.append(event)
        if len(self._buf) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            events, self._buf = self._buf, []
            dup = self.journal.commit(events)
            self.written += len(events) - len(dup)


def _kafka_sink(bootstrap: str, settings: Any) -> Any:
    """A journal-fed Kafka sink with the config's topic prefix and security options (as the
    console's runtime builds it; secrets are revealed only here, never logged)."""
    from tradeconsole.infra.sinks.kafka import KafkaSink

    security = {
        k: (v.reveal() if hasattr(v, "reveal") else v)
        for k, v in settings.kafka.items()
        if k not in ("bootstrap", "topic_prefix")
    }
    return KafkaSink(
        bootstrap,
        topic_prefix=settings.kafka.get("topic_prefix", "tradeconsole"),
        security=security or None,
        journal_fed=True,
    )


def main(args: argparse.Namespace) -> int:
    """``tradeconsole backtest``: the run (``tradeconsole.backtest.cli.main``), with its events
    journalled and shipped to Kafka when ``--kafka`` asks (topic prefix and security from the
    config's ``[kafka]`` table)."""
    from tradeconsole.backtest import cli as backtest_cli

    if not args.kafka:
        if args.journal:  # a journal nobody ships would be written for nothing
            raise UserError("--journal keeps the events --kafka ships; without --kafka a backtest writes no journal")
        return backtest_cli.main(args)
    from tradeconsole.infra.persistence.journal import Journal
    from tradeconsole.infra.persistence.shipper import JournalShipper
    from tradeconsole.infra.settings import load_settings

    settings = load_settings(args.config)
    tmp = None if args.journal else tempfile.TemporaryDirectory(prefix="tradeconsole-backtest-")
    path = Path(args.journal) if args.journal else Path(tmp.name) / "journal.sqlite"  # type: ignore[union-attr]
    journal = Journal(path, sync="normal")
    sink = shipper = None
    done = failed = False
    try:
        writer = JournalWriter(journal)
        sink = _kafka_sink(args.kafka, settings)
        shipper = JournalShipper(journal.path, sink, name="kafka").start()
        try:
            code = backtest_cli.main(args, publish=writer.publish)
        except BaseException:
            failed = True  # a refused option or bad data: nothing worth waiting for Kafka over
            raise
        writer.flush()
        if writer.run_id is not None:
            journal.end_run(writer.run_id, "finished")
    finally:
        try:
            if shipper is not None:
                done = (
                    shipper.stop(1.0, unreachable_grace_s=0.5)
                    if failed
                    else shipper.stop(SHIP_TIMEOUT_S, unreachable_grace_s=UNREACHABLE_GRACE_S)
                )
            if sink is not None:
                sink.close()
        finally:
            journal.close()
            if tmp is not None:
                tmp.cleanup()
    if not done:
        where = (
            f"they stay in {args.journal}; run again with the same --journal to resend them"
            if args.journal
            else "the temporary journal is gone; rerun the backtest (or give --journal PATH "
            "to keep undelivered events for a later run)"
        )
        raise EnvironmentFailure(f"Kafka at {args.kafka} did not acknowledge every event of the backtest: {where}")
    print(f"shipped {writer.written} events to Kafka at {args.kafka}", file=sys.stderr)
    return code
