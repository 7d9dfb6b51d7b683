"""The on-disk spool: order, acknowledgement cursor, rewind, prepend, recovery, corruption, locking."""

from __future__ import annotations

import pytest
from tradeconsole.infra.sinks.spool import Spool, SpoolBusyError


def recs(start: int, n: int, topic: str = "t.candles") -> list[tuple[int, int, str, bytes, bytes]]:
    return [(i, 1_700_000_000_000 + i, topic, b"ETHUSDT", b'{"event_id":"e%d"}' % i) for i in range(start, start + n)]


def drain(spool: Spool, n: int = 1000) -> list[int]:
    """Read everything unread, acknowledge it, return the seqs in read order."""
    seqs = []
    while True:
        batch = spool.read(n)
        if not batch:
            return seqs
        seqs.extend(r[0] for r, _ in batch if r is not None)
        spool.ack(batch[-1][1], len(batch))


def test_records_come_back_in_order_and_acked_segments_are_deleted(tmp_path):
    spool = Spool(tmp_path, segment_bytes=2_000)
    spool.append(recs(0, 50))
    spool.append(recs(50, 50))
    assert spool.pending == 100 and len(list(tmp_path.glob("seg-*.log"))) > 1
    batch = spool.read(30)
    assert [r[0] for r, _ in batch] == list(range(30))
    spool.ack(batch[-1][1], 30)
    assert spool.pending == 70
    assert drain(spool) == list(range(30, 100))
    assert spool.pending == 0 and not list(tmp_path.glob("seg-*.log"))
    spool.close()


def test_rewind_reads_unacknowledged_records_again(tmp_path):
    spool = Spool(tmp_path)
    spool.append(recs(0, 10))
    first = spool.read(6)
    spool.ack(first[2][1], 3)  # 0..2 delivered, 3..5 failed
    spool.rewind()
    assert drain(spool) == list(range(3, 10))
    spool.close()


def test_prepend_goes_before_everything_spooled(tmp_path):
    spool = Spool(tmp_path)
    spool.append(recs(100, 5))  # spilled while 0..4 were in flight in memory
    spool.prepend(recs(0, 5))  # ... and those failed
    spool.append(recs(105, 5))
    assert drain(spool) == list(range(5)) + list(range(100, 110))
    spool.close()


def test_a_new_spool_resumes_after_the_cursor(tmp_path):
    spool = Spool(tmp_path, fsync="always")
    spool.append(recs(0, 10))
    batch = spool.read(4)
    spool.ack(batch[-1][1], 4)
    spool.close()
    again = Spool(tmp_path)
    assert again.recovered == 6
    assert drain(again) == list(range(4, 10))
    again.close()
    assert Spool(tmp_path).pending == 0


def test_a_segment_prepended_just_before_a_crash_is_not_lost(tmp_path):
    spool = Spool(tmp_path)
    spool.append(recs(10, 3))
    batch = spool.read(1)
    spool.ack(batch[0][1], 1)  # cursor inside the first segment
    spool.save_cursor()
    spool.rewind()
    spool.prepend(recs(0, 2))
    spool._lock_file.close()  # "crash": no close(), the lock goes with the process
    again = Spool(tmp_path)
    assert drain(again) == [0, 1, 11, 12]
    again.close()


def test_corrupt_and_torn_lines_are_skipped_and_counted(tmp_path):
    spool = Spool(tmp_path)
    spool.append(recs(0, 3))
    spool.close()
    seg = next(tmp_path.glob("seg-*.log"))
    data = seg.read_bytes().split(b"\n")
    data[1] = data[1].replace(b"e1", b"e9")  # crc no longer matches
    seg.write_bytes(b"\n".join(data[:3]) + b"\n" + b"5\t1\tdeadbeef\tt.candles\tETH")  # torn last line
    again = Spool(tmp_path)
    assert again.pending == 4
    assert drain(again) == [0, 2]
    assert again.corrupt == 2 and again.pending == 0
    again.close()


def test_an_overflow_file_left_by_a_crash_is_adopted_after_the_segments(tmp_path):
    from tradeconsole.infra.sinks.spool import _encode_line

    spool = Spool(tmp_path)
    spool.append(recs(0, 2))
    spool.close()
    (tmp_path / "ovf-00000000000000000005.tmp").write_bytes(b"".join(_encode_line(r) for r in recs(5, 2)))
    again = Spool(tmp_path)
    assert drain(again) == [0, 1, 5, 6]
    again.close()


def test_one_process_per_spool(tmp_path):
    spool = Spool(tmp_path)
    with pytest.raises(SpoolBusyError):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()
    with pytest.raises(ValueError):
        Spool(tmp_path / "x", fsync="sometimes")


def test_spool_files_are_created_0600(tmp_path):
    """Spooled events are the user's trading history: segments, cursor, lock and overflow files
    are readable by the owner only (issue 10, item 6), whatever the umask."""
    import os
    import stat

    from tradeconsole.infra.sinks.spool import EventInbox

    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "s", segment_bytes=500)
        spool.append(recs(0, 20))
        spool.prepend(recs(100, 2))
        spool.save_cursor()
        inbox = EventInbox(1, lambda item: (item[0], 0, "t.x", b"k", b"{}"), tmp_path / "s")
        inbox.put(object())  # type: ignore[arg-type]
        inbox.put(object())  # type: ignore[arg-type] - the deque is full: into the overflow file
        spool.close()
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "s").iterdir()]
    assert {p.name.split("-")[0] for p in files} >= {"seg", "ovf", "cursor", "lock"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o600" for p in files}
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700


def test_a_full_disk_fails_the_append_cleanly_and_the_spool_stays_consistent(tmp_path, monkeypatch):
    """ENOSPC from a write (injected in the one write path): the append raises, nothing of it is
    counted or left half-written on disk, and the spool works again once the disk has room."""
    import errno

    import tradeconsole.infra.sinks.spool as spool_mod

    spool = Spool(tmp_path)
    spool.append(recs(0, 5))
    real = spool_mod._write
    full = True

    def write(f, data):
        if full:
            real(f, data[: len(data) // 2])  # part of it reaches the disk, as before ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)

    monkeypatch.setattr(spool_mod, "_write", write)
    with pytest.raises(OSError):
        spool.append(recs(5, 5))
    with pytest.raises(OSError):
        spool.prepend(recs(100, 1))
    assert spool.pending == 5
    full = False
    spool.append(recs(5, 5))
    assert drain(spool) == list(range(10))
    spool.close()
    # and a spool reopened on that directory finds no torn record
    again = Spool(tmp_path)
    assert again.pending == 0 and again.corrupt == 0
    again.close()
