#!/usr/bin/env python3
"""Journal benchmark (issue 10, Must show): peak memory of a 2.5-year two-strategy headless replay
with ``--json``, and what the journal costs on disk.

1. **Data**: 2.5 years (2020-07-01 .. 2023-01-01, 262,944 bars) of 5m ETHUSDT candles written
   to a temp directory in the Binance public-data layout (``ETHUSDT-5m-YYYY-MM.csv``, no header),
   stitched from the six real months in ``../shared``: each copy follows the previous one in time
   and its prices are scaled so its first open equals the previous copy's last close (no gap, no
   jump; the rules are scale-invariant, so the copies trade like the original).
2. **Product**: ``tradeconsole run --headless --strategy basic --strategy engulfing:5m --replay DIR
   --speed max --json --journal J`` (two 5m sessions: a replay feeds one interval). Peak RSS of
   that process from ``wait4`` (its own ``ru_maxrss``), wall time, the journal's size, events
   kept, ticks deleted by retention, bytes per event.
3. **Baselines measured in the same run**:
   * ``tradeconsole backtest --strategy basic --data DIR --json``: a process that holds the same
     2.5 years in memory and computes the same metrics; the floor for "has the series loaded".
   * the summary alone over the journal just written: streaming ``result_from_journal`` (what
     ``--json`` does) against the former approach, every matching row fetched at once
     (``fetchall``), each in a fresh process: peak RSS of both.
   * opening the journal (lock, format and ``PRAGMA quick_check``): time, for information.

Usage (from the repository root)::

    .venv/bin/python bench/bench_journal_memory.py           # ~5 minutes on 2 shared cores
    .venv/bin/python bench/bench_journal_memory.py --quick   # 6 months, ~1 minute

Target: peak RSS of the product run < 250 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_5M = ROOT.parent / "shared" / "data" / "binance" / "spot" / "ETHUSDT" / "5m"
STEP = 300_000
TARGET_MB = 250.0


def synthesize(out: Path, start: datetime, end: datetime) -> int:
    """Write stitched 5m candles from ``start`` to ``end`` (exclusive) as monthly public-data CSVs."""
    rows = []
    for f in sorted(DATA_5M.glob("ETHUSDT-5m-*.csv")):
        for line in f.read_text().splitlines():
            parts = line.split(",")
            if parts and parts[0].isdigit():
                rows.append([float(x) for x in parts[1:6]] + [float(x) for x in parts[7:11]])
    t0, t_end = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    n = (t_end - t0) // STEP
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {}
    scale, last_close = 1.0, None
    for i in range(n):
        j = i % len(rows)
        o, h, lo, c, v, qv, cnt, tb, tq = rows[j]
        if j == 0 and last_close is not None:
            scale = last_close / o
        t = t0 + i * STEP
        month = datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m")
        s = scale
        files.setdefault(month, []).append(
            f"{t},{o * s:.2f},{h * s:.2f},{lo * s:.2f},{c * s:.2f},{v:.4f},{t + STEP - 1},{qv * s:.4f},{int(cnt)},"
            f"{tb:.4f},{tq * s:.4f},0"
        )
        last_close = c * s
    for month, lines in files.items():
        (out / f"ETHUSDT-5m-{month}.csv").write_text("\n".join(lines) + "\n")
    return n


def solo(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``cmd`` and return its own peak RSS (MB, from wait4), wall time and output."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        res = subprocess.CompletedProcess(cmd, p.returncode, out.read(), err.read())
    return usage.ru_maxrss / 1024.0, wall, res


def worker(mode: str, journal: str) -> None:
    """Summary-only workers (run in fresh processes so their peak RSS is their own)."""
    from tradeconsole.backtest.from_journal import result_from_journal
    from tradeconsole.backtest.metrics import compute_metrics
    from tradeconsole.core.engine import SessionSpec
    from tradeconsole.infra.persistence.journal import Journal

    if mode == "open":
        t0 = time.perf_counter()
        Journal(journal).close()
        print(json.dumps({"open_s": time.perf_counter() - t0}))
        return
    j = Journal(journal, sync="normal", verify=False)
    run_id = j.latest_run()[0]
    specs = [SessionSpec("ETHUSDT", "5m", "basic"), SessionSpec("ETHUSDT", "5m", "engulfing")]
    if mode == "stream":
        out = [compute_metrics(result_from_journal(j, run_id, s))["final_equity"] for s in specs]
    else:  # the former Journal.events(): every matching row of the run fetched at once
        db = sqlite3.connect(journal)
        out = []
        for s in specs:
            rows = db.execute(
                "SELECT seq, payload FROM events WHERE run_id=? AND type IN ('candle','equity','fill')"
                " AND symbol=? AND interval=? AND strategy=? ORDER BY seq",
                (run_id, s.symbol, s.interval, s.strategy),
            ).fetchall()
            events = [json.loads(p) for _, p in rows]
            out.append(sum(1 for e in events if e["type"] == "fill"))
            del rows, events
    print(json.dumps({"result": out}))
    j.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="six months instead of 2.5 years")
    ap.add_argument("--worker", choices=("stream", "fetchall", "open"))
    ap.add_argument("--journal")
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.journal)
        return
    start = datetime(2020, 7, 1, tzinfo=UTC)
    end = datetime(2021, 1, 1, tzinfo=UTC) if a.quick else datetime(2023, 1, 1, tzinfo=UTC)
    py = sys.executable
    tc = str(Path(py).with_name("tradeconsole"))
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        data, journal = Path(tmp) / "data", Path(tmp) / "journal.sqlite"
        bars = synthesize(data, start, end)
        print(
            f"data: {bars:,} 5m bars ({start:%Y-%m-%d} .. {end:%Y-%m-%d}), "
            f"{len(list(data.glob('*.csv')))} monthly files"
        )

        rss, wall, p = solo(
            [
                tc,
                "run",
                "--headless",
                "--strategy",
                "basic",
                "--strategy",
                "engulfing:5m",
                "--replay",
                str(data),
                "--speed",
                "max",
                "--json",
                "--journal",
                str(journal),
            ]
        )
        if p.returncode != 0:
            sys.exit(f"product run failed ({p.returncode}): {p.stderr[-2000:]}")
        summaries = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        print(
            f"\nproduct: run --headless, 2 sessions, --json   peak RSS {rss:7.1f} MB   wall {wall:6.1f} s   "
            f"{'MEETS' if rss < TARGET_MB else 'MISSES'} target < {TARGET_MB:.0f} MB"
        )
        for s in summaries:
            print(
                f"   {s.get('strategy')}: {s.get('trades')} trades, final equity {s.get('final_equity'):,.2f}, "
                f"{s.get('bars'):,} bars"
            )

        db = sqlite3.connect(journal)
        counts = dict(db.execute("SELECT type, COUNT(*) FROM events GROUP BY type").fetchall())
        deleted = dict(db.execute("SELECT type, deleted FROM compacted").fetchall())
        db.close()
        size = sum(f.stat().st_size for f in Path(tmp).glob("journal.sqlite*") if f.is_file())
        kept = sum(counts.values())
        written = kept + sum(deleted.values())
        print(
            f"\njournal: {size / 1e6:8.1f} MB on disk (db + wal), {kept:,} events kept of {written:,} written "
            f"({sum(deleted.values()):,} candle_update ticks deleted by retention)"
        )
        print(f"   {size / kept:6.0f} B per kept event, {size / written:6.0f} B per event written")
        print("   kept: " + ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items(), key=lambda x: -x[1])))

        b_rss, b_wall, b = solo([tc, "backtest", "--strategy", "basic", "--data", str(data), "--json"])
        if b.returncode != 0:
            sys.exit(f"baseline backtest failed: {b.stderr[-1500:]}")
        s_rss, s_wall, s = solo([py, __file__, "--worker", "stream", "--journal", str(journal)])
        f_rss, f_wall, f = solo([py, __file__, "--worker", "fetchall", "--journal", str(journal)])
        o_rss, o_wall, o = solo([py, __file__, "--worker", "open", "--journal", str(journal)])
        for name, r in (("stream", s), ("fetchall", f), ("open", o)):
            if r.returncode != 0:
                sys.exit(f"{name} worker failed: {r.stderr[-1500:]}")
        print("\nbaselines (same run)                              peak RSS        wall")
        print(
            f"   backtest --strategy basic --json (in memory)   {b_rss:7.1f} MB  {b_wall:7.1f} s   "
            f"product / baseline RSS {rss / b_rss:5.2f}x"
        )
        print(f"   summary only, streaming (what --json does)     {s_rss:7.1f} MB  {s_wall:7.1f} s")
        print(
            f"   summary only, fetchall (former events())       {f_rss:7.1f} MB  {f_wall:7.1f} s   "
            f"fetchall / streaming RSS {f_rss / s_rss:5.2f}x"
        )
        print(
            f"   open: lock + format + quick_check              {o_rss:7.1f} MB  "
            f"{json.loads(o.stdout)['open_s']:7.2f} s (in process)"
        )


if __name__ == "__main__":
    main()
