"""Loading and validating kline history: Binance public-data CSVs (no header), a directory of
them, CSVs with a header, and Parquet.

Validation is strict because every later number depends on it:

* a row that is not a number, has NaN/inf/non-positive prices or inconsistent OHLC
  (low above open/close, high below them) raises ``DataError`` naming the file and line, unless
  ``skip_bad_rows`` is set, in which case it is skipped and counted in the report;
* rows must be in time order inside a file; files are ordered by their first timestamp;
* a candle repeated with identical values is dropped and counted; two different candles with the
  same open time raise ``DataError``;
* gaps (missing candles for the interval) are listed in the report, never filled in;
* the interval is inferred from the data (the median step between candles) and, when the caller
  says which interval it expects, checked against it: 1h candles run as 5m would look like a
  5m history with eleven missing candles after every one, and every ratio annualised from the
  interval would be wrong, so a mismatch raises ``IntervalMismatchError`` saying what the data is.

Timestamps may be in ms (Binance's classic layout), µs (Binance public data since 2025) or s;
they are normalised to ms.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from tradeconsole.core.candles import COLUMNS as _COLS
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.domain import INTERVAL_MS, interval_ms, iso_ms

if TYPE_CHECKING:  # pandas is imported where a file is parsed
    import pandas as pd

__all__ = [
    "DATA_FILE",
    "SYMBOL_NAME",
    "DataError",
    "DataReport",
    "IntervalMismatchError",
    "infer_interval",
    "load_candles",
    "data_symbol",
    "data_symbol_problem",
    "slice_by_time",
    "window_with_warmup",
]

_ALIASES = {
    "open_time": ("open_time", "open time", "opentime", "timestamp", "time", "date", "datetime", "ts"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
    "close_time": ("close_time", "close time", "closetime"),
}


class DataError(ValueError):
    """Bad market data; the message names the file and line."""


class IntervalMismatchError(DataError):
    """The data's candle interval is not the one the run expects (a user mistake: wrong folder or
    a missing ``--interval``). ``data_interval`` is what the data is (a Binance interval name, or
    None when its step is not one); ``expected`` what the caller asked for."""

    def __init__(self, message: str, data_interval: str | None, expected: str) -> None:
        super().__init__(message)
        self.data_interval = data_interval
        self.expected = expected


_INTERVAL_BY_MS = {ms: name for name, ms in INTERVAL_MS.items()}


def infer_interval(open_time: NDArray[Any]) -> str | None:
    """The Binance interval name of a history's step (median gap between open times), or None
    for fewer than two candles or a step that is no Binance interval."""
    if len(open_time) < 2:
        return None
    return _INTERVAL_BY_MS.get(_infer_step(open_time))


def _human_ms(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms} ms"


@dataclass(slots=True)
class DataReport:
    files: list[str] = field(default_factory=list)
    rows: int = 0
    skipped_rows: list[str] = field(default_factory=list)  # "file:line: reason"
    interval: str | None = None  # inferred from the data (None: one candle, nothing to infer from)
    duplicates_dropped: int = 0
    gaps: list[tuple[int, int, int]] = field(default_factory=list)  # (after_open_time, next_open_time, missing)

    def summary(self) -> str:
        parts = [f"{self.rows} candles from {len(self.files)} file(s)"]
        if self.duplicates_dropped:
            parts.append(f"{self.duplicates_dropped} duplicate(s) dropped")
        if self.skipped_rows:
            parts.append(f"{len(self.skipped_rows)} bad row(s) skipped")
        if self.gaps:
            missing = sum(g[2] for g in self.gaps)
            parts.append(f"{len(self.gaps)} gap(s), {missing} candle(s) missing")
        return ", ".join(parts)


# ---------------------------------------------------------------------------- helpers


def _to_ms(ts: NDArray[Any]) -> NDArray[Any]:
    """Normalise s / ms / µs epoch timestamps to ms (decided per value by magnitude)."""
    ts = ts.astype(np.int64, copy=False)
    out = ts.copy()
    us = ts >= 10**14
    s = ts < 10**11
    out[us] = ts[us] // 1000
    out[s] = ts[s] * 1000
    return out


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _find_bad_row(path: Path, header: bool, colmap: dict[str, int]) -> tuple[int, str] | None:
    """Slow exact scan to name the first bad line (only run when the fast parse failed)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if header and lineno == 1:
                continue
            if not line.strip():
                continue
            if "\ufffd" in line:
                return lineno, "not text (undecodable bytes)"
            problem = _line_problem([t.strip() for t in line.rstrip("\r\n").split(",")], header, colmap)
            if problem:
                return lineno, problem
    return None


