"""The durable local journal: every engine event, and each session's account state, in SQLite (WAL).

Why SQLite: embedded (nothing to run), crash-safe transactions, and one file a user can copy or
inspect with ``sqlite3``. The engine writes one transaction per input it processed (a closed
candle, a command): the events that input produced plus the sessions' broker snapshots. Only
after the commit are the events handed to subscribers (UI, Kafka), so nothing is shown or shipped
that a crash could lose, and a restart continues exactly after the last committed candle.

* ``events.event_id`` is UNIQUE and inserts are ``OR IGNORE``: re-processing an input after a
  crash cannot duplicate an event.
* ``events.seq`` is a gap-free sequence (AUTOINCREMENT, one writer) except where retention
  deleted open-candle ticks: ``compacted`` counts them, so ``max(seq) == rows + compacted``.
* ``sessions`` holds, per session key, the broker snapshot (paper balance, position, pending
  entry, protective order ids) and the open time of the last processed candle.
* ``sync="full"`` fsyncs every commit (survives power loss; live trading); ``"normal"`` relies on
  the OS after a commit (survives a killed process; fast replays).

Safety at open (why: a journal is the account's memory; silently starting over or resuming a
damaged one trades on wrong state):

* **One writer**: an exclusive ``flock`` on ``<journal>.lock`` is held for the process lifetime.
  A second process is refused at once with the holder's pid; the kernel drops the lock when the
  holder dies, even by SIGKILL, so crash recovery needs no clean-up. Journals opened again in the
  same process (the shipper, the summary) share the lock.
* **Integrity**: an empty file, a file that is not SQLite, a SQLite file that is not a journal,
  or one failing ``PRAGMA quick_check`` is refused with a line saying how to recover; it is
  never resumed or replaced.
* **Private**: a new journal is built under a temporary name with mode 0600 and renamed into
  place (so a crash mid-creation never leaves an empty journal); SQLite gives its -wal/-shm the
  database file's mode. Existing journals, their -wal/-shm and the lock are tightened to 0600.

Bounded growth: open-candle ticks (``candle_update``, several per candle, live many per second)
are only needed recently; ``set_retention`` keeps the newest N per run and deletes older ones on
a background thread in small transactions, never beyond the cursor of a configured sink (a tick
is deleted only once shipped). The audit trail (orders, fills, positions, equity, signals,
candles, errors, state) is never deleted.

Secrets are never written: events have no field for them and the run config is stored as given
by ``tradeconsole.infra.settings.public_view``.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import json
import logging
import os
import re
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tradeconsole.core.events import Event
from tradeconsole.core.store import SessionState, StoreError

__all__ = [
    "Journal",
    "JournalDamaged",
    "JournalError",
    "JournalLocked",
    "JournalMismatch",
    "JournalWriteError",
    "SessionState",
]

log = logging.getLogger(__name__)

#: high-rate events that retention may delete (everything else is the audit trail, kept in full)
COMPACTABLE = ("candle_update",)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_CHUNK = 2_000  # rows per read query when streaming, per delete transaction when compacting

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    mode TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running'
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL,
    type TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    interval TEXT NOT NULL,
    strategy TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run_type ON events(run_id, type);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    last_open_time INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS compacted (
    type TEXT PRIMARY KEY,
    deleted INTEGER NOT NULL,
    up_to_seq INTEGER NOT NULL
);
"""


class JournalError(StoreError):
    """A journal problem a person has to act on; ``str()`` is one line that says what and how."""


class JournalLocked(JournalError):
    """Another process holds the journal's writer lock."""


class JournalDamaged(JournalError):
    """The file is empty, not SQLite, not a journal, or fails the integrity check."""


class JournalMismatch(JournalError):
    """A start would resume a run that was begun with different options."""


class JournalWriteError(JournalError):
    """A write failed (disk full, I/O error); the message carries SQLite's root cause and the path."""


def _recover_hint(path: Path, capital: bool = False) -> str:
    return (
        f"{'M' if capital else 'm'}ove it aside (mv {path} {path}.broken) to start a new journal there, "
        f"or start with --journal NEWPATH"
    )


# ---------------------------------------------------------------------------- writer lock
_LOCKS: dict[str, list[int]] = {}  # real path -> [fd, opens in this process]
_LOCKS_GUARD = threading.Lock()
_CREDENTIALS_IN_URL = re.compile(r"(://)[^/@\s]+@")


