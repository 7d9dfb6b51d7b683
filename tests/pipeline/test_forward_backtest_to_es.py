"""Must show (issue 9): backtest -> Kafka (Tansu) -> ``tradeconsole forward`` -> the Elasticsearch
stand-in pinned to compose's version, exactly one document per Kafka event; and the same run with
a 9.x client's header against that 8.x cluster fails at once with a clear message."""

from __future__ import annotations

import collections
import json
import time

import pytest
from tradeconsole.infra.sinks.kafka import KafkaSink
from tradeconsole.infra.sinks.topics import TopicNames

from tests.pipeline.helpers import read_topics
from tests.pipeline.test_es_compat import compose_config, image_version
from tests.pipeline.test_forward_stop import Forward, assert_clean_stop
from tests.servers.es_standin import ElasticsearchStandIn

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def backtest_in_kafka(kafka_bootstrap, topic_prefix, candles_1h, tmp_path):
    """A backtest's events published to Kafka; returns the messages Kafka holds."""
    from tradeconsole.backtest.runner import run_backtest
    from tradeconsole.core.strategies import make_strategy

    events = []
    with KafkaSink(kafka_bootstrap, topic_prefix=topic_prefix, spool_dir=tmp_path / "spool") as sink:
        run_backtest(
            candles_1h.take(slice(0, 1500)),
            make_strategy("engulfing"),
            symbol="ETHUSDT",
            interval="1h",
            publish=lambda e: (events.append(e), sink.publish(e)),
        )
        assert sink.flush(60)
    messages = read_topics(kafka_bootstrap, TopicNames(topic_prefix).all(), expected=len(events))
    assert len(messages) >= len(events) > 1000
    return messages


def test_backtest_through_kafka_and_forward_gives_one_document_per_kafka_event(
    kafka_bootstrap, topic_prefix, backtest_in_kafka, tmp_path
):
    pinned = image_version(compose_config(), "elasticsearch")
    kafka_ids = collections.Counter(json.loads(m.value)["event_id"] for m in backtest_in_kafka)
    with ElasticsearchStandIn() as standin:
        assert standin.version == pinned
        fw = Forward(kafka_bootstrap, standin.url, tmp_path, prefix=topic_prefix)
        try:
            deadline = time.monotonic() + 120
            while len(standin.documents()) < len(kafka_ids) and time.monotonic() < deadline:
                if fw.proc.poll() is not None:
                    pytest.fail(f"forward exited early:\n{fw.text}")
                time.sleep(0.2)
            time.sleep(1.0)  # anything extra would show up now
            seconds = fw.stop()
        finally:
            fw.kill()
        docs = standin.documents()
        assert standin.refused_media_types == 0
    assert_clean_stop(fw, seconds)
    es_ids = collections.Counter(d["_id"] for d in docs)
    assert set(es_ids.values()) == {1}, "an event indexed twice"
    assert es_ids.keys() == kafka_ids.keys(), "every Kafka event, and nothing else, is a document"
    # each document is the Kafka payload as it was published
    by_id = {json.loads(m.value)["event_id"]: json.loads(m.value) for m in backtest_in_kafka}
    assert all(d["_source"] == by_id[d["_id"]] for d in docs)
    print(f"{len(kafka_ids)} Kafka events -> {len(docs)} documents in Elasticsearch {pinned}")


def test_the_same_run_with_a_9x_client_header_fails_at_once_with_a_clear_message(
    kafka_bootstrap, topic_prefix, backtest_in_kafka, tmp_path
):
    with ElasticsearchStandIn() as standin:
        fw = Forward(kafka_bootstrap, standin.url, tmp_path, prefix=topic_prefix, as_9x_client=True)
        t0 = time.monotonic()
        try:
            fw.proc.wait(60)
        finally:
            fw.kill()
        took = time.monotonic() - t0
        for t in fw._threads:
            t.join(5)
        assert standin.documents() == [] and standin.templates == {}
    assert fw.proc.returncode == 1, fw.text
    (error,) = [ln for ln in fw.lines if "error:" in ln]
    assert error.startswith("error: ")
    assert "it accepts compatible-with=8 or 7, this client sent compatible-with=9" in error
    assert "Accept version must be either version 8 or 7, but found 9" in error
    assert "Traceback" not in fw.text
    print(f"refused in {took:.2f}s: {error}")
