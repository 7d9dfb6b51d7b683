"""The transparent Parquet cache of CSV sources: same candles and report as the CSV parse,
invalidated by any change to a source file, bypassed by ``cache=False``, never in the repo."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
from tradeconsole.backtest.data import load_candles
from tradeconsole.core.candles import COLUMNS
from tradeconsole.core.paths import data_dir


def _entries() -> list:
    d = data_dir() / "cache" / "candles"
    return sorted(d.glob("*.parquet")) if d.is_dir() else []


def _same(a, b) -> None:
    for c in COLUMNS:
        assert np.array_equal(getattr(a, c), getattr(b, c)), c


def test_second_load_comes_from_the_cache_and_equals_the_csv(tmp_path, data_5m, monkeypatch):
    src = tmp_path / "ETHUSDT" / "5m"
    shutil.copytree(data_5m, src)
    first, rep1 = load_candles(src, interval="5m")
    (entry,) = _entries()
    # one row group per calendar month, only the candle columns
    pf = pq.ParquetFile(entry)
    assert pf.metadata.num_row_groups == len(list(src.glob("*.csv")))
    assert pf.schema_arrow.names == list(COLUMNS)
    # a cache hit: the CSV reader is not called again
    import tradeconsole.backtest.data as data

    def no_parse(*a, **k):
        raise AssertionError("parsed a CSV although its cached copy is current")

    with monkeypatch.context() as mp:  # not monkeypatch.undo(): that would also drop the isolated data dir
        mp.setattr(data, "_read_csv", no_parse)
        second, rep2 = load_candles(src, interval="5m")
    _same(first, second)
    assert rep2.summary() == rep1.summary() and rep2.files == rep1.files and rep2.gaps == rep1.gaps
    uncached, rep3 = load_candles(src, interval="5m", cache=False)
    _same(first, uncached)
    assert rep3.summary() == rep1.summary()


def test_a_changed_file_is_read_again(tmp_path, data_5m):
    src = tmp_path / "d"
    shutil.copytree(data_5m, src)
    load_candles(src, interval="5m")
    last = sorted(src.glob("*.csv"))[-1]
    lines = last.read_text().splitlines(keepends=True)
    last.write_text("".join(lines[:-10]))  # ten candles fewer
    again, _ = load_candles(src, interval="5m")
    fresh, _ = load_candles(src, interval="5m", cache=False)
    _same(again, fresh)
    assert len(_entries()) == 2  # a new key; the old entry is never read for these files


def test_skipped_rows_are_reported_from_the_cache_too(tmp_path, data_5m):
    src = tmp_path / "d"
    src.mkdir()
    f = sorted(data_5m.glob("*.csv"))[0]
    lines = f.read_text().splitlines(keepends=True)
    lines[5] = "garbage,row\n"
    (src / f.name).write_text("".join(lines))
    _, rep1 = load_candles(src, interval="5m", skip_bad_rows=True)
    _, rep2 = load_candles(src, interval="5m", skip_bad_rows=True)
    assert rep1.skipped_rows and rep2.skipped_rows == rep1.skipped_rows
    assert f"{src / f.name}:6:" in rep2.skipped_rows[0]


def test_no_cache_writes_nothing(tmp_path, data_5m):
    load_candles(data_5m, interval="5m", cache=False)
    assert _entries() == []