def _holder_line() -> str:
    """What the lock file says about its holder: pid and command (URL credentials masked)."""
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    cmd = _CREDENTIALS_IN_URL.sub(r"\1***@", " ".join(argv))
    if len(cmd) > 200:
        cmd = cmd[:197] + "..."
    return f"pid {os.getpid()} ({cmd})"


def _acquire_lock(path: Path) -> tuple[str, bool]:
    """Take (or share, within this process) the exclusive lock on ``path``; returns the key and
    whether this is the process's first open of the journal."""
    key = os.path.realpath(path)
    with _LOCKS_GUARD:
        held = _LOCKS.get(key)
        if held is not None:
            held[1] += 1
            return key, False
        fd = os.open(key + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 400, 0).decode("utf-8", "replace").strip() or "another process (pid not written yet)"
            os.close(fd)
            raise JournalLocked(
                f"journal {path} is in use by {holder.splitlines()[0]}: one process writes a journal "
                f"at a time; stop that one first, or use another --journal PATH"
            ) from None
        try:
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (_holder_line() + "\n").encode(), 0)
        except OSError:  # a full disk must not hide behind the lock file: the pid is a courtesy
            pass
        _LOCKS[key] = [fd, 1]
        return key, True


def _release_lock(key: str) -> None:
    with _LOCKS_GUARD:
        held = _LOCKS.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del _LOCKS[key]
            os.close(held[0])  # closing the last descriptor releases the flock


def _write_error(exc: BaseException, path: Path) -> JournalWriteError:
    return JournalWriteError(f"journal write failed: {exc} ({path})")


