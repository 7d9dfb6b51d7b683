"""Ships the journal to an event sink (Kafka, Elasticsearch), resuming after a crash.

Why not subscribe the sink to the engine directly: a sink keeps recent events in memory until the
broker acknowledges them, and a killed process would lose those. The journal already holds every
event durably and in order, so the shipper tails it (its own SQLite connection, never the
engine's thread), hands events to the sink, and moves a cursor stored in the journal forward only
once the sink reports them acknowledged (``flush()`` true). After a crash it starts again at the
cursor: events in flight at the crash are sent once more, and downstream stays exact because the
Elasticsearch document id is the event id (delivery to Kafka is at least once).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from infra.journal import Journal
from infra.topics import event_classes

__all__ = ["JournalShipper", "JournalledEvent"]

log = logging.getLogger(__name__)


class Sink(Protocol):
    def publish(self, event: Any) -> None: ...
    def flush(self, timeout: float = ...) -> bool: ...


@dataclass(frozen=True, slots=True)
class JournalledEvent:
    """An event as the journal stored it: what sinks need (family, symbol, JSON form)."""

    family: str
    symbol: str
    event_id: str
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.payload


class JournalShipper:
    """Tails ``journal_path`` from the cursor ``name`` and publishes to ``sink`` in journal order."""

    def __init__(self, journal_path: str | Path, sink: Sink, *, name: str = "kafka", batch: int = 5_000,
                 idle_s: float = 0.1, ack_timeout_s: float = 1.0) -> None:
        self.sink = sink
        self.name = name
        self.batch = batch
        self.idle_s = idle_s
        self.ack_timeout_s = ack_timeout_s
        self._journal = Journal(journal_path, sync="normal")
        self._families = {t: c.family for t, c in event_classes().items()}
        self.acked_seq = self._journal.cursor(name)  # durable: everything up to here was acknowledged
        self.published_seq = self.acked_seq  # handed to the sink in this process
        self.shipped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> JournalShipper:
        self._thread = threading.Thread(target=self._run, name=f"journal-shipper-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """Ship what the journal holds now, wait for the sink's acknowledgement, stop.
        Returns True when everything journalled was acknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.ship_available()
        done = self._ack(timeout)
        self._journal.close()
        return done

    def ship_available(self) -> int:
        """Publish every journalled event after ``published_seq``; returns how many."""
        n = 0
        while True:
            rows = self._journal.rows_after(self.published_seq, self.batch)
            if not rows:
                return n
            for seq, type_, symbol, payload in rows:
                doc = json.loads(payload)
                self.sink.publish(JournalledEvent(self._families.get(type_, "events"), symbol, doc["event_id"], doc))
                self.published_seq = seq
            n += len(rows)
            self.shipped += len(rows)

    def _ack(self, timeout: float) -> bool:
        if self.published_seq == self.acked_seq:
            return True
        if self.sink.flush(timeout):
            self.acked_seq = self.published_seq
            self._journal.set_cursor(self.name, self.acked_seq)
            return True
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                shipped = self.ship_available()
                self._ack(self.ack_timeout_s)
            except Exception:  # noqa: BLE001 - keep shipping; the cursor only moves on success
                log.exception("journal shipper %s failed; retrying", self.name)
                shipped = 0
            if not shipped:
                self._stop.wait(self.idle_s)
