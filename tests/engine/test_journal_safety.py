"""Issue 10, journal defects: die loudly (2), single writer (5), integrity and 0600 at open (7, 9),
bounded growth and streaming summaries (9/Build 8)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from tradeconsole.core.domain import Candle
from tradeconsole.core.engine import Engine, SessionSpec
from tradeconsole.core.events import CandleUpdateEvent, ErrorEvent
from tradeconsole.core.feed import CandleClosed
from tradeconsole.infra.persistence.journal import Journal, JournalDamaged, JournalLocked, JournalWriteError

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "tradeconsole.tui.cli"]
ENV = {"run_id": "run-1", "mode": "paper", "symbol": "ETHUSDT", "interval": "1h", "strategy": "engulfing"}


def _headless(journal: Path, data: Path, *extra: str, strategies=("engulfing",), interval="1h") -> list[str]:
    cmd = [
        *CLI,
        "run",
        "--headless",
        "--interval",
        interval,
        "--replay",
        str(data),
        "--speed",
        "max",
        "--journal",
        str(journal),
        *extra,
    ]
    for s in strategies:
        cmd += ["--strategy", s]
    return cmd


def _tick(i: int, run_id: str = "run-1") -> CandleUpdateEvent:
    c = Candle(
        1_700_000_000_000 + i * 3_600_000,
        2000.0,
        2010.0,
        1990.0,
        2005.0 + i % 7,
        12.5,
        1_700_003_599_999 + i * 3_600_000,
        False,
    )
    return CandleUpdateEvent(
        event_id=f"{run_id}:tick:{i}",
        time=c.open_time,
        **{**ENV, "run_id": run_id},
        candle=c,
        indicators={
            "rsi": 51.0,
            "macd": 0.1,
            "macd_signal": 0.2,
            "macd_hist": -0.1,
            "cci": 3.0,
            "bull": 1,
            "engulfing": 0,
        },
    )


def _audit(i: int, run_id: str = "run-1") -> ErrorEvent:
    return ErrorEvent(
        event_id=f"{run_id}:error:{i}",
        time=1_700_000_000_000 + i,
        **{**ENV, "run_id": run_id},
        source="feed",
        message=f"audit {i}",
    )


def _last_line(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.strip()][-1]


def _assert_loud_journal_failure(p: subprocess.CompletedProcess, journal: Path, reasons: tuple[str, ...]) -> None:
    assert p.returncode == 1, p.stderr[-2000:]
    last = _last_line(p.stderr)
    assert last.startswith("error: journal write failed: ") and last.endswith(f"({journal})"), last
    assert any(r in last for r in reasons), last
    assert "Traceback" not in p.stderr
    assert "cannot rollback" not in p.stderr  # the secondary error no longer hides the first
    assert "engine thread ended unexpectedly" not in p.stderr


# ---------------------------------------------------------------------------- defect 2: die loudly


def test_full_disk_tmpfs_exits_nonzero_with_root_cause(tmp_path, data_1h):
    """The issue's reproduction: journal on a 2 MB tmpfs, a max-speed 1h replay."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 2 MB tmpfs needs root; test_file_size_limit_... covers the same path")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if m.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({m.stderr.strip()}); the file-size-limit variant covers it")
    try:
        journal = mnt / "journal.sqlite"
        p = subprocess.run(_headless(journal, data_1h, "--json"), capture_output=True, text=True, timeout=150, cwd=ROOT)
        _assert_loud_journal_failure(p, journal, ("database or disk is full",))
        assert p.stdout == ""  # no summary of a run that did not finish
        # a supervisor's restart on the still-full disk fails the same loud way (never exit 0)
        again = subprocess.run(_headless(journal, data_1h), capture_output=True, text=True, timeout=150, cwd=ROOT)
        assert again.returncode == 1 and _last_line(again.stderr).startswith("error: journal write failed: ")
        assert "Traceback" not in again.stderr
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_file_size_limit_variant_exits_nonzero_with_root_cause(tmp_path, data_1h):
    """Portable fault injection: RLIMIT_FSIZE makes writes past 3 MB fail (EFBIG/short write; Python
    ignores SIGXFSZ), which SQLite reports as a full disk or an I/O error."""
    journal = tmp_path / "journal.sqlite"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))

    p = subprocess.run(
        _headless(journal, data_1h, "--json"), capture_output=True, text=True, timeout=150, cwd=ROOT, preexec_fn=limit
    )
    _assert_loud_journal_failure(p, journal, ("database or disk is full", "disk I/O error"))
    # once the disk has room again the restart resumes the same run (crash recovery)
    ok = subprocess.run(_headless(journal, data_1h), capture_output=True, text=True, timeout=150, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert any('"resumed": true' in line for line in ok.stderr.splitlines())
    db = sqlite3.connect(journal)
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(DISTINCT time_ms) FROM events WHERE type='candle'").fetchone()[0] == 9504


def test_commit_failure_keeps_the_root_cause_and_the_journal_usable(tmp_path):
    j = Journal(tmp_path / "j.sqlite", sync="normal")
    j.commit([_audit(0)])
    pages = j._db.execute("PRAGMA page_count").fetchone()[0]
    j._db.execute(f"PRAGMA max_page_count={pages + 2}")  # SQLite's own SQLITE_FULL, no mocking
    with pytest.raises(JournalWriteError) as info:
        j.commit([_tick(i) for i in range(2_000)])
    msg = str(info.value)
    assert msg == f"journal write failed: database or disk is full ({j.path})"
    assert not j._db.in_transaction
    assert j.count() == 1  # nothing of the failed batch is half-written
    j.commit([_audit(1)])  # still usable for what fits
    assert j.count() == 2
    j.close()


def test_engine_death_records_the_cause_and_never_blocks_the_source(tmp_path, candles_1h):
    j = Journal(tmp_path / "j.sqlite", sync="normal")
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing")], journal=j, queue_size=16)
    engine.start()
    assert engine.wait_idle(10)
    pages = j._db.execute("PRAGMA page_count").fetchone()[0]
    j._db.execute(f"PRAGMA max_page_count={pages + 3}")
    t0 = time.monotonic()
    for c in candles_1h.candles()[:3000]:  # far more than the queue: a dead engine must not block this
        engine.feed(CandleClosed("ETHUSDT", "1h", c))
    assert time.monotonic() - t0 < 60
    assert engine.join(10) and not engine.alive
    assert engine.failure == f"journal write failed: database or disk is full ({j.path})"
    engine.stop()
    j._db.execute("PRAGMA max_page_count=1073741823")
    status = j._db.execute("SELECT status FROM runs").fetchone()[0]
    assert status in ("running", "failed")  # "failed" when the journal still took that write
    if status == "failed":
        fatal = [e for _, e in j.events(types=["error"]) if e.get("fatal")]
        assert fatal and fatal[-1]["message"] == engine.failure
    j.close()


def test_console_exits_nonzero_with_the_engines_root_cause(monkeypatch, capsys):
    import tradeconsole.tui.app as app_mod
    import tradeconsole.tui.cli as cli

    class FakeRuntime:
        failure = "journal write failed: database or disk is full (/x/journal.sqlite)"

    class FakeApp:
        return_code = 0

        def __init__(self, _opts):
            self.last_stopped = None

        def run(self):
            self.last_stopped = FakeRuntime()

        def shutdown_runtime(self):
            pass

    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(app_mod, "TradeConsoleApp", FakeApp)
    monkeypatch.setattr(sys, "stdin", TTY())
    monkeypatch.setattr(sys, "stdout", TTY())
    assert cli.main([]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {FakeRuntime.failure}"


def test_systemd_unit_restarts_on_failure_and_not_on_refusal():
    unit = (ROOT / "infra" / "deploy" / "tradeconsole.service").read_text()
    keys = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert keys["Restart"] == "on-failure"
    assert int(keys["RestartSec"]) > 0
    assert keys["RestartPreventExitStatus"].split() == ["2"]  # refused starts need a person, not a loop
    readme = (ROOT / "README.md").read_text()
    assert "Running under a supervisor" in readme and "RestartPreventExitStatus=2" in readme


# ---------------------------------------------------------------------------- defect 5: single writer

_HOLDER = """
import sys, time
from tradeconsole.infra.persistence.journal import Journal
j = Journal(sys.argv[1], sync="normal")
print("locked", flush=True)
time.sleep(120)
"""


def _hold(journal: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(journal)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_second_writer_is_refused_naming_the_holder_and_sigkill_releases(tmp_path, data_1h):
    journal = tmp_path / "j.sqlite"
    holder = _hold(journal)
    try:
        with pytest.raises(JournalLocked) as info:
            Journal(journal)
        assert f"is in use by pid {holder.pid} (" in str(info.value)
        t0 = time.monotonic()
        p = subprocess.run(
            _headless(journal, data_1h, "--cash", "5000"), capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert time.monotonic() - t0 < 30  # refused at once, not after waiting on SQLite's busy timeout
        assert p.returncode == 2
        assert _last_line(p.stderr).startswith(f"error: journal {journal} is in use by pid {holder.pid} (")
        assert "Traceback" not in p.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    j = Journal(journal)  # the kernel dropped the dead holder's lock: crash recovery needs no clean-up
    j.close()


def test_readonly_inspection_needs_no_lock(tmp_path):
    journal = tmp_path / "j.sqlite"
    w = Journal(journal, sync="normal")
    w.commit([_audit(0)])
    holder_running = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tradeconsole.infra.persistence.journal import Journal; "
            "j = Journal(sys.argv[1], readonly=True); print(j.count()); j.set_cursor('x', 1)",
            str(journal),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert holder_running.stdout.strip() == "1"  # read while another process holds the writer lock
    assert "JournalWriteError" in holder_running.stderr and "readonly" in holder_running.stderr
    w.close()


def test_same_process_opens_share_the_lock(tmp_path):
    a = Journal(tmp_path / "j.sqlite")
    b = Journal(tmp_path / "j.sqlite")  # e.g. the shipper's own connection
    b.close()
    holder_blocked = subprocess.run(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "j.sqlite")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert holder_blocked.returncode != 0 and "is in use by pid" in holder_blocked.stderr  # a still holds it
    a.close()
    _hold(tmp_path / "j.sqlite").kill()


def test_resume_with_other_options_is_refused(tmp_path, data_1h):
    journal = tmp_path / "j.sqlite"
    data = data_1h / "ETHUSDT-1h-2022-01.csv"
    first = subprocess.run(_headless(journal, data), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-1500:]
    before = hashlib.sha256(journal.read_bytes()).hexdigest()
    for extra, strategies, expect in (
        (("--cash", "5000"), ("engulfing",), "cash 10000.0 -> 5000.0"),
        ((), ("engulfing", "basic"), "sessions"),
        (("--mode", "seed"), ("engulfing",), "fill_model 'realistic' -> 'seed'"),
    ):
        p = subprocess.run(
            _headless(journal, data, *extra, strategies=strategies),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert p.returncode == 2, p.stderr[-1500:]
        last = _last_line(p.stderr)
        assert last.startswith(f"error: journal {journal} holds run ") and expect in last, last
        assert "--journal NEWPATH" in last and "Traceback" not in p.stderr
    assert hashlib.sha256(journal.read_bytes()).hexdigest() == before  # refused before writing anything
    same = subprocess.run(_headless(journal, data), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert same.returncode == 0 and any('"resumed": true' in line for line in same.stderr.splitlines())


# ---------------------------------------------------------------------------- integrity and 0600 at open


def _real_journal(path: Path, n: int = 3000) -> None:
    j = Journal(path, sync="normal")
    for i in range(0, n, 500):
        j.commit([_tick(k) for k in range(i, i + 500)])
    j.close()


def _damage_a_page(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name='events_run_type'").fetchone()[0]
    db.close()
    with open(path, "r+b") as f:  # garble an index root page: rows still readable, structure broken
        f.seek((root - 1) * page + 8)
        f.write(os.urandom(page - 16))


@pytest.mark.parametrize("kind", ["empty", "not-sqlite", "damaged-page", "other-database"])
def test_bad_journal_is_refused_with_a_recovery_hint(tmp_path, data_1h, kind):
    journal = tmp_path / "j.sqlite"
    if kind == "empty":
        journal.touch()
    elif kind == "not-sqlite":
        journal.write_bytes(b"PK\x03\x04 this is a zip, not a journal" * 100)
    elif kind == "damaged-page":
        _real_journal(journal)
        _damage_a_page(journal)
    else:
        db = sqlite3.connect(journal)
        db.execute("CREATE TABLE notes(x)")
        db.commit()
        db.close()
    before = journal.read_bytes()
    with pytest.raises(JournalDamaged) as info:
        Journal(journal)
    assert str(info.value).count("\n") == 0 and f"mv {journal} {journal}.broken" in str(info.value)
    p = subprocess.run(
        _headless(journal, data_1h / "ETHUSDT-1h-2022-01.csv"), capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert p.returncode == 2
    last = _last_line(p.stderr)
    assert last.startswith(f"error: journal {journal} is ") or last.startswith(f"error: {journal} is an SQLite"), last
    assert "--journal NEWPATH" in last and "Traceback" not in p.stderr
    assert journal.read_bytes() == before  # never replaced or "repaired" behind the user's back


def test_new_journal_and_its_wal_shm_and_lock_are_0600(tmp_path):
    old = os.umask(0o022)
    try:
        j = Journal(tmp_path / "j.sqlite", sync="normal")
        j.commit([_audit(0)])
        for name in ("j.sqlite", "j.sqlite-wal", "j.sqlite-shm", "j.sqlite.lock"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        assert not list(tmp_path.glob(".j.sqlite.creating-*"))
        j.close()
        os.chmod(tmp_path / "j.sqlite", 0o644)  # an old journal made before this rule: tightened at open
        Journal(tmp_path / "j.sqlite").close()
        assert stat.S_IMODE((tmp_path / "j.sqlite").stat().st_mode) == 0o600
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------- bounded growth


def test_retention_keeps_newest_ticks_and_the_whole_audit_trail(tmp_path):
    j = Journal(tmp_path / "j.sqlite", sync="normal")
    for i in range(0, 5000, 250):
        j.commit([_tick(k) for k in range(i, i + 250)] + [_audit(i)])
    j.begin_run("run-1", "paper", {})
    j.set_retention(300, background=False)  # this test drives compaction itself
    assert j.compact_now() == 4700
    ticks = [e["event_id"] for _, e in j.events(run_id="run-1", types=["candle_update"])]
    assert ticks == [f"run-1:tick:{k}" for k in range(4700, 5000)]  # the newest 300, in order
    assert j.count(type_="error") == 20
    assert j.compacted() == {"candle_update": 4700}
    seqs = [s for s, _ in j.events()]
    assert len(seqs) + 4700 == seqs[-1]  # every seq gap is accounted for
    j.close()


def test_retention_never_deletes_what_a_sink_has_not_acknowledged(tmp_path):
    j = Journal(tmp_path / "j.sqlite", sync="normal")
    j.begin_run("run-1", "paper", {})
    j.commit([_tick(k) for k in range(2000)])
    j.set_retention(100, hold_for=["kafka", "elasticsearch"], background=False)
    assert j.compact_now() == 0  # neither sink acknowledged anything yet
    j.set_cursor("kafka", 1500)
    assert j.compact_now() == 0  # elasticsearch still holds everything
    j.set_cursor("elasticsearch", 700)
    assert j.compact_now() == 700
    remaining = [s for s, _ in j.events(types=["candle_update"])]
    assert remaining[0] == 701 and len(remaining) == 1300
    j.set_cursor("elasticsearch", 2000)
    assert j.compact_now() == 800  # 701..1500: now bounded by kafka's 1500
    assert [s for s, _ in j.events()][0] == 1501
    j.close()


def test_background_compaction_bounds_ticks_while_committing(tmp_path):
    j = Journal(tmp_path / "j.sqlite", sync="normal")
    j.begin_run("run-1", "paper", {})
    j.set_retention(1000)
    for i in range(0, 20_000, 200):
        j.commit([_tick(k) for k in range(i, i + 200)])
    deadline = time.monotonic() + 30
    # compaction is triggered every max(500, keep/10) new ticks: at most that many above the bound
    while time.monotonic() < deadline and j.count(type_="candle_update") > 1500:
        time.sleep(0.05)
    assert 1000 <= j.count(type_="candle_update") <= 1500
    assert j.count(type_="candle_update") + j.compacted()["candle_update"] == 20_000
    j.close()


def test_events_stream_in_chunks_and_match_a_plain_query(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal(path, sync="normal")
    for i in range(0, 30_000, 1000):
        j.commit(
            [_tick(k, "run-a" if k % 3 else "run-b") for k in range(i, i + 1000)]
            + [_audit(k, "run-a") for k in range(i, i + 3)]
        )
    db = sqlite3.connect(path)
    expected = [
        (s, json.loads(p))
        for s, p in db.execute(
            "SELECT seq, payload FROM events WHERE run_id='run-a' AND type IN ('candle_update','error') ORDER BY seq"
        )
    ]
    db.close()
    tracemalloc.start()
    got = []
    peak_while_streaming = 0
    for seq, e in j.events(run_id="run-a", types=["error", "candle_update"]):
        got.append((seq, e["event_id"]))
        peak_while_streaming = max(peak_while_streaming, tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    assert got == [(s, e["event_id"]) for s, e in expected]
    # ~20,000 payloads of ~600 B = ~12 MB would be held by fetchall(); a chunk is a few MB at most
    assert peak_while_streaming - sys.getsizeof(got) - 250 * len(got) < 6_000_000
    assert [s for s, _ in j.events(after_seq=29_000)] == list(range(29_001, 30_091))
    j.close()


def test_headless_summary_and_journal_with_retention_match_the_backtest(tmp_path, data_1h):
    journal = tmp_path / "j.sqlite"
    p = subprocess.run(_headless(journal, data_1h, "--json"), capture_output=True, text=True, timeout=150, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-1500:]
    bt = subprocess.run(
        [*CLI, "backtest", "--strategy", "engulfing", "--data", str(data_1h), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    live, expected = json.loads(p.stdout), json.loads(bt.stdout)
    assert live["fills"] == expected["fills"] and live["final_equity"] == pytest.approx(expected["final_equity"])
    db = sqlite3.connect(journal)
    counts = dict(db.execute("SELECT type, COUNT(*) FROM events GROUP BY type").fetchall())
    assert counts["candle_update"] <= 20_000 < 4 * 9504  # ticks bounded by the default retention
    assert counts["candle"] == counts["equity"] == 9504  # the audit trail in full
    assert dict(db.execute("SELECT type, deleted FROM compacted").fetchall())["candle_update"] >= 4 * 9504 - 20_000


def test_lock_file_names_the_holder_without_url_credentials(tmp_path, monkeypatch):
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "/x/bin/tradeconsole",
            "run",
            "--headless",
            "--elasticsearch",
            "https://elastic:s3cret-pw@es.example:9200",
            "--journal",
            "j",
        ],
    )
    j = Journal(tmp_path / "j.sqlite")
    text = (tmp_path / "j.sqlite.lock").read_text()
    j.close()
    assert text.startswith(f"pid {os.getpid()} (tradeconsole run --headless --elasticsearch https://***@es.example")
    assert "s3cret" not in text and "elastic:" not in text