class Journal:
    """Append-only event store plus per-session state; safe to read from other threads.

    ``verify=False`` skips the integrity check (only for a journal this process just wrote and
    closed, e.g. the headless summary); the lock and format checks always run. ``readonly=True``
    is for inspecting a journal another process may be writing (tools, tests): no lock, no
    creation, every write refused by SQLite.
    """

    def __init__(self, path: str | Path, sync: str = "full", *, verify: bool = True, readonly: bool = False) -> None:
        if sync not in ("full", "normal"):
            raise ValueError("sync must be 'full' or 'normal'")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        self._compactor: threading.Thread | None = None
        self._compact_wake = threading.Event()
        self._compact_stop = threading.Event()
        self.keep_updates: int | None = None
        self.hold_for: tuple[str, ...] = ()
        self._since_compact = 0
        self._sync = sync
        if readonly:
            self._lock_key = ""
            if not self.path.is_file():
                raise JournalDamaged(f"journal {self.path} does not exist")
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA busy_timeout=5000")
            return
        self._lock_key, first = _acquire_lock(self.path)
        try:
            if first:
                self._prepare_file()
            self._db = self._connect(check=verify and first)
        except BaseException:
            _release_lock(self._lock_key)
            raise
        self._db.execute(f"PRAGMA synchronous={sync.upper()}")

    # ------------------------------------------------------------------ opening
    def _prepare_file(self) -> None:
        """Create a new journal atomically (0600), or refuse a file that cannot be one."""
        if not self.path.exists():
            self._create()
            return
        size = self.path.stat().st_size
        if size == 0:
            raise JournalDamaged(
                f"journal {self.path} is empty (0 bytes): it holds no run to resume and is not "
                f"replaced silently; {_recover_hint(self.path)}"
            )
        with open(self.path, "rb") as f:
            magic = f.read(len(_SQLITE_MAGIC))
        if magic != _SQLITE_MAGIC:
            raise JournalDamaged(
                f"journal {self.path} is not an SQLite database ({size:,} bytes of something "
                f"else); {_recover_hint(self.path)}"
            )
        for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                if stat.S_IMODE(p.stat().st_mode) & 0o077:
                    os.chmod(p, 0o600)

    def _create(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.creating-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.executescript(_SCHEMA)
                db.execute("PRAGMA journal_mode=WAL")  # persistent: recorded in the file header
            finally:
                db.close()
            os.replace(tmp, self.path)
        except sqlite3.Error as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _write_error(exc, self.path) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        with contextlib.suppress(OSError):
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _connect(self, *, check: bool) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            if check:
                problems = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
                if problems != ["ok"]:
                    raise JournalDamaged(
                        f"journal {self.path} is damaged (integrity check: {' '.join(str(problems[0]).split())[:160]}); "
                        f"it is not resumed. {_recover_hint(self.path, capital=True)}; "
                        f"`sqlite3 {self.path} .recover` can salvage what is readable"
                    )
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and not {"events", "runs", "sessions"} <= tables:
                raise JournalDamaged(
                    f"{self.path} is an SQLite database but not a tradeconsole journal (tables: "
                    f"{', '.join(sorted(tables))[:120]}); {_recover_hint(self.path)}"
                )
            db.execute("PRAGMA journal_mode=WAL")  # only once it is known to be a journal: this writes
            db.executescript(_SCHEMA)  # adds what older journals lack; a no-op otherwise
        except JournalError:
            db.close()
            raise
        except sqlite3.DatabaseError as exc:
            db.close()
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise _write_error(exc, self.path) from exc
            raise JournalDamaged(
                f"journal {self.path} cannot be read ({exc}); it is not resumed. "
                f"{_recover_hint(self.path, capital=True)}"
            ) from exc
        return db

    # ------------------------------------------------------------------ writing
    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        """One autocommit statement; a failure names its root cause (disk full, I/O error)."""
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as exc:
                raise _write_error(exc, self.path) from exc

    def begin_run(self, run_id: str, mode: str, config: dict[str, Any]) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO runs(run_id, started_ms, mode, config) VALUES (?,?,?,?)",
                    (run_id, int(time.time() * 1000), mode, json.dumps(config, default=str)),
                )
                self._db.execute("UPDATE runs SET status='running' WHERE run_id=?", (run_id,))
            except sqlite3.Error as exc:
                raise _write_error(exc, self.path) from exc

    def end_run(self, run_id: str, status: str = "stopped") -> None:
        self._write("UPDATE runs SET status=? WHERE run_id=?", (status, run_id))

    def commit(self, events: Iterable[Event], states: Iterable[SessionState] = ()) -> set[str]:
        """Write new events and the session states in one transaction.

        Returns the ids of events that were already journalled (a re-processed input after a
        crash); they are not written again and callers should not deliver them again. Existing
        ids are looked up first instead of relying on ``INSERT OR IGNORE``, which would burn
        sequence numbers and leave gaps in ``seq``.

        Raises ``JournalWriteError`` with SQLite's own reason ("database or disk is full") when
        the write fails. SQLite may already have rolled the transaction back itself (it does on
        SQLITE_FULL); the rollback here runs only if one is still open, and its own failure never
        replaces the root cause.
        """
        evs = list(events)
        now = int(time.time() * 1000)
        st = [(s.session_key, s.run_id, json.dumps(s.snapshot), s.last_open_time, now) for s in states]
        ticks = 0
        with self._lock:
            cur = self._db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                dup: set[str] = set()
                ids = [e.event_id for e in evs]
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    dup.update(
                        r[0]
                        for r in cur.execute(
                            f"SELECT event_id FROM events WHERE event_id IN ({','.join('?' * len(chunk))})", chunk
                        )
                    )
                seen: set[str] = set()
                rows = []
                for e in evs:
                    if e.event_id in dup or e.event_id in seen:
                        dup.add(e.event_id)
                        continue
                    seen.add(e.event_id)
                    if e.type in COMPACTABLE:
                        ticks += 1
                    rows.append(
                        (
                            e.event_id,
                            e.run_id,
                            e.type,
                            e.time,
                            e.symbol,
                            e.interval,
                            e.strategy,
                            json.dumps(e.to_dict(), separators=(",", ":")),
                        )
                    )
                if rows:
                    cur.executemany(
                        "INSERT INTO events(event_id, run_id, type, time_ms, symbol, interval, strategy, payload)"
                        " VALUES (?,?,?,?,?,?,?,?)",
                        rows,
                    )
                if st:
                    cur.executemany(
                        "INSERT INTO sessions(session_key, run_id, snapshot, last_open_time, updated_ms) VALUES (?,?,?,?,?)"
                        " ON CONFLICT(session_key) DO UPDATE SET run_id=excluded.run_id, snapshot=excluded.snapshot,"
                        " last_open_time=excluded.last_open_time, updated_ms=excluded.updated_ms",
                        st,
                    )
                cur.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error as rb:  # keep the first error: it is the cause
                        log.warning("journal rollback after %s also failed: %s", exc, rb)
                if isinstance(exc, sqlite3.Error):
                    raise _write_error(exc, self.path) from exc
                raise
        if ticks and self.keep_updates is not None:
            self._since_compact += ticks
            if self._since_compact >= max(500, self.keep_updates // 10):
                self._since_compact = 0
                self._compact_wake.set()
        return dup

    # ------------------------------------------------------------------ retention
    def set_retention(self, keep_updates: int | None, hold_for: Iterable[str] = (), *, background: bool = True) -> None:
        """Keep only the newest ``keep_updates`` open-candle ticks per run (None: keep all), never
        deleting one a sink named in ``hold_for`` (its shipper cursor) has not acknowledged.
        Retention applies to the runs in ``runs`` (every engine run begins there). Compaction runs on a background thread with its own connection, in transactions of at
        most a few thousand rows, so the engine's commits wait milliseconds at most."""
        if keep_updates is not None and keep_updates < 0:
            raise ValueError("keep_updates must be >= 0")
        self.keep_updates = keep_updates
        self.hold_for = tuple(hold_for)
        if background and keep_updates is not None and self._compactor is None:
            self._compact_wake.set()  # a resumed journal may already hold more than it should
            self._compactor = threading.Thread(target=self._compact_loop, name="journal-compactor", daemon=True)
            self._compactor.start()

    def _compact_loop(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        db.execute(f"PRAGMA synchronous={self._sync.upper()}")
        try:
            while not self._compact_stop.is_set():
                if not self._compact_wake.wait(0.5):
                    continue
                self._compact_wake.clear()
                try:
                    while not self._compact_stop.is_set() and self._compact_once(db) == _CHUNK:
                        time.sleep(0.005)  # let the engine's next commit in between chunks
                except sqlite3.Error as exc:  # e.g. disk full: the engine's own write reports it loudly
                    log.warning("journal compaction skipped: %s (%s)", exc, self.path)
        finally:
            db.close()

    def compact_now(self) -> int:
        """Run compaction to completion on the calling thread; returns the rows deleted."""
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        total = 0
        try:
            while True:
                n = self._compact_once(db)
                total += n
                if n < _CHUNK:
                    return total
        finally:
            db.close()

    def _compact_once(self, db: sqlite3.Connection) -> int:
        """Delete at most one chunk of old ticks in one transaction; returns how many."""
        keep = self.keep_updates
        if keep is None:
            return 0
        bound = None
        if self.hold_for:
            rows = dict(
                db.execute(
                    f"SELECT name, seq FROM cursors WHERE name IN ({','.join('?' * len(self.hold_for))})", self.hold_for
                ).fetchall()
            )
            bound = min(int(rows.get(n, 0)) for n in self.hold_for)  # a sink that acked nothing holds all
            if bound <= 0:
                return 0
        deleted = 0
        for (run_id,) in db.execute("SELECT run_id FROM runs").fetchall():
            for type_ in COMPACTABLE:
                row = db.execute(
                    "SELECT seq FROM events WHERE run_id=? AND type=? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                    (run_id, type_, keep),
                ).fetchone()
                if row is None:
                    continue
                cutoff = int(row[0]) if bound is None else min(int(row[0]), bound)
                db.execute("BEGIN IMMEDIATE")
                try:
                    ids = [
                        r[0]
                        for r in db.execute(
                            "SELECT seq FROM events WHERE run_id=? AND type=? AND seq<=? ORDER BY seq LIMIT ?",
                            (run_id, type_, cutoff, _CHUNK - deleted),
                        )
                    ]
                    if ids:
                        db.execute(f"DELETE FROM events WHERE seq IN ({','.join('?' * len(ids))})", ids)
                        db.execute(
                            "INSERT INTO compacted(type, deleted, up_to_seq) VALUES (?,?,?) ON CONFLICT(type) DO"
                            " UPDATE SET deleted=deleted+excluded.deleted, up_to_seq=max(up_to_seq, excluded.up_to_seq)",
                            (type_, len(ids), ids[-1]),
                        )
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
                    raise
                deleted += len(ids)
                if deleted >= _CHUNK:
                    return deleted
        return deleted

    def compacted(self) -> dict[str, int]:
        """Rows deleted by retention, per event type (so ``seq`` gaps are accounted for)."""
        with self._lock:
            return {t: int(n) for t, n in self._db.execute("SELECT type, deleted FROM compacted")}

    # ------------------------------------------------------------------ reading
    def session_state(self, session_key: str) -> SessionState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT session_key, run_id, snapshot, last_open_time FROM sessions WHERE session_key=?", (session_key,)
            ).fetchone()
        if row is None:
            return None
        return SessionState(row[0], row[1], json.loads(row[2]), int(row[3]))

    def latest_run(self) -> tuple[str, str] | None:
        """(run_id, mode) of the most recently started run."""
        with self._lock:
            row = self._db.execute(
                "SELECT run_id, mode FROM runs ORDER BY started_ms DESC, rowid DESC LIMIT 1"
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def run_config(self, run_id: str) -> tuple[str, dict[str, Any]] | None:
        """(mode, config) a run was started with; None for an unknown run."""
        with self._lock:
            row = self._db.execute("SELECT mode, config FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def check_resume(self, run_id: str, mode: str, identity: dict[str, Any]) -> None:
        """Refuse to resume ``run_id`` with options that differ from the ones it was started with
        (cash, sessions, fill model, symbol, mode): resuming would silently ignore them."""
        known = self.run_config(run_id)
        if known is None:
            return
        old_mode, config = known
        old = dict(config.get("identity") or {})
        old.setdefault("mode", old_mode)
        new = {**identity, "mode": mode}
        diffs = [f"{k} {old[k]!r} -> {new.get(k)!r}" for k in sorted(old) if old[k] != new.get(k)]
        if diffs:
            raise JournalMismatch(
                f"journal {self.path} holds run {run_id}, started with other options ({'; '.join(diffs)}): "
                f"resuming would ignore them. Start again with the run's own options to resume it, or start a "
                f"new run in another journal with --journal NEWPATH (or move {self.path} aside)"
            )

    def events(
        self,
        run_id: str | None = None,
        types: Iterable[str] | None = None,
        after_seq: int = 0,
        session: tuple[str, str, str] | None = None,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """(seq, event dict) in order, optionally filtered by run, types and (symbol, interval, strategy).

        Streams: rows are read in chunks of a few thousand (the lock is held per chunk only), so
        summarising a multi-year run needs memory for one chunk, not the run. With a run and
        types, each type is read through the (run_id, type) index and the streams merged by seq.
        """
        extra, extra_args = "", []
        if session is not None:
            extra = " AND symbol = ? AND interval = ? AND strategy = ?"
            extra_args = list(session)
        if run_id is not None and types is not None:
            streams = [
                self._stream(
                    "SELECT seq, payload FROM events WHERE run_id = ? AND type = ? AND seq > ?" + extra,
                    [run_id, t],
                    extra_args,
                    after_seq,
                )
                for t in dict.fromkeys(types)
            ]
            rows: Iterable[tuple[int, str]] = heapq.merge(*streams, key=lambda r: r[0])
        else:
            where, args = "", []
            if run_id is not None:
                where += " AND +run_id = ?"
                args.append(run_id)
            if types is not None:
                t = list(types)
                where += f" AND +type IN ({','.join('?' * len(t))})"
                args += t
            rows = self._stream(
                "SELECT seq, payload FROM events WHERE seq > ?" + where + extra,
                [],
                args + extra_args,
                after_seq,
                seq_first=True,
            )
        for seq, payload in rows:
            yield int(seq), json.loads(payload)

    def _stream(
        self, sql: str, head: list[Any], tail: list[Any], after_seq: int, seq_first: bool = False
    ) -> Iterator[tuple[int, str]]:
        last = after_seq
        while True:
            args = [last, *tail] if seq_first else [*head, last, *tail]
            with self._lock:
                rows = self._db.execute(sql + " ORDER BY seq LIMIT ?", [*args, _CHUNK]).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    def rows_after(self, seq: int, limit: int) -> list[tuple[int, str, str, str]]:
        """(seq, type, symbol, payload JSON) of the next ``limit`` events after ``seq``."""
        with self._lock:
            return self._db.execute(
                "SELECT seq, type, symbol, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()

    def cursor(self, name: str) -> int:
        """Last event seq a consumer of the journal (e.g. the Kafka shipper) has made durable."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM cursors WHERE name=?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def set_cursor(self, name: str, seq: int) -> None:
        self._write(
            "INSERT INTO cursors(name, seq) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET seq=excluded.seq", (name, seq)
        )

    def count(self, run_id: str | None = None, type_: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM events WHERE 1=1", []
        if run_id:
            sql += " AND run_id=?"
            args.append(run_id)
        if type_:
            sql += " AND type=?"
            args.append(type_)
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def close(self) -> None:
        """Stop compaction, close the connection, release the writer lock (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._compact_stop.set()
        self._compact_wake.set()
        if self._compactor is not None:
            self._compactor.join(10)
            try:  # leave a closed journal exactly at its bound (the thread compacts in steps)
                self.compact_now()
            except sqlite3.Error as exc:
                log.warning("journal compaction at close skipped: %s (%s)", exc, self.path)
        try:
            with self._lock:
                self._db.close()
        finally:
            if self._lock_key:
                _release_lock(self._lock_key)
