"""The durable local journal: every engine event, and each session's account state, in SQLite (WAL).

Why SQLite: embedded (nothing to run), crash-safe transactions, and one file a user can copy or
inspect with ``sqlite3``. The engine writes one transaction per input it processed (a closed
candle, a command): the events that input produced plus the sessions' broker snapshots. Only
after the commit are the events handed to subscribers (UI, Kafka), so nothing is shown or shipped
that a crash could lose, and a restart continues exactly after the last committed candle.

* ``events.event_id`` is UNIQUE and inserts are ``OR IGNORE``: re-processing an input after a
  crash cannot duplicate an event.
* ``events.seq`` is a gap-free sequence (AUTOINCREMENT, one writer).
* ``sessions`` holds, per session key, the broker snapshot (paper balance, position, pending
  entry, protective order ids) and the open time of the last processed candle.
* ``sync="full"`` fsyncs every commit (survives power loss; live trading); ``"normal"`` relies on
  the OS after a commit (survives a killed process; fast replays).

Secrets are never written: events have no field for them and the run config is stored as given
by ``infra.settings.public_view``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from core.events import Event
from core.store import SessionState

__all__ = ["Journal", "SessionState"]

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
"""


class Journal:
    """Append-only event store plus per-session state; safe to read from other threads."""

    def __init__(self, path: str | Path, sync: str = "full") -> None:
        if sync not in ("full", "normal"):
            raise ValueError("sync must be 'full' or 'normal'")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={sync.upper()}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    # ------------------------------------------------------------------ writing
    def begin_run(self, run_id: str, mode: str, config: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO runs(run_id, started_ms, mode, config) VALUES (?,?,?,?)",
                (run_id, int(time.time() * 1000), mode, json.dumps(config, default=str)),
            )
            self._db.execute("UPDATE runs SET status='running' WHERE run_id=?", (run_id,))

    def end_run(self, run_id: str, status: str = "stopped") -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET status=? WHERE run_id=?", (status, run_id))

    def commit(self, events: Iterable[Event], states: Iterable[SessionState] = ()) -> set[str]:
        """Write new events and the session states in one transaction.

        Returns the ids of events that were already journalled (a re-processed input after a
        crash); they are not written again and callers should not deliver them again. Existing
        ids are looked up first instead of relying on ``INSERT OR IGNORE``, which would burn
        sequence numbers and leave gaps in ``seq``.
        """
        evs = list(events)
        now = int(time.time() * 1000)
        st = [(s.session_key, s.run_id, json.dumps(s.snapshot), s.last_open_time, now) for s in states]
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                dup: set[str] = set()
                ids = [e.event_id for e in evs]
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    dup.update(r[0] for r in cur.execute(
                        f"SELECT event_id FROM events WHERE event_id IN ({','.join('?' * len(chunk))})", chunk))
                seen: set[str] = set()
                rows = []
                for e in evs:
                    if e.event_id in dup or e.event_id in seen:
                        dup.add(e.event_id)
                        continue
                    seen.add(e.event_id)
                    rows.append((e.event_id, e.run_id, e.type, e.time, e.symbol, e.interval, e.strategy,
                                 json.dumps(e.to_dict(), separators=(",", ":"))))
                if rows:
                    cur.executemany(
                        "INSERT INTO events(event_id, run_id, type, time_ms, symbol, interval, strategy, payload)"
                        " VALUES (?,?,?,?,?,?,?,?)", rows)
                if st:
                    cur.executemany(
                        "INSERT INTO sessions(session_key, run_id, snapshot, last_open_time, updated_ms) VALUES (?,?,?,?,?)"
                        " ON CONFLICT(session_key) DO UPDATE SET run_id=excluded.run_id, snapshot=excluded.snapshot,"
                        " last_open_time=excluded.last_open_time, updated_ms=excluded.updated_ms", st)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return dup

    # ------------------------------------------------------------------ reading
    def session_state(self, session_key: str) -> SessionState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT session_key, run_id, snapshot, last_open_time FROM sessions WHERE session_key=?",
                (session_key,)).fetchone()
        if row is None:
            return None
        return SessionState(row[0], row[1], json.loads(row[2]), int(row[3]))

    def latest_run(self) -> tuple[str, str] | None:
        """(run_id, mode) of the most recently started run."""
        with self._lock:
            row = self._db.execute("SELECT run_id, mode FROM runs ORDER BY started_ms DESC, rowid DESC LIMIT 1").fetchone()
        return None if row is None else (row[0], row[1])

    def events(self, run_id: str | None = None, types: Iterable[str] | None = None,
               after_seq: int = 0, session: tuple[str, str, str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(seq, event dict) in order, optionally filtered by run, types and (symbol, interval, strategy)."""
        sql = "SELECT seq, payload FROM events WHERE seq > ?"
        args: list[Any] = [after_seq]
        if run_id is not None:
            sql += " AND run_id = ?"
            args.append(run_id)
        if types is not None:
            t = list(types)
            sql += f" AND type IN ({','.join('?' * len(t))})"
            args += t
        if session is not None:
            sql += " AND symbol = ? AND interval = ? AND strategy = ?"
            args += list(session)
        sql += " ORDER BY seq"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        for seq, payload in rows:
            yield int(seq), json.loads(payload)

    def rows_after(self, seq: int, limit: int) -> list[tuple[int, str, str, str]]:
        """(seq, type, symbol, payload JSON) of the next ``limit`` events after ``seq``."""
        with self._lock:
            return self._db.execute("SELECT seq, type, symbol, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (seq, limit)).fetchall()

    def cursor(self, name: str) -> int:
        """Last event seq a consumer of the journal (e.g. the Kafka shipper) has made durable."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM cursors WHERE name=?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def set_cursor(self, name: str, seq: int) -> None:
        with self._lock:
            self._db.execute("INSERT INTO cursors(name, seq) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET seq=excluded.seq",
                             (name, seq))

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
        with self._lock:
            self._db.close()
