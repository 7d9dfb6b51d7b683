"""Kafka -> Elasticsearch forwarder (``tradeconsole forward``), also runnable in-process.

A consumer in a consumer group reads every family topic, a batch at a time, and writes the batch
with the official client's bulk helpers (``tradeconsole.infra.sinks.elastic.bulk_write``): one ``create`` per event,
``_id = event_id``, into the event's monthly index. The batch's offsets are committed only after
Elasticsearch has accepted every document of it, so a crash anywhere before the commit means
the batch is read again, and the second write of a document is a 409 duplicate, not a copy:
Elasticsearch ends up with exactly one document per event.

What cannot be indexed does not stop the stream: a message that is not JSON, not an event
(no ``event_id``/``@timestamp``) or that Elasticsearch rejects (a value its mapping refuses) goes
to the dead-letter topic ``<prefix>.deadletter`` with the reason, its source coordinates and the
original payload, and is committed with the rest. Transient failures (connection errors, 429,
5xx) are retried with the shared policy of ``infra/retry.py`` (exponential backoff, a
``Retry-After`` honoured, one log line per failed attempt) while the consumer keeps its group
membership; the offsets stay uncommitted until the retry succeeds. A refusal that no retry can
cure (the cluster rejects the client's ``compatible-with`` header, bad credentials) stops the
forwarder with :class:`~tradeconsole.infra.sinks.elastic.ElasticsearchRefused` and a one-line message.

Every wait is stop-aware: :meth:`Forwarder.stop` (or the ``stop`` event given to :meth:`run`)
ends a start-up retry, a bulk retry or a dead-letter acknowledgement wait within ~0.1 s. The
``forward`` command runs the forwarder on a thread and exits within a few seconds of
SIGINT/SIGTERM even when a request hangs: an unfinished batch is simply not committed and is read
again by the next run.
"""

from __future__ import annotations

import base64
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tradeconsole.infra.retry import Backoff, RetryPolicy, Stopped, retry_call, stop_requested, wait_or_stop
from tradeconsole.infra.sinks.codec import dumps, loads
from tradeconsole.infra.sinks.elastic import (
    DEFAULT_INDEX_PREFIX,
    ElasticsearchRefused,
    bulk_write,
    check_index_prefix,
    client_from_settings,
    describe_error,
    install_templates,
    make_client,
    refusal,
    retry_after_of,
    to_action,
)
from tradeconsole.infra.sinks.kafka import kafka_security_kwargs
from tradeconsole.infra.sinks.topics import DEFAULT_PREFIX, TopicNames

if TYPE_CHECKING:
    import argparse

    from elasticsearch import Elasticsearch

__all__ = ["BatchResult", "Forwarder", "cli_main"]

log = logging.getLogger(__name__)


#: How long ``forward`` waits for the forwarder thread after SIGINT/SIGTERM before it exits anyway
#: (the batch in flight is not committed and is read again next time).
STOP_GRACE_S = 2.0
#: Bound on kafka-python's blocking bootstrap in the consumer/producer constructors (their default
#: is 30 s, during which nothing else happens); a failed bootstrap is retried by our policy.
_BOOTSTRAP_TIMEOUT_MS = 2500


@dataclass(slots=True)
class BatchResult:
    """What one ``run_once`` did."""

    consumed: int = 0
    indexed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retries: int = 0
    committed: bool = False


