"""`tradeconsole run --headless --kafka`: every journalled event of a replayed paper run reaches
Kafka exactly once, in journal order per topic."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import defaultdict

import pytest

from infra.topics import families
from tests.pipeline.helpers import read_topics

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("kafka")]


def test_headless_replay_ships_the_journal_to_kafka(tmp_path, kafka_bootstrap, topic_prefix, candles_1h):
    from backtest.data import CandleArrays  # noqa: F401  (the data fixture loads it)

    data = tmp_path / "data.csv"
    with data.open("w") as fh:
        for c in candles_1h.candles()[:1500]:
            fh.write(f"{c.open_time},{c.open},{c.high},{c.low},{c.close},{c.volume},{c.close_time},0,0,0,0,0\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[kafka]\ntopic_prefix = "{topic_prefix}"\n')
    journal = tmp_path / "j.sqlite"
    out = subprocess.run([sys.executable, "-m", "tui.cli", "run", "--headless", "--strategy", "engulfing",
                          "--interval", "1h", "--replay", str(data), "--speed", "max", "--journal", str(journal),
                          "--config", str(cfg), "--kafka", kafka_bootstrap, "--json"],
                         capture_output=True, text=True, timeout=150)
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
