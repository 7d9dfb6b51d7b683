"""Durable, ordered buffering of events for the sinks (``KafkaSink``, ``ElasticsearchSink``).

A sink is two halves joined here: the engine thread hands events to an :class:`EventInbox` and
never waits; the sink's own thread takes them from it, delivers what it can, and keeps whatever it
cannot deliver yet in a :class:`Spool` on disk, from which it delivers later.

Inbox and overflow
------------------
``EventInbox.put(event)`` (engine thread) appends the event and its publish time to a bounded
in-memory deque and returns; nothing in it waits for a lock held during I/O, for the network or
for the disk. If the deque is full, the event is serialised and appended to an *overflow* file
(``ovf-<seq>.tmp``) in the spool directory instead (a buffered write handed to the OS, no fsync),
and so is every later event until the sink thread has drained the deque; the sink thread then
seals the overflow file (``seal_overflow``) and the spool takes it over as its newest segment
(``adopt``). That keeps order without ever waiting. The in-memory deque is not persisted: a sink's
``close()`` drains it (delivered, or into the spool).

Segment format
--------------
The spool is a directory of append-only segment files (``seg-<n>.log``, 64 MiB each), one record
per line: ``seq TAB publish-ms TAB crc32 TAB topic TAB key TAB json``. A ``cursor`` file records
how far the destination has acknowledged; fully acknowledged segments are deleted. A line whose
CRC does not match (torn by a machine crash or damaged on disk) is handed out as None, counted in
``Spool.corrupt`` and logged. A lock file keeps two processes out of one spool directory; the
default directory of a sink, ``<data>/spool/<name>`` (:func:`open_default_spool`), falls back to
``<name>.1``, ``<name>.2``... while another process holds it.

fsync policy
------------
Every append is handed to the OS at once, so a crash of the process loses nothing that reached
the spool. The ``fsync`` policy (a sink's ``spool_fsync``) decides what survives a crash of the
machine: ``"interval"`` (default) fsyncs at most once a second while spooling and at every segment
roll and close; ``"always"`` fsyncs every append; ``"never"`` leaves it to the OS.

Ordering
--------
Records are read in order from the cursor. ``prepend`` puts records that failed in memory ahead of
everything on disk (they are older than anything spilled after them) and ``rewind`` reads again
from the cursor after a failed delivery, so a sink that sends everything on disk before anything
newer delivers in publish order. A spool opened on records left by an earlier run (segments, or an
overflow file left by a crash) hands those out first; ``recovered`` counts them. Records the
destination acknowledged after an earlier one failed are remembered in ``acked_ahead``, and the
sink skips them when it reads them again; whatever the destination may have stored of an aborted
request can arrive twice, so consumers deduplicate on ``event_id``.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import logging
import os
import re
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Self

from tradeconsole.core.events import Event

__all__ = [
    "SpooledSinkBase",
    "EventInbox",
    "Record",
    "Spool",
    "SpoolBusyError",
    "SpoolPosition",
    "open_default_spool",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- spool

#: (seq, publish time ms, topic, key, value) - one serialised event.
Record = tuple[int, int, str, bytes, bytes]


class SpoolPosition(NamedTuple):
    """Where a record ends in the spool: segment number and byte offset after its line."""

    segment: int
    offset: int


class SpoolBusyError(RuntimeError):
    """Another process holds the spool directory."""


_SEG_RE = re.compile(r"^seg-(\d{20})\.log$")
_OVF_RE = re.compile(r"^ovf-(\d+)\.tmp$")
_FIRST_SEGMENT = 10**15  # appends count up from here, prepends count down
_FSYNC_POLICIES = ("always", "interval", "never")


def _encode_line(rec: Record) -> bytes:
    seq, ts, topic, key, value = rec
    t = topic.encode()
    crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(t)))
    return b"%d\t%d\t%08x\t%s\t%s\t%s\n" % (seq, ts, crc, t, key, value)


def _decode_line(line: bytes) -> Record | None:
    if not line.endswith(b"\n"):
        return None
    parts = line[:-1].split(b"\t", 5)
    if len(parts) != 6:
        return None
    try:
        seq, ts, crc = int(parts[0]), int(parts[1]), int(parts[2], 16)
    except ValueError:
        return None
    t, key, value = parts[3], parts[4], parts[5]
    if zlib.crc32(value, zlib.crc32(key, zlib.crc32(t))) != crc:
        return None
    return seq, ts, t.decode(errors="replace"), key, value


def _open_private(path: Path, mode: str, buffering: int = -1) -> Any:
    """Open a spool file created with mode 0600: spooled events are the user's trading history
    and must not be readable by other local users (``open()`` would give 0666 minus the umask)."""
    flags = {
        "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
        "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
        "a+b": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    }[mode]
    fd = os.open(path, flags, 0o600)
    try:
        return os.fdopen(fd, mode, buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def _write(f: Any, data: bytes) -> None:
    """Every spool write goes through here (tests replace it to inject ENOSPC, as a full disk
    would raise it from ``write``/``flush``)."""
    f.write(data)
    f.flush()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _count_lines(path: Path, start: int = 0) -> int:
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (0 if last == b"\n" else 1)  # a torn last line is still one (corrupt) record


class Spool:
    """An ordered, append-only on-disk queue of serialised records with an acknowledgement cursor.

    Single-threaded: only the owning sink thread calls it (the engine's overflow file is separate
    and handed over with :meth:`adopt`). Records are read in order from the cursor; ``ack`` moves
    the cursor and deletes segments that are fully acknowledged; ``rewind`` goes back to the
    cursor after a failed delivery; ``prepend`` puts records that failed in memory ahead of
    everything on disk. See the module docstring for the line format and the fsync policy.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = 64 << 20,
        fsync: str = "interval",
        fsync_interval_s: float = 1.0,
    ) -> None:
        if fsync not in _FSYNC_POLICIES:
            raise ValueError(f"spool fsync policy must be one of {', '.join(_FSYNC_POLICIES)}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_file = _open_private(self.dir / "lock", "a+b")  # held for the spool's lifetime
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise SpoolBusyError(f"spool {self.dir} is in use by another process") from None
            raise
        self.fsync = fsync
        self._fsync_interval = fsync_interval_s
        self._segment_bytes = segment_bytes
        self._segments: list[int] = sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _SEG_RE.match(p.name)))
        self._sizes: dict[int, int] = {}
        self._starts: dict[int, int] = {}
        self._writer: Any = None
        self._writer_seg: int | None = None
        self._writer_size = 0
        self._reader: Any = None
        self._reader_seg: int | None = None
        self._dirty = False
        self._cursor_dirty = False
        self._cursor_failed = False
        self._last_sync = time.monotonic()
        #: Records acknowledged by the broker after an earlier one failed: skipped on re-read.
        self.acked_ahead: set[SpoolPosition] = set()
        self.corrupt = 0
        self._corrupt_seen: set[tuple[int, int]] = set()
        self.pending = 0  # records not yet acknowledged (including read ones in flight)
        self.unread = 0  # records not yet handed out by read()
        self.appended_total = 0
        self._cursor: SpoolPosition | None = None
        self._read_pos: SpoolPosition | None = None
        # Segments are deleted as soon as they are acknowledged, so every segment still here holds
        # unacknowledged records; the cursor only says where in its own segment to resume (a
        # segment below it is one prepended just before a crash).
        cursor = self._load_cursor()
        for seg in self._segments:
            self._sizes[seg] = os.path.getsize(self._path(seg))
            os.chmod(self._path(seg), 0o600)  # written 0644 by versions before 0600 was enforced
        if cursor is not None and cursor.segment in self._segments:
            self._starts[cursor.segment] = cursor.offset
        for ovf in sorted(self.dir.glob("ovf-*.tmp")):  # left by a crash while overflowing
            if _OVF_RE.match(ovf.name):
                self.adopt(ovf, _count_lines(ovf))
        self.pending = sum(_count_lines(self._path(s), self._starts.get(s, 0)) for s in self._segments)
        self.unread = self.pending
        self.recovered = self.pending
        self._cursor = self._read_pos = (
            SpoolPosition(self._segments[0], self._starts.get(self._segments[0], 0)) if self._segments else None
        )
        if self.recovered:
            log.info("spool %s holds %d record(s) from an earlier run; they are sent first", self.dir, self.recovered)

    # ------------------------------------------------------------------ paths and cursor
    def _path(self, seg: int) -> Path:
        return self.dir / f"seg-{seg:020d}.log"

    def _load_cursor(self) -> SpoolPosition | None:
        try:
            data = json.loads((self.dir / "cursor").read_text())
            cur = SpoolPosition(int(data["cursor"][0]), int(data["cursor"][1]))
            self._starts.update({int(k): int(v) for k, v in data.get("starts", {}).items()})
            return cur
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None

    def save_cursor(self) -> None:
        """Persist how far the broker has acknowledged (atomic replace; losing it only means
        records are sent again, which consumers deduplicate)."""
        if not self._cursor_dirty:
            return
        starts = {str(k): v for k, v in self._starts.items() if k in self._segments}
        cur = self._cursor or SpoolPosition(0, 0)
        tmp = self.dir / "cursor.tmp"
        try:
            with _open_private(tmp, "wb") as f:
                _write(f, json.dumps({"cursor": list(cur), "starts": starts}).encode())
            os.replace(tmp, self.dir / "cursor")
        except OSError as exc:  # a full disk: keep the old cursor (records may be sent again), retry later
            if not self._cursor_failed:
                log.warning(
                    "spool %s: cannot save the cursor (%s); acknowledged records may be sent again after a restart",
                    self.dir,
                    exc,
                )
            self._cursor_failed = True
            return
        self._cursor_failed = False
        self._cursor_dirty = False

    # ------------------------------------------------------------------ writing
    def _roll(self) -> None:
        self._close_writer()
        seg = (self._segments[-1] + 1) if self._segments else _FIRST_SEGMENT
        self._writer = _open_private(self._path(seg), "ab", buffering=1 << 20)
        self._writer_seg, self._writer_size = seg, 0
        self._segments.append(seg)
        if self._cursor is None:
            self._cursor = self._read_pos = SpoolPosition(seg, 0)
        if self.fsync != "never":
            _fsync_dir(self.dir)

    def _close_writer(self) -> None:
        if self._writer is None:
            return
        self._writer.flush()
        if self.fsync != "never":
            os.fsync(self._writer.fileno())
        self._writer.close()
        self._sizes[self._writer_seg] = self._writer_size  # type: ignore[index]
        self._writer = None
        self._writer_seg = None

    def _truncate_writer(self) -> None:
        """Drop the segment being written back to its last complete append (after a failed write)."""
        w, seg, size = self._writer, self._writer_seg, self._writer_size
        self._writer = self._writer_seg = None
        try:
            w.close()
        except OSError:
            pass  # the buffered tail could not be written either: it is cut below
        try:
            os.truncate(self._path(seg), size)  # type: ignore[arg-type]
        except OSError:
            log.exception("spool %s: cannot cut segment %s back after a failed write", self.dir, seg)
        self._sizes[seg] = size  # type: ignore[index]
        if size == 0 and seg == self._segments[-1] and not self.pending:
            self._segments.pop()
            self._sizes.pop(seg, None)
            try:
                self._path(seg).unlink()  # type: ignore[arg-type]
            except OSError:
                pass
            if self._cursor is not None and self._cursor.segment == seg:
                self._cursor = self._read_pos = None

    def append(self, records: Sequence[Record]) -> None:
        """Append records after everything already spooled."""
        if not records:
            return
        if self._writer is None or self._writer_size >= self._segment_bytes:
            self._roll()
        data = b"".join(map(_encode_line, records))
        try:
            _write(self._writer, data)  # in the OS now: survives a crash of the process
        except OSError:
            # ENOSPC/EIO: part of the data may be on disk. Cut the segment back to what it held
            # before, so the spool never counts or reads half an append; the caller keeps the records.
            self._truncate_writer()
            raise
        self._writer_size += len(data)
        n = len(records)
        self.pending += n
        self.unread += n
        self.appended_total += n
        self._dirty = True
        if self.fsync == "always":
            self.sync()
        else:
            self.maybe_sync()

    def prepend(self, records: Sequence[Record]) -> None:
        """Put records ahead of everything spooled (records that failed in memory, which are
        older than anything spilled after them). Only valid while nothing read is unacknowledged."""
        if not records:
            return
        if self._read_pos != self._cursor:
            raise RuntimeError("prepend while spooled records are in flight")
        seg = (self._segments[0] - 1) if self._segments else _FIRST_SEGMENT
        data = b"".join(map(_encode_line, records))
        try:
            with _open_private(self._path(seg), "wb") as f:
                _write(f, data)
                if self.fsync != "never":
                    os.fsync(f.fileno())
        except OSError:
            self._path(seg).unlink(missing_ok=True)  # nothing of it counts; the caller keeps the records
            raise
        if self.fsync != "never":
            _fsync_dir(self.dir)
        if self._cursor is not None:
            self._starts[self._cursor.segment] = self._cursor.offset
        self._sizes[seg] = len(data)
        self._segments.insert(0, seg)
        self._close_reader()
        self._cursor = self._read_pos = SpoolPosition(seg, 0)
        self._cursor_dirty = True
        self.save_cursor()
        self.pending += len(records)
        self.unread = self.pending
        self.appended_total += len(records)

    def adopt(self, path: Path, count: int) -> None:
        """Take over a closed file of encoded lines (the engine's overflow file) as the newest
        segment; later appends start a new segment after it."""
        self._close_writer()
        seg = (self._segments[-1] + 1) if self._segments else _FIRST_SEGMENT
        os.replace(path, self._path(seg))
        if self.fsync != "never":
            _fsync_dir(self.dir)
        self._segments.append(seg)
        self._sizes[seg] = os.path.getsize(self._path(seg))
        if self._cursor is None:
            self._cursor = self._read_pos = SpoolPosition(seg, 0)
        self.pending += count
        self.unread += count
        self.appended_total += count

    def sync(self) -> None:
        """fsync the segment being written."""
        if self._writer is not None and self._dirty:
            self._writer.flush()
            os.fsync(self._writer.fileno())
        self._dirty = False
        self._last_sync = time.monotonic()

    def maybe_sync(self) -> None:
        """Apply the ``interval`` policy (call regularly)."""
        if self._dirty and self.fsync == "interval" and time.monotonic() - self._last_sync >= self._fsync_interval:
            self.sync()

    # ------------------------------------------------------------------ reading
    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = self._reader_seg = None

    def _next_segment(self, seg: int) -> int | None:
        i = self._segments.index(seg)
        return self._segments[i + 1] if i + 1 < len(self._segments) else None

    def read(self, max_records: int) -> list[tuple[Record | None, SpoolPosition]]:
        """Up to ``max_records`` unread records in order, each with the position after it.

        A record is None when its line is corrupt (torn by a machine crash or damaged on disk);
        it is counted in ``corrupt`` and must be acknowledged like any other to move past it.
        """
        out: list[tuple[Record | None, SpoolPosition]] = []
        while len(out) < max_records and self._read_pos is not None and self.unread > 0:
            seg, off = self._read_pos
            if self._reader_seg != seg:
                self._close_reader()
                self._reader = open(self._path(seg), "rb")  # noqa: SIM115
                self._reader.seek(off)
                self._reader_seg = seg
            line = self._reader.readline()
            if not line:
                nxt = None if seg == self._writer_seg else self._next_segment(seg)
                if nxt is None:
                    break
                self._close_reader()
                self._read_pos = SpoolPosition(nxt, self._starts.get(nxt, 0))
                continue
            rec = _decode_line(line)
            if rec is None and (seg, off) not in self._corrupt_seen:
                self._corrupt_seen.add((seg, off))
                self.corrupt += 1
                log.error("spool %s: corrupt record in segment %d at byte %d skipped", self.dir, seg, off)
            self._read_pos = SpoolPosition(seg, off + len(line))
            self.unread -= 1
            out.append((rec, self._read_pos))
        return out

    def rewind(self) -> None:
        """Read again from the first unacknowledged record (after a failed delivery)."""
        self._close_reader()
        self._read_pos = self._cursor
        self.unread = self.pending

    def ack(self, pos: SpoolPosition, count: int) -> None:
        """The ``count`` records up to ``pos`` are delivered: move the cursor, drop what is done."""
        self.pending -= count
        self._cursor = pos
        self._cursor_dirty = True
        while self._segments and self._segments[0] != pos.segment:
            self._delete_segment(self._segments[0])
        if self.pending <= 0 and self.unread <= 0:
            self._reset_empty()
        elif pos.segment != self._writer_seg and pos.offset >= self._sizes.get(pos.segment, 1 << 62):
            nxt = self._next_segment(pos.segment)
            self._delete_segment(pos.segment)
            if nxt is not None:
                self._cursor = SpoolPosition(nxt, self._starts.get(nxt, 0))
                if self._read_pos is not None and self._read_pos.segment == pos.segment:
                    self._read_pos = self._cursor

    def _delete_segment(self, seg: int) -> None:
        if seg == self._reader_seg:
            self._close_reader()
        if seg == self._writer_seg:
            self._writer.close()
            self._writer = self._writer_seg = None
        try:
            self._path(seg).unlink()
        except FileNotFoundError:
            pass
        self._segments.remove(seg)
        self._sizes.pop(seg, None)
        self._starts.pop(seg, None)

    def _reset_empty(self) -> None:
        for seg in list(self._segments):
            self._delete_segment(seg)
        self.pending = self.unread = 0
        self._cursor = self._read_pos = None
        self.acked_ahead.clear()
        self._dirty = False

    def oldest_ts(self) -> int | None:
        """Publish time (ms) of the first unacknowledged record, for lag reporting."""
        if self._cursor is None or not self.pending:
            return None
        if self._cursor.segment == self._writer_seg:
            self._writer.flush()
        try:
            with open(self._path(self._cursor.segment), "rb") as f:
                f.seek(self._cursor.offset)
                rec = _decode_line(f.readline())
        except OSError:
            return None
        return rec[1] if rec else None

    def close(self) -> None:
        """Flush, fsync (unless ``never``), persist the cursor and release the directory."""
        if self._lock_file.closed:
            return
        try:
            self._close_reader()
            try:
                self._close_writer()
            except OSError as exc:  # a full disk: what is not written is cut off, never half a line
                log.error("spool %s: cannot flush the last segment (%s)", self.dir, exc)
                if self._writer is not None:
                    self._truncate_writer()
            self._cursor_dirty = True
            self.save_cursor()
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()


