"""A local stand-in for Elasticsearch, for tests when no real cluster is given (``ELASTICSEARCH_URL``).

It implements the documented subset of the REST API that the official Python client and this
project use, with Elasticsearch's response shapes and status codes:

* ``GET /`` (cluster info) and the ``X-Elastic-Product: Elasticsearch`` header the client checks;
* composable index templates: ``PUT/GET /_index_template/<name>`` (the highest-priority template
  whose pattern matches is applied when an index is created, as in Elasticsearch);
* indices: ``HEAD/PUT /<index>``, ``GET /<index>/_mapping``, auto-creation on first write;
* documents: ``PUT/POST /<index>/_doc/<id>``, ``POST /<index>/_doc``, ``PUT/POST /<index>/_create/<id>``,
  ``GET /<index>/_doc/<id>``;
* ``POST /_bulk`` and ``/<index>/_bulk``: NDJSON with ``index`` and ``create`` actions, per-item
  results and errors (409 ``version_conflict_engine_exception`` for an existing id with
  ``create``, 400 ``document_parsing_exception`` for a value the mapping cannot take);
* ``_refresh``, ``_count`` and a minimal ``_search`` (``match_all``, ``term``, ``terms``,
  ``bool.filter/must``, ``size``, ``from``, ``sort`` on one field, ``scroll`` with
  ``/_search/scroll``), over comma lists and ``*`` patterns of index names.

Mappings are enforced the way Elasticsearch does for the types the project uses (``double``,
``long``, ``integer``, ``date``, ``keyword``, ``text``, ``boolean``, ``object``), including dynamic
templates for unmapped fields, so a document that a real cluster rejects is rejected here too.

Version and REST compatibility (modelled on Elasticsearch's own rules, not on our client):

* ``GET /`` reports ``version`` (default: the Elasticsearch image that
  ``infra/deploy/docker-compose.yml`` pins, read from that file, so the stand-in cannot drift from
  what we deploy); ``ElasticsearchStandIn(version="9.1.5")`` models a 9.x cluster instead.
* ``Accept``/``Content-Type`` ``compatible-with=N`` headers are checked the way
  ``RestCompatibleVersionHelper`` does it (elastic/elasticsearch,
  ``server/src/main/java/org/elasticsearch/rest/RestCompatibleVersionHelper.java``; docs: REST API
  compatibility, "Requesting REST API compatibility"): a cluster of major M accepts M and M-1
  (an 8.x cluster takes 7 and 8 and refuses 9; a 9.x cluster takes 8 and 9 and refuses 7); with a
  body, Content-Type must name an accepted version equal to Accept's, and either both headers or
  neither carry one. A refusal is ``400 media_type_header_exception`` "Invalid media-type value on
  headers [Accept, Content-Type]" caused by a ``status_exception`` with the rule's text, as
  ``RestRequest.MediaTypeHeaderException`` sends it (elastic/elasticsearch PR #80253).
* A body whose Content-Type is missing or not one Elasticsearch reads is refused with 406
  ``Content-Type header [...] is not supported`` (docs: "Content-type requirements", strict
  content-type checking since 6.0).
* Responses carry ``X-Elastic-Product: Elasticsearch`` (checked by the 8.x/9.x clients) and a
  Content-Type naming the version the request asked for.

Tests can inject failures: ``fail_requests(n, status)`` answers the next ``n`` bulk requests with
an error status (as an overloaded or restarting cluster would) and ``fail_items(n, status)``
fails the next ``n`` bulk items individually (e.g. 429 ``es_rejected_execution_exception``).
Only loopback addresses are served.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import re
import socket
import threading
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["ElasticsearchStandIn", "compose_pinned_version"]

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "infra" / "deploy" / "docker-compose.yml"


def compose_pinned_version(path: Path = COMPOSE_FILE) -> str:
    """The Elasticsearch version ``infra/deploy/docker-compose.yml`` runs (its image tag)."""
    m = re.search(
        r"^\s*image:\s*docker\.elastic\.co/elasticsearch/elasticsearch:(\d+\.\d+\.\d+)\s*$",
        path.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    if m is None:
        raise ValueError(f"{path}: no pinned docker.elastic.co/elasticsearch/elasticsearch:X.Y.Z image")
    return m.group(1)


#: Media types Elasticsearch reads a request body in (XContentType: JSON, SMILE, YAML, CBOR and
#: their vnd.elasticsearch+ versioned forms; NDJSON for _bulk/_msearch).
_BODY_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/smile",
        "application/yaml",
        "application/cbor",
        "application/vnd.elasticsearch+json",
        "application/vnd.elasticsearch+x-ndjson",
        "application/vnd.elasticsearch+smile",
        "application/vnd.elasticsearch+yaml",
        "application/vnd.elasticsearch+cbor",
    }
)
_NUMERIC = {"double": float, "float": float, "long": int, "integer": int, "short": int}


class _EsError(Exception):
    def __init__(self, status: int, type_: str, reason: str | None, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.type, self.reason, self.extra = status, type_, reason, extra

    def body(self) -> dict[str, Any]:
        err = {"type": self.type, "reason": self.reason, **self.extra}
        root = {k: v for k, v in err.items() if k != "caused_by"}  # Elasticsearch's root_cause has no cause
        return {"error": {"root_cause": [root], **err}, "status": self.status}


class _PlainError(Exception):
    """An error Elasticsearch answers with a plain body (``{"error": "...", "status": N}``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


class _Index:
    def __init__(self, name: str, mappings: dict[str, Any], settings: dict[str, Any]) -> None:
        self.name = name
        self.mappings = mappings
        self.settings = settings
        self.docs: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.uuid = uuid.uuid4().hex[:22]


class ElasticsearchStandIn:
    """In-memory Elasticsearch subset on ``http://127.0.0.1:<port>``; start/stop from tests."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, store: bool = True, version: str | None = None
    ) -> None:
        """``store=False`` answers bulk items as created without parsing or keeping the documents
        (a null endpoint for benchmarks that measure the client side of bulk requests).
        ``version`` is the Elasticsearch version to model (default: the one compose pins)."""
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            raise ValueError("the stand-in serves loopback addresses only")
        self.store = store
        self.version = version or compose_pinned_version()
        if not re.fullmatch(r"\d+\.\d+\.\d+", self.version):
            raise ValueError(f"version {self.version!r} is not MAJOR.MINOR.PATCH")
        self.major = int(self.version.split(".")[0])
        self.refused_media_types = 0
        self._lock = threading.RLock()
        self.templates: dict[str, dict[str, Any]] = {}
        self.indices: dict[str, _Index] = {}
        self._seq = itertools.count()
        self._scrolls: dict[str, list[dict[str, Any]]] = {}
        self._fail_requests: list[int] = []
        self._fail_items: list[int] = []
        self.bulk_requests = 0
        self.unavailable_status: int | None = None
        self.requests: list[tuple[str, str]] = []
        standin = self

        class Handler(_Handler):
            server_state = standin

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ElasticsearchStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="es-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls
    def fail_requests(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` bulk requests with ``status`` (whole request fails)."""
        with self._lock:
            self._fail_requests.extend([status] * n)

    def set_unavailable(self, status: int | None = 503) -> None:
        """Answer every request with ``status`` until called with None: a cluster without an
        elected master answers 503 ``master_not_discovered_exception`` (docs: "Troubleshooting
        discovery"; ``cluster.no_master_block``) - reachable, but refusing all work."""
        with self._lock:
            self.unavailable_status = status

    def fail_items(self, n: int, status: int = 429) -> None:
        """Fail the next ``n`` bulk items individually with ``status``."""
        with self._lock:
            self._fail_items.extend([status] * n)

    def documents(self, pattern: str = "*") -> list[dict[str, Any]]:
        """Every stored document (``_index``, ``_id``, ``_source``) in indices matching ``pattern``."""
        with self._lock:
            return [
                {"_index": ix.name, "_id": i, "_source": d}
                for ix in self._resolve(pattern, allow_missing=True)
                for i, d in ix.docs.items()
            ]

    # ------------------------------------------------------------------ index resolution
    def _resolve(self, expr: str, *, allow_missing: bool = False) -> list[_Index]:
        out: list[_Index] = []
        for part in expr.split(","):
            part = part.strip()
            if part in ("_all", "*", ""):
                out.extend(self.indices.values())
            elif "*" in part or "?" in part:
                out.extend(ix for n, ix in sorted(self.indices.items()) if fnmatch.fnmatchcase(n, part))
            elif part in self.indices:
                out.append(self.indices[part])
            elif not allow_missing:
                raise _EsError(
                    404,
                    "index_not_found_exception",
                    f"no such index [{part}]",
                    index=part,
                    **{"resource.type": "index_or_alias", "resource.id": part},
                )
        seen: set[str] = set()
        return [ix for ix in out if not (ix.name in seen or seen.add(ix.name))]

    def _create_index(self, name: str, body: dict[str, Any] | None = None) -> _Index:
        if name in self.indices:
            raise _EsError(
                400,
                "resource_already_exists_exception",
                f"index [{name}/{self.indices[name].uuid}] already exists",
                index=name,
            )
        if name != name.lower() or name.startswith(("-", "_", "+")) or any(c in name for c in ' "*\\<|,>/?#:'):
            raise _EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}]", index=name)
        mappings: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        best = None
        for tname, t in self.templates.items():
            matches = any(fnmatch.fnmatchcase(name, p) for p in t.get("index_patterns", []))
            if matches and (best is None or t.get("priority", 0) > best[1].get("priority", 0)):
                best = (tname, t)
        if best is not None:
            tpl = best[1].get("template", {})
            mappings = json.loads(json.dumps(tpl.get("mappings", {})))
            settings = dict(tpl.get("settings", {}))
        if body:
            mappings.update(body.get("mappings", {}))
            settings.update(body.get("settings", {}))
        mappings.setdefault("properties", {})
        ix = _Index(name, mappings, settings)
        self.indices[name] = ix
        return ix

    # ------------------------------------------------------------------ mapping enforcement
    def _apply_mapping(self, ix: _Index, doc: dict[str, Any], doc_id: str) -> None:
        """Raise a 400 the way Elasticsearch does when ``doc`` does not fit the mapping; add
        dynamic mappings for new fields."""
        self._check_object(ix.mappings, ix.mappings.get("properties", {}), doc, "", doc_id, ix.mappings)

    def _check_object(
        self,
        root: dict[str, Any],
        props: dict[str, Any],
        obj: dict[str, Any],
        prefix: str,
        doc_id: str,
        owner: dict[str, Any],
    ) -> None:
        for key, value in obj.items():
            path = f"{prefix}{key}"
            if value is None:
                continue
            m = props.get(key)
            if m is None:
                if owner.get("dynamic") in (False, "false", "strict"):
                    if owner.get("dynamic") == "strict":
                        raise _EsError(
                            400,
                            "strict_dynamic_mapping_exception",
                            f"mapping set to strict, dynamic introduction of [{key}] within [_doc] is not allowed",
                        )
                    continue
                m = self._dynamic_mapping(root, value)
                props[key] = m
            self._check_value(root, m, value, path, doc_id)

    def _dynamic_mapping(self, root: dict[str, Any], value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return {"type": "object", "properties": {}}
        if isinstance(value, list):
            value = next((v for v in value if v is not None), "")
        if isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int):
            kind = "long"
        elif isinstance(value, float):
            kind = "double"
        else:
            kind = "string"
        for tpl in root.get("dynamic_templates", []):
            ((_name, spec),) = tpl.items()
            if spec.get("match_mapping_type") in (kind, "*"):
                return dict(spec["mapping"])
        return {
            "string": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
            "long": {"type": "long"},
            "double": {"type": "float"},
            "boolean": {"type": "boolean"},
        }[kind]

    def _check_value(self, root: dict[str, Any], m: dict[str, Any], value: Any, path: str, doc_id: str) -> None:
        kind = m.get("type", "object")
        if isinstance(value, list):
            for v in value:
                if v is not None:
                    self._check_value(root, m, v, path, doc_id)
            return

        def fail(detail: str) -> None:
            preview = value if not isinstance(value, str) else f"'{value}'"
            raise _EsError(
                400,
                "document_parsing_exception",
                f"[1:1] failed to parse field [{path}] of type [{kind}] in document with id "
                f"'{doc_id}'. Preview of field's value: {preview}",
                caused_by={"type": "illegal_argument_exception", "reason": detail},
            )

        if kind == "object":
            if not isinstance(value, dict):
                raise _EsError(
                    400,
                    "document_parsing_exception",
                    f"[1:1] object mapping for [{path}] tried to parse field [{path}] as object, "
                    "but found a concrete value",
                )
            self._check_object(root, m.setdefault("properties", {}), value, f"{path}.", doc_id, m)
            return
        if isinstance(value, dict):
            raise _EsError(
                400,
                "document_parsing_exception",
                f"[1:1] failed to parse field [{path}] of type [{kind}] in document with id '{doc_id}'. "
                "Preview of field's value: '{...}'",
                caused_by={"type": "illegal_state_exception", "reason": "Can't get text on a START_OBJECT"},
            )
        if kind in _NUMERIC:
            if isinstance(value, bool):
                fail("Current token (VALUE_TRUE/FALSE) not numeric")
            if isinstance(value, str):
                try:
                    float(value)
                except ValueError:
                    fail(f'For input string: "{value}"')
        elif kind == "date":
            fmt = m.get("format", "strict_date_optional_time||epoch_millis")
            if isinstance(value, bool):
                fail("boolean is not a date")
            if isinstance(value, (int, float)):
                if "epoch_millis" not in fmt:
                    fail(f"failed to parse date field [{value}] with format [{fmt}]")
            elif not _parse_date(str(value), fmt):
                fail(f"failed to parse date field [{value}] with format [{fmt}]")
        elif kind == "boolean":
            if not (isinstance(value, bool) or value in ("true", "false", "")):
                fail(f"Failed to parse value [{value}] as only [true] or [false] are allowed.")
        elif kind in ("keyword", "text"):
            pass
        # other types are accepted as they come

    # ------------------------------------------------------------------ documents
    def _write(self, index: str, doc_id: str | None, source: Any, op: str) -> tuple[int, dict[str, Any]]:
        ix = self.indices.get(index) or self._create_index(index)
        if doc_id is None:
            doc_id = uuid.uuid4().hex[:20]
        if not isinstance(source, dict):
            raise _EsError(400, "document_parsing_exception", "[1:1] malformed document: not an object")
        if op == "create" and doc_id in ix.docs:
            raise _EsError(
                409,
                "version_conflict_engine_exception",
                f"[{doc_id}]: version conflict, document already exists (current version [{ix.versions[doc_id]}])",
                index=index,
                shard="0",
                index_uuid=ix.uuid,
            )
        self._apply_mapping(ix, source, doc_id)
        existed = doc_id in ix.docs
        ix.docs[doc_id] = source
        ix.versions[doc_id] = ix.versions.get(doc_id, 0) + 1
        result = {
            "_index": index,
            "_id": doc_id,
            "_version": ix.versions[doc_id],
            "result": "updated" if existed else "created",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": next(self._seq),
            "_primary_term": 1,
        }
        return (200 if existed else 201), result

    def _bulk(self, default_index: str | None, body: bytes) -> dict[str, Any]:
        lines = [ln for ln in body.split(b"\n") if ln.strip()]
        items: list[dict[str, Any]] = []
        i = 0
        while i < len(lines):
            try:
                action = json.loads(lines[i])
                ((op, meta),) = action.items()
            except (ValueError, AttributeError) as exc:
                raise _EsError(
                    400, "x_content_parse_exception", f"[1:1] malformed action/metadata line [{i + 1}]: {exc}"
                ) from None
            if op not in ("index", "create"):
                raise _EsError(
                    400,
                    "illegal_argument_exception",
                    f"Malformed action/metadata line [{i + 1}], "
                    f"expected one of [create, index] in this stand-in but found [{op}]",
                )
            if i + 1 >= len(lines):
                raise _EsError(
                    400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"
                )
            index = meta.get("_index") or default_index
            doc_id = meta.get("_id")
            i += 2
            if self._fail_items:
                status = self._fail_items.pop(0)
                items.append(
                    {
                        op: {
                            "_index": index,
                            "_id": doc_id,
                            "status": status,
                            "error": {
                                "type": "es_rejected_execution_exception"
                                if status == 429
                                else "unavailable_shards_exception",
                                "reason": "injected failure",
                            },
                        }
                    }
                )
                continue
            if not self.store:
                items.append({op: {"_index": index, "_id": doc_id, "_version": 1, "result": "created", "status": 201}})
                continue
            try:
                source = json.loads(lines[i - 1])
                if index is None:
                    raise _EsError(
                        400, "action_request_validation_exception", "Validation Failed: 1: index is missing;"
                    )
                status, result = self._write(index, doc_id, source, op)
                items.append({op: {**result, "status": status}})
            except ValueError as exc:
                items.append(
                    {
                        op: {
                            "_index": index,
                            "_id": doc_id,
                            "status": 400,
                            "error": {"type": "document_parsing_exception", "reason": f"[1:1] failed to parse: {exc}"},
                        }
                    }
                )
            except _EsError as exc:
                items.append(
                    {
                        op: {
                            "_index": index,
                            "_id": doc_id,
                            "status": exc.status,
                            "error": {"type": exc.type, "reason": exc.reason, **exc.extra},
                        }
                    }
                )
        return {"took": 1, "errors": any("error" in next(iter(it.values())) for it in items), "items": items}

    # ------------------------------------------------------------------ search
    def _matches(self, doc: dict[str, Any], query: dict[str, Any] | None) -> bool:
        if not query or "match_all" in query:
            return True
        if "term" in query:
            ((field, cond),) = query["term"].items()
            value = cond.get("value") if isinstance(cond, dict) else cond
            return _get(doc, field) == value
        if "terms" in query:
            ((field, values),) = ((k, v) for k, v in query["terms"].items() if k != "boost")
            return _get(doc, field) in values
        if "ids" in query:
            return doc.get("_id") in query["ids"].get("values", [])
        if "bool" in query:
            b = query["bool"]
            musts = _as_list(b.get("must")) + _as_list(b.get("filter"))
            return all(self._matches(doc, q) for q in musts) and not any(
                self._matches(doc, q) for q in _as_list(b.get("must_not"))
            )
        raise _EsError(400, "parsing_exception", f"query {next(iter(query))} is not supported by the stand-in")

    def _search(self, expr: str, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        hits = []
        for ix in self._resolve(expr, allow_missing="*" in expr or expr in ("", "_all")):
            for doc_id, src in ix.docs.items():
                if self._matches({**src, "_id": doc_id}, body.get("query")):
                    hits.append({"_index": ix.name, "_id": doc_id, "_score": 1.0, "_source": src})
        for spec in reversed(_as_list(body.get("sort"))):
            field, order = (spec, "asc") if isinstance(spec, str) else next(iter(spec.items()))
            order = order.get("order", "asc") if isinstance(order, dict) else order
            hits.sort(
                key=lambda h, f=field: (_get(h["_source"], f) is None, _get(h["_source"], f) or 0),
                reverse=order == "desc",
            )
        size = int(params.get("size", body.get("size", 10)))
        start = int(params.get("from", body.get("from", 0)))
        out = {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {
                "total": {"value": len(hits), "relation": "eq"},
                "max_score": 1.0 if hits else None,
                "hits": hits[start : start + size],
            },
        }
        if "scroll" in params:
            sid = uuid.uuid4().hex
            self._scrolls[sid] = hits[start + size :]
            out["_scroll_id"] = sid
            self._scroll_size = size
        return out

    def _scroll(self, sid: str) -> dict[str, Any]:
        rest = self._scrolls.get(sid)
        if rest is None:
            raise _EsError(404, "search_phase_execution_exception", "No search context found for id")
        size = getattr(self, "_scroll_size", 10)
        page, self._scrolls[sid] = rest[:size], rest[size:]
        return {
            "_scroll_id": sid,
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": {"value": len(page), "relation": "eq"}, "hits": page},
        }

    # ------------------------------------------------------------------ REST compatibility
    def compatible_version(self, accept: str | None, content_type: str | None, has_body: bool) -> int | None:
        """The REST API version a request asks for (None: no compatible-with, the current one),
        or an _EsError/_PlainError the way Elasticsearch refuses the headers.

        RestCompatibleVersionHelper.getCompatibleVersion: current major M, minimum supported
        M-1; Accept's version must be in [M-1, M]; with a body, Content-Type's too, the two must be
        equal, and both or neither must carry a version."""
        if has_body:
            base = (content_type or "").split(";")[0].strip().lower()
            if base not in _BODY_TYPES:
                # RestController: "Content-Type header [...] is not supported", 406 Not Acceptable
                raise _PlainError(406, f"Content-Type header [{content_type or ''}] is not supported")
        a_version = _compat_param(accept)
        c_version = _compat_param(content_type)
        current, minimum = self.major, self.major - 1
        accept_v = current if a_version is None else a_version
        content_v = current if c_version is None else c_version

        def refuse(reason: str) -> _EsError:
            self.refused_media_types += 1
            return _EsError(
                400,
                "media_type_header_exception",
                "Invalid media-type value on headers [Accept, Content-Type]",
                caused_by={"type": "status_exception", "reason": reason},
            )

        if not minimum <= accept_v <= current:
            raise refuse(
                f"Accept version must be either version {current} or {minimum}, but found {accept_v}. Accept={accept}"
            )
        if has_body:
            if not minimum <= content_v <= current:
                raise refuse(
                    f"Content-Type version must be either version {current} or {minimum}, but found "
                    f"{content_v}. Content-Type={content_type}"
                )
            if content_v != accept_v:
                raise refuse(
                    "A compatible version is required on both Content-Type and Accept headers if either "
                    "one has requested a compatible version and the compatible versions must match. "
                    f"Accept={accept}, Content-Type={content_type}"
                )
            if (c_version is None) != (a_version is None):
                raise refuse(
                    "A compatible version is required on both Content-Type and Accept headers if either "
                    f"one has requested a compatible version. Accept={accept}, Content-Type={content_type}"
                )
        return a_version

    # ------------------------------------------------------------------ routing
    def handle(self, method: str, raw_path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """Answer one request: ``(status, JSON payload or None)``. ``headers`` (lower-case names)
        are checked for REST compatibility first; without them the request is taken as sent by
        a client of the modelled version."""
        split = urlsplit(raw_path)
        params = {k: v[-1] for k, v in parse_qs(split.query).items()}
        parts = [unquote(p) for p in split.path.split("/") if p]
        with self._lock:
            self.requests.append((method, split.path))
            try:
                if headers is not None:
                    self.compatible_version(headers.get("accept"), headers.get("content-type"), bool(body))
                if self.unavailable_status is not None:
                    raise _EsError(self.unavailable_status, "master_not_discovered_exception", None)
                return self._route(method, parts, params, body)
            except (_EsError, _PlainError) as exc:
                return exc.status, exc.body()

    def _json(self, body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except ValueError as exc:
            raise _EsError(400, "parsing_exception", f"request body is not JSON: {exc}") from None

    def _route(self, method: str, parts: list[str], params: dict[str, str], body: bytes) -> tuple[int, Any]:
        if not parts:
            if method not in ("GET", "HEAD"):
                raise _EsError(405, "method_not_allowed", f"{method} / is not allowed")
            # Wire/index compatibility: a major talks to the last minor of the previous major
            # (8.x: 7.17 / 7.0 indices; 9.x: 8.19 / 8.0) - docs "Upgrade Elasticsearch".
            wire = "7.17.0" if self.major == 8 else f"{self.major - 1}.19.0"
            return 200, {
                "name": "standin",
                "cluster_name": "es-standin",
                "cluster_uuid": "standin",
                "version": {
                    "number": self.version,
                    "build_flavor": "default",
                    "build_type": "docker",
                    "build_snapshot": False,
                    "minimum_wire_compatibility_version": wire,
                    "minimum_index_compatibility_version": f"{self.major - 1}.0.0",
                },
                "tagline": "You Know, for Search",
            }
        head = parts[0]
        if head == "_bulk" or (len(parts) == 2 and parts[1] == "_bulk"):
            if method not in ("POST", "PUT"):
                raise _EsError(405, "method_not_allowed", "use POST for _bulk")
            self.bulk_requests += 1
            if self._fail_requests:
                status = self._fail_requests.pop(0)
                raise _EsError(
                    status,
                    "unavailable_shards_exception" if status >= 500 else "es_rejected_execution_exception",
                    "injected failure of the whole request",
                )
            return 200, self._bulk(None if head == "_bulk" else head, body)
        if head == "_index_template" and len(parts) == 2:
            name = parts[1]
            if method == "PUT" or method == "POST":
                if params.get("create") == "true" and name in self.templates:
                    raise _EsError(400, "illegal_argument_exception", f"index template [{name}] already exists")
                self.templates[name] = self._json(body)
                return 200, {"acknowledged": True}
            if method in ("GET", "HEAD"):
                found = [n for n in self.templates if fnmatch.fnmatchcase(n, name)]
                if not found:
                    raise _EsError(404, "resource_not_found_exception", f"index template matching [{name}] not found")
                return 200, {"index_templates": [{"name": n, "index_template": self.templates[n]} for n in found]}
        if head == "_refresh" or (len(parts) == 2 and parts[1] == "_refresh"):
            if head != "_refresh":
                self._resolve(head)
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if head == "_search" and len(parts) == 2 and parts[1] == "scroll":
            if method == "DELETE":
                return 200, {"succeeded": True, "num_freed": 1}
            data = self._json(body)
            return 200, self._scroll(data.get("scroll_id") or params.get("scroll_id", ""))
        if head == "_count" or (len(parts) == 2 and parts[1] == "_count"):
            expr = "*" if head == "_count" else head
            res = self._search(expr, {"query": self._json(body).get("query"), "size": 0}, {})
            return 200, {"count": res["hits"]["total"]["value"], "_shards": res["_shards"]}
        if head == "_search" or (len(parts) == 2 and parts[1] == "_search"):
            expr = "*" if head == "_search" else head
            return 200, self._search(expr, self._json(body), params)
        if head.startswith("_"):
            raise _EsError(
                400, "illegal_argument_exception", f"{method} /{'/'.join(parts)} is not supported by the stand-in"
            )
        index = head
        if len(parts) == 1:
            if method == "HEAD":
                self._resolve(index)
                return 200, None
            if method == "PUT":
                self._create_index(index, self._json(body))
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}
            if method == "GET":
                return 200, {
                    ix.name: {"mappings": ix.mappings, "settings": {"index": ix.settings}}
                    for ix in self._resolve(index)
                }
        if len(parts) == 2 and parts[1] == "_mapping" and method == "GET":
            return 200, {ix.name: {"mappings": ix.mappings} for ix in self._resolve(index)}
        if len(parts) in (2, 3) and parts[1] in ("_doc", "_create"):
            doc_id = parts[2] if len(parts) == 3 else None
            if method == "GET" and parts[1] == "_doc" and doc_id is not None:
                ix = self._resolve(index)[0]
                if doc_id not in ix.docs:
                    return 404, {"_index": index, "_id": doc_id, "found": False}
                return 200, {
                    "_index": index,
                    "_id": doc_id,
                    "_version": ix.versions[doc_id],
                    "_seq_no": 0,
                    "_primary_term": 1,
                    "found": True,
                    "_source": ix.docs[doc_id],
                }
            if method in ("PUT", "POST"):
                op = "create" if parts[1] == "_create" or params.get("op_type") == "create" else "index"
                return self._write(index, doc_id, self._json(body), op)
        raise _EsError(
            400, "illegal_argument_exception", f"{method} /{'/'.join(parts)} is not supported by the stand-in"
        )


def _compat_param(media_type: str | None) -> int | None:
    """The ``compatible-with`` parameter of a media type (ParsedMediaType), None without one."""
    if not media_type:
        return None
    for param in media_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "compatible-with":
            try:
                return int(value.strip())
            except ValueError:
                raise _EsError(
                    400,
                    "media_type_header_exception",
                    "Invalid media-type value on headers [Accept, Content-Type]",
                    caused_by={"type": "illegal_argument_exception", "reason": f"invalid media-type [{media_type}]"},
                ) from None
    return None


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


def _get(doc: dict[str, Any], field: str) -> Any:
    cur: Any = doc
    for part in field.split("."):
        if not isinstance(cur, dict):
            return None
        if part in cur:
            cur = cur[part]
        elif field in cur:
            return cur[field]
        else:
            return None
    return cur


_ISO = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?)?)?)?$")


def _parse_date(value: str, fmt: str) -> bool:
    for f in fmt.split("||"):
        if f in ("strict_date_optional_time", "date_optional_time", "strict_date_optional_time_nanos"):
            if _ISO.match(value):
                try:
                    datetime.fromisoformat(value) if "T" in value or len(value) == 10 else None
                    return True
                except ValueError:
                    continue
        elif f == "epoch_millis" and re.fullmatch(r"-?\d+(\.\d+)?", value):
            return True
    return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: ElasticsearchStandIn

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without this, Nagle plus delayed ACKs add 40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload = self.server_state.handle(self.command, self.path, body, headers)
        data = b"" if payload is None or self.command == "HEAD" else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        asked = _compat_param(headers.get("accept")) if status < 400 else None
        self.send_header(
            "Content-Type",
            "application/json" if asked is None else f"application/vnd.elasticsearch+json;compatible-with={asked}",
        )
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve
