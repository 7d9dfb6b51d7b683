"""End to end: a replayed backtest publishes while the broker goes away mid-run and comes back.

The engine (the backtest loop) keeps going while the broker is down: every publish call of the
rest of the run returns while the broker process is stopped (counted, not timed). After the
restart every event is in Elasticsearch exactly once.

Tansu keeps its topics in memory, so a restart empties them (a real Kafka keeps its log). The
test therefore lets the first forwarder index everything acknowledged before the stop, and a
second forwarder (the group's offsets are gone with the topics) indexes what the sink delivers
after the restart. That also shows the sink never re-sends what the broker had acknowledged.
"""

from __future__ import annotations

import collections
import json
import uuid

import pytest
from tradeconsole.infra.sinks.forwarder import Forwarder
from tradeconsole.infra.sinks.kafka import KafkaSink
from tradeconsole.infra.sinks.topics import TopicNames

from tests.pipeline.helpers import GROUP_TIMEOUTS, read_topics, wait_for

STOP_AT = 5_000  # the broker stops when the engine publishes this event


@pytest.mark.timeout(240)
def test_broker_stopped_mid_run_engine_keeps_going_and_every_event_lands_once(
    restartable_broker, topic_prefix, es, candles_1h, tmp_path
):
    from tradeconsole.backtest.runner import run_backtest
    from tradeconsole.core.strategies import make_strategy

    broker = restartable_broker
    group = f"fw-{uuid.uuid4().hex[:8]}"

    def forwarder() -> Forwarder:
        return Forwarder(
            broker.bootstrap,
            es.client,
            group_id=group,
            topic_prefix=topic_prefix,
            index_prefix=es.index_prefix,
            consumer_overrides=GROUP_TIMEOUTS,
            max_backoff_s=1.0,
        ).start()

    sink = KafkaSink(
        broker.bootstrap,
        topic_prefix=topic_prefix,
        spool_dir=tmp_path / "spool",
        spill_after_s=0.5,
        delivery_timeout_ms=4000,
        request_timeout_ms=2000,
    )
    first = forwarder()
    events = []
    returned_while_down = 0

    def publish(event) -> None:
        nonlocal returned_while_down
        events.append(event)
        if len(events) == STOP_AT:
            # Orchestration, not the sink: let everything so far reach Kafka and Elasticsearch,
            # then take the broker away in the middle of the run.
            assert sink.flush(60)
            wait_for(lambda: es.count() == STOP_AT - 1, 90, interval=0.2, message="the first part indexed")
            first.stop()
            broker.stop()
        sink.publish(event)
        if not broker.running:
            returned_while_down += 1

    run_backtest(candles_1h, make_strategy("engulfing"), symbol="ETHUSDT", interval="1h", publish=publish)
    after_stop = events[STOP_AT - 1 :]
    # The engine finished the whole run with the broker down: no publish call waited for it.
    assert not broker.running
    assert returned_while_down == len(after_stop) > 10_000
    wait_for(
        lambda: sink.stats()["spooled"] > 0 and sink.stats()["queued"] == 0,
        30,
        message="the sink to spill what it could not deliver",
    )

    broker.start()
    assert sink.flush(120), sink.stats()
    stats = sink.stats()
    assert sink.close()
    assert stats["acked"] == len(events) and stats["broker_failures"] >= 1 and stats["spooled_total"] > 0

    second = forwarder()
    try:
        wait_for(lambda: es.count() >= len(events), 120, interval=0.2, message="everything indexed")
    finally:
        second.stop()
    ids = es.ids()
    assert len(ids) == len(events) and set(ids.values()) == {1}, "a missing or duplicated document"
    assert set(ids) == {e.event_id for e in events}

    # What the restarted broker holds: exactly the events published while it was down (nothing the
    # old broker had acknowledged was sent again), in publish order per topic and key.
    msgs = read_topics(broker.bootstrap, TopicNames(topic_prefix).all(), expected=len(after_stop))
    sent_again = {json.loads(m.value)["event_id"] for m in msgs}
    assert sent_again == {e.event_id for e in after_stop}
    first_seen: dict[tuple[str, bytes], list[str]] = collections.defaultdict(list)
    for m in sorted(msgs, key=lambda m: (m.topic, m.partition, m.offset)):
        eid = json.loads(m.value)["event_id"]
        if eid not in first_seen[(m.topic, m.key)]:
            first_seen[(m.topic, m.key)].append(eid)
    expected: dict[tuple[str, bytes], list[str]] = collections.defaultdict(list)
    for e in after_stop:
        expected[(f"{topic_prefix}.{e.family}", e.symbol.encode())].append(e.event_id)
    assert dict(first_seen) == dict(expected)
