"""Exactly-once delivery to Kafka across restarts (issue 10, defects 3 and 4).

A headless replay with ``--kafka`` runs through a TCP proxy in front of a Tansu broker; cutting
the proxy is a Kafka outage that keeps the broker's log (Tansu keeps topics in memory, so stopping
the broker itself would empty them). The process is killed (SIGKILL) or stopped (SIGTERM) during
the outage, the outage ends, and the process is started again on the same journal to the end of
the data. Then everything in the test's topics is consumed and counted by event id: every
journalled event exactly once, nothing else. Before the fix the whole outage backlog arrived
twice (the spool replayed it and the shipper resent it from the journal cursor).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline.helpers import assert_exactly_once

pytestmark = [pytest.mark.timeout(300), pytest.mark.xdist_group("kafka")]

CANDLES = 2_500  # of the 1h data: about 6,000 events


@pytest.fixture
def replay_csv(tmp_path, candles_1h) -> Path:
    path = tmp_path / "data.csv"
    with path.open("w") as fh:
        for c in candles_1h.candles()[:CANDLES]:
            fh.write(f"{c.open_time},{c.open},{c.high},{c.low},{c.close},{c.volume},{c.close_time},0,0,0,0,0\n")
    return path


def _cmd(data: Path, journal: Path, cfg: Path, bootstrap: str, speed: str) -> list[str]:
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
        "--kafka",
        bootstrap,
    ]


def _query(journal: Path, sql: str) -> int:
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute(sql).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return 0
    return int(row[0] or 0) if row else 0


def _wait_journal(proc: subprocess.Popen, journal: Path, sql: str, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline and proc.poll() is None:
        n = _query(journal, sql)
        if n >= at_least:
            return n
        time.sleep(0.05)
    pytest.fail(f"{sql!r} reached {n}, not {at_least} (process exit code {proc.poll()})")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_outage_then_restart_delivers_every_event_exactly_once(how, proxied_broker, topic_prefix, replay_csv, tmp_path):
    _broker, proxy = proxied_broker
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[kafka]\ntopic_prefix = "{topic_prefix}"\n')
    journal = tmp_path / "j.sqlite"
    data_dir = tmp_path / "data"
    env = {**os.environ, "TRADECONSOLE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    log1 = tmp_path / "first.log"
    with log1.open("wb") as err:
        first = subprocess.Popen(
            _cmd(replay_csv, journal, cfg, proxy.bootstrap, "200000"), env=env, stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            # something reached Kafka and the cursor moved, then the outage starts mid-run
            _wait_journal(first, journal, "SELECT seq FROM cursors WHERE name='kafka'", 800, 120)
            proxy.cut()
            at_cut = _query(journal, "SELECT MAX(seq) FROM events")
            # the engine keeps journalling through the outage: a backlog builds up
            _wait_journal(first, journal, "SELECT MAX(seq) FROM events", at_cut + 1500, 120)
            time.sleep(2.0)  # long enough for the sink to have noticed and dropped what was in flight
            first.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
            t0 = time.monotonic()
            rc = first.wait(60)
            stopped_in = time.monotonic() - t0
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(10)
    assert "Traceback" not in log1.read_text(), log1.read_text()[-3000:]
    if how == "SIGTERM":
        assert rc == 0, log1.read_text()[-2000:]
        assert stopped_in < 20, f"a SIGTERM during an outage took {stopped_in:.1f} s to stop"
    cursor_at_stop = _query(journal, "SELECT seq FROM cursors WHERE name='kafka'")
    journalled_at_stop = _query(journal, "SELECT MAX(seq) FROM events")
    print(
        f"cut at journal seq {at_cut}; at stop: cursor {cursor_at_stop}, journal {journalled_at_stop}; "
        f"{how} exit took {stopped_in:.1f} s",
        flush=True,
    )
    assert journalled_at_stop - cursor_at_stop >= 1000, "no outage backlog: the test would prove nothing"
    # no second durable copy of the backlog exists outside the journal
    assert not list(data_dir.rglob("seg-*.log")) and not list(data_dir.rglob("ovf-*.tmp"))

    proxy.restore()
    second = subprocess.run(
        _cmd(replay_csv, journal, cfg, proxy.bootstrap, "max"), env=env, capture_output=True, text=True, timeout=200
    )
    (tmp_path / "second.log").write_text(second.stderr)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Traceback" not in second.stderr, second.stderr[-3000:]
    counts = assert_exactly_once(proxy.bootstrap, topic_prefix, journal)
    assert len(counts) > 5_000


def _mount_full_tmpfs(path: Path) -> bool:
    """A 64 KiB tmpfs at ``path``, filled up (root only)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        return False
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return True


def test_full_spool_disk_during_an_outage_then_recovery_delivers_exactly_once(
    proxied_broker, topic_prefix, replay_csv, tmp_path
):
    """The data directory (where spools live) is a full tmpfs through an outage, a SIGKILL and a
    restart: the sink never needs the disk (the journal, elsewhere, is its only durable copy), so
    nothing dies, and after recovery every event is in Kafka exactly once."""
    _broker, proxy = proxied_broker
    data_dir = tmp_path / "data"
    try:
        if not _mount_full_tmpfs(data_dir):
            pytest.skip("needs root to mount a tiny tmpfs (the in-process fault-hook test covers the spool)")
        with pytest.raises(OSError):  # really full
            (data_dir / "probe").write_bytes(b"x" * 8192)
        cfg = tmp_path / "config.toml"
        cfg.write_text(f'[kafka]\ntopic_prefix = "{topic_prefix}"\n')
        journal = tmp_path / "j.sqlite"
        env = {**os.environ, "TRADECONSOLE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
        proxy.cut()  # the outage starts before the process does
        first = subprocess.Popen(
            _cmd(replay_csv, journal, cfg, proxy.bootstrap, "200000"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "first.log").open("wb"),
        )
        try:
            _wait_journal(first, journal, "SELECT MAX(seq) FROM events", 2000, 120)
            proxy.restore()  # the broker comes back while the disk stays full
            _wait_journal(first, journal, "SELECT seq FROM cursors WHERE name='kafka'", 500, 60)
            proxy.cut()
            at_cut = _query(journal, "SELECT MAX(seq) FROM events")
            _wait_journal(first, journal, "SELECT MAX(seq) FROM events", at_cut + 1000, 120)
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(10)
        # a restart on the full disk does not die, and ships the backlog once the broker is back
        log2 = tmp_path / "second.log"
        second = subprocess.Popen(
            _cmd(replay_csv, journal, cfg, proxy.bootstrap, "max"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log2.open("wb"),
        )
        try:
            time.sleep(3.0)
            assert second.poll() in (None, 0), log2.read_text()[-2000:]
            proxy.restore()
            rc = second.wait(200)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait(10)
        err = log2.read_text()
        assert rc == 0, err[-2000:]
        assert "Traceback" not in err and "Traceback" not in (tmp_path / "first.log").read_text()
        assert_exactly_once(proxy.bootstrap, topic_prefix, journal)
    finally:
        if os.path.ismount(data_dir):
            subprocess.run(["umount", "-l", str(data_dir)], capture_output=True)
