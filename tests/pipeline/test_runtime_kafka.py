"""`tradeconsole run --headless --kafka`: every journalled event of a replayed paper run reaches
Kafka exactly once, in journal order per topic."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import defaultdict

import pytest
from tradeconsole.infra.sinks.topics import families

from tests.pipeline.helpers import read_topics

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("kafka")]


def test_headless_replay_ships_the_journal_to_kafka(tmp_path, kafka_bootstrap, topic_prefix, candles_1h):
    from tradeconsole.core.candles import CandleArrays  # noqa: F401  (the data fixture loads it)

    data = tmp_path / "data.csv"
    with data.open("w") as fh:
        for c in candles_1h.candles()[:1500]:
            fh.write(f"{c.open_time},{c.open},{c.high},{c.low},{c.close},{c.volume},{c.close_time},0,0,0,0,0\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[kafka]\ntopic_prefix = "{topic_prefix}"\n')
    journal = tmp_path / "j.sqlite"
    out = subprocess.run(
        [
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
            "max",
            "--journal",
            str(journal),
            "--config",
            str(cfg),
            "--kafka",
            kafka_bootstrap,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    db = sqlite3.connect(journal)
    rows = [json.loads(r[0]) for r in db.execute("SELECT payload FROM events ORDER BY seq")]
    assert len(rows) > 3000
    topics = [f"{topic_prefix}.{f}" for f in families()]
    msgs = read_topics(kafka_bootstrap, topics, expected=len(rows), timeout=90)
    got = [json.loads(m.value) for m in msgs]
    ids = [g["event_id"] for g in got]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    assert set(ids) == {r["event_id"] for r in rows}, "journal and Kafka disagree"
    # per topic, Kafka order is journal order (one partition key per symbol)
    seq = {r["event_id"]: i for i, r in enumerate(rows)}
    by_topic: dict[str, list[int]] = defaultdict(list)
    for m in msgs:
        by_topic[m.topic].append(seq[json.loads(m.value)["event_id"]])
    for topic, order in by_topic.items():
        assert order == sorted(order), topic
    assert {m.key for m in msgs} == {b"ETHUSDT"} | ({b""} if any(not r["symbol"] for r in rows) else set())


def test_sigkill_loses_nothing_on_the_way_to_kafka(tmp_path, kafka_bootstrap, topic_prefix, data_1h):
    """The sinks ship from the journal with a durable cursor: events journalled but not yet
    acknowledged when the process is killed are sent after the restart, and those Kafka had
    already acknowledged are not sent again (exactly once)."""
    import os
    import signal
    import time

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[kafka]\ntopic_prefix = "{topic_prefix}"\n')
    journal = tmp_path / "j.sqlite"

    def cmd(speed):
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
            str(data_1h),
            "--speed",
            speed,
            "--journal",
            str(journal),
            "--config",
            str(cfg),
            "--kafka",
            kafka_bootstrap,
        ]

    first = subprocess.Popen(
        cmd("1000000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 90
    n = 0
    while time.monotonic() < deadline and first.poll() is None:
        try:
            db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
            n = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            db.close()
        except sqlite3.Error:
            pass
        if n > 5000:
            break
        time.sleep(0.05)
    assert first.poll() is None and n > 5000, "the first run ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = subprocess.run(cmd("max"), capture_output=True, text=True, timeout=150)
    assert second.returncode == 0, second.stderr[-2000:]
    db = sqlite3.connect(journal)
    journalled = {json.loads(r[0])["event_id"] for r in db.execute("SELECT payload FROM events")}
    assert (
        db.execute("SELECT seq FROM cursors WHERE name='kafka'").fetchone()[0]
        == db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    )
    # Journal retention deletes old open-candle ticks only after Kafka acknowledged them: Kafka has
    # exactly those on top of what the journal still holds
    compacted = dict(db.execute("SELECT type, deleted FROM compacted").fetchall()).get("candle_update", 0)
    msgs = read_topics(
        kafka_bootstrap, [f"{topic_prefix}.{f}" for f in families()], expected=len(journalled) + compacted, timeout=90
    )
    shipped = [json.loads(m.value)["event_id"] for m in msgs]
    # nothing lost, nothing twice (the restart reads back what Kafka already holds)
    extra = set(shipped) - journalled
    assert journalled <= set(shipped)
    assert len(extra) == compacted and all(":tick:" in e for e in extra)
    assert len(shipped) == len(set(shipped)) == len(journalled) + compacted, "an event was sent twice"