def open_default_spool(name: str, **kwargs: Any) -> Spool:
    """The spool under ``tradeconsole.core.paths.spool_dir()``: ``<name>``, or ``<name>.1``, ``<name>.2``...
    while other processes hold the earlier ones."""
    from tradeconsole.core.paths import spool_dir

    root = spool_dir()
    for i in range(64):
        try:
            return Spool(root / (name if i == 0 else f"{name}.{i}"), **kwargs)
        except SpoolBusyError:
            continue
    raise SpoolBusyError(f"all spool directories {root / name}[.N] are in use")


class _OverflowFile:
    """Where the engine thread writes when the deque is full (handed to the spool later)."""

    def __init__(self, directory: Path, first_seq: int) -> None:
        self.path = directory / f"ovf-{first_seq:020d}.tmp"
        self._f = _open_private(self.path, "ab", buffering=1 << 16)
        self.count = 0

    def write(self, rec: Record) -> None:
        _write(self._f, _encode_line(rec))
        self.count += 1

    def close(self, fsync: bool) -> None:
        self._f.flush()
        if fsync:
            os.fsync(self._f.fileno())
        self._f.close()


# ---------------------------------------------------------------------------------------------- inbox

Encoder = Callable[[tuple[int, float, Event]], "Record | None"]


class EventInbox:
    """The engine-facing half of a sink: a bounded deque, and an overflow file when it is full.

    ``put`` never waits for I/O: it appends to the deque, or (only when the deque is full, and
    until the sink thread has drained it) serialises the event into the overflow file under a
    lock that nothing holds during network or fsync work.
    """

    def __init__(self, maxsize: int, encode: Encoder, spool_dir: Path | None) -> None:
        if maxsize < 1:
            raise ValueError("queue_size must be at least 1")
        # Events and their publish times in two deques rather than one deque of tuples: a
        # long-lived tuple per event would be one more object for the garbage collector to walk.
        self._dq: deque[Event] = deque()
        self._tq: deque[float] = deque()
        self._max = maxsize
        self._pub = itertools.count(1)
        self._seq = itertools.count()
        self._encode = encode
        self._dir = spool_dir
        self._lock = threading.Lock()
        self._ovf: _OverflowFile | None = None
        self.overflowing = False
        self.overflowed = 0
        self.invalid = 0
        self.published = 0
        self.dropped_after_close = 0
        #: events refused because the deque was full and there is no overflow directory
        self.dropped_full = 0
        #: events lost because the deque was full and the overflow file could not be written
        self.lost_disk = 0
        self.closed = False
        #: Set by ``put`` when the sink thread sleeps in ``wait``.
        self.idle = False
        self.wake = threading.Event()

    def __len__(self) -> int:
        return len(self._dq)

    def put(self, event: Event) -> None:
        """Hand an event over (engine thread). Never blocks on I/O."""
        self.published = next(self._pub)
        if self.overflowing or len(self._dq) >= self._max or self.closed:
            self._put_slow(event, time.time())
            return
        self._dq.append(event)
        self._tq.append(time.time())
        if self.idle:
            self.wake.set()

    def _put_slow(self, event: Event, t: float) -> None:
        with self._lock:
            if self.closed:
                self.dropped_after_close += 1
                if self.dropped_after_close == 1:
                    log.error(
                        "event published after the sink was closed; it is dropped (close sinks "
                        "after the engine has stopped)"
                    )
                return
            if not self.overflowing and len(self._dq) < self._max:
                self._dq.append(event)
                self._tq.append(t)
            elif self._dir is None:
                # No overflow file (a journal-fed sink): the event is not kept here. The sink sees
                # ``dropped_full`` and has its feeder resend from the journal, which holds it.
                self.dropped_full += 1
                if self.dropped_full == 1:
                    log.warning(
                        "sink queue full (%d events) and no overflow file; the sink resends from the journal", self._max
                    )
            else:
                item = (self.published, t, event)
                try:
                    if self._ovf is None:
                        self._ovf = _OverflowFile(self._dir, item[0])
                        self.overflowing = True
                        log.warning("sink queue full (%d events): spilling to %s until it drains", self._max, self._dir)
                    rec = self._encode(item)
                    if rec is None:
                        self.invalid += 1
                    else:
                        self._ovf.write(rec)
                    self.overflowed += 1
                except OSError as exc:
                    # The engine thread must never die of a full disk: the event is lost to this
                    # sink, counted and logged (a journal-fed sink never gets here).
                    self.lost_disk += 1
                    if self.lost_disk == 1:
                        log.error(
                            "sink queue full and the spool disk refuses the overflow (%s); events "
                            "are dropped and counted until it drains",
                            exc,
                        )
        if self.idle:
            self.wake.set()

    def discard(self) -> int:
        """Drop everything queued in memory (sink thread; a journal-fed sink resends it from the
        journal). Returns how many events were dropped."""
        n = 0
        while batch := self.take(10_000):
            n += len(batch)
        return n

    def take(self, n: int) -> list[tuple[int, float, Event]]:
        """Up to ``n`` oldest events (sink thread)."""
        dq, tq, seq = self._dq, self._tq, self._seq
        k = min(n, len(dq), len(tq))  # a concurrent put may have appended the event, not yet its time
        return [(next(seq), tq.popleft(), dq.popleft()) for _ in range(k)]

    def oldest_time(self) -> float | None:
        try:
            return self._tq[0]
        except IndexError:
            return None

    def seal_overflow(self, fsync: bool) -> _OverflowFile | None:
        """Close the overflow file once the deque is drained, so the spool can adopt it."""
        if not self.overflowing:
            return None
        with self._lock:
            if self._dq or self._ovf is None:
                return None
            ovf, self._ovf = self._ovf, None
            self.overflowing = False
        ovf.close(fsync)
        return ovf

    def close(self) -> None:
        """Refuse further events (they are counted and logged, see ``_put_slow``)."""
        with self._lock:
            self.closed = True

    def wait(self, timeout: float) -> None:
        """Sleep until ``put`` wakes us or ``timeout`` passes (sink thread)."""
        self.idle = True
        if not self._dq:
            self.wake.wait(timeout)
        self.idle = False
        self.wake.clear()


