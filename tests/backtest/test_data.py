"""History loading and validation: every kind of bad file gives a clear error naming file and line,
or a counted skip when asked."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from tradeconsole.backtest.data import DataError, load_candles, slice_by_time

ROW = "{t},{o},{h},{l},{c},10.0,{ct},1000.0,5,5.0,500.0,0\n"


def rows(n: int, start: int = 1_660_000_000_000, step: int = 300_000, skip: set[int] = frozenset()) -> list[str]:
    out = []
    for i in range(n):
        if i in skip:
            continue
        t = start + i * step
        p = 100 + i
        out.append(ROW.format(t=t, o=p, h=p + 2, l=p - 2, c=p + 1, ct=t + step - 1))
    return out


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("".join(lines))
    return p


def test_public_data_directory_loads_all_months(data_5m):
    arr, rep = load_candles(data_5m, interval="5m")
    assert len(arr) == 52_992 and rep.rows == 52_992 and not rep.gaps and len(rep.files) == 6
    assert (np.diff(arr.open_time) == 300_000).all()


def test_garbage_row_names_file_and_line(tmp_path):
    lines = rows(10)
    lines[6] = lines[6].replace(",10", ",abc", 1)
    p = write(tmp_path, "bad.csv", lines)
    with pytest.raises(DataError, match=r"bad\.csv:7: .*not a number"):
        load_candles(p, interval="5m")


def test_nan_price_names_line_and_can_be_skipped_and_counted(tmp_path):
    lines = rows(10)
    parts = lines[3].split(",")
    parts[4] = "nan"
    lines[3] = ",".join(parts)
    p = write(tmp_path, "nan.csv", lines)
    with pytest.raises(DataError, match=r"nan\.csv:4: NaN"):
        load_candles(p, interval="5m")
    arr, rep = load_candles(p, interval="5m", skip_bad_rows=True)
    assert len(arr) == 9 and len(rep.skipped_rows) == 1 and "nan.csv:4" in rep.skipped_rows[0]
    assert rep.gaps == [(1_660_000_000_000 + 2 * 300_000, 1_660_000_000_000 + 4 * 300_000, 1)]


def test_inconsistent_ohlc_and_short_row(tmp_path):
    lines = rows(5)
    lines[2] = ROW.format(t=1_660_000_600_000, o=100, h=99, l=98, c=100, ct=1_660_000_899_999)
    with pytest.raises(DataError, match=r":3: inconsistent OHLC"):
        load_candles(write(tmp_path, "ohlc.csv", lines), interval="5m")
    lines = rows(5)
    lines[4] = "1660001200000,100,101\n"
    with pytest.raises(DataError, match=r"short\.csv:5"):
        load_candles(write(tmp_path, "short.csv", lines), interval="5m")


def test_out_of_order_rows_rejected(tmp_path):
    lines = rows(6)
    lines[3], lines[4] = lines[4], lines[3]
    with pytest.raises(DataError, match=r"order\.csv:5: .*earlier than the one before"):
        load_candles(write(tmp_path, "order.csv", lines), interval="5m")


def test_duplicates_identical_dropped_conflicting_rejected(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    write(d, "a.csv", rows(6))
    write(d, "b.csv", rows(6)[4:] + rows(10)[6:])  # overlaps a.csv by two identical candles
    arr, rep = load_candles(d, interval="5m")
    assert len(arr) == 10 and rep.duplicates_dropped == 2
    bad = rows(6)[4:]
    bad[0] = bad[0].replace(",10.0,", ",11.0,")
    write(d, "b.csv", bad)
    with pytest.raises(DataError, match="two different candles with the same open time"):
        load_candles(d, interval="5m")


def test_gaps_are_reported_not_filled(tmp_path):
    arr, rep = load_candles(write(tmp_path, "gap.csv", rows(20, skip={5, 6, 7})), interval="5m")
    assert len(arr) == 17 and len(rep.gaps) == 1 and rep.gaps[0][2] == 3
    assert "3 candle(s) missing" in rep.summary()


def test_headed_csv_with_dates_and_microsecond_timestamps(tmp_path):
    headed = "timestamp,open,high,low,close,volume\n" + "".join(
        f"2022-08-01 00:{5 * i:02d}:00,{100 + i},{102 + i},{98 + i},{101 + i},1\n" for i in range(6)
    )
    arr, _ = load_candles(write(tmp_path, "h.csv", [headed]), interval="5m")
    assert len(arr) == 6 and arr.open_time[0] == 1_659_312_000_000 and arr.close_time[0] == 1_659_312_299_999
    us = [r.replace("1660", "1660", 1) for r in rows(4)]
    us = [",".join([str(int(x) * 1000) if j in (0, 6) else x for j, x in enumerate(r.split(","))]) for r in us]
    arr2, _ = load_candles(write(tmp_path, "us.csv", us), interval="5m")
    assert arr2.open_time[0] == 1_660_000_000_000


def test_parquet_roundtrip(tmp_path, candles_1h):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = candles_1h.take(slice(0, 500))
    pq.write_table(
        pa.table(
            {
                "open_time": a.open_time,
                "open": a.open,
                "high": a.high,
                "low": a.low,
                "close": a.close,
                "volume": a.volume,
                "close_time": a.close_time,
            }
        ),
        tmp_path / "x.parquet",
    )
    b, _ = load_candles(tmp_path / "x.parquet", interval="1h")
    assert (b.close == a.close).all() and (b.open_time == a.open_time).all()


def test_missing_path_and_empty_dir(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_candles(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \.csv or \.parquet"):
        load_candles(tmp_path / "empty")


def test_slice_by_time(candles_1h):
    s = slice_by_time(candles_1h, 1_656_633_600_000, 1_659_312_000_000)  # July 2022
    assert len(s) == 31 * 24


def test_bad_file_via_cli_exit_code_and_message(tmp_path, data_1h):
    d = tmp_path / "copy"
    shutil.copytree(data_1h, d)
    f = d / "ETHUSDT-1h-2022-05.csv"
    lines = f.read_text().splitlines(keepends=True)
    lines[99] = "garbage,row\n"
    f.write_text("".join(lines))
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "tradeconsole.tui.cli", "backtest", "--strategy", "engulfing", "--data", str(d)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "ETHUSDT-1h-2022-05.csv:100" in out.stderr


def test_skip_bad_rows_covers_unparseable_and_truncated_lines(tmp_path):
    """Issue 12: ``--skip-bad-rows`` skips NaN/OHLC rows AND rows that do not parse at all
    (text in a time column, a line cut off mid-write), each counted with file, line and reason."""
    lines = rows(20)
    lines[3] = "garbage," + lines[3].split(",", 1)[1]  # open_time is text
    lines[8] = lines[8].replace(",10.0,", ",ten,", 1)  # volume is text
    lines[12] = lines[12][:9] + "\n"  # timestamp cut off mid-value
    lines[19] = lines[19][:30]  # truncated last line, no newline
    p = write(tmp_path, "cut.csv", lines)
    with pytest.raises(DataError, match=r"cut\.csv:4: open_time is not .*timestamp"):
        load_candles(p, interval="5m")
    arr, rep = load_candles(p, interval="5m", skip_bad_rows=True)
    assert len(arr) == 16
    where = [r.split(": ", 1)[0].rsplit(":", 1)[1] for r in rep.skipped_rows]
    assert where == ["4", "9", "13", "20"], rep.skipped_rows
    assert "not an integer timestamp" in rep.skipped_rows[0]
    assert "volume is not a number" in rep.skipped_rows[1]
    assert "truncated" in rep.skipped_rows[2] and "truncated" in rep.skipped_rows[3]
    assert [g[2] for g in rep.gaps] == [1, 1, 1]  # the skipped candles are gaps, never invented


def test_skip_bad_rows_drops_one_out_of_order_row_not_the_rest(tmp_path):
    lines = rows(10)
    t = 1_660_000_000_000 + 5 * 300_000
    lines[5] = lines[5].replace(str(t), str(t - 86_400_000), 1)  # a corrupt timestamp a day back
    p = write(tmp_path, "order.csv", lines)
    with pytest.raises(DataError, match="time order"):
        load_candles(p, interval="5m")
    arr, rep = load_candles(p, interval="5m", skip_bad_rows=True)
    assert len(arr) == 9 and len(rep.skipped_rows) == 1 and "order.csv:6" in rep.skipped_rows[0]


def test_skip_bad_rows_skips_undecodable_lines(tmp_path):
    p = tmp_path / "bin.csv"
    body = "".join(rows(6)).encode()
    p.write_bytes(
        body + b"\xff\xfe\x00\x81garbage\n" + "".join(rows(3, start=1_660_000_000_000 + 6 * 300_000)).encode()
    )
    arr, rep = load_candles(p, interval="5m", skip_bad_rows=True)
    assert len(arr) == 9 and len(rep.skipped_rows) == 1 and "bin.csv:7" in rep.skipped_rows[0]
