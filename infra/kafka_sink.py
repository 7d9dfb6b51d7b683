"""Kafka sink: the engine hands events over without ever waiting; a producer thread delivers them.

How an event travels
--------------------
``publish(event)`` (engine thread) hands the event to an :class:`~infra.spool.EventInbox`: a
bounded in-memory deque, with an overflow file in the spool directory when the deque is full. It
returns at once; nothing in it waits for the network or for the disk.

The producer thread serialises events (``to_dict()`` then orjson, or json when orjson is missing),
and sends them with kafka-python: ``acks=all``, gzip compression, the idempotent producer with one
request in flight per connection, to the partition of the symbol key (computed once per
topic/key with Kafka's default murmur2 partitioner, so other clients agree). Records stay in an
in-flight list until the broker acknowledges them.

When the broker is down or slow (no connection, nothing acknowledged for ``spill_after_s`` while
records wait, or the deque past half full), the thread spills the deque to the on-disk
:class:`~infra.spool.Spool`, and everything that is already on disk is sent from there, oldest
first, before anything newer: events reach Kafka in publish order. A failed delivery aborts the
producer: the unacknowledged records go back to the head of the spool, records the broker did
acknowledge are remembered and not sent again, and the thread reconnects with exponential backoff
(a cheap TCP probe first, so a dead broker costs nothing). Whatever the broker might have stored
of an aborted request can reach Kafka twice; consumers deduplicate on ``event_id`` (the
Elasticsearch forwarder does so through the document id).

Spool
-----
The spool's segment format, its fsync policies (``spool_fsync``) and its ordering guarantees are
described in :mod:`infra.spool`. ``close()`` drains the in-memory deque (to Kafka, or to the spool
when Kafka is unreachable). The default spool directory is ``<data>/spool/kafka`` (``kafka.1``,
``kafka.2``... while another process holds it); a sink started on a spool with records left by an
earlier run sends those first.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from core.events import ConnectionEvent, Event
from infra.spool import EventInbox, Record, Spool, SpooledSinkBase, SpoolPosition, open_default_spool
from infra.topics import DEFAULT_PREFIX, TopicNames, message_key

__all__ = [
    "SECURITY_KEYS",
    "KafkaSink",
    "delivery_event",
    "dumps",
    "kafka_security_kwargs",
    "loads",
]

log = logging.getLogger(__name__)

try:  # orjson is ~7x faster than json for these documents; json is the fallback.
    import orjson

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes (NaN is already None in ``to_dict()`` output)."""
        return orjson.dumps(obj)

    loads = orjson.loads