class SpooledSinkBase(ABC):
    """What the spooled sinks (Kafka, Elasticsearch) share: one worker thread fed by an
    :class:`EventInbox`, a ``publish`` that never waits, and a shutdown that records whether
    everything was delivered.

    Everything the shared code relies on is a constructor argument or an abstract method, so a
    new sink cannot forget one: ``kind`` and ``journal_fed`` (see
    :class:`~tradeconsole.infra.sinks.protocol.Sink`), the ``inbox``, and ``_run``, the worker,
    which honours ``_stop``/``_deadline`` and sets ``_drained_at_close`` before it returns. The
    worker thread is made here and started by :meth:`_start_worker`, which the subclass calls as
    the last step of its constructor (the worker reads the subclass's own state).
    """

    def __init__(self, kind: str, inbox: EventInbox, *, journal_fed: bool, thread_name: str) -> None:
        self._kind = kind
        self._journal_fed = journal_fed
        self._inbox = inbox
        self._stop = False
        self._deadline = float("inf")
        self._closed = False
        self._drained_at_close = False
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def _start_worker(self) -> None:
        self._thread.start()

    @property
    def kind(self) -> str:
        """What the sink delivers to: ``"kafka"`` or ``"elasticsearch"`` (also its journal cursor's name)."""
        return self._kind

    @property
    def journal_fed(self) -> bool:
        """Made for the journal shipper's windowed protocol (no disk spool; see the sink's module)."""
        return self._journal_fed

    @abstractmethod
    def _run(self) -> None:
        """The worker thread: deliver until ``_stop``, then set ``_drained_at_close``."""

    @abstractmethod
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event published so far is acknowledged; False on timeout."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """Delivery counters (``state``, ``acked``, ``lag_ms``, ...; see the sink)."""

    def publish(self, event: Event) -> None:
        """Hand ``event`` to the sink. Returns at once; never waits for the destination or the disk."""
        self._inbox.put(event)

    def _wait_until(self, outcome: Callable[[], bool | None], timeout: float) -> bool:
        """``flush``'s wait: poll ``outcome`` (True done, False never will be, None not yet),
        waking the worker each time, until it answers, ``timeout`` passes or the worker died."""
        deadline = time.monotonic() + timeout
        while True:
            result = outcome()
            if result is not None:
                return result
            if time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            self._inbox.wake.set()
            time.sleep(0.005)

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is pending for up to ``timeout`` seconds, spool the rest, and stop.

        Returns True when everything was delivered. Nothing is dropped: undelivered events stay
        in the spool and are sent first by the next sink on the same spool directory.
        """
        if self._closed:
            return self._drained_at_close
        self._deadline = time.monotonic() + max(0.0, timeout)
        self._stop = True
        self._inbox.wake.set()
        self._thread.join(timeout + 30)
        self._closed = True
        return self._drained_at_close

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