_PUBLIC = {c: i for i, c in enumerate(_COLS)}


def _row_problem(o: float, h: float, lo: float, c: float, v: float) -> str | None:
    if not all(math.isfinite(x) for x in (o, h, lo, c, v)):
        return "NaN or infinite value"
    if min(o, h, lo, c) <= 0:
        return "non-positive price"
    if v < 0:
        return "negative volume"
    if lo > min(o, c) or h < max(o, c):
        return f"inconsistent OHLC (open {o}, high {h}, low {lo}, close {c})"
    return None


def _header_map(first_line: str) -> dict[str, int] | None:
    toks = [t.strip().strip('"').lower() for t in first_line.rstrip("\r\n").split(",")]
    if toks and _is_number(toks[0]):
        return None
    colmap: dict[str, int] = {}
    for col, names in _ALIASES.items():
        for i, t in enumerate(toks):
            if t in names:
                colmap[col] = i
                break
    missing = [c for c in ("open_time", "open", "high", "low", "close") if c not in colmap]
    if missing:
        raise DataError(f"header {first_line.strip()!r} lacks column(s): {', '.join(missing)}")
    return colmap


def _read_csv(path: Path, report: DataReport, skip_bad_rows: bool, interval: str | None) -> CandleArrays:
    import pandas as pd

    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    if not first.strip():
        return CandleArrays.from_candles([])
    try:
        colmap = _header_map(first)
    except DataError as exc:
        raise DataError(f"{path}: {exc}; expected Binance public-data klines or a CSV with a header") from None
    header = colmap is not None
    if colmap is None:
        colmap = _PUBLIC
    usecols = sorted(set(colmap.values()))
    try:
        df = pd.read_csv(
            path,
            header=None,
            skiprows=1 if header else 0,
            usecols=usecols,
            skip_blank_lines=True,
            engine="c",
            dtype=None,
        )
    except (ValueError, pd.errors.ParserError) as exc:  # UnicodeDecodeError is a ValueError
        if skip_bad_rows:
            return _read_csv_lines(path, header, colmap, report, interval)
        bad = _find_bad_row(path, header, colmap)
        if bad:
            raise DataError(f"{path}:{bad[0]}: {bad[1]}") from None
        raise DataError(f"{path}: cannot parse: {exc}") from None
    if skip_bad_rows and (df.isna().to_numpy().any() or any(df[i].dtype.kind == "O" for i in usecols)):
        # something in this file is not a clean number (text, an empty field, a truncated line):
        # the exact line-by-line reader names each skipped line with its real reason
        return _read_csv_lines(path, header, colmap, report, interval)
    lines = _LineNumbers(path, header, len(df))
    cols: dict[str, NDArray[Any]] = {}
    for name, idx in colmap.items():
        series = df[idx]
        if name.endswith("time"):
            cols[name] = _parse_times(series, path, lines, name)
        else:
            num = pd.to_numeric(series, errors="coerce")
            # real NaN/inf values are reported by _validate_rows; here only unparseable text
            garbage = (num.isna() & series.notna()).to_numpy()
            if garbage.any():
                i = int(np.flatnonzero(garbage)[0])
                if not skip_bad_rows:
                    raise DataError(f"{path}:{lines[i]}: {name} is not a number: {series.iloc[i]!r}")
            cols[name] = num.to_numpy(dtype=np.float64)
    return _validate_rows(_complete(cols, interval), lines, str(path), report, skip_bad_rows)