except ImportError:  # pragma: no cover - depends on the environment

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes (NaN is already None in ``to_dict()`` output)."""
        return json.dumps(obj, separators=(",", ":")).encode()

    loads = json.loads


#: ``security`` keys passed to kafka-python (TLS and SASL). Anything else is a config error.
SECURITY_KEYS = frozenset({
    "security_protocol", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_crlfile",
    "ssl_check_hostname", "ssl_ciphers", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "sasl_kerberos_service_name", "sasl_kerberos_domain_name",
})
_SECRET_SECURITY_KEYS = frozenset({"sasl_plain_password", "ssl_password"})
_PROTOCOLS = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
_MECHANISMS = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER"}


def kafka_security_kwargs(security: Mapping[str, Any] | None) -> dict[str, Any]:
    """kafka-python keyword arguments for TLS/SASL from a config section.

    Values may be ``infra.settings.Secret`` objects (revealed here, at the last moment). Errors
    name the offending key, never a value, so a password cannot end up in a message.
    """
    if not security:
        return {}
    out: dict[str, Any] = {}
    for key, value in security.items():
        if key not in SECURITY_KEYS:
            raise ValueError(f"unknown Kafka security setting {key!r}; expected one of "
                             f"{', '.join(sorted(SECURITY_KEYS))}")
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
                out.get("sasl_plain_username") and out.get("sasl_plain_password")):
            raise ValueError(f"sasl_mechanism {mech} needs sasl_plain_username and sasl_plain_password")
    for path_key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_crlfile"):
        if path_key in out and not Path(str(out[path_key])).expanduser().is_file():
            raise ValueError(f"{path_key}: no such file")
    return out


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a client config that is safe to log."""
    return {k: ("***" if k in _SECRET_SECURITY_KEYS or "password" in k else v) for k, v in config.items()}


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
    :func:`delivery_event`); it must not block.
    """

    def __init__(self, bootstrap_servers: str, *, topic_prefix: str = DEFAULT_PREFIX,
                 spool_dir: Path | None = None, security: dict[str, Any] | None = None,
                 queue_size: int = 100_000, on_stats: Callable[[dict[str, Any]], None] | None = None,
                 spool_fsync: str = "interval", spill_after_s: float = 2.0, stats_interval_s: float = 1.0,
                 max_inflight: int = 50_000, **producer_overrides: Any) -> None:
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
        config.update(kafka_security_kwargs(security))
        config.update(producer_overrides)
        self._config = config
        self._spool = (Spool(spool_dir, fsync=spool_fsync) if spool_dir is not None
                       else open_default_spool("kafka", fsync=spool_fsync))
        self._inbox = EventInbox(queue_size, self._encode, self._spool.dir)
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
        self._backoff = 0.2
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
        self._stop = False
        self._deadline = float("inf")
        self._closed = False
        self._drained_at_close = False
        self._wake_cb = lambda _=None: self._inbox.wake.set()
        self._thread = threading.Thread(target=self._run, name="kafka-sink", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ engine side
    def publish(self, event: Event) -> None:
        """Hand ``event`` to the sink. Returns at once; never waits for the broker or the disk."""
        self._inbox.put(event)

    # ------------------------------------------------------------------ caller side
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event published so far is acknowledged by the broker.

        Returns False on timeout (events stay queued or spooled and are still delivered later).
        """
        target = self._inbox.published + self._spool.recovered
        deadline = time.monotonic() + timeout
        while True:
            if self._done_count() >= target:
                return True
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            self._inbox.wake.set()
            time.sleep(0.005)

        self._deadline = time.monotonic() + max(0.0, timeout)
        self._stop = True
        self._inbox.wake.set()
        self._thread.join(timeout + 30)
        self._closed = True
        return self._drained_at_close

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        }

    @property
    def spool_dir(self) -> Path:
        return self._spool.dir

    def __repr__(self) -> str:  # never shows the config: it may hold a password
        return f"KafkaSink({self._bootstrap!r}, topic_prefix={self._names.prefix!r}, state={self._state!r})"

    # ------------------------------------------------------------------ sink thread
    def _done_count(self) -> int:
        return self._acked + self._invalid + self._inbox.invalid + self._spool.corrupt

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
        return (not self._inflight and not len(self._inbox) and not self._inbox.overflowing
                and self._spool.pending == 0)

    def _step(self) -> bool:
        now = time.monotonic()
        did = self._reap()
        if self._producer is None and now >= self._next_connect:
            self._connect()
        inbox, spool = self._inbox, self._spool
        # Stalled, not merely busy: nothing acknowledged for spill_after_s while records wait.
        slow = bool(self._inflight) and now - max(self._inflight.head_sent(), self._last_ack) > self._spill_after
        if len(inbox) and (spool.unread or self._producer is None or slow or len(inbox) > self._high_water):
            self._spill()
            did = True
        ovf = inbox.seal_overflow(spool.fsync != "never")
        if ovf is not None:
            spool.adopt(ovf.path, ovf.count)
            did = True
        if self._producer is not None and len(self._inflight) < self._max_inflight:
            room = min(self._max_inflight - len(self._inflight), 2_000)
            if spool.pending:
                if self._inflight_origin != "queue" and spool.unread:
                    did = self._send_from_spool(room) or did
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

    def _spill(self) -> None:
        items = self._inbox.take(len(self._inbox))
        recs = [r for r in map(self._encode, items) if r is not None]
        self._invalid += len(items) - len(recs)
        self._spool.append(recs)

    def _send_from_queue(self, n: int) -> bool:
        items = self._inbox.take(n)
        if not items:
            return False
        recs = [r for r in map(self._encode, items) if r is not None]
        self._invalid += len(items) - len(recs)
        self._send([(r, None) for r in recs], "queue")
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
            _seq, _ts, topic, key, value = rec
            try:
                part = self._partitions.get((topic, key))
                if part is None:
                    part = self._partition(topic, key)
                fut = producer.send(topic, value=value, key=key, partition=part)
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
            if pos is not None:
                last_pos = pos
                n_pos += 1
        if n_pos:
            spool.ack(last_pos, n_pos)  # type: ignore[arg-type]
        self._acked += acked
        if acked:
            self._last_ack = time.monotonic()
        if not inflight:
            self._inflight_origin = None
        return bool(acked or n_pos)

    def _fail(self, reason: str, unsent: Sequence[tuple[Record | None, SpoolPosition | None]] = ()) -> None:
        """Abort the producer; put unacknowledged records back in order; reconnect later."""
        self._failures += 1
        if not self._logged_down:
            log.warning("Kafka delivery to %s failed (%s); spooling to %s until the broker is back",
                        self._bootstrap, reason, self._spool.dir)
            self._logged_down = True
        self._abort_inflight(unsent)
        self._state = "down"
        self._next_connect = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, 5.0)

    def _abort_inflight(self, unsent: Sequence[tuple[Record | None, SpoolPosition | None]] = ()) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # it is being thrown away
                log.debug("closing the failed producer raised", exc_info=True)
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
            self._spool.prepend(back)

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
            self._next_connect = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 5.0)
            return
        from kafka import KafkaProducer

        try:
            self._producer = KafkaProducer(bootstrap_servers=self._bootstrap, **self._config)
        except Exception as exc:  # noqa: BLE001 - any failure means: try again later
            self._state = "down"
            if not self._logged_down:
                log.warning("cannot connect to Kafka at %s (%s: %s); spooling", self._bootstrap,
                            type(exc).__name__, exc)
                self._logged_down = True
            self._next_connect = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 5.0)
            return
        self._partitions.clear()
        self._state = "connected"
        self._backoff = 0.2
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
            if self._inflight:
                self._abort_inflight()
            if len(self._inbox):
                self._spill()
            ovf = self._inbox.seal_overflow(self._spool.fsync != "never")
            if ovf is not None:
                self._spool.adopt(ovf.path, ovf.count)
            if self._producer is not None:
                try:
                    self._producer.close(timeout=max(0.0, min(5.0, self._deadline - time.monotonic())))
                except Exception:
                    log.debug("closing the producer raised", exc_info=True)
                self._producer = None
            self._drained_at_close = self._spool.pending == 0
            self._state = "closed"
            self._report_stats()
        except Exception:
            log.exception("Kafka sink shutdown failed")
        finally:
            self._spool.close()
            if not self._drained_at_close and self._spool.pending:
                log.warning("%d event(s) not delivered to Kafka are kept in %s for the next run",
                            self._spool.pending, self._spool.dir)


def delivery_event(stats: Mapping[str, Any], *, run_id: str, mode: str, source: str = "kafka",
                   time_ms: int | None = None) -> ConnectionEvent:
    """A status event for the UI from :meth:`KafkaSink.stats` (delivery counts and lag)."""
    t = int(time.time() * 1000) if time_ms is None else time_ms
    state = {"connected": "connected", "closed": "disconnected"}.get(str(stats.get("state")), "reconnecting")
    detail = (f"sent {stats.get('acked', 0)} acked, {stats.get('queued', 0)} queued, "
              f"{stats.get('spooled', 0)} spooled, {stats.get('failed', 0)} retried")
    return ConnectionEvent(event_id=f"{run_id}:delivery:{source}:{t}", time=t, run_id=run_id, mode=mode,
                           source=source, state=state, lag_ms=float(stats.get("lag_ms", 0.0)), detail=detail)
