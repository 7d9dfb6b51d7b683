"""The sinks' shared parts own one job each (issue 13): the codec, the status helper and the Sink
protocol stand on their own, sinks say what they are instead of being told apart by class name,
``SpooledSinkBase`` asks for what it needs, and every retry goes through ``infra/retry.py``."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tradeconsole.core.events import EngineStateEvent
from tradeconsole.infra.persistence.journal import Journal
from tradeconsole.infra.persistence.shipper import JournalShipper
from tradeconsole.infra.retry import Backoff, RetryPolicy, retry_call
from tradeconsole.infra.sinks import codec
from tradeconsole.infra.sinks.protocol import ELASTICSEARCH, KAFKA, JournalFedSink, Sink
from tradeconsole.infra.sinks.spool import EventInbox, SpooledSinkBase

from tests.pipeline.helpers import free_port, wait_for

pytestmark = pytest.mark.timeout(120)


def _event(i: int) -> EngineStateEvent:
    return EngineStateEvent(event_id=f"r:s:{i}", time=1_704_100_000_000 + i, run_id="r", mode="paper", state="running")


# ---------------------------------------------------------------------------------------------- modules


def test_indexing_into_elasticsearch_does_not_import_the_kafka_sink():
    """The Elasticsearch sink and the status helper used to import the codec and ``delivery_event``
    from the Kafka sink; a console without Kafka must not load it."""
    code = (
        "import sys; import tradeconsole.infra.sinks.elastic, tradeconsole.infra.sinks.status, "
        "tradeconsole.infra.persistence.shipper; "
        "print('tradeconsole.infra.sinks.kafka' in sys.modules, 'kafka' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr


def test_the_codec_round_trips_what_the_sinks_write():
    doc = {"event_id": "r:1", "price": 1234.5, "nested": {"a": [1, None, "x"]}, "text": "é"}
    raw = codec.dumps(doc)
    assert isinstance(raw, bytes) and b" " not in raw.replace(b'"x"', b"")  # compact
    assert codec.loads(raw) == doc
    assert codec.BACKEND in ("orjson", "json")


# ---------------------------------------------------------------------------------------------- kinds


def test_both_sinks_say_what_they_are_and_satisfy_the_protocols(tmp_path):
    from tradeconsole.infra.sinks.elastic import ElasticsearchSink
    from tradeconsole.infra.sinks.kafka import KafkaSink

    dead = f"127.0.0.1:{free_port()}"
    kafka = KafkaSink(dead, journal_fed=True)
    es = ElasticsearchSink(f"http://{dead}", journal_fed=True, install=False, deadletter_path=tmp_path / "dead.ndjson")
    standalone = KafkaSink(dead, spool_dir=tmp_path / "spool")
    try:
        # the kinds name the journal cursors already stored in users' journals: they never change
        assert (kafka.kind, es.kind, standalone.kind) == (KAFKA, ELASTICSEARCH, KAFKA)
        assert (KAFKA, ELASTICSEARCH) == ("kafka", "elasticsearch")
        for sink in (kafka, es, standalone):
            assert isinstance(sink, Sink)
            assert isinstance(sink, JournalFedSink)
        assert kafka.journal_fed and es.journal_fed and not standalone.journal_fed
        # Elasticsearch deduplicates by document id: nothing to read back, and no request made
        assert es.delivered_seqs("abc", 0) == set()
    finally:
        for sink in (kafka, es, standalone):
            sink.close(0.5)


def test_the_runtime_tells_sinks_apart_by_kind_not_by_class_name():
    import inspect

    from tradeconsole.infra.persistence import shipper
    from tradeconsole.tui import runtime

    for module in (runtime, shipper):
        src = inspect.getsource(module)
        assert "__name__ ==" not in src and 'ElasticsearchSink"' not in src
        assert "hasattr(sink" not in src and "getattr(self.sink" not in src and "getattr(sink" not in src


class _MemorySink:
    """An at-least-once sink that acknowledges on flush (what a third destination would be)."""

    kind = "memory"
    journal_fed = False

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.flushes = 0

    def publish(self, event: Any) -> None:
        self.got.append(event)

    def flush(self, timeout: float = 10.0) -> bool:
        self.flushes += 1
        return True

    def close(self, timeout: float = 10.0) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {"state": "connected"}


def _journal(path: Path, n: int) -> Path:
    j = Journal(path, sync="normal")
    j.begin_run("r", "paper", {})
    j.commit([_event(i) for i in range(n)])
    j.close()
    return path


def test_the_shipper_keeps_its_cursor_under_the_sinks_kind(tmp_path):
    path = _journal(tmp_path / "j.sqlite", 25)
    sink = _MemorySink()
    assert isinstance(sink, Sink) and not isinstance(sink, JournalFedSink)
    shipper = JournalShipper(path, sink)
    assert shipper.name == "memory" and not shipper.exactly_once
    assert shipper.stop(5.0)
    assert [e.event_id for e in sink.got] == [f"r:s:{i}" for i in range(25)]
    ro = Journal(path, sync="normal", readonly=True)
    try:
        assert ro.cursor("memory") == 25 and ro.cursor("kafka") == 0
    finally:
        ro.close()


# ---------------------------------------------------------------------------------------------- base


class _ListSink(SpooledSinkBase):
    """The smallest spooled sink: its worker moves what it is given into a list."""

    def __init__(self) -> None:
        self.delivered: list[Any] = []
        super().__init__("list", EventInbox(100, lambda item: None, None), journal_fed=False, thread_name="list-sink")
        self._start_worker()

    def _run(self) -> None:
        while not (self._stop and not len(self._inbox)):
            self.delivered.extend(ev for _, _, ev in self._inbox.take(100))
            self._inbox.wait(0.01)
        self._drained_at_close = True

    def flush(self, timeout: float = 10.0) -> bool:
        return self._wait_until(lambda: True if len(self.delivered) >= self._inbox.published else None, timeout)

    def stats(self) -> dict[str, Any]:
        return {"state": "closed" if self._closed else "connected", "acked": len(self.delivered)}


def test_the_spooled_sink_base_asks_for_what_it_needs():
    class Forgetful(SpooledSinkBase):  # no worker, no flush, no stats
        pass

    with pytest.raises(TypeError, match="abstract"):
        Forgetful(
            "x",
            EventInbox(1, lambda item: None, None),
            journal_fed=False,  # type: ignore[abstract]
            thread_name="x",
        )

    with _ListSink() as sink:
        assert sink.kind == "list" and not sink.journal_fed and isinstance(sink, Sink)
        for i in range(50):
            sink.publish(_event(i))
        assert sink.flush(5.0)
    assert sink.close() is True  # closed by the with block; closing again answers the same
    assert [e.event_id for e in sink.delivered] == [f"r:s:{i}" for i in range(50)]
    assert sink.stats()["state"] == "closed"


def test_flush_gives_up_when_the_worker_is_gone():
    sink = _ListSink()
    sink.close(1.0)
    sink._inbox.published += 1  # something published that no worker will ever deliver
    t = time.monotonic()
    assert sink.flush(5.0) is False
    assert time.monotonic() - t < 1.0


# ---------------------------------------------------------------------------------------------- retry


def test_backoff_report_modes(caplog):
    caplog.set_level(logging.INFO, logger="t.report")
    lg = logging.getLogger("t.report")
    with pytest.raises(ValueError):
        Backoff("x", report="sometimes")
    quiet = Backoff("quiet", logger=lg, report="none")
    assert quiet.failed("down") > 0 and quiet.failed("down") > 0
    quiet.succeeded()
    assert quiet.failures == 0 and quiet.total_failures == 2
    assert caplog.records == []
    distinct = Backoff("svc", RetryPolicy(jitter=0.0), logger=lg, report="distinct")
    for reason in ("refused", "refused", "refused", "timeout", "timeout"):
        distinct.failed(reason)
    distinct.succeeded()
    distinct.failed("timeout")  # after a success the same failure is news again
    lines = [r.getMessage() for r in caplog.records]
    assert [ln.split(": ", 1)[1].split(";")[0] for ln in lines if r"failed (attempt" in ln] == [
        "refused",
        "timeout",
        "timeout",
    ]
    assert sum("succeeded after 5 failed attempt(s)" in ln for ln in lines) == 1
    assert distinct.failures == 1 and distinct.total_failures == 6


def test_retry_call_describes_the_failure_as_the_caller_asks(caplog):
    caplog.set_level(logging.WARNING, logger="t.describe")
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise ConnectionError("Connection error")
        return "ok"

    assert (
        retry_call(
            flaky,
            name="thing",
            classify=lambda e: True,
            policy=RetryPolicy(initial_s=0.01, max_s=0.01),
            logger=logging.getLogger("t.describe"),
            describe=lambda e: f"{e} (cause: refused)",
        )
        == "ok"
    )
    assert "thing failed (attempt 1): Connection error (cause: refused); retrying in" in caplog.records[0].getMessage()


def test_a_dead_kafka_broker_is_retried_by_the_shared_policy_not_hammered():
    """The sink's reconnects follow infra/retry.py's exponential backoff (0.2 s doubling to 5 s):
    over ~2 s a dead broker sees a handful of probes, not one per loop turn, and the thread keeps
    answering (``publish`` and ``stats`` never wait for it)."""
    from tradeconsole.infra.sinks.kafka import KafkaSink

    probes: list[float] = []
    sink = KafkaSink(f"127.0.0.1:{free_port()}", journal_fed=True)
    real = sink._probe

    def counting_probe() -> bool:
        probes.append(time.monotonic())
        return real()

    sink._probe = counting_probe  # type: ignore[method-assign]
    try:
        wait_for(lambda: len(probes) >= 1, 30, message="a reconnect attempt")
        time.sleep(2.0)
        # without a backoff the thread would probe on every turn of its 50 ms idle wait (~40 here)
        assert len(probes) <= 8, [round(b - a, 2) for a, b in zip(probes, probes[1:], strict=False)]
        assert sink.stats()["state"] == "down" and not sink.ready()
        # never connected, so never reset: every attempt counted by the one policy
        assert sink._retry.failures == sink._retry.total_failures >= 2
        assert sink._retry.policy.max_s == 5.0
    finally:
        sink.close(0.5)


def test_the_shippers_retry_is_stop_aware(tmp_path):
    """A shipper whose sink keeps failing stops within moments: its 1 s retry wait is the shared,
    interruptible one."""

    class Broken(_MemorySink):
        def flush(self, timeout: float = 10.0) -> bool:
            raise RuntimeError("broken")

    shipper = JournalShipper(_journal(tmp_path / "j.sqlite", 1), Broken()).start()
    wait_for(lambda: shipper._retry.total_failures >= 1, 30, message="a failed round")
    t = time.monotonic()
    shipper._stop.set()
    shipper._thread.join(5.0)  # type: ignore[union-attr]
    assert not shipper._thread.is_alive()  # type: ignore[union-attr]
    assert time.monotonic() - t < 0.5
    with pytest.raises(RuntimeError, match="broken"):  # the final acknowledgement fails as loudly
        shipper.stop(0.1)
