"""Kafka sink: the engine hands events over without ever waiting; a producer thread delivers them.

How an event travels
--------------------
``publish(event)`` (engine thread) hands the event to an :class:`~tradeconsole.infra.sinks.spool.EventInbox`: a
bounded in-memory deque, with an overflow file in the spool directory when the deque is full. It
returns at once; nothing in it waits for the network or for the disk.

The producer thread serialises events (``to_dict()`` then orjson, or json when orjson is missing),
and sends them with kafka-python: ``acks=all``, gzip compression, the idempotent producer with one
request in flight per connection, to the partition of the symbol key (computed once per
topic/key with Kafka's default murmur2 partitioner, so other clients agree). Records stay in an
in-flight list until the broker acknowledges them.

When the broker is down or slow (no connection, nothing acknowledged for ``spill_after_s`` while
records wait, or the deque past half full), the thread spills the deque to the on-disk
:class:`~tradeconsole.infra.sinks.spool.Spool`, and everything that is already on disk is sent from there, oldest
first, before anything newer: events reach Kafka in publish order. A failed delivery aborts the
producer: the unacknowledged records go back to the head of the spool, records the broker did
acknowledge are remembered and not sent again, and the thread reconnects with exponential backoff
(a cheap TCP probe first, so a dead broker costs nothing). Whatever the broker might have stored
of an aborted request can reach Kafka twice; consumers deduplicate on ``event_id`` (the
Elasticsearch forwarder does so through the document id).

Journal-fed mode: exactly once across restarts
----------------------------------------------
The console and the headless runner never publish engine events to the sink directly: the
:class:`~tradeconsole.infra.persistence.shipper.JournalShipper` feeds it from the journal (``journal_fed=True``). The
journal then is the one record of what is unsent, and the sink keeps nothing of its own:

* no disk spool at all. The journal already holds every event; a second durable copy is exactly
  what delivered an outage's backlog twice after a restart (the spool replayed it and the shipper
  resent it from its cursor), and a full spool disk cannot stop delivery when there is no spool.
  What is unacknowledged stays in memory, bounded by the shipper's window.
* every message carries two headers, ``tc-src`` (the journal's identity: the id of its first
  event) and ``tc-seq`` (the event's journal sequence number).
* when delivery fails (an error, or no acknowledgement for ``stall_abort_s``), or the queue is
  full, the sink drops everything unacknowledged and starts a new *epoch*
  (:meth:`KafkaSink.progress`); events of an older epoch still queued are discarded, never sent.
  The shipper goes back to its durable cursor, and once the broker answers again it asks
  :meth:`KafkaSink.delivered_seqs` which journal seqs after the cursor Kafka already holds (read
  back from the end of each partition, by the headers) and skips those. The same read-back runs at
  every start, so a SIGKILL between Kafka's acknowledgement and the cursor write duplicates
  nothing either. That is exactly once for the journal's events, without Kafka transactions
  (which would need ``read_committed`` consumers and a broker that implements them).

Status
------
``stats()["state"]``: ``connected`` while the broker acknowledges; ``stalled`` when records wait
for ``stall_s`` without an acknowledgement; ``down`` when a delivery failed or the broker is
unreachable (a TCP probe every ``probe_interval_s`` while nothing is being acknowledged, so an
idle sink notices an outage too); ``degraded`` when a standalone sink's spool disk is full;
``closed``. :func:`tradeconsole.infra.sinks.status.delivery_event` turns that into the UI's status.

Spool (standalone mode)
-----------------------
A sink fed by the engine directly (``tradeconsole backtest --kafka``, benchmarks) keeps what it
cannot deliver in a disk spool. The spool's segment format, its fsync policies (``spool_fsync``) and its ordering guarantees are
described in :mod:`tradeconsole.infra.sinks.spool`. ``close()`` drains the in-memory deque (to Kafka, or to the spool
when Kafka is unreachable). The default spool directory is ``<data>/spool/kafka`` (``kafka.1``,
``kafka.2``... while another process holds it); a sink started on a spool with records left by an
earlier run sends those first. When the spool disk is full (ENOSPC) the sink does not stop: it
keeps the records in memory (state ``degraded``), sends them when the broker is back, and returns
to the spool when it accepts writes again; only what exceeds the memory bound too is lost,
counted in ``stats()["lost"]`` and logged.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tradeconsole.core.events import Event
from tradeconsole.infra.retry import Backoff, RetryPolicy
from tradeconsole.infra.sinks.codec import dumps
from tradeconsole.infra.sinks.protocol import KAFKA
from tradeconsole.infra.sinks.spool import EventInbox, Record, Spool, SpooledSinkBase, SpoolPosition, open_default_spool
from tradeconsole.infra.sinks.topics import DEFAULT_PREFIX, TopicNames, message_key

__all__ = [
    "SECURITY_KEYS",
    "KafkaSink",
    "kafka_security_kwargs",
]

log = logging.getLogger(__name__)

#: ``security`` keys passed to kafka-python (TLS and SASL). Anything else is a config error.
SECURITY_KEYS = frozenset(
    {
        "security_protocol",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_crlfile",
        "ssl_check_hostname",
        "ssl_ciphers",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
        "sasl_kerberos_service_name",
        "sasl_kerberos_domain_name",
    }
)
_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"}


def kafka_security_kwargs(security: Mapping[str, Any] | None) -> dict[str, Any]:
    """kafka-python keyword arguments for TLS/SASL from a config section.

    Values may be ``tradeconsole.infra.settings.Secret`` objects (revealed here, at the last moment). Errors
    name the offending key, never a value, so a password cannot end up in a message.
    """
    if not security:
        return {}
    out: dict[str, Any] = {}
    for key, value in security.items():
        if key not in SECURITY_KEYS:
            raise ValueError(
                f"unknown Kafka security setting {key!r}; expected one of {', '.join(sorted(SECURITY_KEYS))}"
            )
        if value is None or value == "":
            continue
        out[key] = value.reveal() if hasattr(value, "reveal") else value
    proto = str(out.get("security_protocol", "PLAINTEXT")).upper()
    if proto not in _PROTOCOLS:
        raise ValueError(f"security_protocol must be one of {', '.join(sorted(_PROTOCOLS))}")
    out["security_protocol"] = proto
    if proto.startswith("SASL"):
        mech = str(out.get("sasl_mechanism", "PLAIN")).upper()
        if mech not in _MECHANISMS:
            raise ValueError(f"sasl_mechanism must be one of {', '.join(sorted(_MECHANISMS))}")
        out["sasl_mechanism"] = mech
        if mech in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
            out.get("sasl_plain_username") and out.get("sasl_plain_password")
        ):
            raise ValueError(f"sasl_mechanism {mech} needs sasl_plain_username and sasl_plain_password")
    for path_key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_crlfile"):
        if path_key in out and not Path(str(out[path_key])).expanduser().is_file():
            raise ValueError(f"{path_key}: no such file")
    return out


# ---------------------------------------------------------------------------------------------- sink


class _Done:
    """Stands in for a future already resolved: corrupt lines and records acknowledged earlier."""

    is_done = True
    exception = None

    @staticmethod
    def succeeded() -> bool:
        return True

    @staticmethod
    def failed() -> bool:
        return False


_DONE = _Done()


class _NoSpool:
    """The spool of a journal-fed sink: always empty, never touches the disk (see the module
    docstring: the journal is the only durable copy of what is unsent)."""

    dir = None
    fsync = "never"
    pending = unread = recovered = corrupt = appended_total = 0

    def __init__(self) -> None:
        self.acked_ahead: set[SpoolPosition] = set()

    def read(self, max_records: int) -> list[tuple[Record | None, SpoolPosition]]:
        return []

    def append(self, records: Sequence[Record]) -> None:
        raise RuntimeError("a journal-fed sink has no spool")

    prepend = adopt = append

    def maybe_sync(self) -> None:
        pass

    save_cursor = rewind = close = sync = maybe_sync

    def ack(self, pos: SpoolPosition, count: int) -> None:
        pass

    def oldest_ts(self) -> None:
        return None


class _OneLineKafkaLogs(logging.Filter):
    """kafka-python logs every dropped connection with a full traceback (e.g. "Connection reset
    by peer" from ``kafka.net.transport``) and chats at INFO on every reconnect. During an outage
    that floods the headless log; the sink reports delivery state itself. This keeps kafka-python's
    warnings and errors, as one line each (the exception's type and message appended)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        if record.exc_info:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_KAFKA_LOG_FILTER = _OneLineKafkaLogs()


def _tame_kafka_logging() -> None:
    """Attach the filter to every kafka-python logger that exists (they are made at import)."""
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if (
            (name == "kafka" or name.startswith("kafka."))
            and isinstance(lg, logging.Logger)
            and _KAFKA_LOG_FILTER not in lg.filters
        ):
            lg.addFilter(_KAFKA_LOG_FILTER)


def _discard_producer(producer: Any) -> None:
    """Throw a failed producer away without waiting for its unacknowledged batches.

    kafka-python's ``close(timeout=0)`` first ``flush(0)``es, which raises while batches are
    pending and leaves the producer open; its ``__del__`` then closes it again with a 1 s flush
    and prints that second failure as an "Exception ignored ... Traceback" on stderr. So after a
    failed close the sender thread is force-closed and the producer marked closed (kafka-python's
    own private attributes, looked up defensively)."""
    try:
        producer.close(timeout=0)
        return
    except Exception:  # pending batches: force it below
        log.debug("closing the failed producer raised", exc_info=True)
    sender = getattr(producer, "_sender", None)
    try:
        if sender is not None:
            sender.force_close()
    except Exception:
        log.debug("force-closing the producer's sender raised", exc_info=True)
    if hasattr(producer, "_closed"):
        producer._closed = True


def _parse_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for part in bootstrap.split(","):
        part = part.strip()
        if not part:
            continue
        if "://" in part:
            part = part.split("://", 1)[1]
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = int(rest.lstrip(":") or 9092)
        else:
            host, _, p = part.rpartition(":")
            if not host:
                host, p = p, "9092"
            port = int(p)
        out.append((host, port))
    if not out:
        raise ValueError("bootstrap servers must be HOST:PORT[,HOST:PORT...]")
    return out


class _InFlight:
    """Records handed to the producer and not yet resolved, oldest first (parallel deques, so
    there is no long-lived tuple per record for the garbage collector)."""

    __slots__ = ("futs", "positions", "recs", "sent")

    def __init__(self) -> None:
        self.recs: deque[Record | None] = deque()
        self.futs: deque[Any] = deque()
        self.sent: deque[float] = deque()
        self.positions: deque[SpoolPosition | None] = deque()

    def __len__(self) -> int:
        return len(self.futs)

    def append(self, rec: Record | None, fut: Any, sent: float, pos: SpoolPosition | None) -> None:
        self.recs.append(rec)
        self.futs.append(fut)
        self.sent.append(sent)
        self.positions.append(pos)

    def popleft(self) -> None:
        self.recs.popleft()
        self.futs.popleft()
        self.sent.popleft()
        self.positions.popleft()

    def head_sent(self) -> float:
        return self.sent[0]

    def head_record(self) -> Record | None:
        return self.recs[0] if self.recs else None

    def entries(self) -> list[tuple[Record | None, Any, SpoolPosition | None]]:
        return list(zip(self.recs, self.futs, self.positions, strict=True))

    def clear(self) -> None:
        self.recs.clear()
        self.futs.clear()
        self.sent.clear()
        self.positions.clear()


class KafkaSink(SpooledSinkBase):
    """Publishes engine events to Kafka without ever blocking the caller. See the module docstring.

    ``security`` holds TLS/SASL settings (see ``SECURITY_KEYS``); ``producer_overrides`` are passed
    to ``kafka.KafkaProducer`` last (e.g. ``compression_type="lz4"`` if the lz4 module is
    installed, or ``delivery_timeout_ms``). ``on_stats`` receives :meth:`stats` about once a
    ``stats_interval_s`` from the sink thread (turn it into a UI event with
    :func:`~tradeconsole.infra.sinks.status.delivery_event`); it must not block.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic_prefix: str = DEFAULT_PREFIX,
        spool_dir: Path | None = None,
        security: dict[str, Any] | None = None,
        queue_size: int = 100_000,
        on_stats: Callable[[dict[str, Any]], None] | None = None,
        spool_fsync: str = "interval",
        spill_after_s: float = 2.0,
        stats_interval_s: float = 1.0,
        max_inflight: int = 50_000,
        journal_fed: bool = False,
        stall_s: float = 3.0,
        stall_abort_s: float = 10.0,
        probe_interval_s: float = 1.0,
        **producer_overrides: Any,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._addresses = _parse_bootstrap(bootstrap_servers)
        self._names = TopicNames(topic_prefix)
        self._topic_of: dict[str, str] = {}
        self._key_of: dict[str, bytes] = {}
        config: dict[str, Any] = {
            "acks": "all",
            "compression_type": "gzip",
            "enable_idempotence": True,
            "max_in_flight_requests_per_connection": 1,
            "linger_ms": 5,
            "batch_size": 256 * 1024,
            "delivery_timeout_ms": 30_000,
            "request_timeout_ms": 10_000,
            "max_block_ms": 2_000,
            "bootstrap_timeout_ms": 2_000,
            "reconnect_backoff_max_ms": 1_000,
            "client_id": "tradeconsole-sink",
        }
        self._security = kafka_security_kwargs(security)
        config.update(self._security)
        config.update(producer_overrides)
        self._config = config
        self._spool: Any
        if journal_fed:
            self._spool = _NoSpool()
        else:
            self._spool = (
                Spool(spool_dir, fsync=spool_fsync)
                if spool_dir is not None
                else open_default_spool("kafka", fsync=spool_fsync)
            )
        super().__init__(
            KAFKA,
            EventInbox(queue_size, self._encode, self._spool.dir),
            journal_fed=journal_fed,
            thread_name="kafka-sink",
        )
        # journal-fed mode (see the module docstring)
        self._epoch = 0
        self._ep_done = 0
        self._progress = (0, 0)  # (epoch, records resolved in it, in order): read by the shipper
        self._source: bytes | None = None
        self._deferred = 0  # records dropped back to the journal (resent by the shipper)
        self._stale = 0  # queued records of an older epoch, discarded
        self._seen_dropped_full = 0
        # status and outage detection
        self._stall_s = stall_s
        self._stall_abort_s = stall_abort_s
        self._probe_interval = probe_interval_s
        self._last_probe = 0.0
        # standalone mode on a full spool disk: records kept in memory, oldest first
        self._held: deque[Record] = deque()
        self._held_max = max(queue_size, 1)
        self._spool_full = False
        self._next_spool_try = 0.0
        self._lost = 0
        self._high_water = max(1, queue_size // 2)
        self._spill_after = spill_after_s
        self._max_inflight = max_inflight
        self._on_stats = on_stats
        self._stats_interval = stats_interval_s
        self._producer: Any = None
        self._partitions: dict[tuple[str, bytes], int] = {}
        self._inflight = _InFlight()
        self._inflight_origin: str | None = None
        self._state = "connecting"
        # the one retry policy (infra/retry.py), used non-blocking: the thread keeps taking events
        # while it waits to reconnect. Silent: the sink logs "down" once and reports its state.
        self._retry = Backoff("Kafka sink", RetryPolicy(initial_s=0.2, max_s=5.0), logger=log, report="none")
        self._next_connect = 0.0
        self._sent = 0
        self._acked = 0
        self._failed = 0
        self._invalid = 0
        self._failures = 0
        self._lag_ms = 0.0
        self._last_ack = 0.0
        self._last_stats = 0.0
        self._last_cursor_save = 0.0
        self._logged_down = False
        self._invalid_types: set[str] = set()
        self._wake_cb = lambda _=None: self._inbox.wake.set()
        self._start_worker()

    # ------------------------------------------------------------------ journal-fed protocol
    def progress(self) -> tuple[int, int]:
        """(epoch, records of that epoch resolved so far, in publish order): the shipper's view of
        what is acknowledged. A new epoch means every unacknowledged record was dropped."""
        return self._progress

    def ready(self) -> bool:
        """True while a producer is connected and the broker acknowledges (or has nothing to)."""
        return self._producer is not None and self._state == "connected"

    def set_source(self, source: str) -> None:
        """The journal's identity, sent as the ``tc-src`` header of every message."""
        self._source = source.encode()

    def delivered_seqs(
        self, source: str, after_seq: int, *, max_scan: int = 2_000_000, timeout_s: float = 30.0
    ) -> set[int]:
        """Journal seqs above ``after_seq`` from journal ``source`` that Kafka already holds.

        Reads each partition of this prefix's topics backwards from its end, in growing chunks,
        until it meets a message of ``source`` with a seq at or below ``after_seq`` (everything
        earlier in the partition was sent before it: the cursor had passed it), or the start of
        the partition, or ``max_scan`` messages (logged: anything older is then assumed unsent).
        Raises when the broker cannot be read; the caller retries later.
        """
        from kafka import KafkaConsumer, TopicPartition

        _tame_kafka_logging()
        src = source.encode()
        found: set[int] = set()
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            group_id=None,
            allow_auto_create_topics=False,
            client_id="tradeconsole-readback",
            request_timeout_ms=10_000,
            fetch_max_wait_ms=50,
            consumer_timeout_ms=1000,
            max_partition_fetch_bytes=8 << 20,
            **self._security,
        )
        deadline = time.monotonic() + timeout_s
        try:
            tps = [
                TopicPartition(t, p) for t in self._names.all() for p in sorted(consumer.partitions_for_topic(t) or ())
            ]
            if not tps:
                return found
            begin = consumer.beginning_offsets(tps)
            end = consumer.end_offsets(tps)
            # The first window of every partition is read to the real end, not to the reported end
            # offset. Kafka documents the end offset as the high watermark, "the offset of the last
            # successfully replicated message plus one" (KafkaConsumer#endOffsets javadoc, apache/
            # kafka clients/.../KafkaConsumer.java); Tansu 0.6 reports the last batch's base offset
            # + 1 instead (measured: 21 records in 3 batches, end offset 15), which would hide the
            # last batch - exactly the one a crash leaves unacknowledged.
            chunk = 1_000
            low = {tp: max(begin[tp], end[tp] - chunk) for tp in tps}
            tails = _read_tails(consumer, low, end, deadline)
            for tp in tps:
                headers_list, lo, scanned = tails[tp], low[tp], 0
                while True:
                    reached_cursor = False
                    for headers in headers_list:
                        seq = _journal_seq(headers, src)
                        if seq is None:
                            continue
                        if seq > after_seq:
                            found.add(seq)
                        else:
                            reached_cursor = True
                    scanned += len(headers_list)
                    if reached_cursor or lo <= begin[tp]:
                        break
                    if scanned >= max_scan:
                        log.warning(
                            "Kafka read-back of %s stopped after %d messages without reaching the "
                            "journal cursor; older messages are assumed unsent",
                            tp,
                            scanned,
                        )
                        break
                    chunk = min(chunk * 4, 100_000)
                    hi, lo = lo, max(begin[tp], lo - chunk)
                    headers_list = _read_range(consumer, tp, lo, hi, deadline)
            log.info(
                "Kafka read-back after journal seq %d: %d event(s) already delivered (%d partitions)",
                after_seq,
                len(found),
                len(tps),
            )
            return found
        finally:
            consumer.close()

    # ------------------------------------------------------------------ caller side
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event published so far is acknowledged by the broker.

        Returns False on timeout (events stay queued or spooled and are still delivered later).
        """
        target = self._inbox.published + self._spool.recovered
        return self._wait_until(lambda: True if self._done_count() >= target else None, timeout)

    def stats(self) -> dict[str, Any]:
        """Delivery counters (approximate while running; read from any thread).

        ``queued`` in memory, ``inflight`` sent and unacknowledged, ``spooled`` on disk and
        unacknowledged, ``sent``/``acked`` records handed to/acknowledged by Kafka, ``failed``
        deliveries that will be retried, ``lag_ms`` age of the oldest unacknowledged event.
        """
        return {
            "state": self._state,
            "published": self._inbox.published,
            "queued": len(self._inbox),
            "inflight": len(self._inflight),
            "spooled": self._spool.pending,
            "spooled_total": self._spool.appended_total,
            "overflowed": self._inbox.overflowed,
            "sent": self._sent,
            "acked": self._acked,
            "failed": self._failed,
            "invalid": self._invalid + self._inbox.invalid,
            "corrupt": self._spool.corrupt,
            "dropped_after_close": self._inbox.dropped_after_close,
            "recovered": self._spool.recovered,
            "broker_failures": self._failures,
            "lag_ms": self._lag_ms,
            "journal_fed": self._journal_fed,
            "epoch": self._epoch,
            "deferred": self._deferred + self._stale,
            "held": len(self._held),
            "spool_full": self._spool_full,
            "lost": self._lost + self._inbox.lost_disk,
        }

    @property
    def spool_dir(self) -> Path:
        return self._spool.dir

    def __repr__(self) -> str:  # never shows the config: it may hold a password
        return f"KafkaSink({self._bootstrap!r}, topic_prefix={self._names.prefix!r}, state={self._state!r})"

    # ------------------------------------------------------------------ sink thread
    def _done_count(self) -> int:
        return (
            self._acked + self._invalid + self._inbox.invalid + self._spool.corrupt + self._lost + self._inbox.lost_disk
        )

    def _encode(self, item: tuple[int, float, Event]) -> Record | None:
        seq, t, ev = item
        try:
            value = dumps(ev.to_dict())
            topic = self._topic_of.get(ev.family)
            if topic is None:
                topic = self._topic_of[ev.family] = self._names.for_family(ev.family)
            key = self._key_of.get(ev.symbol)
            if key is None:
                key = self._key_of[ev.symbol] = message_key(ev)
            if self._journal_fed:
                seq = ev.seq  # type: ignore[attr-defined] - a JournalledEvent
            return seq, int(t * 1000), topic, key, value
        except Exception:  # a bug in an event's to_dict: report it, keep the stream going
            name = type(ev).__name__
            if name not in self._invalid_types:
                self._invalid_types.add(name)
                log.exception("cannot serialise %s; such events are not sent", name)
            return None

    def _run(self) -> None:
        try:
            while True:
                did = self._step()
                if self._stop and (self._idle_and_empty() or time.monotonic() >= self._deadline):
                    break
                if not did:
                    self._inbox.wait(0.002 if self._inflight else 0.05)
        except Exception:
            log.exception("Kafka sink thread failed; pending events go to the spool")
        finally:
            self._shutdown()

    def _idle_and_empty(self) -> bool:
        return (
            not self._inflight
            and not len(self._inbox)
            and not self._inbox.overflowing
            and self._spool.pending == 0
            and not self._held
        )

    def _step(self) -> bool:
        now = time.monotonic()
        did = self._reap()
        if self._producer is None and now >= self._next_connect:
            self._connect()
        elif self._producer is not None:
            self._watch(now)
        inbox, spool = self._inbox, self._spool
        if self._journal_fed:
            if inbox.dropped_full != self._seen_dropped_full:
                self._seen_dropped_full = inbox.dropped_full
                self._fail("queue full")  # the shipper resends what was refused, from the journal
        else:
            # Stalled, not merely busy: nothing acknowledged for spill_after_s while records wait.
            slow = bool(self._inflight) and now - max(self._inflight.head_sent(), self._last_ack) > self._spill_after
            if len(inbox) and (
                spool.unread or self._held or self._producer is None or slow or len(inbox) > self._high_water
            ):
                self._spill()
                did = True
            if self._held and self._spool_full and now >= self._next_spool_try:
                did = self._unhold() or did
            ovf = inbox.seal_overflow(spool.fsync != "never")
            if ovf is not None:
                try:
                    spool.adopt(ovf.path, ovf.count)
                except OSError as exc:  # cannot even rename: keep the file, count its events as lost
                    self._lost += ovf.count
                    log.error("cannot adopt overflow file %s (%s); %d event(s) lost", ovf.path, exc, ovf.count)
                did = True
        if self._producer is not None and len(self._inflight) < self._max_inflight:
            room = min(self._max_inflight - len(self._inflight), 2_000)
            if spool.pending:
                if self._inflight_origin != "memory" and spool.unread:
                    did = self._send_from_spool(room) or did
            elif self._held:
                if self._inflight_origin != "spool":
                    did = self._send_from_held(room) or did
            elif self._inflight_origin != "spool" and len(inbox):
                did = self._send_from_queue(room) or did
        spool.maybe_sync()
        if now - self._last_cursor_save > 0.2:
            spool.save_cursor()
            self._last_cursor_save = now
        if now - self._last_stats >= self._stats_interval:
            self._last_stats = now
            self._report_stats()
        return did

    def _watch(self, now: float) -> None:
        """Outage detection while a producer exists: kafka-python retries a dead connection
        quietly until ``delivery_timeout_ms`` (30 s), so the status would say "connected" all
        that time. Records waiting ``stall_s`` without an acknowledgement make it "stalled"; a TCP
        probe (every ``probe_interval_s`` while nothing is acknowledged) that fails ends the
        producer at once; a journal-fed sink also gives up after ``stall_abort_s`` (a hung broker
        that still accepts connections), which costs nothing there (see the module docstring)."""
        inflight = self._inflight
        waited = now - max(inflight.head_sent(), self._last_ack) if inflight else 0.0
        if waited > self._stall_s and self._state == "connected":
            self._state = "stalled"
            log.warning(
                "Kafka at %s has acknowledged nothing for %.0f s (%d record(s) waiting)",
                self._bootstrap,
                waited,
                len(inflight),
            )
        if self._journal_fed and waited > self._stall_abort_s:
            self._fail(f"no acknowledgement for {waited:.0f} s")
            return
        if now - self._last_probe >= self._probe_interval and (
            now - self._last_ack >= self._probe_interval or self._state == "stalled"
        ):
            self._last_probe = now
            if not self._probe():
                self._fail("broker unreachable")

    def _spill(self) -> None:
        items = self._inbox.take(len(self._inbox))
        recs = [r for r in map(self._encode, items) if r is not None]
        self._invalid += len(items) - len(recs)
        if self._held:  # newer than what is held in memory: behind it, to keep the order
            self._hold(recs)
            return
        try:
            self._spool.append(recs)
        except OSError as exc:
            self._spool_full_now(exc)
            self._hold(recs)

    def _spool_full_now(self, exc: OSError) -> None:
        self._next_spool_try = time.monotonic() + 5.0
        if not self._spool_full:
            self._spool_full = True
            log.error(
                "Kafka spool %s cannot be written (%s); keeping up to %d event(s) in memory and "
                "delivering them when the broker is back",
                self._spool.dir,
                exc,
                self._held_max,
            )

    def _hold(self, recs: Sequence[Record]) -> None:
        """Keep records in memory behind what is held (the spool disk refused them)."""
        room = self._held_max - len(self._held)
        if len(recs) > room:
            lost = len(recs) - max(room, 0)
            self._lost += lost
            log.error(
                "Kafka spool disk full and %d event(s) held in memory: %d newer event(s) lost", len(self._held), lost
            )
            recs = recs[: max(room, 0)]
        self._held.extend(recs)

    def _unhold(self) -> bool:
        """Try the spool again: move what is held in memory to it, in order."""
        if self._inflight_origin == "memory":
            return False  # held records in flight; they come back to the front on failure
        try:
            self._spool.append(list(self._held))
        except OSError as exc:
            self._spool_full_now(exc)
            return False
        self._held.clear()
        self._spool_full = False
        log.info("Kafka spool %s accepts writes again", self._spool.dir)
        return True

    def _send_from_held(self, n: int) -> bool:
        held = self._held
        recs = [held.popleft() for _ in range(min(n, len(held)))]
        if not recs:
            return False
        self._send([(r, None) for r in recs], "memory")
        return True

    def _send_from_queue(self, n: int) -> bool:
        items = self._inbox.take(n)
        if not items:
            return False
        if self._journal_fed:
            epoch = self._epoch
            fresh = [it for it in items if it[2].epoch == epoch]  # type: ignore[attr-defined]
            self._stale += len(items) - len(fresh)
            if not fresh:
                return True
            recs: list[Record | None] = list(map(self._encode, fresh))
            self._invalid += recs.count(None)
            # invalid ones stay in line (resolved at once), so progress counts them in order
            self._send([(r, None) for r in recs], "memory")
            return True
        valid = [r for r in map(self._encode, items) if r is not None]
        self._invalid += len(items) - len(valid)
        self._send([(r, None) for r in valid], "memory")
        return True

    def _send_from_spool(self, n: int) -> bool:
        entries = self._spool.read(n)
        if not entries:
            return False
        self._send(entries, "spool")
        return True

    def _send(self, entries: Sequence[tuple[Record | None, SpoolPosition | None]], origin: str) -> None:
        producer, inflight, ahead = self._producer, self._inflight, self._spool.acked_ahead
        now = time.monotonic()
        self._inflight_origin = origin
        fut = None
        sent = 0
        for i, (rec, pos) in enumerate(entries):
            if rec is None or (pos is not None and pos in ahead):
                inflight.append(rec, _DONE, now, pos)
                continue
            seq, _ts, topic, key, value = rec
            try:
                part = self._partitions.get((topic, key))
                if part is None:
                    part = self._partition(topic, key)
                headers = [("tc-src", self._source or b""), ("tc-seq", b"%d" % seq)] if self._journal_fed else None
                fut = producer.send(topic, value=value, key=key, partition=part, headers=headers)
            except Exception as exc:  # noqa: BLE001 - metadata timeout, buffer full, closed producer
                self._fail(f"send failed: {exc}", unsent=entries[i:])
                return
            inflight.append(rec, fut, now, pos)
            sent += 1
        self._sent += sent
        if fut is not None:
            fut.add_both(self._wake_cb)

    def _partition(self, topic: str, key: bytes) -> int:
        from kafka.partitioner.default import murmur2

        parts = self._producer.partitions_for(topic)  # metadata; may create the topic
        if not parts:
            raise RuntimeError(f"no partitions for topic {topic}")
        all_parts = sorted(parts)
        part = all_parts[(murmur2(key) & 0x7FFFFFFF) % len(all_parts)]  # Kafka's default partitioner
        self._partitions[(topic, key)] = part
        return part

    def _reap(self) -> bool:
        inflight, spool = self._inflight, self._spool
        acked = 0
        n_pos = 0
        resolved = 0
        last_pos: SpoolPosition | None = None
        futs, positions = inflight.futs, inflight.positions
        while futs:
            fut, pos = futs[0], positions[0]
            if fut is not _DONE:
                if not fut.is_done:
                    break
                if fut.exception is not None:
                    if n_pos:
                        spool.ack(last_pos, n_pos)  # type: ignore[arg-type]
                    self._acked += acked
                    self._fail(f"delivery failed: {fut.exception}")
                    return True
                acked += 1
            elif pos is not None:
                spool.acked_ahead.discard(pos)
            inflight.popleft()
            resolved += 1
            if pos is not None:
                last_pos = pos
                n_pos += 1
        if n_pos:
            spool.ack(last_pos, n_pos)  # type: ignore[arg-type]
        self._acked += acked
        if acked:
            self._last_ack = time.monotonic()
            if self._state == "stalled":
                self._state = "connected"
                log.info("Kafka at %s acknowledges again", self._bootstrap)
        if resolved and self._journal_fed:
            self._ep_done += resolved
            self._progress = (self._epoch, self._ep_done)
        if not inflight:
            self._inflight_origin = None
        return bool(acked or n_pos or resolved)

    def _fail(self, reason: str, unsent: Sequence[tuple[Record | None, SpoolPosition | None]] = ()) -> None:
        """Abort the producer; put unacknowledged records back in order; reconnect later."""
        self._failures += 1
        if not self._logged_down:
            if self._journal_fed:
                log.warning(
                    "Kafka delivery to %s failed (%s); events wait in the journal until the broker is back",
                    self._bootstrap,
                    reason,
                )
            else:
                log.warning(
                    "Kafka delivery to %s failed (%s); spooling to %s until the broker is back",
                    self._bootstrap,
                    reason,
                    self._spool.dir,
                )
            self._logged_down = True
        if self._journal_fed:
            self._drop_unacknowledged()
        else:
            self._abort_inflight(unsent)
        self._state = "down"
        self._retry_later(reason)

    def _retry_later(self, reason: str) -> None:
        """Schedule the next connection attempt by the shared policy (the thread does not sleep)."""
        self._next_connect = time.monotonic() + self._retry.failed(reason)

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            _discard_producer(producer)

    def _drop_unacknowledged(self) -> None:
        """Journal-fed: forget everything unacknowledged and start a new epoch; the shipper goes
        back to its cursor and reads back from Kafka what did arrive (module docstring)."""
        self._close_producer()
        n = len(self._inflight) + self._inbox.discard()
        self._inflight.clear()
        self._inflight_origin = None
        self._deferred += n
        self._epoch += 1
        self._ep_done = 0
        self._progress = (self._epoch, 0)

    def _abort_inflight(self, unsent: Sequence[tuple[Record | None, SpoolPosition | None]] = ()) -> None:
        self._close_producer()
        back: list[Record] = []
        spool_origin = False
        for rec, fut, pos in self._inflight.entries():
            ok = fut is _DONE or (fut.is_done and fut.exception is None)
            if pos is None:
                if ok:
                    self._acked += 1
                elif rec is not None:
                    back.append(rec)
            else:
                spool_origin = True
                if ok and fut is not _DONE:
                    self._acked += 1
                    self._spool.acked_ahead.add(pos)
                elif not ok:
                    self._failed += 1
        for rec, pos in unsent:
            if pos is None and rec is not None:
                back.append(rec)
            elif pos is not None:
                spool_origin = True
        self._inflight.clear()
        self._inflight_origin = None
        self._failed += len(back)
        if spool_origin:
            self._spool.rewind()
        if back:
            if self._held or self._spool_full:
                self._held.extendleft(reversed(back))  # older than everything held
            else:
                try:
                    self._spool.prepend(back)
                except OSError as exc:
                    self._spool_full_now(exc)
                    self._held.extendleft(reversed(back))

    def _probe(self) -> bool:
        for host, port in self._addresses:
            try:
                socket.create_connection((host, port), timeout=0.5).close()
                return True
            except OSError:
                continue
        return False

    def _connect(self) -> None:
        if not self._probe():
            self._state = "down"
            self._retry_later("broker unreachable")
            return
        from kafka import KafkaProducer

        _tame_kafka_logging()
        try:
            self._producer = KafkaProducer(bootstrap_servers=self._bootstrap, **self._config)
        except Exception as exc:  # noqa: BLE001 - any failure means: try again later
            self._state = "down"
            if not self._logged_down:
                log.warning(
                    "cannot connect to Kafka at %s (%s: %s); spooling", self._bootstrap, type(exc).__name__, exc
                )
                self._logged_down = True
            self._retry_later(f"cannot connect: {type(exc).__name__}: {exc}")
            return
        self._partitions.clear()
        self._state = "connected"
        self._last_probe = self._last_ack = time.monotonic()
        self._retry.succeeded()
        if self._logged_down:
            log.info("Kafka at %s reachable again; sending %d spooled event(s)", self._bootstrap, self._spool.pending)
        self._logged_down = False

    def _report_stats(self) -> None:
        now_ms = time.time() * 1000
        candidates = []
        head = self._inflight.head_record()
        if head is not None:
            candidates.append(head[1])
        ts = self._spool.oldest_ts()
        if ts is not None:
            candidates.append(ts)
        t = self._inbox.oldest_time()
        if t is not None:
            candidates.append(t * 1000)
        self._lag_ms = max(0.0, now_ms - min(candidates)) if candidates else 0.0
        if self._on_stats is not None:
            try:
                self._on_stats(self.stats())
            except Exception:  # a UI callback must not stop delivery
                log.exception("on_stats callback failed")

    def _shutdown(self) -> None:
        """Sink thread exit: everything not acknowledged ends up in the spool."""
        try:
            self._reap()
            self._inbox.close()
            if self._journal_fed:
                pending = len(self._inflight) + len(self._inbox)
                if pending:
                    self._drop_unacknowledged()  # the journal keeps them; the next start sends them
                    log.info("%d event(s) not acknowledged by Kafka at shutdown stay in the journal", pending)
                self._drained_at_close = pending == 0
            else:
                self._shutdown_spooled()
            if self._producer is not None:
                try:
                    self._producer.close(timeout=max(0.0, min(5.0, self._deadline - time.monotonic())))
                except Exception:
                    log.debug("closing the producer raised", exc_info=True)
                    _discard_producer(self._producer)
                self._producer = None
            self._state = "closed"
            self._report_stats()
        except Exception:
            log.exception("Kafka sink shutdown failed")
        finally:
            self._spool.close()
            if not self._journal_fed and not self._drained_at_close and (self._spool.pending or self._held):
                log.warning(
                    "%d event(s) not delivered to Kafka are kept in %s for the next run%s",
                    self._spool.pending,
                    self._spool.dir,
                    f"; {len(self._held)} held in memory (spool disk full) are lost" if self._held else "",
                )

    def _shutdown_spooled(self) -> None:
        if self._inflight:
            self._abort_inflight()
        if len(self._inbox):
            self._spill()
        if self._held and not self._unhold():
            self._lost += len(self._held)
        ovf = self._inbox.seal_overflow(self._spool.fsync != "never")
        if ovf is not None:
            self._spool.adopt(ovf.path, ovf.count)
        self._drained_at_close = self._spool.pending == 0 and not self._held


def _read_tails(consumer: Any, low: dict[Any, int], end: dict[Any, int], deadline: float) -> dict[Any, list[Any]]:
    """Headers of every message from ``low[tp]`` to the real end of each partition, all
    partitions at once: past the reported ``end[tp]``, until two polls in a row bring nothing."""
    out: dict[Any, list[Any]] = {tp: [] for tp in low}
    consumer.assign(list(low))
    for tp, lo in low.items():
        consumer.seek(tp, lo)
    empty = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("reading back the partition tails from Kafka timed out")
        got = 0
        for tp, msgs in consumer.poll(timeout_ms=100, max_records=10_000).items():
            got += len(msgs)
            out[tp].extend(m.headers for m in msgs)
        empty = 0 if got else empty + 1
        if empty >= 2 and all(consumer.position(tp) >= end[tp] for tp in low):
            return out


def _read_range(consumer: Any, tp: Any, lo: int, hi: int, deadline: float) -> list[Any]:
    """Headers of the messages at offsets [lo, hi) of one partition, in order (below the tail,
    where offsets are known to exist). Raises TimeoutError when the broker does not hand them
    over before ``deadline``."""
    consumer.assign([tp])
    consumer.seek(tp, lo)
    out: list[Any] = []
    while consumer.position(tp) < hi:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading back {tp.topic}[{tp.partition}] from Kafka timed out")
        for msgs in consumer.poll(timeout_ms=200, max_records=10_000).values():
            out.extend(m.headers for m in msgs if m.offset < hi)
    return out


def _journal_seq(headers: Any, source: bytes) -> int | None:
    """The ``tc-seq`` of a message whose ``tc-src`` is ``source``, else None."""
    src = seq = None
    for k, v in headers or ():
        if k == "tc-src":
            src = v
        elif k == "tc-seq":
            seq = v
    if src != source or seq is None:
        return None
    try:
        return int(seq)
    except ValueError:
        return None