class Forwarder:
    """Consumes the tradeconsole topics in a group and indexes them into Elasticsearch.

    Use :meth:`run` (blocking, until ``stop``), :meth:`start`/:meth:`stop` (a background thread,
    for the console) or :meth:`run_once` (one batch, for tests and tools). The Kafka consumer is
    created on the thread that first uses it and must only be used from that thread.
    ``consumer_overrides`` go to ``kafka.KafkaConsumer`` (e.g. smaller ``max_poll_interval_ms``
    for quick group joins in tests).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        elasticsearch: Elasticsearch | str,
        *,
        group_id: str = "tradeconsole-forwarder",
        topic_prefix: str = DEFAULT_PREFIX,
        index_prefix: str = DEFAULT_INDEX_PREFIX,
        security: Mapping[str, Any] | None = None,
        batch_size: int = 2000,
        poll_timeout_s: float = 0.5,
        max_backoff_s: float = 30.0,
        install: bool = True,
        replicas: int | None = None,
        consumer_overrides: Mapping[str, Any] | None = None,
        producer_overrides: Mapping[str, Any] | None = None,
        on_stats: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._own_es = isinstance(elasticsearch, str)
        self._es = make_client(elasticsearch) if isinstance(elasticsearch, str) else elasticsearch
        self._group = group_id
        self._names = TopicNames(topic_prefix)
        self._index_prefix = check_index_prefix(index_prefix)
        self._security = kafka_security_kwargs(security)
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout_s
        self._max_backoff = max_backoff_s
        self._replicas = replicas
        self._consumer_overrides = dict(consumer_overrides or {})
        self._producer_overrides = dict(producer_overrides or {})
        self._on_stats = on_stats
        self._consumer: Any = None
        self._producer: Any = None
        self._templates_ok = not install
        self._stop = threading.Event()
        self._ext_stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        #: what ended the background thread, when it was not a stop (e.g. ElasticsearchRefused)
        self.failure: BaseException | None = None
        self._log_failure = True
        self._carry: list[Any] = []
        self._stats: dict[str, Any] = {
            "consumed": 0,
            "indexed": 0,
            "duplicates": 0,
            "dead_lettered": 0,
            "retries": 0,
            "batches": 0,
            "commits": 0,
            "commit_failures": 0,
            "errors": 0,
        }
        self._last_stats = 0.0

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, log_failure: bool = True) -> Forwarder:
        """Run in a background thread (the console's in-process forwarder). What ends the thread
        other than a stop is kept in :attr:`failure` and, with ``log_failure``, logged in one line."""
        if self._thread is not None:
            raise RuntimeError("forwarder already started")
        self._log_failure = log_failure
        self._thread = threading.Thread(target=self._thread_main, name="forwarder", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current batch (uncommitted work is read again next time) and close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():  # still busy (a hung request): ``running`` says so
                self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _thread_main(self) -> None:
        try:
            self.run()
        except ElasticsearchRefused as exc:
            self.failure = exc
            if self._log_failure:
                log.error("forwarder stopped: %s", exc)
        except BaseException as exc:  # noqa: BLE001 - a bug: keep the reason for whoever started us
            self.failure = exc
            if self._log_failure:
                log.error("forwarder thread failed: %s: %s", type(exc).__name__, exc)
        finally:
            self.close()

    def _stops(self) -> list[threading.Event | None]:
        return [self._stop, self._ext_stop]

    @property
    def stopping(self) -> bool:
        """True once a stop was requested (by :meth:`stop` or the event given to :meth:`run`)."""
        return stop_requested(self._stops())

    def _policy(self) -> RetryPolicy:
        return RetryPolicy(initial_s=0.2, max_s=self._max_backoff)

    def run(self, stop: threading.Event | None = None) -> None:
        """Forward until ``stop`` (or :meth:`stop`) is set. Batch failures are logged (one line
        each) and retried with the shared policy; :class:`ElasticsearchRefused` propagates."""
        if stop is not None:
            self._ext_stop = stop
        backoff = Backoff("forwarder batch", self._policy(), stop=self._stops(), logger=log)
        while not self.stopping:
            try:
                self.run_once(self._poll_timeout)
                backoff.succeeded()
            except Stopped:
                break
            except ElasticsearchRefused:
                raise
            except Exception as exc:  # noqa: BLE001 - keep forwarding; the batch is read again
                self._stats["errors"] += 1
                if not backoff.wait(backoff.failed(describe_error(exc))):
                    break

    def close(self) -> None:
        """Close the consumer without committing, the dead-letter producer, an owned ES client."""
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception:
                log.debug("closing the consumer raised", exc_info=True)
            self._consumer = None
        if self._producer is not None:
            try:
                self._producer.close(timeout=1 if self.stopping else 5)
            except Exception:
                log.debug("closing the dead-letter producer raised", exc_info=True)
            self._producer = None
        if self._own_es:
            self._es.close()
            self._own_es = False

    def stats(self) -> dict[str, Any]:
        """Counters: consumed, indexed, duplicates, dead_lettered, retries, batches, commits, ..."""
        return dict(self._stats)

    def __repr__(self) -> str:
        return f"Forwarder({self._bootstrap!r}, group_id={self._group!r}, topic_prefix={self._names.prefix!r})"

    # ------------------------------------------------------------------ one batch
    def run_once(self, timeout_s: float = 1.0) -> BatchResult:
        """Poll one batch, index it, dead-letter what cannot be indexed, commit. Returns counts.

        On any failure before the commit, the consumer is rewound to the batch's first offsets
        and the exception propagates: nothing of the batch is lost or committed.
        """
        self._ensure_started()
        result = BatchResult()
        if self._carry:
            msgs, self._carry = self._carry, []
        else:
            polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=self._batch_size)
            msgs = [m for tp in sorted(polled, key=lambda t: (t.topic, t.partition)) for m in polled[tp]]
        if not msgs:
            self._maybe_report()
            return result
        result.consumed = len(msgs)
        self._stats["consumed"] += len(msgs)
        try:
            self._process(msgs, result)
            self._commit(msgs)
        except BaseException:
            self._rewind(msgs)
            raise
        result.committed = True
        self._stats["commits"] += 1
        self._stats["batches"] += 1
        self._maybe_report()
        return result

    def _process(self, msgs: list[Any], result: BatchResult) -> None:
        actions: list[dict[str, Any]] = []
        origin: list[Any] = []
        dead: list[tuple[Any, str]] = []
        for m in msgs:
            family = self._names.family_of(m.topic)
            if family is None:
                dead.append((m, f"topic {m.topic} is not a tradeconsole event topic"))
                continue
            try:
                doc = loads(m.value) if m.value is not None else None
            except (ValueError, TypeError) as exc:
                dead.append((m, f"invalid JSON: {exc}"))
                continue
            if not isinstance(doc, dict):
                dead.append((m, f"not a JSON object but {type(doc).__name__}"))
                continue
            try:
                action = to_action(doc, family, self._index_prefix)
            except ValueError as exc:
                dead.append((m, f"not an event: {exc}"))
                continue
            if b"\n" not in m.value and b"\r" not in m.value:
                action["_source"] = m.value  # valid JSON already: sent as it came, not re-encoded
            actions.append(action)
            origin.append(m)
        pending = list(range(len(actions)))
        es_backoff = Backoff("Elasticsearch bulk", self._policy(), stop=self._stops(), logger=log)
        while pending:
            outcomes = bulk_write(self._es, [actions[i] for i in pending], chunk_size=self._batch_size)
            retry: list[int] = []
            reason = ""
            for i, (kind, why) in zip(pending, outcomes, strict=True):
                if kind == "ok":
                    result.indexed += 1
                elif kind == "duplicate":
                    result.duplicates += 1
                elif kind == "reject":
                    dead.append((origin[i], f"rejected by Elasticsearch: {why}"))
                else:
                    retry.append(i)
                    reason = why
            pending = retry
            if pending:
                result.retries += len(pending)
                self._stats["retries"] += len(pending)
                delay = es_backoff.failed(
                    f"{len(pending)} document(s) not accepted yet ({reason})", outcomes.retry_after
                )
                self._wait_keeping_membership(delay)
        if dead:
            dead.sort(key=lambda d: (d[0].topic, d[0].partition, d[0].offset))
            self._dead_letter(dead)
            result.dead_lettered = len(dead)
        self._stats["indexed"] += result.indexed
        self._stats["duplicates"] += result.duplicates
        self._stats["dead_lettered"] += result.dead_lettered

    def _commit(self, msgs: list[Any]) -> None:
        """Commit the offsets after the batch (called only once Elasticsearch accepted it)."""
        from kafka import TopicPartition
        from kafka.errors import CommitFailedError
        from kafka.structs import OffsetAndMetadata

        offsets: dict[Any, Any] = {}
        for m in msgs:
            tp = TopicPartition(m.topic, m.partition)
            if tp not in offsets or offsets[tp].offset <= m.offset:
                offsets[tp] = OffsetAndMetadata(m.offset + 1, "", -1)
        try:
            self._consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced while we worked: the new owner reads the batch again, and the
            # documents it writes again are 409 duplicates. Nothing is lost.
            self._stats["commit_failures"] += 1
            log.warning("offset commit failed after a rebalance (%s); the batch will be read again", exc)

    def _rewind(self, msgs: list[Any]) -> None:
        from kafka import TopicPartition

        if self._consumer is None:
            return
        first: dict[Any, int] = {}
        for m in msgs:
            tp = TopicPartition(m.topic, m.partition)
            first[tp] = min(first.get(tp, m.offset), m.offset)
        assigned = self._consumer.assignment()
        for tp, off in first.items():
            if tp in assigned:
                try:
                    self._consumer.seek(tp, off)
                except Exception:  # a revoked partition is re-read by its new owner
                    log.debug("seek back failed for %s", tp, exc_info=True)

    # ------------------------------------------------------------------ helpers
    def _ensure_started(self) -> None:
        if not self._templates_ok:
            retry_call(
                self._install_templates,
                name="installing the index templates",
                classify=_transient,
                policy=self._policy(),
                stop=self._stops(),
                logger=log,
                describe=describe_error,
            )
            self._templates_ok = True
        if self._consumer is None:
            from kafka import KafkaConsumer

            config: dict[str, Any] = {
                "bootstrap_servers": self._bootstrap,
                "group_id": self._group,
                "client_id": f"{self._group}-consumer",
                "enable_auto_commit": False,
                "auto_offset_reset": "earliest",
                "max_poll_records": self._batch_size,
                "fetch_max_wait_ms": 100,
                "max_partition_fetch_bytes": 8 * 1024 * 1024,
                **_bootstrap_timeout(KafkaConsumer),
                **self._security,
                **self._consumer_overrides,
            }
            self._consumer = KafkaConsumer(**config)
            self._consumer.subscribe(self._names.all())

    def _install_templates(self) -> None:
        """Install the index templates once; a permanent refusal becomes :class:`ElasticsearchRefused`."""
        try:
            install_templates(self._es, self._index_prefix, replicas=self._replicas)
        except Exception as exc:
            refused = refusal(exc)
            if refused is not None:
                raise ElasticsearchRefused(refused) from None
            raise

    def _dead_letter(self, dead: list[tuple[Any, str]]) -> None:
        """Send to ``<prefix>.deadletter`` and wait for the broker's acknowledgement (so the
        commit that follows can never lose a dead letter)."""
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(
                **{
                    "bootstrap_servers": self._bootstrap,
                    "acks": "all",
                    "linger_ms": 5,
                    "client_id": f"{self._group}-deadletter",
                    **_bootstrap_timeout(KafkaProducer),
                    **self._security,
                    **self._producer_overrides,
                }
            )
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        futures = []
        for m, reason in dead:
            log.error("dead-lettering %s[%d]@%d: %s", m.topic, m.partition, m.offset, reason)
            body: dict[str, Any] = {
                "reason": reason,
                "source": {
                    "topic": m.topic,
                    "partition": m.partition,
                    "offset": m.offset,
                    "timestamp": m.timestamp,
                    "key": m.key.decode(errors="replace") if m.key else None,
                },
                "forwarder_group": self._group,
                "dead_lettered_at": now,
            }
            raw = m.value or b""
            try:
                body["payload"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                body["payload_base64"] = base64.b64encode(raw).decode()
            futures.append(
                self._producer.send(
                    self._names.deadletter, value=dumps(body), key=m.key, headers=[("reason", reason.encode()[:1000])]
                )
            )
        self._await_dead_letters()
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            raise RuntimeError(f"{len(failed)} dead letter(s) not acknowledged: {failed[0].exception}")

    def _await_dead_letters(self, limit_s: float = 30.0) -> None:
        """Wait for the broker to acknowledge the dead letters, in short steps so a stop is seen."""
        from kafka.errors import KafkaTimeoutError

        deadline = time.monotonic() + limit_s
        while True:
            try:
                self._producer.flush(timeout=0.5)
                return
            except KafkaTimeoutError:
                if self.stopping:
                    raise Stopped("stopped while dead letters waited for the broker") from None
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"dead letters not acknowledged within {limit_s:.0f}s") from None

    def _wait_keeping_membership(self, delay: float) -> None:
        """Wait ``delay`` before retrying Elasticsearch, polling the paused consumer so the group
        membership stays alive; raises :class:`Stopped` as soon as a stop is requested."""
        consumer = self._consumer
        assigned = consumer.assignment()
        consumer.pause(*assigned)
        try:
            end = time.monotonic() + delay
            while (left := end - time.monotonic()) > 0:
                if self.stopping:
                    raise Stopped("stopped while a batch waited for Elasticsearch; not committed")
                polled = consumer.poll(timeout_ms=int(min(0.1, left) * 1000))
                for tp in sorted(polled, key=lambda t: (t.topic, t.partition)):
                    self._carry.extend(polled[tp])  # newly assigned partitions: handled next batch
        finally:
            consumer.resume(*consumer.paused())

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if self._on_stats is not None and now - self._last_stats >= 1.0:
            self._last_stats = now
            try:
                self._on_stats(self.stats())
            except Exception:
                log.exception("on_stats callback failed")


def _transient(exc: BaseException) -> float | bool | None:
    """``retry_call``'s verdict on a failure to reach Elasticsearch: a refusal is final, anything
    else (not up yet, 5xx, 429) is retried, after at least the server's Retry-After."""
    if isinstance(exc, ElasticsearchRefused):
        return None
    return retry_after_of(exc) or True


