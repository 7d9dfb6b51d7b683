"""Ships the journal to an event sink (Kafka, Elasticsearch), resuming after a crash.

Why not subscribe the sink to the engine directly: a sink keeps recent events in memory until the
broker acknowledges them, and a killed process would lose those. The journal already holds every
event durably and in order, so the shipper tails it (its own SQLite connection, never the
engine's thread), hands events to the sink, and moves a cursor stored in the journal forward only
once the sink reports them acknowledged. The journal cursor is the one record of what is unsent:
a sink keeps no durable copy of its own that a restart would replay a second time.

Two protocols, chosen by what the sink offers:

* **Exactly once** (a :class:`~tradeconsole.infra.sinks.protocol.JournalFedSink`, such as
  ``KafkaSink(journal_fed=True)``, with ``progress``/``ready``/``delivered_seqs``). The shipper
  publishes at most ``window`` unacknowledged events, tagged with
  their journal seq and the sink's current epoch, and only while the sink is connected, so during
  an outage events simply wait in the journal ("ship from the journal later"), in memory there is
  never more than the window, and nothing reaches a disk spool. The sink resolves records in
  publish order, so once ``progress()`` counts a batch as resolved the cursor moves to the batch's
  last seq. When the sink starts a new epoch (it dropped everything unacknowledged after a failed
  delivery) and at every start, the shipper goes back to its cursor and, as soon as the broker
  answers, reads back which journal seqs after the cursor Kafka already holds
  (``delivered_seqs``): those are skipped, the rest sent. A crash between Kafka's acknowledgement
  and the cursor write therefore duplicates nothing.
  ``ElasticsearchSink(journal_fed=True)`` uses the same windowed protocol; its read-back is empty
  and asks nothing of the server: its document id is the event id, so what it resends after the
  cursor comes back as a 409 duplicate, never a second document.
* **At least once** (any other :class:`~tradeconsole.infra.sinks.protocol.Sink`): publish what
  the journal holds, move the cursor when ``flush()`` reports everything acknowledged.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tradeconsole.infra.persistence.journal import Journal
from tradeconsole.infra.retry import Backoff, RetryPolicy
from tradeconsole.infra.sinks.protocol import JournalFedSink, Sink
from tradeconsole.infra.sinks.topics import event_classes

__all__ = ["JournalShipper", "JournalledEvent"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JournalledEvent:
    """An event as the journal stored it: what sinks need (family, symbol, JSON form), its journal
    ``seq`` and the sink ``epoch`` it was published in (exactly-once protocol)."""

    family: str
    symbol: str
    event_id: str
    payload: dict[str, Any]
    seq: int = 0
    epoch: int = 0

    def to_dict(self) -> dict[str, Any]:
        return self.payload


class JournalShipper:
    """Tails ``journal_path`` from the cursor ``name`` (default: the sink's ``kind``) and publishes
    to ``sink`` in journal order."""

    def __init__(
        self,
        journal_path: str | Path,
        sink: Sink,
        *,
        name: str | None = None,
        batch: int = 5_000,
        idle_s: float = 0.1,
        ack_timeout_s: float = 1.0,
        window: int = 20_000,
    ) -> None:
        self.sink = sink
        self.name = name or sink.kind
        self.batch = batch
        self.idle_s = idle_s
        self.ack_timeout_s = ack_timeout_s
        self.window = max(1, window)
        self._journal = Journal(journal_path, sync="normal")
        self._families = {t: c.family for t, c in event_classes().items()}
        self.acked_seq = self._journal.cursor(name)  # durable: everything up to here was acknowledged
        self.published_seq = self.acked_seq  # handed to the sink (or skipped) in this process
        self.shipped = 0
        #: events after the cursor found already in Kafka by a read-back, and not sent again
        self.skipped = 0
        #: read-backs done (one at start, one after each epoch the sink dropped)
        self.reconciles = 0
        #: journal events not yet acknowledged (approximate; for the status line)
        self.backlog = 0
        # a sink made with journal_fed=True; any other sink gets the at-least-once protocol
        self.exactly_once = sink.journal_fed
        self._fed: JournalFedSink | None = cast(JournalFedSink, sink) if sink.journal_fed else None
        self._epoch: int | None = None  # None: a read-back is due before anything is published
        self._reconciled = False
        self._skip: set[int] = set()
        self._ep_published = 0  # records published in the current epoch
        self._marks: deque[tuple[int, int]] = deque()  # (records published in epoch so far, last seq)
        self._source: str | None = None
        self._fresh_source = False
        self._stop = threading.Event()
        # the one retry policy (infra/retry.py): a failed round is tried again after 1 s, logged
        # once per distinct failure rather than once a second
        self._retry = Backoff(
            f"journal shipper {self.name}",
            RetryPolicy(initial_s=1.0, max_s=1.0, multiplier=1.0, jitter=0.0),
            stop=self._stop,
            logger=log,
            report="distinct",
        )
        self._thread: threading.Thread | None = None

    def start(self) -> JournalShipper:
        self._thread = threading.Thread(target=self._run, name=f"journal-shipper-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0, *, unreachable_grace_s: float = 3.0) -> bool:
        """Ship what the journal holds now, wait for the sink's acknowledgement, stop.

        Returns True when everything journalled was acknowledged. An exactly-once sink that is not
        connected gets ``unreachable_grace_s`` to come back (an outage must not hold a shutdown
        for the whole ``timeout``); what is left stays in the journal for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            if not self.exactly_once:
                self.ship_available()
                return self._ack(timeout)
            deadline = time.monotonic() + timeout
            down_since: float | None = None
            while True:
                now = time.monotonic()
                if self.ready_to_stop():
                    return True
                if now >= deadline:
                    return False
                if self._fed_sink().ready():
                    down_since = None
                else:
                    down_since = down_since or now
                    if now - down_since >= unreachable_grace_s:
                        return False
                try:
                    did = self.step()
                except Exception:  # shutting down: report, keep the journal
                    log.exception("journal shipper %s failed while stopping", self.name)
                    return False
                if not did:
                    time.sleep(0.01)
        finally:
            self._journal.close()

    def ready_to_stop(self) -> bool:
        """Everything the journal holds is acknowledged (exactly-once protocol)."""
        if self._marks or not self._reconciled:
            return False
        return not self._journal.rows_after(self.published_seq, 1)

    # ------------------------------------------------------------------ at least once
    def ship_available(self) -> int:
        """Publish every journalled event after ``published_seq``; returns how many."""
        n = 0
        while True:
            rows = self._journal.rows_after(self.published_seq, self.batch)
            if not rows:
                return n
            for seq, type_, symbol, payload in rows:
                self.sink.publish(self._event(seq, type_, symbol, payload, 0))
                self.published_seq = seq
            n += len(rows)
            self.shipped += len(rows)

    def _event(self, seq: int, type_: str, symbol: str, payload: str, epoch: int) -> JournalledEvent:
        doc = json.loads(payload)
        return JournalledEvent(self._families.get(type_, "events"), symbol, doc["event_id"], doc, seq, epoch)

    def _ack(self, timeout: float) -> bool:
        if self.published_seq == self.acked_seq:
            return True
        if self.sink.flush(timeout):
            self.acked_seq = self.published_seq
            self._journal.set_cursor(self.name, self.acked_seq)
            return True
        return False

    # ------------------------------------------------------------------ exactly once
    def step(self) -> bool:
        """One round of the exactly-once protocol; True when it did something."""
        sink = self._fed_sink()
        epoch, resolved = sink.progress()
        if epoch != self._epoch:
            # first round, or the sink dropped everything unacknowledged: back to the cursor, and
            # find out what of it did reach Kafka before sending anything again
            if self._epoch is not None:
                log.info(
                    "journal shipper %s: delivery interrupted; resending from seq %d after a read-back",
                    self.name,
                    self.acked_seq + 1,
                )
            self._epoch, self._reconciled = epoch, False
            self.published_seq = self.acked_seq
            self._ep_published = 0
            self._marks.clear()
        did = False
        moved = False
        while self._marks and resolved >= self._marks[0][0]:
            self.acked_seq = self._marks.popleft()[1]
            moved = True
        if not self._marks and self._reconciled and self.published_seq > self.acked_seq:
            self.acked_seq = self.published_seq  # the tail was skipped (already in Kafka)
            moved = True
        if moved:
            self._journal.set_cursor(self.name, self.acked_seq)
            self._skip = {s for s in self._skip if s > self.acked_seq}
            did = True
        if not sink.ready():
            return did
        if not self._reconciled:
            source = self._journal_source()
            # a sink that deduplicates by itself (Elasticsearch: _id = event id) reads back nothing
            found = set() if self._fresh_source else sink.delivered_seqs(source, self.acked_seq)
            self._fresh_source = False
            if sink.progress()[0] != epoch:
                return True  # the sink failed again meanwhile; start over next round
            self._skip = found
            self._reconciled = True
            self.reconciles += 1
            if found:
                log.info(
                    "journal shipper %s: %d event(s) after the cursor are already in Kafka; not sent again",
                    self.name,
                    len(found),
                )
            return True
        room = self.window - (self._ep_published - resolved)
        if room <= 0:
            return did
        rows = self._journal.rows_after(self.published_seq, min(self.batch, room))
        if not rows:
            self.backlog = self._ep_published - resolved
            return did
        n = 0
        for seq, type_, symbol, payload in rows:
            if seq in self._skip:
                self.skipped += 1
            else:
                sink.publish(self._event(seq, type_, symbol, payload, epoch))
                n += 1
            self.published_seq = seq
        if n:
            self._ep_published += n
            self._marks.append((self._ep_published, self.published_seq))
            self.shipped += n
        self.backlog = self._ep_published - resolved
        return True

    def _journal_source(self) -> str:
        """The journal's identity for the sink's ``tc-src`` header: a random number drawn once and
        kept in the journal's cursor table (``<name>.source``), so it survives restarts and any
        retention that deletes old events, and two journals never share it."""
        if self._source is None:
            key = f"{self.name}.source"
            ident = self._journal.cursor(key)
            if not ident:
                ident = secrets.randbits(62) | 1
                self._journal.set_cursor(key, ident)
                self._fresh_source = True  # nothing can carry it yet: no read-back needed
            self._source = f"{ident:x}"
            self._fed_sink().set_source(self._source)
        return self._source

    def _fed_sink(self) -> JournalFedSink:
        if self._fed is None:
            raise TypeError(f"{self.sink!r} is not journal-fed: it has no exactly-once protocol")
        return self._fed

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.exactly_once:
                    shipped = self.step()
                else:
                    shipped = self.ship_available()
                    self._ack(self.ack_timeout_s)
            except Exception as exc:  # keep shipping; the cursor only moves on success
                # e.g. the broker went away during a read-back: one line, the details at debug
                log.debug("journal shipper %s failure", self.name, exc_info=True)
                self._retry.wait(self._retry.failed(f"{type(exc).__name__}: {exc}"))
                continue
            self._retry.succeeded()
            if not shipped:
                self._stop.wait(0.01 if self.exactly_once and self._marks else self.idle_s)
