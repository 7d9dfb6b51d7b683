"""Must-show: SIGKILL a headless paper run while a position is open, start it again on the same
journal: position and balance are restored, no order is sent twice, the journal has no gap, and
the finished run's fills equal the backtest's."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(180)


def _cmd(data, journal, speed):
    return [
        sys.executable,
        "-m",
        "tradeconsole.tui.cli",
        "run",
        "--headless",
        "--strategy",
        "engulfing",
        "--symbol",
        "ETHUSDT",
        "--interval",
        "1h",
        "--replay",
        str(data),
        "--speed",
        speed,
        "--journal",
        str(journal),
        "--json",
    ]


def _open_position(journal) -> tuple[dict, int] | None:
    if not journal.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
        row = db.execute("SELECT snapshot FROM sessions").fetchone()
        n = db.execute("SELECT COUNT(*) FROM events WHERE type='fill'").fetchone()[0]
        db.close()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    snap = json.loads(row[0])
    return (snap, n) if snap.get("position") and n >= 1 else None


def test_sigkill_with_open_position_then_resume(tmp_path, data_1h):
    journal = tmp_path / "journal.sqlite"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # 100,000x real time: 36 ms per hourly candle, so the first position (15 candles, from candle
    # 133) is open for ~0.5 s: easy to catch; the kill comes ~5 s in
    first = subprocess.Popen(_cmd(data_1h, journal, "100000"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    state = None
    while time.monotonic() < deadline and first.poll() is None:
        state = _open_position(journal)
        if state:
            break
        time.sleep(0.05)
    assert state, "no open position seen before the replay ended"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert first.returncode == -signal.SIGKILL
    snap_at_kill = _open_position(journal)[0]  # what the journal holds after the crash
    pos = snap_at_kill["position"]

    second = subprocess.run(_cmd(data_1h, journal, "max"), capture_output=True, text=True, env=env, timeout=150)
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert any('"resumed": true' in line for line in second.stderr.splitlines())

    bt = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradeconsole.tui.cli",
            "backtest",
            "--strategy",
            "engulfing",
            "--data",
            str(data_1h),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    expected = json.loads(bt.stdout)
    assert summary["fills"] == expected["fills"]
    assert summary["final_equity"] == pytest.approx(expected["final_equity"], abs=1e-6)
    assert summary["trades"] == expected["trades"]

    db = sqlite3.connect(journal)
    # no gap: every missing seq is an open-candle tick deleted by retention (counted in `compacted`),
    # and the audit trail (everything else) is gap-free among itself
    seqs = [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")]
    compacted = dict(db.execute("SELECT type, deleted FROM compacted").fetchall())
    assert set(compacted) <= {"candle_update"}
    assert len(seqs) + sum(compacted.values()) == seqs[-1], "journal has a gap"
    kept_ticks = db.execute("SELECT MIN(seq) FROM events WHERE type='candle_update'").fetchone()[0]
    audit = [r[0] for r in db.execute("SELECT seq FROM events WHERE seq >= ? ORDER BY seq", (kept_ticks,))]
    assert audit == list(range(kept_ticks, kept_ticks + len(audit))), "gap among the events after retention"
    entries = [json.loads(r[0]) for r in db.execute("SELECT payload FROM events WHERE type='fill'")]
    order_ids = [f["order_id"] for f in entries]
    assert len(order_ids) == len(set(order_ids)), "an order was sent twice"
    # the position open at the kill was carried over: its entry appears once, its exit after the restart
    entry_fill = [
        f
        for f in entries
        if f["fill_time"].startswith(time.strftime("%Y-%m-%dT%H", time.gmtime(pos["entry_time"] / 1000)))
    ]
    assert len([f for f in entry_fill if f["reason"].startswith("entry")]) == 1
    candles = [r[0] for r in db.execute("SELECT time_ms FROM events WHERE type='candle'")]
    assert len(candles) == len(set(candles)) == 9504
    runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert runs == 1  # the restart continued the same run
