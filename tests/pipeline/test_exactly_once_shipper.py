"""The exactly-once protocol in one process: the journal shipper and a journal-fed KafkaSink
through a TCP proxy (``proxy.cut()`` is an outage that keeps the broker's log).

These pin down what the subprocess tests in ``test_exactly_once.py`` hit only by chance: the
read-back after a crash between Kafka's acknowledgement and the cursor write, and a delivery
interrupted mid-batch.
"""

from __future__ import annotations

import collections
import json

import pytest
from tradeconsole.infra.persistence.journal import Journal
from tradeconsole.infra.persistence.shipper import JournalShipper
from tradeconsole.infra.sinks.kafka import KafkaSink
from tradeconsole.infra.sinks.topics import TopicNames

from tests.pipeline.helpers import read_topics, wait_for

pytestmark = [pytest.mark.timeout(180)]


def journal_with_events(path, candles, n_candles: int) -> list[str]:
    from tradeconsole.backtest.runner import run_backtest
    from tradeconsole.core.strategies import make_strategy

    events = []
    run_backtest(
        candles.take(slice(0, n_candles)),
        make_strategy("engulfing"),
        symbol="ETHUSDT",
        interval="1h",
        publish=events.append,
    )
    j = Journal(path, sync="normal")
    j.commit(events)
    j.close()
    return [e.event_id for e in events]


def kafka_counts(bootstrap: str, prefix: str, expected: int) -> collections.Counter[str]:
    msgs = read_topics(bootstrap, TopicNames(prefix).all(), expected=expected, timeout=60)
    return collections.Counter(json.loads(m.value)["event_id"] for m in msgs)


def sink_for(bootstrap: str, prefix: str, **kw) -> KafkaSink:
    return KafkaSink(bootstrap, topic_prefix=prefix, journal_fed=True, **kw)


def test_a_crash_before_the_cursor_write_sends_nothing_twice(proxied_broker, topic_prefix, candles_1h, tmp_path):
    """Everything is delivered, then the cursor is set back to 0 as if the process had died right
    after Kafka's acknowledgements: a new shipper reads back what Kafka holds and sends none of it."""
    _broker, proxy = proxied_broker
    path = tmp_path / "j.sqlite"
    ids = journal_with_events(path, candles_1h, 400)
    sink = sink_for(proxy.bootstrap, topic_prefix)
    shipper = JournalShipper(path, sink, window=300, batch=100).start()
    wait_for(lambda: shipper.acked_seq == len(ids), 60, message="everything acknowledged")
    assert shipper.stop(10) and sink.close()
    assert sink.stats()["journal_fed"] and sink.spool_dir is None
    j = Journal(path)
    j.set_cursor("kafka", 0)  # the crash: acknowledged by Kafka, not yet recorded
    j.close()

    again_sink = sink_for(proxy.bootstrap, topic_prefix)
    again = JournalShipper(path, again_sink).start()
    wait_for(lambda: again.acked_seq == len(ids), 60, message="the cursor to catch up")
    assert again.stop(10) and again_sink.close()
    assert again.skipped == len(ids) and again.shipped == 0 and again.reconciles == 1
    counts = kafka_counts(proxy.bootstrap, topic_prefix, len(ids))
    assert counts == collections.Counter(ids)


def test_an_outage_mid_delivery_resends_only_what_did_not_arrive(proxied_broker, topic_prefix, candles_1h, tmp_path):
    """The proxy is cut while batches are in flight: the sink drops what is unacknowledged and starts
    a new epoch, the status leaves "connected" within seconds, nothing is sent while the broker is
    away, and after it returns every journalled event is in Kafka exactly once."""
    _broker, proxy = proxied_broker
    path = tmp_path / "j.sqlite"
    ids = journal_with_events(path, candles_1h, 2_000)
    states: list[str] = []
    sink = sink_for(
        proxy.bootstrap,
        topic_prefix,
        on_stats=lambda st: states.append(st["state"]),
        stats_interval_s=0.1,
        linger_ms=50,
        batch_size=16 * 1024,
    )
    shipper = JournalShipper(path, sink, window=400, batch=200).start()
    wait_for(lambda: shipper.acked_seq > 1_000, 60, message="part of the journal delivered")
    proxy.cut()
    wait_for(lambda: sink.stats()["state"] != "connected", 5, message="the status to leave 'connected'")
    wait_for(lambda: sink.stats()["epoch"] >= 1, 10, message="the sink to drop what was in flight")
    acked_during = shipper.acked_seq
    assert acked_during < len(ids), "everything was delivered before the cut: the test proves nothing"
    wait_for(lambda: not sink.ready(), 5, message="the sink to report it cannot deliver")
    sent_before = sink.stats()["sent"]
    import time

    time.sleep(1.5)
    assert sink.stats()["sent"] == sent_before, "the sink sent while the broker was away"
    proxy.restore()
    wait_for(lambda: shipper.acked_seq == len(ids), 60, message="delivery to resume")
    wait_for(lambda: states and states[-1] == "connected", 10, message="the status back to 'connected'")
    assert shipper.stop(10) and sink.close()
    assert shipper.reconciles >= 2  # at start, and after the outage
    counts = kafka_counts(proxy.bootstrap, topic_prefix, len(ids))
    dup = [e for e, n in counts.items() if n > 1]
    assert not dup, f"{len(dup)} duplicate(s)"
    assert counts == collections.Counter(ids)


def test_an_idle_sink_notices_an_outage_within_seconds(proxied_broker, topic_prefix, tmp_path):
    """Nothing to send (a quiet market): the probe still takes the status off "connected" within a
    few seconds of the broker going away, and back when it returns (issue 10, defect 9)."""
    _broker, proxy = proxied_broker
    sink = sink_for(proxy.bootstrap, topic_prefix, probe_interval_s=0.5)
    try:
        wait_for(sink.ready, 15, message="the sink to connect")
        import time

        t0 = time.monotonic()
        proxy.cut()
        wait_for(lambda: sink.stats()["state"] != "connected", 5, message="the status to leave 'connected'")
        noticed = time.monotonic() - t0
        t1 = time.monotonic()
        proxy.restore()
        wait_for(sink.ready, 15, message="the status back to 'connected'")
        print(
            f"outage noticed after {noticed:.2f} s; back to connected {time.monotonic() - t1:.2f} s after the "
            "broker returned"
        )
    finally:
        sink.close()
    assert noticed < 5


def test_a_sink_that_is_not_journal_fed_gets_the_at_least_once_protocol(
    proxied_broker, topic_prefix, candles_1h, tmp_path
):
    """A standalone KafkaSink (own spool, no epochs) is shipped to with publish/flush, and the
    cursor still reaches the end."""
    _broker, proxy = proxied_broker
    path = tmp_path / "j.sqlite"
    ids = journal_with_events(path, candles_1h, 200)
    sink = KafkaSink(proxy.bootstrap, topic_prefix=topic_prefix, spool_dir=tmp_path / "spool")
    shipper = JournalShipper(path, sink)
    assert not shipper.exactly_once
    shipper.start()
    wait_for(lambda: shipper.acked_seq == len(ids), 60, message="everything acknowledged")
    assert shipper.stop(10) and sink.close()
    assert kafka_counts(proxy.bootstrap, topic_prefix, len(ids)) == collections.Counter(ids)