def _complete(cols: dict[str, NDArray[Any]], interval: str | None) -> CandleArrays:
    """Candle arrays from parsed columns, filling what a headed CSV may lack: volume (0) and the
    close time (open time + interval - 1 ms, Binance's definition)."""
    if "volume" not in cols:
        cols["volume"] = np.zeros(len(cols["open_time"]))
    if "close_time" not in cols:
        step = interval_ms(interval) if interval else _infer_step(cols["open_time"])
        cols["close_time"] = cols["open_time"] + step - 1
    return CandleArrays(*(cols[c] for c in _COLS))


def _line_problem(toks: list[str], header: bool, colmap: dict[str, int]) -> str | None:
    """Why one CSV line cannot be a candle (None: it parses). Shared by the exact scan that names
    the first bad line and the reader that skips bad lines."""
    for name, idx in colmap.items():
        if idx >= len(toks) or not toks[idx]:
            return f"missing column {name!r} (row has {len(toks)} fields; truncated line?)"
        tok = toks[idx]
        if name.endswith("time") and not header:
            if not tok.isdigit():
                return f"{name} is not an integer timestamp: {tok!r}"
            if len(tok) < 10:  # epoch seconds have 10 digits, ms 13, µs 16: fewer is a cut-off value
                return f"{name} is not a whole epoch timestamp: {tok!r} (truncated line?)"
        elif not name.endswith("time") and not _is_number(tok):
            return f"{name} is not a number: {tok!r}"
    return None


