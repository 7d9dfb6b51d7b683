"""Optimisation runs are journalled and shipped as events (issue 16, item 5): an
``optimization_run`` start and finish (or interrupted) event and one ``optimization_trial`` per
reported top trial, valid against their schemas, in the journal the CLI composition opens, and
shipped from it to Kafka by the same ``JournalShipper`` as every run."""

from __future__ import annotations

import json
import sqlite3

import pytest
from tradeconsole.infra.sinks.schemas import validate
from tradeconsole.infra.sinks.topics import event_classes
from tradeconsole.tui.cli import main

pytestmark = pytest.mark.xdist_group("optimize")


def _args(data, *extra: str) -> list[str]:
    return [
        "optimize",
        "--strategy",
        "basic",
        "--data",
        str(data),
        "--from",
        "2022-08-01",
        "--to",
        "2022-10-01",
        "--param",
        "rsi_oversold=25,30,35",
        "--param",
        "take_profit_pct=0.02,0.04",
        "--workers",
        "1",
        "--folds",
        "2",
        "--top",
        "3",
        "--json",
        *extra,
    ]


def _events(path) -> list[dict]:
    db = sqlite3.connect(path)
    try:
        return [json.loads(p) for (p,) in db.execute("SELECT payload FROM events ORDER BY seq")]
    finally:
        db.close()


def test_run_and_top_trials_are_journalled_valid_and_match_the_report(capsys, data_5m, tmp_path):
    journal = tmp_path / "j.sqlite"
    assert main(_args(data_5m, "--journal", str(journal))) == 0
    report = json.loads(capsys.readouterr().out)
    evs = _events(journal)
    assert [e["type"] for e in evs] == ["optimization_run"] + ["optimization_trial"] * 3 + ["optimization_run"]
    for e in evs:
        assert validate(e) == [], (e["type"], validate(e))
    start, *trials, finish = evs
    assert start["phase"] == "start" and finish["phase"] == "finish"
    assert start["run_id"] == finish["run_id"] == trials[0]["run_id"]
    assert start["space"]["rsi_oversold"]["values"] == [25.0, 30.0, 35.0] and start["kernel"] == "compiled"
    assert finish["trials"] == report["evaluated"] == 6
    assert finish["best_params"] == report["best"]["params"] and finish["best_score"] == report["best"]["score"]
    wf = report["walk_forward"]
    assert finish["out_of_sample"]["return_pct_compounded"] == wf["out_of_sample_return_pct_compounded"]
    assert finish["out_of_sample"]["chosen"] == wf["chosen"]
    for rank, (t, want) in enumerate(zip(trials, report["top"], strict=True), start=1):
        assert t["rank"] == rank and t["params"] == want["params"] and t["score"] == want["score"]
        assert t["in_sample"]["return_pct"] == want["return_pct"]
        assert t["test_windows"] == want["test_windows"] and t["test_windows"]["windows"] == 2
    ids = [e["event_id"] for e in evs]
    assert len(set(ids)) == len(ids) and all(i.startswith(start["run_id"] + ":") for i in ids)
    # the families route them with the backtests (one topic / index / Kibana data view)
    assert {event_classes()[t].family for t in ("optimization_run", "optimization_trial")} == {"backtests"}
    db = sqlite3.connect(journal)
    assert db.execute("SELECT status FROM runs").fetchall() == [("finished",)]
    db.close()


def test_default_journal_and_no_journal(capsys, data_5m, tmp_path, monkeypatch):
    from tradeconsole.core.paths import journal_path

    assert main(_args(data_5m, "--no-journal")) == 0
    capsys.readouterr()
    assert not journal_path("journal-optimize.sqlite").exists()
    assert main(_args(data_5m)) == 0
    capsys.readouterr()
    assert len(_events(journal_path("journal-optimize.sqlite"))) == 5
    code = main(_args(data_5m, "--no-journal", "--kafka", "127.0.0.1:1"))
    assert code == 2 and "drop --no-journal" in capsys.readouterr().err


def test_journal_in_use_is_one_line_exit_1(data_5m, tmp_path):
    """Another process holds the journal: the optimiser refuses before any work, in one line."""
    import subprocess
    import sys
    from pathlib import Path

    from tradeconsole.infra.persistence.journal import Journal

    held = Journal(tmp_path / "j.sqlite")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tradeconsole.tui.cli", *_args(data_5m, "--journal", str(tmp_path / "j.sqlite"))],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        held.close()
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith("error: ") and "in use" in proc.stderr and "internal error" not in proc.stderr


def test_interrupted_run_ends_with_an_interrupted_event(capsys, data_5m, tmp_path, monkeypatch):
    from tradeconsole.backtest.optimize import run as runmod

    calls = {"n": 0}
    real = runmod.Progress.add

    def add(self, k):  # Ctrl-C after the first rows (the Progress path is the one Ctrl-C takes too)
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(self, k)

    monkeypatch.setattr(runmod.Progress, "add", add)
    journal = tmp_path / "j.sqlite"
    assert main(_args(data_5m, "--journal", str(journal))) == 130
    evs = _events(journal)
    assert [e.get("phase") for e in evs] == ["start", "interrupted"]
    assert evs[1]["computed"] >= 1 and validate(evs[1]) == []


@pytest.mark.timeout(180)
def test_events_are_shipped_to_kafka_from_the_journal(capsys, data_5m, tmp_path):
    """A Tansu broker of this test's own (a real Kafka-protocol broker, as the pipeline tests use):
    the run's five events arrive on ``tradeconsole.backtests``, once each."""
    from tests.pipeline.helpers import TansuBroker, read_topics

    (tmp_path / "tansu").mkdir()
    broker = TansuBroker(tmp_path / "tansu")
    broker.start()
    try:
        journal = tmp_path / "j.sqlite"
        assert main(_args(data_5m, "--journal", str(journal), "--kafka", broker.bootstrap)) == 0
        err = capsys.readouterr().err
        assert "warning" not in err, err
        want = [e["event_id"] for e in _events(journal)]
        msgs = read_topics(broker.bootstrap, ["tradeconsole.backtests"], len(want))
        got = [json.loads(m.value)["event_id"] for m in msgs]
        assert sorted(got) == sorted(want) and len(want) == 5
    finally:
        broker.stop()
