"""`tradeconsole run --headless`: a replay gives the backtest's fills; SIGTERM shuts down cleanly."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(120)


def test_replay_through_engine_equals_backtest(tmp_path, data_1h):
    cmd = [sys.executable, "-m", "tradeconsole.tui.cli"]
    for mode in ("seed", "realistic"):
        h = subprocess.run(
            cmd
            + [
                "run",
                "--headless",
                "--strategy",
                "engulfing",
                "--interval",
                "1h",
                "--replay",
                str(data_1h),
                "--speed",
                "max",
                "--fill-model",
                mode,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=100,
        )
        assert h.returncode == 0, h.stderr[-1500:]
        b = subprocess.run(
            cmd + ["backtest", "--strategy", "engulfing", "--data", str(data_1h), "--fill-model", mode, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        live, bt = json.loads(h.stdout), json.loads(b.stdout)
        assert live["fills"] == bt["fills"] and len(bt["fills"]) > 20
        for key in ("trades", "wins", "losses", "final_equity", "max_drawdown_pct", "sharpe", "exposure_pct", "bars"):
            assert live[key] == pytest.approx(bt[key]), key
        # structured logs: every line is JSON
        lines = [json.loads(line) for line in h.stderr.splitlines() if line.strip()]
        assert any(x["message"] == "fill" for x in lines) and lines[-1]["message"] == "stopped"


def test_sigterm_is_a_clean_shutdown(tmp_path, data_1h):
    journal = tmp_path / "j.sqlite"
    p = subprocess.Popen(
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
            str(data_1h),
            "--speed",
            "200000",
            "--journal",
            str(journal),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists():
            try:
                db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
                n = db.execute("SELECT COUNT(*) FROM events WHERE type='candle'").fetchone()[0]
                db.close()
                if n > 200:
                    break
            except sqlite3.Error:
                pass
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err[-1500:]
    assert '"message": "signal SIGTERM: shutting down"' in err
    db = sqlite3.connect(journal)
    assert db.execute("SELECT status FROM runs").fetchone()[0] == "stopped"
    states = [json.loads(r[0])["state"] for r in db.execute("SELECT payload FROM events WHERE type='engine_state'")]
    assert states[-1] == "stopped"
    n = db.execute("SELECT COUNT(*) FROM events WHERE type='candle'").fetchone()[0]
    assert 200 < n < 9504