def _read_csv_lines(
    path: Path, header: bool, colmap: dict[str, int], report: DataReport, interval: str | None
) -> CandleArrays:
    """The exact, line-by-line reader used with ``skip_bad_rows`` when the fast parser met
    something that is not a clean candle row: every unparseable or truncated line is skipped and
    recorded as ``file:line: reason``; the rest go through the same row checks as the fast path."""
    import pandas as pd

    good: dict[str, list[str]] = {name: [] for name in colmap}
    numbers: list[int] = []
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if (header and lineno == 1) or not line.strip():
                continue
            toks = [t.strip().strip('"') for t in line.rstrip("\r\n").split(",")]
            problem = "not text (undecodable bytes)" if "\ufffd" in line else _line_problem(toks, header, colmap)
            if problem:
                report.skipped_rows.append(f"{path}:{lineno}: {problem}")
                continue
            for name, idx in colmap.items():
                good[name].append(toks[idx])
            numbers.append(lineno)
    lines = np.asarray(numbers, dtype=np.int64)
    cols: dict[str, NDArray[Any]] = {}
    bad = np.zeros(len(numbers), dtype=bool)
    epoch, one_ms = pd.Timestamp(0, tz="UTC"), pd.Timedelta(milliseconds=1)
    for name, toks in good.items():
        series = pd.Series(toks, dtype=object)
        if not name.endswith("time"):
            # _line_problem checked they parse; "nan"/"inf" stay and _validate_rows skips them
            cols[name] = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
            continue
        num = pd.to_numeric(series, errors="coerce")
        isnum = num.notna().to_numpy()
        ms = np.zeros(len(series), dtype=np.int64)
        ms[isnum] = _to_ms(num[isnum].to_numpy().astype(np.int64))
        if (~isnum).any():  # date strings (headed files only)
            at = np.flatnonzero(~isnum)
            text = pd.to_datetime(series.iloc[at], utc=True, errors="coerce", format="mixed")
            ok = text.notna().to_numpy()
            ms[at[ok]] = ((text[ok] - epoch) // one_ms).to_numpy(dtype=np.int64)
            bad[at[~ok]] = True
        cols[name] = ms
    for i in np.flatnonzero(bad):
        report.skipped_rows.append(f"{path}:{lines[i]}: a time column is not a timestamp")
    keep = ~bad
    cols = {k: v[keep] for k, v in cols.items()}
    return _validate_rows(_complete(cols, interval), lines[keep], str(path), report, True)


def _parse_times(series: pd.Series[Any], path: Path, lines: _LineNumbers, name: str) -> NDArray[np.integer[Any]]:
    """Epoch numbers (s/ms/µs) or date strings to epoch ms; a bad value names its line."""
    import pandas as pd

    if series.dtype.kind in "iu":
        return _to_ms(series.to_numpy())
    num = pd.to_numeric(series, errors="coerce")
    if num.notna().all():
        return _to_ms(num.to_numpy().astype(np.int64))
    if num.notna().any():  # mostly numbers: the non-numbers are garbage
        i = int(np.flatnonzero(num.isna().to_numpy())[0])
        raise DataError(f"{path}:{lines[i]}: {name} is not a timestamp: {series.iloc[i]!r}")
    parsed = pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
    if parsed.isna().any():
        i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataError(f"{path}:{lines[i]}: {name} is not a timestamp: {series.iloc[i]!r}")
    ms: NDArray[np.integer[Any]] = ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(
        dtype=np.int64
    )
    return ms


class _LineNumbers:
    """Maps a parsed row index to its line in the file. The file is re-read only when a message
    needs a line number, so clean data costs nothing extra."""

    def __init__(self, path: Path, header: bool, rows: int) -> None:
        self.path, self.header, self.rows = path, header, rows
        self._lines: NDArray[Any] | None = None

    def _load(self) -> NDArray[Any]:
        if self._lines is None:
            with open(self.path, newline="", encoding="utf-8", errors="replace") as fh:
                real = [n for n, ln in enumerate(fh, start=1) if ln.strip() and not (self.header and n == 1)]
            self._lines = np.asarray(
                real if len(real) == self.rows else np.arange(self.rows) + (2 if self.header else 1)
            )
        return self._lines

    def __getitem__(self, i: int | NDArray[np.bool_]) -> Any:  # a line number, or an array of them
        return self._load()[i]


def _infer_step(open_time: NDArray[Any]) -> int:
    if len(open_time) < 2:
        raise DataError("cannot infer the interval from a single candle; pass --interval")
    return int(np.median(np.diff(open_time)))


def _validate_rows(
    arr: CandleArrays, lines: _LineNumbers | NDArray[np.int64], name: str, report: DataReport, skip_bad_rows: bool
) -> CandleArrays:
    o, h, lo, c, v = arr.open, arr.high, arr.low, arr.close, arr.volume
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v)
        ok = (
            finite
            & (np.minimum(np.minimum(o, h), np.minimum(lo, c)) > 0)
            & (v >= 0)
            & (lo <= np.minimum(o, c))
            & (h >= np.maximum(o, c))
        )
    if not ok.all():
        bad_idx = np.flatnonzero(~ok)
        if not skip_bad_rows:
            i = int(bad_idx[0])
            raise DataError(
                f"{name}:{lines[i]}: {_row_problem(o[i], h[i], lo[i], c[i], v[i])}"
                " (use --skip-bad-rows to skip and count such rows)"
            )
        for i in bad_idx:
            report.skipped_rows.append(f"{name}:{lines[i]}: {_row_problem(o[i], h[i], lo[i], c[i], v[i])}")
        arr = arr.take(ok)
        lines = lines[ok]
    t = arr.open_time
    if skip_bad_rows and len(t) > 1 and (np.diff(t) < 0).any():
        keep = _longest_increasing(t)
        for i in np.flatnonzero(~keep):
            report.skipped_rows.append(f"{name}:{lines[i]}: candle at {iso_ms(int(t[i]))} is out of time order")
        arr, lines = arr.take(keep), lines[keep]
        t = arr.open_time
    if len(t) > 1:
        back = np.flatnonzero(np.diff(t) < 0)
        if len(back):
            i = int(back[0]) + 1
            raise DataError(
                f"{name}:{lines[i]}: candle at {iso_ms(int(t[i]))} is earlier than the one before "
                f"({iso_ms(int(t[i - 1]))}); rows must be in time order"
            )
    return arr


