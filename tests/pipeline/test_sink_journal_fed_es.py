"""The runtime's Elasticsearch sink after issues 9/10: a refusal is shown as ``refused`` (not
"reconnecting"), a quit never waits for Elasticsearch, and the sink has no disk spool that a full
disk could kill (journal-fed: the journal cursor is the only record of what is unsent)."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tradeconsole.core.events import EngineStateEvent
from tradeconsole.infra.sinks.elastic import ElasticsearchSink, make_client
from tradeconsole.infra.sinks.status import delivery_event

from tests.pipeline.helpers import free_port, wait_for
from tests.pipeline.test_es_compat import emulate_client_major
from tests.servers.es_standin import ElasticsearchStandIn

pytestmark = pytest.mark.timeout(180)


def _journalled(journal: Path) -> tuple[set[str], int, int, int]:
    """(event ids in the journal, the Elasticsearch cursor, the last seq, ticks compacted)."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        ids = {json.loads(r[0])["event_id"] for r in db.execute("SELECT payload FROM events")}
        cur = db.execute("SELECT seq FROM cursors WHERE name='elasticsearch'").fetchone()
        last = db.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        compacted = (
            dict(db.execute("SELECT type, deleted FROM compacted").fetchall()).get("candle_update", 0)
            if db.execute("SELECT 1 FROM sqlite_master WHERE name='compacted'").fetchone()
            else 0
        )
    finally:
        db.close()
    return ids, (cur[0] if cur else 0), last, compacted


# ---------------------------------------------------------------------------------------------- item 1


def test_a_refused_sink_is_shown_as_refused_with_its_reason_not_as_reconnecting():
    reason = "Elasticsearch refused the credentials (401 security_exception): check api_key"
    for fed in (True, False):
        ev = delivery_event(
            {"state": "refused", "error": reason + "\nsecond line", "journal_fed": fed},
            run_id="r",
            mode="paper",
            source="elasticsearch",
            time_ms=1,
        )
        assert ev.state == "refused"
        assert ev.detail.startswith(reason + " second line")  # one line, the reason first
        assert "\n" not in ev.detail
    # a huge server text stays a bounded line
    ev = delivery_event(
        {"state": "refused", "error": "x" * 100_000, "journal_fed": True},
        run_id="r",
        mode="paper",
        source="elasticsearch",
        time_ms=1,
    )
    assert len(ev.detail) < 1_000
    # transient states still say "reconnecting"; closed is disconnected
    assert (
        delivery_event({"state": "down", "journal_fed": True}, run_id="r", mode="paper", time_ms=1).state
        == "reconnecting"
    )
    assert delivery_event({"state": "closed"}, run_id="r", mode="paper", time_ms=1).state == "disconnected"


def test_a_real_compatibility_refusal_reaches_the_console_as_refused(monkeypatch, tmp_path):
    seen: list = []
    with ElasticsearchStandIn() as standin:
        emulate_client_major(monkeypatch, 9)  # a 9.x client against the 8.x stand-in
        sink = ElasticsearchSink(
            make_client(standin.url),
            index_prefix="tct",
            journal_fed=True,
            deadletter_path=tmp_path / "dead.ndjson",
            stats_interval_s=0.05,
            on_stats=lambda st: seen.append(delivery_event(st, run_id="r", mode="paper", source="elasticsearch")),
        )
        try:
            wait_for(lambda: any(e.state == "refused" for e in seen), 10, message="a refused status")
            ev = next(e for e in seen if e.state == "refused")
            assert "compatible-with=9" in ev.detail and "events wait in the journal" in ev.detail
            assert not sink.ready()
        finally:
            sink.close(2)


# ---------------------------------------------------------------------------------------------- item 2


def _cmd(data: Path, journal: Path, cfg: Path, es_url: str, speed: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tradeconsole.tui.cli",
        "run",
        "--headless",
        "--strategy",
        "engulfing",
        "--interval",
        "1h",
        "--replay",
        str(data),
        "--speed",
        speed,
        "--journal",
        str(journal),
        "--config",
        str(cfg),
        "--elasticsearch",
        es_url,
    ]


