"""`tradeconsole backtest --kafka`: the run's events go through a journal and its shipper, like
every other run's (README "How it fits together"), and reach Kafka exactly once, by event id.

Against a real Kafka-protocol broker (Tansu, see conftest.py). The second run reuses the journal:
the shipper reads back what Kafka already holds (the first run's events, all acknowledged) and
sends none of it again, so every id is in Kafka once after both runs.
"""

from __future__ import annotations

import collections
import json
import sqlite3
import subprocess
import sys

import pytest
from tradeconsole.infra.sinks.topics import families

from tests.pipeline.helpers import read_topics

pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("kafka")]


def _backtest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradeconsole.tui.cli", "backtest", *args], capture_output=True, text=True, timeout=180
    )


def _journal_ids(path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [json.loads(r[0])["event_id"] for r in db.execute("SELECT payload FROM events ORDER BY seq")]
    finally:
        db.close()


def test_backtest_events_reach_kafka_exactly_once_through_the_journal(tmp_path, kafka_bootstrap, topic_prefix, data_1h):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[kafka]\ntopic_prefix = "{topic_prefix}"\n')
    journal = tmp_path / "bt.sqlite"
    common = [
        "--strategy",
        "engulfing",
        "--data",
        str(data_1h),
        "--to",
        "2022-04-01",
        "--config",
        str(cfg),
        "--kafka",
        kafka_bootstrap,
        "--journal",
        str(journal),
        "--json",
    ]
    first = _backtest(*common)
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads(first.stdout)
    ids = _journal_ids(journal)
    assert len(ids) > 2000 and len(ids) == len(set(ids))
    assert f"{report['run_id']}:backtest_run" in ids  # the summary goes the same way as the rest
    assert f"shipped {len(ids)} events" in first.stderr
    topics = [f"{topic_prefix}.{f}" for f in families()]
    msgs = read_topics(kafka_bootstrap, topics, expected=len(ids), timeout=90)
    counts = collections.Counter(json.loads(m.value)["event_id"] for m in msgs)
    assert counts == collections.Counter(ids), "journal and Kafka disagree (a loss or a duplicate)"
    runs = sqlite3.connect(journal).execute("SELECT run_id, mode, status FROM runs").fetchall()
    assert runs == [(report["run_id"], "backtest", "finished")]

    second = _backtest(*common)
    assert second.returncode == 0, second.stderr[-2000:]
    all_ids = _journal_ids(journal)
    assert len(all_ids) == 2 * len(ids) and len(set(all_ids)) == len(all_ids)  # a new run id, new events
    msgs = read_topics(kafka_bootstrap, topics, expected=len(all_ids), timeout=90)
    counts = collections.Counter(json.loads(m.value)["event_id"] for m in msgs)
    assert counts == collections.Counter(all_ids), "the second run resent the first run's events"


def test_an_unreachable_kafka_is_an_error_not_a_silent_loss(tmp_path, data_1h):
    """Nothing listens on the port: the run still reports, and the command says (one `error:` line,
    exit 1) that Kafka did not acknowledge the events, instead of exiting 0 with nothing delivered."""
    from tests.pipeline.helpers import free_port

    out = _backtest(
        "--strategy",
        "engulfing",
        "--data",
        str(data_1h),
        "--to",
        "2022-02-01",
        "--kafka",
        f"127.0.0.1:{free_port()}",
        "--json",
    )
    assert out.returncode == 1, out.stderr[-2000:]
    assert json.loads(out.stdout)["trades"] >= 0  # the report itself was printed
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "did not acknowledge" in errors[0] and "Traceback" not in out.stderr


def test_a_journal_without_kafka_is_refused(tmp_path, data_1h, capsys):
    from tradeconsole.tui.cli import main

    code = main(
        ["backtest", "--strategy", "engulfing", "--data", str(data_1h), "--journal", str(tmp_path / "j.sqlite")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "without --kafka" in err
    assert not (tmp_path / "j.sqlite").exists()