def _longest_increasing(t: NDArray[Any]) -> NDArray[Any]:
    """Mask of a longest non-decreasing run of ``t`` (patience sorting, O(n log n)): with
    ``skip_bad_rows`` the fewest rows are dropped to put a file back in time order, so one
    corrupt timestamp costs one row, not every row after it."""
    import bisect

    tails: list[int] = []  # t value ending the best run of each length
    tail_idx: list[int] = []
    prev = np.full(len(t), -1, dtype=np.int64)
    for i, v in enumerate(t.tolist()):
        k = bisect.bisect_right(tails, v)
        if k == len(tails):
            tails.append(v)
            tail_idx.append(i)
        else:
            tails[k] = v
            tail_idx[k] = i
        prev[i] = tail_idx[k - 1] if k else -1
    keep = np.zeros(len(t), dtype=bool)
    i = tail_idx[-1]
    while i >= 0:
        keep[i] = True
        i = int(prev[i])
    return keep


def _read_parquet(path: Path, report: DataReport, skip_bad_rows: bool, interval: str | None) -> CandleArrays:
    import pyarrow.parquet as pq

    wanted = {a for aliases in _ALIASES.values() for a in aliases}
    # project: read only the candle columns (a Parquet file may hold many more)
    schema_names = pq.read_schema(path).names
    table = pq.read_table(path, columns=[n for n in schema_names if n.lower() in wanted])
    names = {n.lower(): n for n in table.column_names}
    cols: dict[str, NDArray[Any]] = {}
    for col, aliases in _ALIASES.items():
        src = next((names[a] for a in aliases if a in names), None)
        if src is None:
            if col in ("volume", "close_time"):
                continue
            raise DataError(f"{path}: Parquet file lacks column {col!r}")
        values = table.column(src).to_numpy()
        if col.endswith("time"):
            if np.issubdtype(values.dtype, np.datetime64):
                values = values.astype("datetime64[ms]").astype(np.int64)
            cols[col] = _to_ms(np.asarray(values))
        else:
            cols[col] = np.asarray(values, dtype=np.float64)
    n = len(cols["close"])
    cols.setdefault("volume", np.zeros(n))
    if "close_time" not in cols:
        step = interval_ms(interval) if interval else _infer_step(cols["open_time"])
        cols["close_time"] = cols["open_time"] + step - 1
    arr = CandleArrays(*(cols[c] for c in _COLS))
    # Parquet has no lines; name the row (1-based) instead
    return _validate_rows(arr, np.arange(1, n + 1), f"{path} row", report, skip_bad_rows)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".parquet") and p.is_file())
        if not found:
            raise DataError(f"{path}: no .csv or .parquet files in this directory")
        return found
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    return [path]