def test_sigterm_with_elasticsearch_down_exits_at_once_and_the_next_run_delivers_everything_once(tmp_path, data_1h):
    prefix = f"tct{os.getpid()}"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[elasticsearch]\nindex_prefix = "{prefix}"\n')
    journal = tmp_path / "j.sqlite"
    closed = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        _cmd(data_1h, journal, cfg, closed, "200000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        n = 0
        while time.monotonic() < deadline and first.poll() is None:
            try:
                n = len(_journalled(journal)[0])
            except sqlite3.Error:
                pass
            if n > 2000:
                break
            time.sleep(0.1)
        assert first.poll() is None and n > 2000, "the first run ended before it could be stopped"
        time.sleep(1.5)  # let the sink fail a few times (retry back-off running)
        t0 = time.monotonic()
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if first.poll() is None:
            first.kill()
    print(f"SIGTERM with Elasticsearch down: exit {first.returncode} after {took:.2f} s")
    assert took < 5.0, f"exit took {took:.1f} s"
    assert first.returncode == 0, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    ids, cursor, last, _ = _journalled(journal)
    assert cursor < last, "nothing should have been acknowledged by a closed port"

    with ElasticsearchStandIn() as standin:
        second = subprocess.run(
            _cmd(data_1h, journal, cfg, standin.url, "max"), capture_output=True, text=True, timeout=150, env=env
        )
        assert second.returncode == 0, second.stderr[-2000:]
        assert "Traceback" not in second.stderr
        ids, cursor, last, compacted = _journalled(journal)
        assert cursor == last, "the second run must acknowledge the whole journal"
        docs = standin.documents(f"{prefix}-*")
    got = [d["_id"] for d in docs]
    print(
        f"journal {len(ids)} events (+{compacted} ticks compacted after delivery), Elasticsearch {len(got)} documents"
    )
    assert len(got) == len(set(got)), "a document was indexed twice"
    assert ids <= set(got), f"{len(ids - set(got))} journalled event(s) missing from Elasticsearch"
    extra = set(got) - ids
    assert len(extra) == compacted and all(":tick:" in e for e in extra)


def test_close_never_waits_for_a_hanging_elasticsearch(tmp_path):
    """A server that accepts the connection and never answers: close() returns within its budget."""
    import socket

    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    try:
        sink = ElasticsearchSink(
            make_client(f"http://127.0.0.1:{ls.getsockname()[1]}", request_timeout=60),
            index_prefix="tct",
            journal_fed=True,
            deadletter_path=tmp_path / "dead.ndjson",
        )
        time.sleep(0.5)  # the thread is now blocked in its first request
        t0 = time.monotonic()
        assert sink.close(1.0) is False
        assert time.monotonic() - t0 < 3.0
        assert sink.stats()["state"] == "closed"
    finally:
        ls.close()


# ---------------------------------------------------------------------------------------------- item 3


def test_a_full_spool_disk_does_not_stop_the_runtimes_elasticsearch_sink(tmp_path, monkeypatch, data_1h):
    """The runtime's sink is journal-fed: every spool write failing with ENOSPC changes nothing,
    everything journalled is indexed exactly once and the sink never reports trouble."""
    import tradeconsole.infra.sinks.spool
    from tradeconsole.tui.runtime import Runtime, RuntimeOptions

    writes: list[int] = []

    def enospc(f, data):
        writes.append(len(data))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tradeconsole.infra.sinks.spool, "_write", enospc)
    monkeypatch.setenv("TRADECONSOLE_DATA_DIR", str(tmp_path / "home"))
    with ElasticsearchStandIn() as standin:
        cfg = tmp_path / "config.toml"
        cfg.write_text('[elasticsearch]\nindex_prefix = "tcfull"\n')
        journal = tmp_path / "j.sqlite"
        states: list[str] = []
        rt = Runtime(
            RuntimeOptions(
                strategies=[("engulfing", "1h")],
                replay=str(data_1h),
                journal=str(journal),
                config=str(cfg),
                elasticsearch=standin.url,
                keep_candle_updates=None,
            ),
            extra_subscribers=[
                lambda ev: (
                    states.append(getattr(ev, "state", "")) if getattr(ev, "source", "") == "elasticsearch" else None
                )
            ],
        )
        rt.start()
        try:

            def shipped() -> bool:
                _, cursor, last, _ = _journalled(journal)
                return rt.engine.failure is not None or (cursor == last and rt.source.finished)  # type: ignore[attr-defined]

            wait_for(shipped, 120, interval=0.2, message="the journal shipped to Elasticsearch")
            assert rt.engine.failure is None
        finally:
            rt.stop()
        ids, cursor, last, _ = _journalled(journal)
        docs = [d["_id"] for d in standin.documents("tcfull-*")]
    assert cursor == last and len(ids) > 3000
    assert len(docs) == len(set(docs)) and set(docs) == ids
    assert writes == [], "the runtime's Elasticsearch sink must not write a spool at all"
    assert not (tmp_path / "home").exists() or not list((tmp_path / "home").rglob("seg-*.log"))
    assert "refused" not in states and "degraded" not in states


def test_a_journal_fed_sink_resends_after_an_outage_without_duplicates(tmp_path):
    """Elasticsearch fails whole requests for a while: the shipper's window waits in the journal,
    the cursor moves only after acknowledgement, and every event is indexed once."""
    from tradeconsole.infra.persistence.journal import Journal
    from tradeconsole.infra.persistence.shipper import JournalShipper

    path = tmp_path / "j.sqlite"
    j = Journal(path, sync="normal")
    events = [
        EngineStateEvent(event_id=f"r:s:{i}", time=1_704_100_000_000 + i, run_id="r", mode="paper", state="running")
        for i in range(3000)
    ]
    j.begin_run("r", "paper", {})
    j.commit(events)
    j.close()
    with ElasticsearchStandIn() as standin:
        standin.set_unavailable(503)
        sink = ElasticsearchSink(
            make_client(standin.url),
            index_prefix="tcout",
            journal_fed=True,
            deadletter_path=tmp_path / "dead.ndjson",
            batch_size=200,
        )
        shipper = JournalShipper(path, sink, name="elasticsearch", window=500, batch=200).start()
        try:
            time.sleep(1.5)
            assert not sink.ready() and sink.stats()["state"] == "down"
            assert Journal(path, sync="normal", readonly=True).cursor("elasticsearch") == 0
            standin.set_unavailable(None)
            wait_for(lambda: shipper.acked_seq >= len(events), 60, message="everything acknowledged")
        finally:
            shipper.stop(5.0)
            sink.close(2.0)
        docs = [d["_id"] for d in standin.documents("tcout-*")]
    assert sorted(docs) == sorted(e.event_id for e in events)