def _bootstrap_timeout(client_class: Any) -> dict[str, Any]:
    """``bootstrap_timeout_ms`` for kafka-python versions that have it (3.x), else nothing."""
    if "bootstrap_timeout_ms" in getattr(client_class, "DEFAULT_CONFIG", {}):
        return {"bootstrap_timeout_ms": _BOOTSTRAP_TIMEOUT_MS}
    return {}


# ---------------------------------------------------------------------------------------------- CLI


def cli_main(args: argparse.Namespace) -> int:
    """``tradeconsole forward --kafka BOOTSTRAP --elasticsearch URL [--group G] [--config PATH]``.

    Kafka TLS/SASL settings and ``topic_prefix`` come from ``[kafka]`` in the config file,
    ``index_prefix``, ``cloud_id`` and ``api_key`` from ``[elasticsearch]`` (or
    ``TRADECONSOLE_ELASTICSEARCH_API_KEY``); ``[forwarder]`` may set ``batch_size`` and a
    ``[forwarder.consumer]`` table of kafka-python consumer settings (e.g. ``session_timeout_ms``).
    ``--elasticsearch cloud`` uses the configured Elastic Cloud ``cloud_id``. Runs until
    SIGINT/SIGTERM, then exits within ``STOP_GRACE_S`` (+ a moment to close): 0 after a stop,
    1 when Elasticsearch refuses this client for good (one ``error:`` line says why), 2 for bad
    arguments or configuration.
    """
    from tradeconsole.core.errors import EnvironmentFailure, UserError
    from tradeconsole.infra.settings import load_settings

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per failed attempt, ours (infra/retry.py, with the library's error in it): the
    # Kafka and Elasticsearch client libraries would add several lines, some with a traceback,
    # for every connection attempt.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    # errors go through tradeconsole.tui.cli.main: one `error:` line on stderr (config mistakes exit 2)
    settings = load_settings(getattr(args, "config", None))
    kafka_cfg = dict(settings.kafka)
    es_cfg = dict(settings.elasticsearch)
    security = {k: v for k, v in kafka_cfg.items() if k not in ("bootstrap", "topic_prefix")}
    fw_cfg = _forwarder_section(settings.config_path)
    url = args.elasticsearch if args.elasticsearch not in ("", "cloud") else None
    try:
        es = client_from_settings(url, es_cfg)
        fw = Forwarder(
            args.kafka,
            es,
            group_id=args.group,
            topic_prefix=kafka_cfg.get("topic_prefix", DEFAULT_PREFIX),
            index_prefix=es_cfg.get("index_prefix", DEFAULT_INDEX_PREFIX),
            security=security,
            batch_size=int(fw_cfg.get("batch_size", 2000)),
            consumer_overrides=dict(fw_cfg.get("consumer", {})),
            on_stats=_log_stats_every(10.0),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping (a batch not yet in Elasticsearch is read again next time)", signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    log.info("forwarding %s.* from %s to Elasticsearch (group %s)", fw._names.prefix, args.kafka, args.group)
    # The forwarder runs on its own thread so that this one always sees the signal in time, even
    # while the forwarder waits on a socket (a hung Elasticsearch, a Kafka bootstrap).
    fw.start(log_failure=False)  # a failure is reported below, once
    while fw.running and wait_or_stop(0.2, stop):
        pass
    fw.stop(STOP_GRACE_S)
    if fw.running:
        log.warning(
            "forwarder still busy %.0fs after the stop; exiting without committing its batch "
            "(it is read again next time)",
            STOP_GRACE_S,
        )
    else:
        es.close()
    if isinstance(fw.failure, ElasticsearchRefused):
        raise EnvironmentFailure(str(fw.failure))  # tradeconsole.tui.cli.main: one `error:` line, exit 1
    if fw.failure is not None:
        raise fw.failure
    log.info("forwarder stopped: %s", fw.stats())
    return 0


def _forwarder_section(path: Any) -> dict[str, Any]:
    """The ``[forwarder]`` table of the config file (``tradeconsole.infra.settings`` already vetted the file)."""
    import tomllib

    if path is None:
        return {}
    with open(path, "rb") as f:
        section = tomllib.load(f).get("forwarder", {})
    return dict(section) if isinstance(section, dict) else {}


def _log_stats_every(seconds: float) -> Callable[[dict[str, Any]], None]:
    last = [0.0]

    def report(stats: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds:
            last[0] = now
            log.info("forwarder: %s", stats)

    return report