def load_candles(
    path: str | os.PathLike[str],
    *,
    interval: str | None = None,
    skip_bad_rows: bool = False,
    report: DataReport | None = None,
    expected_by: str | None = None,
    cache: bool = True,
) -> tuple[CandleArrays, DataReport]:
    """Load, validate and concatenate candle history from a file or a directory of files.

    ``interval`` is what the caller will run the candles as; the data's own step must equal it,
    else ``IntervalMismatchError``. ``expected_by`` says in the message why that interval is
    expected (e.g. "the strategy 'basic' runs on 5m"); by default "--interval is 5m".

    CSV sources are cached transparently as Parquet (see ``_cache_path``): parsing text is most of
    a large backtest's start-up, and a second run over unchanged files reads the validated columns
    back instead. ``cache=False`` (``--no-cache``) reads and validates the files every time.
    """
    report = report if report is not None else DataReport()
    files = _files(Path(path))
    arr = _load_files(files, report, skip_bad_rows, interval, cache)
    if arr is None:
        raise DataError(f"{path}: no candles found")
    arr = _dedupe(arr, report, str(path))
    step = _check_interval(arr.open_time, interval, path, report, expected_by)
    d = np.diff(arr.open_time)
    for i in np.flatnonzero(d != step):
        if d[i] % step == 0:
            report.gaps.append((int(arr.open_time[i]), int(arr.open_time[i + 1]), int(d[i] // step) - 1))
        else:
            raise DataError(
                f"{path}: candle at {iso_ms(int(arr.open_time[i + 1]))} is not on the "
                f"{interval or 'inferred'} grid (step {step} ms after {iso_ms(int(arr.open_time[i]))})"
            )
    report.rows = len(arr)
    return arr, report


def _concat_files(
    files: list[Path], report: DataReport, skip_bad_rows: bool, interval: str | None
) -> CandleArrays | None:
    """Every file read and row-validated, concatenated in the order of their first candle."""
    parts: list[CandleArrays] = []
    for f in files:
        reader = _read_parquet if f.suffix.lower() == ".parquet" else _read_csv
        part = reader(f, report, skip_bad_rows, interval)
        report.files.append(str(f))
        if len(part):
            parts.append(part)
    if not parts:
        return None
    parts.sort(key=lambda a: int(a.open_time[0]))
    return CandleArrays(*(np.concatenate([getattr(p, c) for p in parts]) for c in _COLS))


#: bump when what the cache holds or how it is keyed changes: old entries are then never read
_CACHE_VERSION = 2


def _cache_path(files: list[Path], skip_bad_rows: bool, interval: str | None) -> Path | None:
    """Where the Parquet copy of these files lives: ``<data dir>/cache/candles/<key>.parquet``,
    keyed by each file's resolved path, size and modification time (any edit, addition or
    removal gives a new key, so a stale copy is never read) and by the options that change what
    the parse yields. None when no CSV is involved (Parquet is read directly) or the data
    directory cannot be determined."""
    if not any(f.suffix.lower() == ".csv" for f in files):
        return None
    import hashlib

    from tradeconsole.core.paths import data_dir

    h = hashlib.sha256(f"v{_CACHE_VERSION}|{skip_bad_rows}|{interval}".encode())
    try:
        for f in files:
            st = f.stat()
            h.update(f"|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        return data_dir() / "cache" / "candles" / f"{h.hexdigest()[:32]}.parquet"
    except OSError:
        return None


def _load_files(
    files: list[Path], report: DataReport, skip_bad_rows: bool, interval: str | None, cache: bool
) -> CandleArrays | None:
    """``_concat_files`` through the Parquet cache. The cache holds the candles after the row
    checks, with the report's file list and skipped rows in its metadata, so a cached run warns
    about exactly what the first one did; the whole-history checks (duplicates, interval, gaps)
    run on it again. Any failure to read or write the cache falls back to the files: a cache
    must never be the reason a backtest fails."""
    where = _cache_path(files, skip_bad_rows, interval) if cache else None
    if where is not None and where.is_file():
        got = _read_cache(where, report)
        if got is not None:
            return got
    files_before, skipped_before = len(report.files), len(report.skipped_rows)
    arr = _concat_files(files, report, skip_bad_rows, interval)
    if where is not None and arr is not None:
        _write_cache(where, arr, report.files[files_before:], report.skipped_rows[skipped_before:])
    return arr


def _month_bounds(open_time: NDArray[np.int64]) -> list[int]:
    """Row indices where a new UTC calendar month starts (the cache's row-group boundaries)."""
    months = open_time.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)
    return [0, *(np.flatnonzero(np.diff(months) != 0) + 1).tolist(), len(open_time)]


def _write_cache(where: Path, arr: CandleArrays, files: list[str], skipped: list[str]) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {b"tradeconsole": json.dumps({"version": _CACHE_VERSION, "files": files, "skipped": skipped}).encode()}
    table = pa.table({c: getattr(arr, c) for c in _COLS}).replace_schema_metadata(meta)
    tmp = where.with_name(f".{where.name}.{os.getpid()}.tmp")
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        bounds = _month_bounds(arr.open_time)
        with pq.ParquetWriter(tmp, table.schema, compression="lz4", use_dictionary=False) as writer:
            for lo, hi in zip(bounds, bounds[1:]):
                writer.write_table(table.slice(lo, hi - lo))  # one row group per month
        os.replace(tmp, where)  # atomic: a concurrent reader sees the old entry or the whole new one
    except OSError:
        tmp.unlink(missing_ok=True)


def _read_cache(where: Path, report: DataReport) -> CandleArrays | None:
    """The cached candles, read one row group (month) at a time straight into the final arrays:
    peak memory is the candles plus one month, not the Arrow table plus a copy of it."""
    import json

    import pyarrow.parquet as pq

    try:
        # ParquetFile, not read_table: read_table imports pyarrow.dataset (a second of start-up)
        pf = pq.ParquetFile(where)
        meta = json.loads((pf.schema_arrow.metadata or {})[b"tradeconsole"])
        if meta.get("version") != _CACHE_VERSION:
            return None
        n = pf.metadata.num_rows
        cols = {c: np.empty(n, dtype=np.int64 if c.endswith("time") else np.float64) for c in _COLS}
        at = 0
        for g in range(pf.num_row_groups):
            part = pf.read_row_group(g, columns=list(_COLS), use_threads=False)  # 2 shared cores: no gain
            m = part.num_rows
            for c in _COLS:
                _copy_column(part.column(c), cols[c][at : at + m])
            at += m
        if at != n:
            return None
    except Exception:  # noqa: BLE001 - a truncated or foreign cache file: read the sources instead
        return None
    report.files.extend(meta["files"])
    report.skipped_rows.extend(meta["skipped"])
    return CandleArrays(*(cols[c] for c in _COLS))


def _copy_column(col: Any, out: NDArray[Any]) -> None:
    """Copy a null-free primitive pyarrow column of ``out``'s dtype into ``out``, straight from
    its data buffers (``to_numpy``/``np.asarray`` would import pandas, ~0.35 s of a short
    backtest's start-up)."""
    import pyarrow as pa

    at = 0
    for ch in col.chunks:
        if ch.null_count or not pa.types.is_primitive(ch.type) or np.dtype(ch.type.to_pandas_dtype()) != out.dtype:
            raise ValueError("the cache holds nulls or a column of another type")
        k = len(ch)
        out[at : at + k] = np.frombuffer(ch.buffers()[1], dtype=out.dtype, count=k, offset=ch.offset * out.itemsize)
        at += k
    if at != len(out):
        raise ValueError("a row group's column is shorter than the row group")


def _check_interval(
    open_time: NDArray[np.int64],
    interval: str | None,
    path: str | os.PathLike[str],
    report: DataReport,
    expected_by: str | None,
) -> int:
    """Infer the data's step, record it in ``report`` and compare it with ``interval``; returns
    the step the grid check uses."""
    if len(open_time) < 2:
        if interval is None:
            _infer_step(open_time)  # raises: nothing to infer from
        report.interval = interval
        # not None here: _infer_step raised above when it was
        return interval_ms(interval)  # type: ignore[arg-type]
    step = _infer_step(open_time)
    data_iv = _INTERVAL_BY_MS.get(step)
    report.interval = data_iv
    if interval is None:
        return step
    want = interval_ms(interval)
    if step != want:
        why = expected_by or f"--interval is {interval}"
        if data_iv is None:
            msg = (
                f"{path}: candles are {_human_ms(step)} apart, which is not a Binance interval; {why}: pass other data"
            )
        else:
            msg = f"{path}: this is {data_iv} data; {why}: pass --interval {data_iv} or other data"
        raise IntervalMismatchError(msg, data_iv, interval)
    return step


def _dedupe(arr: CandleArrays, report: DataReport, name: str) -> CandleArrays:
    t = arr.open_time
    if len(t) < 2:
        return arr
    d = np.diff(t)
    if (d > 0).all():
        return arr
    if (d < 0).any():  # overlapping files: sort stably, then look at duplicates
        order = np.argsort(t, kind="stable")
        arr = arr.take(order)
        t = arr.open_time
        d = np.diff(t)
    dup = np.flatnonzero(d == 0) + 1
    keep = np.ones(len(t), dtype=bool)
    for i in dup:
        same = all(getattr(arr, c)[i] == getattr(arr, c)[i - 1] for c in ("open", "high", "low", "close", "volume"))
        if not same:
            raise DataError(f"{name}: two different candles with the same open time {iso_ms(int(t[i]))}")
        keep[i] = False
    report.duplicates_dropped += int((~keep).sum())
    return arr.take(keep)


def window_with_warmup(arr: CandleArrays, start_ms: int | None, end_ms: int | None) -> tuple[CandleArrays, int]:
    """The candles up to the window's end and how many of them precede its start: the window is
    [start_ms, end_ms) and everything before it stays, to warm the indicators up (it is history
    the strategy could have seen; nothing after ``end_ms`` is kept, so nothing leaks back)."""
    upto = slice_by_time(arr, None, end_ms)
    warmup = 0 if start_ms is None else int(np.searchsorted(upto.open_time, start_ms, side="left"))
    return upto, warmup


def slice_by_time(arr: CandleArrays, start_ms: int | None, end_ms: int | None) -> CandleArrays:
    """Candles whose open time is in [start_ms, end_ms)."""
    lo = 0 if start_ms is None else int(np.searchsorted(arr.open_time, start_ms, side="left"))
    hi = len(arr) if end_ms is None else int(np.searchsorted(arr.open_time, end_ms, side="left"))
    return arr.take(slice(lo, hi))


# ---------------------------------------------------------------------------- which symbol

SYMBOL_NAME = re.compile(r"^[A-Z0-9]{5,20}$")
#: Binance public data (data.binance.vision) and our download cache name kline files
#: ``<SYMBOL>-<interval>-YYYY-MM[-DD].<ext>`` (monthly/daily archives)
DATA_FILE = re.compile(r"^([A-Z0-9]{5,20})-(\d+[smhdwM])-\d{4}-\d{2}(?:-\d{2})?\.(?:csv|parquet|zip)$")
_INTERVAL_DIR = re.compile(r"^\d+[smhdwM]$")


def data_symbol(path: str | Path) -> tuple[str | None, str]:
    """The symbol a history file or directory holds, and how that is known: from the file
    names (``ETHUSDT-5m-2022-08.csv``), else from the layout (``.../ETHUSDT/5m/``). (None, why)
    when it cannot be told; a directory mixing symbols raises ``ValueError``."""
    p = Path(path)
    if p.is_file() or p.suffix in (".csv", ".parquet", ".zip"):
        m = DATA_FILE.match(p.name)
        if m:
            return m.group(1), f"file name {p.name}"
        parent = p.parent
        if _INTERVAL_DIR.match(parent.name) and SYMBOL_NAME.match(parent.parent.name):
            return parent.parent.name, f"directory {parent.parent.name}/{parent.name}"
        return None, f"{p.name} does not name its symbol"
    if p.is_dir():
        symbols = sorted({m.group(1) for f in p.iterdir() if (m := DATA_FILE.match(f.name))})
        if len(symbols) > 1:
            raise ValueError(f"{p} mixes data of several symbols ({', '.join(symbols)}): one symbol per directory")
        if symbols:
            return symbols[0], f"file names in {p.name}/"
        if _INTERVAL_DIR.match(p.name) and SYMBOL_NAME.match(p.parent.name):
            return p.parent.name, f"directory {p.parent.name}/{p.name}"
        if SYMBOL_NAME.match(p.name):
            return p.name, f"directory {p.name}"
    return None, f"{p.name} does not name its symbol"


def data_symbol_problem(path: str | Path, symbol: str) -> str | None:
    """A clear refusal when ``path`` holds another symbol's data than ``symbol`` (None: they
    agree, or the data does not say). Trading or backtesting BTCUSDT on ETHUSDT prices would
    report numbers that mean nothing."""
    try:
        held, how = data_symbol(path)
    except ValueError as exc:
        return str(exc)
    if held is not None and held != symbol.upper():
        return (
            f"{Path(path).name} holds {held} data (from its {how}), not {symbol.upper()}: "
            f"choose {symbol.upper()} data or use symbol {held}"
        )
    return None
