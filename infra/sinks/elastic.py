"""Elasticsearch: client construction, index naming, index templates, bulk outcomes, direct sink.

Index naming
------------
One index per event family and calendar month of the event's ``@timestamp`` (UTC):
``<prefix>-<family>-YYYY.MM``, e.g. ``tradeconsole-candles-2022.01``. Monthly indices rather than
data streams because the document id is the event id and must deduplicate: a data stream's
backing index depends on when a document *arrives* (rollover), so a redelivered event could land
in a newer backing index next to its first copy; a month derived from the event itself always
names the same index. Monthly indices also keep backtests of old data apart from live months and
are easy to archive by hand. Kibana data views use ``<prefix>-<family>-*``.

Templates and mappings
----------------------
``install_templates`` puts one composable index template per family (``<prefix>-<family>``) whose
explicit mappings are derived from ``infra/sinks/schemas`` (dates as ``date``, prices and indicators as
``double``, ids and enums as ``keyword``, free text as ``text`` with a ``keyword`` sub-field);
fields not in the schema map numbers to ``double`` and strings to ``keyword``. A template only
affects indices created after it, and nothing here deletes an index, a document or a template:
templates that another tool owns (``_meta.managed_by`` not ``tradeconsole``) are left alone.

Documents are written with the ``create`` operation and ``_id = event_id``: a redelivered event
gets 409 (counted as a duplicate, not an error), so a replay never duplicates a document.

Direct sink: journal-fed (the console and the headless runner) or spooled
-------------------------------------------------------------------------
The runtime's sink is made with ``journal_fed=True`` and fed by the
:class:`~tradeconsole.infra.persistence.shipper.JournalShipper` with the same windowed protocol as the Kafka sink: the
journal cursor is the only record of what is unsent, and the sink keeps **no disk spool**. Why
this rather than a spool that degrades to memory on ENOSPC: the journal already holds every event
durably, so a second copy on disk only adds a failure mode (a full spool disk killed the sink
thread for good) and a second replay after a restart; and because the document id is the event
id, resending from the cursor after a crash or an outage can never duplicate a document (409,
counted in ``duplicates``), so no read-back is needed. During an outage the shipper publishes
nothing (``ready()`` is False), the events wait in the journal, and memory holds at most the
shipper's window. ``close()`` never waits for Elasticsearch: what is unacknowledged stays in the
journal and is sent by the next run, so a quit or SIGTERM ends in seconds whatever Elasticsearch
is doing (down, hanging, refusing). Documents Elasticsearch rejects go to ``deadletter_path``; a
full disk there is logged and counted (``deadletter_lost``), never fatal.

A sink made without ``journal_fed`` (direct use, tests) keeps the older disk spool.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeconsole.core.events import SCHEMA_VERSION, Event
from tradeconsole.infra.retry import Backoff, RetryPolicy, parse_retry_after
from tradeconsole.infra.sinks.codec import dumps, loads
from tradeconsole.infra.sinks.protocol import ELASTICSEARCH
from tradeconsole.infra.sinks.schemas import SchemaError, schemas_for_family
from tradeconsole.infra.sinks.spool import EventInbox, Record, Spool, SpooledSinkBase, SpoolPosition, open_default_spool
from tradeconsole.infra.sinks.topics import families, message_key

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

__all__ = [
    "DEFAULT_INDEX_PREFIX",
    "TEMPLATE_VERSION",
    "BulkOutcome",
    "BulkOutcomes",
    "ElasticsearchRefused",
    "ElasticsearchSink",
    "bulk_write",
    "check_index_prefix",
    "client_from_settings",
    "describe_error",
    "index_name",
    "index_pattern",
    "index_template",
    "install_templates",
    "make_client",
    "mapping_for_family",
    "refusal",
    "retry_after_of",
    "to_action",
]

log = logging.getLogger(__name__)

DEFAULT_INDEX_PREFIX = "tradeconsole"
#: Bumped whenever the generated templates change; an older installed template is updated.
TEMPLATE_VERSION = SCHEMA_VERSION * 1000 + 1
_MANAGED_BY = "tradeconsole"
_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_TEXT = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}}


# ---------------------------------------------------------------------------------------------- client


def make_client(
    url: str | None = None,
    *,
    cloud_id: str | None = None,
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_certs: str | None = None,
    verify_certs: bool = True,
    request_timeout: float = 30.0,
    **kwargs: Any,
) -> Elasticsearch:
    """An official-client ``Elasticsearch`` for a URL or an Elastic Cloud ``cloud_id``.

    Authentication: ``api_key`` (Elastic Cloud's usual way, base64 ``id:key`` form) or
    ``username``/``password``. Nothing here logs a credential.
    """
    from elasticsearch import Elasticsearch

    if not url and not cloud_id:
        raise ValueError("Elasticsearch needs a URL or an Elastic Cloud cloud_id")
    # max_retries=0: retrying is infra/retry.py's job (stop-aware, one log line per attempt); the
    # transport's own retries would multiply attempts and log a traceback for each.
    opts: dict[str, Any] = {"request_timeout": request_timeout, "max_retries": 0, **kwargs}
    if cloud_id:
        opts["cloud_id"] = cloud_id
    else:
        opts["hosts"] = [h.strip() for h in str(url).split(",") if h.strip()]
    if api_key:
        opts["api_key"] = api_key
    elif username:
        opts["basic_auth"] = (username, password or "")
    if ca_certs:
        opts["ca_certs"] = ca_certs
    if not verify_certs:
        opts["verify_certs"] = False
    try:  # 1.5x faster bulk bodies than the standard library's json
        from elasticsearch.serializer import OrjsonSerializer

        opts.setdefault("serializer", OrjsonSerializer())
    except ImportError:
        pass
    return Elasticsearch(**opts)


def _reveal(v: Any) -> Any:
    return v.reveal() if hasattr(v, "reveal") else v


def client_from_settings(
    url: str | None, section: Mapping[str, Any] | None = None, env: Mapping[str, str] = os.environ
) -> Elasticsearch:
    """A client from the ``[elasticsearch]`` config section (``url``, ``cloud_id``, ``api_key``,
    ``username``, ``password``, ``ca_certs``, ``verify_certs``); ``url`` (e.g. from the command
    line) wins over the section's. The API key may come from ``TRADECONSOLE_ELASTICSEARCH_API_KEY``."""
    s = dict(section or {})
    api_key = env.get("TRADECONSOLE_ELASTICSEARCH_API_KEY") or _reveal(s.get("api_key"))
    return make_client(
        url or s.get("url"),
        cloud_id=s.get("cloud_id") if not url else None,
        api_key=api_key or None,
        username=s.get("username"),
        password=_reveal(s.get("password")),
        ca_certs=s.get("ca_certs"),
        verify_certs=bool(s.get("verify_certs", True)),
    )


# ---------------------------------------------------------------------------------------------- naming


def check_index_prefix(prefix: str) -> str:
    """``prefix`` if Elasticsearch accepts it at the start of an index name, else ValueError."""
    if not prefix or prefix != prefix.lower() or any(c in prefix for c in ' "*\\<|,>/?#:') or prefix[0] in "-_+":
        raise ValueError(f'index prefix {prefix!r} must be lowercase without spaces or any of " * \\ < | , > / ? # :')
    return prefix


def index_pattern(family: str, prefix: str = DEFAULT_INDEX_PREFIX) -> str:
    """The pattern that matches every monthly index of a family (templates, data views)."""
    return f"{check_index_prefix(prefix)}-{family}-*"


def index_name(family: str, timestamp: str, prefix: str = DEFAULT_INDEX_PREFIX) -> str:
    """``<prefix>-<family>-YYYY.MM`` for an event's ``@timestamp`` (ISO-8601; the month is UTC).

    Raises ValueError for a timestamp that is not ISO-8601.
    """
    ts = timestamp
    if len(ts) >= 20 and ts.endswith("Z") and ts[4] == "-" and ts[7] == "-" and ts[:4].isdigit() and ts[5:7].isdigit():
        return f"{prefix}-{family}-{ts[:4]}.{ts[5:7]}"
    dt = datetime.fromisoformat(ts)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {timestamp!r} has no time zone")
    dt = dt.astimezone(UTC)
    return f"{prefix}-{family}-{dt.year:04d}.{dt.month:02d}"


# ---------------------------------------------------------------------------------------------- mappings


def _field_mapping(prop: Mapping[str, Any], name: str) -> dict[str, Any]:
    hint = prop.get("x-es-type")
    if hint == "text":
        return copy.deepcopy(_TEXT)
    if hint == "epoch_millis":
        return {"type": "date", "format": "epoch_millis"}
    if "const" in prop and "type" not in prop:
        value = prop["const"]
        return {"type": "integer"} if isinstance(value, int) and not isinstance(value, bool) else dict(_KEYWORD)
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    types = [t for t in types if t != "null"]
    if "object" in types:
        if "properties" in prop:
            return {
                "type": "object",
                "properties": {k: _field_mapping(v, f"{name}.{k}") for k, v in prop["properties"].items()},
            }
        return {"type": "object", "dynamic": True}
    if prop.get("format") == "date-time":
        return {"type": "date"}
    if "number" in types:
        return {"type": "double"}
    if "integer" in types:
        return {"type": "long"}
    if types == ["boolean"]:
        return {"type": "boolean"}
    if types == ["string"]:
        return dict(_KEYWORD)
    raise SchemaError(f"cannot map field {name!r} with types {types!r} to Elasticsearch")


def mapping_for_family(family: str) -> dict[str, Any]:
    """Explicit mappings for one family, merged over its event types' schemas.

    Raises SchemaError when two event types of the family disagree on a field's mapping.
    """
    props: dict[str, Any] = {}
    for schema in schemas_for_family(family):
        for name, prop in schema["properties"].items():
            m = _field_mapping(prop, name)
            if name in props and props[name] != m:
                raise SchemaError(f"family {family!r}: field {name!r} is mapped as {props[name]} and as {m}")
            props[name] = m
    return {
        "dynamic": True,
        "date_detection": False,
        "numeric_detection": False,
        "dynamic_templates": [
            {"integers_as_double": {"match_mapping_type": "long", "mapping": {"type": "double"}}},
            {"floats_as_double": {"match_mapping_type": "double", "mapping": {"type": "double"}}},
            {"strings_as_keyword": {"match_mapping_type": "string", "mapping": dict(_KEYWORD)}},
        ],
        "properties": props,
    }


def index_template(family: str, prefix: str = DEFAULT_INDEX_PREFIX, *, replicas: int | None = None) -> dict[str, Any]:
    """The composable index template body for one family (``PUT _index_template/<prefix>-<family>``)."""
    settings: dict[str, Any] = {"number_of_shards": 1}
    if replicas is not None:
        settings["number_of_replicas"] = replicas
    return {
        "index_patterns": [index_pattern(family, prefix)],
        "priority": 200,
        "version": TEMPLATE_VERSION,
        "template": {"settings": settings, "mappings": mapping_for_family(family)},
        "_meta": {"managed_by": _MANAGED_BY, "schema_version": SCHEMA_VERSION, "family": family},
    }


def install_templates(
    client: Elasticsearch, prefix: str = DEFAULT_INDEX_PREFIX, *, replicas: int | None = None
) -> dict[str, str]:
    """Create or update the index template of every family. Returns name -> what happened
    (``created``, ``updated``, ``unchanged``, ``foreign`` for a template another tool owns).

    Never deletes anything; existing indices keep their mappings (templates apply to new ones).
    """
    from elasticsearch import NotFoundError

    out: dict[str, str] = {}
    for family in families():
        name = f"{check_index_prefix(prefix)}-{family}"
        body = index_template(family, prefix, replicas=replicas)
        try:
            existing = client.indices.get_index_template(name=name).body.get("index_templates", [])
        except NotFoundError:
            existing = []
        if existing:
            current = existing[0].get("index_template", {})
            meta = current.get("_meta") or {}
            if meta.get("managed_by") != _MANAGED_BY:
                log.warning("index template %s exists and is not managed by tradeconsole; left as it is", name)
                out[name] = "foreign"
                continue
            if int(current.get("version") or 0) >= TEMPLATE_VERSION:
                out[name] = "unchanged"
                continue
        client.indices.put_index_template(name=name, **body)
        out[name] = "updated" if existing else "created"
    return out


# ---------------------------------------------------------------------------------------------- bulk


def to_action(doc: dict[str, Any], family: str, prefix: str = DEFAULT_INDEX_PREFIX) -> dict[str, Any]:
    """A bulk ``create`` action for an event document; ``_id`` is its ``event_id``.

    Raises ValueError for a document without an ``event_id`` or a usable ``@timestamp``.
    """
    event_id = doc.get("event_id")
    if not isinstance(event_id, str) or not event_id or len(event_id.encode()) > 512:
        # ValueError (not TypeError) throughout: callers treat every unusable document alike.
        raise ValueError("document has no usable event_id (a non-empty string of at most 512 bytes)")
    ts = doc.get("@timestamp")
    if not isinstance(ts, str):
        raise ValueError("document has no @timestamp string")  # noqa: TRY004
    return {"_op_type": "create", "_index": index_name(family, ts, prefix), "_id": event_id, "_source": doc}


#: What happened to one bulk action: ``ok``, ``duplicate`` (already indexed), ``retry``
#: (transient: 429, 5xx, connection) or ``reject`` (Elasticsearch refuses the document).
BulkOutcome = tuple[str, str]


def _classify(ok: bool, item: Mapping[str, Any]) -> BulkOutcome:
    info = next(iter(item.values())) if item else {}
    if ok:
        return "ok", ""
    status = info.get("status")
    err = info.get("error")
    if isinstance(err, Mapping):
        reason = f"{err.get('type', 'error')}: {err.get('reason', '')}"
        cause = err.get("caused_by")
        if isinstance(cause, Mapping):
            reason += f" (caused by {cause.get('type', '')}: {cause.get('reason', '')})"
    else:
        reason = str(err)
    if status == 409:
        return "duplicate", reason
    if not isinstance(status, int) or status == 429 or status >= 500:
        return "retry", f"status {status}: {reason}"
    return "reject", f"status {status}: {reason}"


def bulk_write(
    client: Elasticsearch,
    actions: Sequence[dict[str, Any]],
    *,
    chunk_size: int = 1000,
    max_chunk_bytes: int = 20 * 1024 * 1024,
) -> BulkOutcomes:
    """Send actions with the official client's ``helpers.streaming_bulk``; one outcome per action,
    in order (a :class:`BulkOutcomes` list, whose ``retry_after`` carries a server's Retry-After).

    Connection failures and transient errors of the whole request (429, 5xx) come back as
    ``retry``. A refusal that no retry can cure (the cluster rejects the client's compatible-with
    header, bad credentials, a forbidden index) raises :class:`ElasticsearchRefused`, so callers
    stop loudly instead of retrying forever or dead-lettering every document."""
    from elasticsearch import ApiError, TransportError, helpers

    out = BulkOutcomes()
    if not actions:
        return out
    try:
        # raise_on_exception: a failed *request* raises (classified below) instead of being turned
        # into one per-item "error" each, which would look like documents Elasticsearch rejected.
        for ok, item in helpers.streaming_bulk(
            client,
            actions,
            chunk_size=chunk_size,
            max_chunk_bytes=max_chunk_bytes,
            raise_on_error=False,
            raise_on_exception=True,
            max_retries=0,
            yield_ok=True,
        ):
            out.append(_classify(ok, item))
    except (TransportError, ApiError, OSError) as exc:
        refused = refusal(exc)
        if refused is not None:
            raise ElasticsearchRefused(refused) from None
        out.retry_after = retry_after_of(exc)
        reason = describe_error(exc)
        out.extend(("retry", reason) for _ in range(len(actions) - len(out)))
    return out


class BulkOutcomes(list[BulkOutcome]):
    """The outcomes of one ``bulk_write``; ``retry_after`` is the seconds a failed request's
    ``Retry-After`` header asked for (None when it sent none)."""

    retry_after: float | None = None


# ---------------------------------------------------------------------------------------------- errors


class ElasticsearchRefused(RuntimeError):
    """Elasticsearch answered, and refuses this client in a way retrying cannot change.

    The message is one line meant for an operator: what was refused and what to do."""


#: Whole-request statuses that are worth retrying: timeout, conflict on a shared resource,
#: throttling, and server-side trouble (RFC 9110 semantics; Elasticsearch uses 429 for a full
#: queue and 503 for a node that is starting or has no master).
_TRANSIENT_STATUS = frozenset({408, 409, 429})


def _error_body(exc: BaseException) -> tuple[str, str]:
    """``(type, reason)`` of an Elasticsearch error body, the cause's reason appended."""
    body = getattr(exc, "body", None)
    err = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(err, Mapping):
        reason = str(err.get("reason") or "")
        cause = err.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason"):
            reason = f"{reason}: {cause['reason']}" if reason else str(cause["reason"])
        return str(err.get("type") or ""), reason
    return "", str(err or "")


def refusal(exc: BaseException) -> str | None:
    """A one-line explanation when ``exc`` is a permanent refusal, None when it is transient.

    Permanent: a 400 ``media_type_header_exception`` (the cluster does not speak this client's
    ``compatible-with`` version; see ``RestCompatibleVersionHelper`` in Elasticsearch), 401/403,
    any other 4xx for a whole request except 408/409/429, and a server that is not
    Elasticsearch. Connection errors, timeouts, 429 and 5xx are transient."""
    from elasticsearch import ApiError, UnsupportedProductError

    if isinstance(exc, UnsupportedProductError):
        return f"the server is not a supported Elasticsearch: {exc}"
    if not isinstance(exc, ApiError):
        return None
    status = exc.status_code if isinstance(exc.status_code, int) else 0
    if status >= 500 or status in _TRANSIENT_STATUS or status < 400:
        return None
    kind, reason = _error_body(exc)
    if kind == "media_type_header_exception":
        accepts = re.search(r"must be either version (\d+) or (\d+)", reason)
        sent = re.findall(r"compatible-with=(\d+)", reason)
        what = (
            f"it accepts compatible-with={accepts.group(1)} or {accepts.group(2)}, this client sent "
            f"compatible-with={sent[0] if sent else '?'}"
            if accepts
            else "the headers do not agree"
        )
        return (
            f"Elasticsearch refuses this client's REST compatibility header: {what} (Python client "
            f"elasticsearch {_client_version()}; tradeconsole pins elasticsearch>=8.15,<9 for the 8.x stack "
            f"of infra/deploy/docker-compose.yml): install a client of the cluster's major version "
            f"[{kind}: {reason}]"
        )
    if status == 401:
        return f"Elasticsearch refused the credentials (401 {kind or 'unauthorized'}): check api_key or username/password under [elasticsearch]"
    if status == 403:
        return f"Elasticsearch forbids this request (403 {kind}: {reason}): the API key or user lacks a privilege"
    return f"Elasticsearch refused the request ({status} {kind}: {reason})"


def describe_error(exc: BaseException) -> str:
    """``Type: message`` for a log line, with the underlying cause when the client's own message
    says nothing more than "Connection error" (elastic_transport keeps the reason in __cause__)."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    return text


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds a failed response's ``Retry-After`` header asks for (None without one)."""
    meta = getattr(exc, "meta", None)
    headers = getattr(meta, "headers", None)
    if headers is None:
        return None
    try:
        value = headers.get("retry-after")
    except Exception:  # noqa: BLE001 - a header container we do not know: no hint
        return None
    return parse_retry_after(value)


def _client_version() -> str:
    try:
        from elasticsearch import __versionstr__
    except ImportError:  # pragma: no cover - the client is a dependency
        return "unknown"
    return str(__versionstr__)


# ---------------------------------------------------------------------------------------------- sink


class ElasticsearchSink(SpooledSinkBase):
    """Indexes engine events straight into Elasticsearch, for setups without Kafka.

    Same contract as ``KafkaSink``: ``publish`` never blocks (bounded deque, overflow file), a
    thread writes batches with the bulk helpers, events wait in the spool while Elasticsearch is
    unreachable or failing (429/5xx) and are written when it is back. Documents Elasticsearch
    rejects are appended to ``deadletter.ndjson`` in the spool directory with the reason.
    """

    def __init__(
        self,
        client: Elasticsearch | str,
        *,
        index_prefix: str = DEFAULT_INDEX_PREFIX,
        spool_dir: Path | None = None,
        queue_size: int = 100_000,
        batch_size: int = 1000,
        on_stats: Callable[[dict[str, Any]], None] | None = None,
        install: bool = True,
        spool_fsync: str = "interval",
        replicas: int | None = None,
        stats_interval_s: float = 1.0,
        journal_fed: bool = False,
        deadletter_path: Path | None = None,
        stall_s: float = 3.0,
    ) -> None:
        self._client = make_client(client) if isinstance(client, str) else client
        self._prefix = check_index_prefix(index_prefix)
        self._spool: Any
        if journal_fed:
            # no disk spool: the journal is the only record of what is unsent (module docstring)
            self._spool = None
            if deadletter_path is None:
                from tradeconsole.core.paths import data_dir

                deadletter_path = data_dir() / "deadletter" / "elasticsearch.ndjson"
            self._deadletter_path = Path(deadletter_path)
        else:
            self._spool = (
                Spool(spool_dir, fsync=spool_fsync)
                if spool_dir is not None
                else open_default_spool("elasticsearch", fsync=spool_fsync)
            )
            self._deadletter_path = Path(deadletter_path) if deadletter_path else self._spool.dir / "deadletter.ndjson"
        overflow_dir = self._spool.dir if self._spool is not None else None
        super().__init__(
            ELASTICSEARCH,
            EventInbox(queue_size, self._encode, overflow_dir),
            journal_fed=journal_fed,
            thread_name="es-sink",
        )
        self._batch = batch_size
        self._on_stats = on_stats
        self._stats_interval = stats_interval_s
        self._replicas = replicas
        self._templates_ok = not install
        # the one retry policy (infra/retry.py), used non-blocking: the thread keeps taking events
        # into the spool while it waits for the next try
        self._retry = Backoff("Elasticsearch sink", RetryPolicy(initial_s=0.2, max_s=10.0), logger=log)
        self._next_try = 0.0
        self._down = False
        self._refused: str | None = None
        self._counts = {"indexed": 0, "duplicates": 0, "rejected": 0, "retries": 0, "invalid": 0, "batches": 0}
        self._deadletter_lost = 0
        # journal-fed protocol (infra/persistence/shipper.py): (epoch, records of it resolved in publish order)
        self._epoch = 0
        self._ep_done = 0
        self._progress = (0, 0)
        self._head: list[tuple[int, float, Any]] = []  # the batch being written (journal-fed)
        self._head_actions: list[dict[str, Any] | None] = []  # its actions still to write (None: resolved)
        self._seen_dropped_full = 0
        self._deferred = 0
        self._request_since: float | None = None  # a bulk request in progress since (monotonic)
        self._stall_s = stall_s
        self._last_stats = 0.0
        self._start_worker()

    @classmethod
    def from_settings(
        cls, url: str | None, settings: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> ElasticsearchSink:
        """A sink from a URL (command line) and the ``[elasticsearch]`` config section
        (``url``, ``cloud_id``, ``api_key``, ``index_prefix``, ...)."""
        s = dict(settings or {})
        kwargs.setdefault("index_prefix", s.get("index_prefix", DEFAULT_INDEX_PREFIX))
        return cls(client_from_settings(url, s), **kwargs)

    # ------------------------------------------------------------------ public
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event published so far is written (or rejected). False on timeout."""
        if self._journal_fed:
            return self._wait_until(lambda: self._outcome(not len(self._inbox) and not self._head), timeout)
        target = self._inbox.published + self._spool.recovered

        def written() -> bool | None:
            c = self._counts
            done = (
                c["indexed"]
                + c["duplicates"]
                + c["rejected"]
                + c["invalid"]
                + self._inbox.invalid
                + self._spool.corrupt
            )
            return self._outcome(done >= target)

        return self._wait_until(written, timeout)

    def _outcome(self, done: bool) -> bool | None:
        """For ``flush``: False once refused (it never completes), True when ``done``, else None."""
        if self._refused is not None:
            return False
        return True if done else None

    # ------------------------------------------------------------------ journal-fed protocol
    def progress(self) -> tuple[int, int]:
        """(epoch, records of that epoch resolved so far, in publish order): what the shipper may
        move its cursor past. A new epoch means everything unresolved was dropped (resend it)."""
        return self._progress

    def ready(self) -> bool:
        """True while Elasticsearch answers (templates installed, last write not failed); the
        shipper publishes nothing otherwise, so an outage's events wait in the journal."""
        since = self._request_since
        stalled = since is not None and time.monotonic() - since > self._stall_s  # a hanging server
        return (
            not self._closed
            and self._refused is None
            and not self._down
            and self._templates_ok
            and not stalled
            and self._thread.is_alive()
        )

    def set_source(self, source: str) -> None:
        """Nothing to tag: a document's id is its event id, which already says where it came from."""

    def delivered_seqs(self, source: str, after_seq: int) -> set[int]:
        """Always empty, and no request: nothing needs reading back, because what the shipper
        resends after its cursor comes back as a 409 duplicate (``_id = event_id``), never a
        second document."""
        return set()

    def close(self, timeout: float = 10.0) -> bool:
        """Stop. Journal-fed: never waits for Elasticsearch (at most ``timeout`` for the thread to
        leave a request in progress): what is unacknowledged stays in the journal for the next
        run. Spooled: deliver for up to ``timeout`` seconds, spool the rest."""
        if not self._journal_fed:
            return super().close(timeout)
        if self._closed:
            return self._drained_at_close
        self._deadline = time.monotonic()
        self._stop = True
        self._inbox.wake.set()
        self._thread.join(max(0.0, timeout))
        if self._thread.is_alive():  # blocked in a request to a hanging server: a daemon, left behind
            log.warning("Elasticsearch sink still waiting on a request at shutdown; its events stay in the journal")
            self._drained_at_close = False
        self._closed = True
        return self._drained_at_close

    def stats(self) -> dict[str, Any]:
        """Counters: queued, spooled, indexed, duplicates, rejected, retries, invalid, state
        (``connected``, ``down``, ``refused`` with the reason in ``error``, ``closed``)."""
        if self._closed:
            state = "closed"
        elif self._refused is not None:
            state = "refused"
        else:
            state = "down" if self._down else "connected"
        spool = self._spool
        return {
            "state": state,
            "error": self._refused,
            "published": self._inbox.published,
            "queued": len(self._inbox),
            "inflight": len(self._head),
            "spooled": spool.pending if spool is not None else 0,
            "spooled_total": spool.appended_total if spool is not None else 0,
            "overflowed": self._inbox.overflowed,
            "journal_fed": self._journal_fed,
            "epoch": self._epoch,
            "deferred": self._deferred,
            "deadletter_lost": self._deadletter_lost,
            "acked": self._counts["indexed"] + self._counts["duplicates"],
            **self._counts,
        }

    @property
    def spool_dir(self) -> Path | None:
        """The disk spool (None for a journal-fed sink, which has none)."""
        return self._spool.dir if self._spool is not None else None

    @property
    def deadletter_path(self) -> Path:
        return self._deadletter_path

    def __repr__(self) -> str:
        return f"ElasticsearchSink(index_prefix={self._prefix!r})"

    # ------------------------------------------------------------------ thread
    def _encode(self, item: tuple[int, float, Event]) -> Record | None:
        seq, t, ev = item
        try:
            return seq, int(t * 1000), ev.family, message_key(ev), dumps(ev.to_dict())
        except Exception:  # a broken event must not stop the others
            log.exception("cannot serialise %s; not indexed", type(ev).__name__)
            return None

    def _run(self) -> None:
        try:
            while True:
                if self._journal_fed:
                    if self._stop:
                        break
                    did = self._step_fed()
                else:
                    did = self._step()
                    if self._stop and (
                        (not len(self._inbox) and not self._inbox.overflowing and not self._spool.pending)
                        or self._refused is not None
                        or time.monotonic() >= self._deadline
                    ):
                        break
                if not did:
                    self._inbox.wait(0.05)
        except Exception:
            log.exception(
                "Elasticsearch sink thread failed; pending events go to the spool"
                if not self._journal_fed
                else "Elasticsearch sink thread failed; unsent events stay in the journal"
            )
        finally:
            if self._journal_fed:
                self._shutdown_fed()
            else:
                self._shutdown()

    # ------------------------------------------------------------------ journal-fed thread
    def _report(self, now: float) -> None:
        if now - self._last_stats >= self._stats_interval:
            self._last_stats = now
            if self._on_stats is not None:
                try:
                    self._on_stats(self.stats())
                except Exception:
                    log.exception("on_stats callback failed")

    def _new_epoch(self) -> None:
        """Drop everything unresolved; the shipper goes back to its cursor and resends (the
        document id is the event id: what did arrive comes back as a 409 duplicate)."""
        n = len(self._head) + self._inbox.discard()
        self._head, self._head_actions = [], []
        self._deferred += n
        self._epoch += 1
        self._ep_done = 0
        self._progress = (self._epoch, 0)

    def _step_fed(self) -> bool:
        now = time.monotonic()
        self._report(now)
        if self._inbox.dropped_full != self._seen_dropped_full:  # queue overflowed: resend from the journal
            self._seen_dropped_full = self._inbox.dropped_full
            self._new_epoch()
            return True
        if now < self._next_try:
            return False
        if not self._templates_ok:
            try:
                install_templates(self._client, self._prefix, replicas=self._replicas)
                self._templates_ok = True
                self._recovered()
            except Exception as exc:  # noqa: BLE001 - unreachable or refusing: classified here
                refused = refusal(exc)
                if refused is not None:
                    self._refuse(refused)
                else:
                    self._trouble(f"installing index templates failed: {describe_error(exc)}", retry_after_of(exc))
            return True
        if not self._head:
            items = [it for it in self._inbox.take(self._batch) if getattr(it[2], "epoch", 0) == self._epoch]
            if not items:
                return False
            actions: list[dict[str, Any] | None] = []
            for item in items:
                ev = item[2]
                try:
                    actions.append(to_action(ev.to_dict(), ev.family, self._prefix))
                except Exception as exc:  # noqa: BLE001 - counted, resolved in its place
                    self._counts["invalid"] += 1
                    log.error("cannot index %s: %s", type(ev).__name__, exc)
                    actions.append(None)
            self._head, self._head_actions = items, actions
        live = [(i, a) for i, a in enumerate(self._head_actions) if a is not None]
        if live:
            self._request_since = time.monotonic()
            try:
                outcomes = bulk_write(self._client, [a for _, a in live])
            except ElasticsearchRefused as exc:
                self._refuse(str(exc))
                return True
            finally:
                self._request_since = None
            self._counts["batches"] += 1
            retry = 0
            for (i, act), (kind, reason) in zip(live, outcomes, strict=True):
                if self._account(kind, reason, act):
                    retry += 1
                else:
                    self._head_actions[i] = None
            if retry:
                self._counts["retries"] += retry
                self._trouble(next(r for k, r in outcomes if k == "retry"), outcomes.retry_after)
                return True
        self._ep_done += len(self._head)
        self._progress = (self._epoch, self._ep_done)
        self._head, self._head_actions = [], []
        self._recovered()
        return True

    def _shutdown_fed(self) -> None:
        self._inbox.close()
        pending = len(self._head) + len(self._inbox)
        if pending:
            self._new_epoch()
            log.info("%d event(s) not acknowledged by Elasticsearch at shutdown stay in the journal", pending)
        self._drained_at_close = pending == 0

    def _step(self) -> bool:
        now = time.monotonic()
        inbox, spool = self._inbox, self._spool
        self._report(now)
        waiting = now < self._next_try
        if len(inbox) and (waiting or spool.pending or not self._templates_ok):
            self._spill()
        ovf = inbox.seal_overflow(spool.fsync != "never")
        if ovf is not None:
            spool.adopt(ovf.path, ovf.count)
        spool.maybe_sync()
        if waiting:
            return False
        if not self._templates_ok:
            try:
                install_templates(self._client, self._prefix, replicas=self._replicas)
                self._templates_ok = True
            except Exception as exc:  # noqa: BLE001 - unreachable or refusing: classified here
                refused = refusal(exc)
                if refused is not None:
                    self._refuse(refused)
                else:
                    self._trouble(f"installing index templates failed: {describe_error(exc)}", retry_after_of(exc))
                return False
        if spool.pending:
            entries = spool.read(self._batch)
            if not entries:
                return False
            self._write_spooled(entries)
            spool.save_cursor()
            return True
        items = inbox.take(self._batch)
        if not items:
            return False
        self._write_fresh(items)
        return True

    def _spill(self) -> None:
        items = self._inbox.take(len(self._inbox))
        recs = [r for r in map(self._encode, items) if r is not None]
        self._counts["invalid"] += len(items) - len(recs)
        self._spool.append(recs)

    def _trouble(self, reason: str, retry_after: float | None = None) -> None:
        """A transient failure: one log line (infra/retry.py), events wait in the spool."""
        if not self._down:
            reason = (
                f"{reason}; events wait in the journal"
                if self._journal_fed
                else f"{reason}; events wait in {self._spool.dir}"
            )
        self._down = True
        self._next_try = time.monotonic() + self._retry.failed(reason, retry_after)

    def _refuse(self, reason: str) -> None:
        """Elasticsearch refuses this client for good (e.g. a compatible-with mismatch): say so
        once, loudly, and stop sending. Events keep going to the spool, so nothing is lost; a
        sink started after the cause is fixed sends them first."""
        if self._refused is None:
            log.error(
                "Elasticsearch sink stopped sending: %s; events are kept in %s",
                reason,
                "the journal" if self._journal_fed else self._spool.dir,
            )
        self._refused = reason
        self._down = True
        self._next_try = float("inf")

    def _recovered(self) -> None:
        if self._down:
            log.info("Elasticsearch reachable again")
        self._down = False
        self._retry.succeeded()

    def _write_fresh(self, items: list[tuple[int, float, Event]]) -> None:
        actions, kept = [], []
        for item in items:
            ev = item[2]
            try:
                actions.append(to_action(ev.to_dict(), ev.family, self._prefix))
                kept.append(item)
            except Exception as exc:  # noqa: BLE001
                self._counts["invalid"] += 1
                log.error("cannot index %s: %s", type(ev).__name__, exc)
        try:
            outcomes = bulk_write(self._client, actions)
        except ElasticsearchRefused as exc:
            self._spool.prepend([r for r in map(self._encode, kept) if r is not None])
            self._refuse(str(exc))
            return
        retry = [
            it for it, (kind, _r), act in zip(kept, outcomes, actions, strict=True) if self._account(kind, _r, act)
        ]
        self._counts["batches"] += 1
        if retry:
            recs = [r for r in map(self._encode, retry) if r is not None]
            self._spool.prepend(recs)
            self._counts["retries"] += len(recs)
            self._trouble(next(r for k, r in outcomes if k == "retry"), outcomes.retry_after)
        else:
            self._recovered()

    def _write_spooled(self, entries: list[tuple[Record | None, SpoolPosition]]) -> None:
        spool = self._spool
        actions: list[dict[str, Any]] = []
        positions: list[SpoolPosition] = []
        for rec, pos in entries:
            if rec is None or pos in spool.acked_ahead:
                continue
            try:
                actions.append(to_action(loads(rec[4]), rec[2], self._prefix))
                positions.append(pos)
            except Exception as exc:  # noqa: BLE001 - cannot happen for what we wrote; count it
                self._counts["invalid"] += 1
                log.error("spooled record is not an indexable event: %s", exc)
        try:
            outcomes = bulk_write(self._client, actions)
        except ElasticsearchRefused as exc:
            spool.rewind()
            self._refuse(str(exc))
            return
        self._counts["batches"] += 1
        failed = False
        for (kind, reason), act, pos in zip(outcomes, actions, positions, strict=True):
            if self._account(kind, reason, act):
                failed = True
            else:
                spool.acked_ahead.add(pos)
        if failed:
            spool.rewind()
            self._counts["retries"] += sum(1 for k, _ in outcomes if k == "retry")
            self._trouble(next(r for k, r in outcomes if k == "retry"), outcomes.retry_after)
            return
        for pos in positions:
            spool.acked_ahead.discard(pos)
        spool.ack(entries[-1][1], len(entries))
        self._recovered()

    def _account(self, kind: str, reason: str, action: Mapping[str, Any]) -> bool:
        """Count an outcome; True when the action must be retried."""
        if kind == "ok":
            self._counts["indexed"] += 1
        elif kind == "duplicate":
            self._counts["duplicates"] += 1
        elif kind == "reject":
            self._counts["rejected"] += 1
            self._dead_letter(action, reason)
        else:
            return True
        return False

    def _dead_letter(self, action: Mapping[str, Any], reason: str) -> None:
        log.error("Elasticsearch rejected %s in %s: %s", action.get("_id"), action.get("_index"), reason)
        line = dumps(
            {
                "reason": reason,
                "index": action.get("_index"),
                "id": action.get("_id"),
                "document": action.get("_source"),
            }
        )
        try:
            self._deadletter_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._deadletter_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as f:
                f.write(line + b"\n")
        except OSError as exc:  # a full disk must not stop indexing: the rejection is logged above
            self._deadletter_lost += 1
            if self._deadletter_lost == 1:
                log.error(
                    "cannot write the dead letter file %s (%s); rejected documents are only logged",
                    self._deadletter_path,
                    exc,
                )

    def _shutdown(self) -> None:
        try:
            self._inbox.close()
            if len(self._inbox):
                self._spill()
            ovf = self._inbox.seal_overflow(self._spool.fsync != "never")
            if ovf is not None:
                self._spool.adopt(ovf.path, ovf.count)
            self._drained_at_close = self._spool.pending == 0
        except Exception:
            log.exception("Elasticsearch sink shutdown failed")
        finally:
            self._spool.close()
            if self._spool.pending:
                log.warning(
                    "%d event(s) not written to Elasticsearch are kept in %s for the next run",
                    self._spool.pending,
                    self._spool.dir,
                )
