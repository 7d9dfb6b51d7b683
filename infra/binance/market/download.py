"""``tradeconsole data download``: fill the local kline cache from Binance REST.

The cache is ``tradeconsole.core.paths.history_cache_dir(symbol, interval, market)``: one Parquet file per
UTC month, ``<SYMBOL>-<interval>-YYYY-MM.parquet``, columns ``open_time, open, high, low, close,
volume, close_time`` (int64 ms / float64), which ``tradeconsole.backtest.data.load_candles`` reads as is.

Why it can be interrupted and re-run at will:

* only closed candles are stored (open time before the open time of the exchange's current
  candle, by the *server's* clock), so a stored candle never changes again;
* before fetching, the requested range is compared with what the cache holds, and only the
  missing runs are requested; a second run over a cached range makes no kline request at all;
* every page is merged into its month file (deduplicated by open time, kept sorted) and written
  atomically (temporary file, fsync, rename), so a crash or Ctrl-C loses at most one page and
  never leaves a half-written file;
* ranges the exchange itself has no candles for (before the listing, maintenance outages) are
  recorded once the exchange has answered for them, in ``<SYMBOL>-<interval>-gaps.json`` next
  to the Parquet files (``load_candles`` only reads .csv/.parquet), so they are not requested
  again and are reported as exchange gaps rather than as holes in the cache;
* afterwards the range is checked for continuity: every grid point is either cached or a
  known exchange gap, otherwise the run reports the holes and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.domain import Candle, interval_ms, iso_ms, parse_utc_ms
from tradeconsole.core.paths import history_cache_dir
from tradeconsole.infra.binance.http.rest import KlineRestClient, RestError
from tradeconsole.infra.binance.market.klines import align_down, align_up

__all__ = [
    "CacheError",
    "DownloadResult",
    "HistoryCache",
    "Progress",
    "Offline",
    "cli_main",
    "download_history",
    "parse_date",
]

log = logging.getLogger(__name__)

_COLS = ("open_time", "open", "high", "low", "close", "volume", "close_time")


class CacheError(RuntimeError):
    """The cache directory holds a file we cannot trust (unreadable, off the interval grid)."""


# ====================================================================== time helpers


parse_date = parse_utc_ms  # the CLI's date syntax, shared with `tradeconsole backtest`


def _month_of(ms: int) -> tuple[int, int]:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.year, dt.month


def _month_bounds(ym: tuple[int, int]) -> tuple[int, int]:
    y, m = ym
    start = datetime(y, m, 1, tzinfo=UTC)
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _months(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Months intersecting ``[start_ms, end_ms)``."""
    out: list[tuple[int, int]] = []
    ym = _month_of(start_ms)
    while _month_bounds(ym)[0] < end_ms:
        out.append(ym)
        ym = (ym[0] + (ym[1] == 12), ym[1] % 12 + 1)
    return out


def _runs(points: np.ndarray, step: int) -> list[tuple[int, int]]:
    """Sorted grid points -> maximal runs ``[first, last + step)``."""
    if len(points) == 0:
        return []
    breaks = np.flatnonzero(np.diff(points) != step)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(points) - 1]))
    return [(int(points[a]), int(points[b]) + step) for a, b in zip(starts, ends, strict=True)]


def _merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


# ====================================================================== the cache


def _atomic_write(path: Path, write) -> None:
    """Write via ``write(tmp_path)``, fsync, then rename over ``path`` (atomic on POSIX)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


class HistoryCache:
    """Monthly Parquet files plus the exchange-gap manifest for one symbol/interval."""

    def __init__(self, directory: str | os.PathLike[str], symbol: str, interval: str) -> None:
        self.directory = Path(directory)
        self.symbol = symbol.upper()
        self.interval = interval
        self.step = interval_ms(interval)
        self._month: tuple[int, int] | None = None  # the one month kept in memory
        self._arrays: CandleArrays | None = None
        self._gaps: list[tuple[int, int]] | None = None
        self.files_written: set[Path] = set()

    # -- paths
    def month_path(self, ym: tuple[int, int]) -> Path:
        return self.directory / f"{self.symbol}-{self.interval}-{ym[0]:04d}-{ym[1]:02d}.parquet"

    @property
    def gaps_path(self) -> Path:
        return self.directory / f"{self.symbol}-{self.interval}-gaps.json"

    # -- reading
    def read_month(self, ym: tuple[int, int]) -> CandleArrays:
        """The cached candles of one month (empty if none), validated."""
        if self._month == ym and self._arrays is not None:
            return self._arrays
        path = self.month_path(ym)
        if not path.exists():
            return CandleArrays.from_candles([])
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path, columns=list(_COLS))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for damaged files
            raise CacheError(f"{path}: unreadable ({exc}); delete it and run the download again") from None
        arr = CandleArrays(
            *(
                np.asarray(table.column(c).to_numpy(), dtype=np.int64 if c.endswith("time") else np.float64)
                for c in _COLS
            )
        )
        return self._normalised(arr, str(path))

    def _normalised(self, arr: CandleArrays, name: str) -> CandleArrays:
        t = arr.open_time
        if len(t) and np.any((t - align_down(int(t[0]), self.interval)) % self.step):
            raise CacheError(f"{name}: candles off the {self.interval} grid; is this the right directory?")
        if len(t) > 1 and not np.all(np.diff(t) > 0):
            order = np.argsort(t, kind="stable")
            arr = arr.take(order)
            keep = np.concatenate(([True], np.diff(arr.open_time) != 0))
            arr = arr.take(keep)
        return arr

    def open_times(self, start_ms: int, end_ms: int) -> np.ndarray:
        """Cached open times in ``[start_ms, end_ms)``, sorted."""
        parts = []
        for ym in _months(start_ms, end_ms):
            t = self.read_month(ym).open_time
            parts.append(t[(t >= start_ms) & (t < end_ms)])
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """Ranges ``[start, end)`` the exchange has confirmed to hold no candles."""
        if self._gaps is None:
            self._gaps = []
            if self.gaps_path.exists():
                try:
                    doc = json.loads(self.gaps_path.read_text())
                    self._gaps = _merge_ranges((int(a), int(b)) for a, b in doc["gaps"])
                except (ValueError, KeyError, TypeError) as exc:
                    # only an optimisation: without it the ranges are simply asked for again
                    log.warning("%s: ignoring unreadable gap manifest (%s)", self.gaps_path, exc)
        return self._gaps

    def missing(self, start_ms: int, end_ms: int) -> np.ndarray:
        """Grid points in ``[start_ms, end_ms)`` neither cached nor known exchange gaps."""
        expected = np.arange(align_up(start_ms, self.interval), end_ms, self.step, dtype=np.int64)
        mask = ~np.isin(expected, self.open_times(start_ms, end_ms))
        for a, b in self.gaps:
            mask &= ~((expected >= a) & (expected < b))
        return expected[mask]

    # -- writing
    def add(self, candles: list[Candle]) -> int:
        """Merge closed candles into their month files (atomic rewrite of each touched month).
        Returns how many were new."""
        new = 0
        i = 0
        while i < len(candles):
            ym = _month_of(candles[i].open_time)
            _, month_end = _month_bounds(ym)
            j = i
            while j < len(candles) and candles[j].open_time < month_end:
                j += 1
            new += self._merge_month(ym, candles[i:j])
            i = j
        return new

    def _merge_month(self, ym: tuple[int, int], candles: list[Candle]) -> int:
        old = self.read_month(ym)
        add = CandleArrays.from_candles(candles)
        fresh = ~np.isin(add.open_time, old.open_time)
        n_new = int(fresh.sum())
        if n_new == 0:
            return 0
        merged = CandleArrays(*(np.concatenate((getattr(old, c), getattr(add, c)[fresh])) for c in _COLS))
        merged = self._normalised(merged, str(self.month_path(ym)))
        self._write_month(ym, merged)
        self._month, self._arrays = ym, merged
        return n_new

    def _write_month(self, ym: tuple[int, int], arr: CandleArrays) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.directory.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {c: pa.array(getattr(arr, c), type=pa.int64() if c.endswith("time") else pa.float64()) for c in _COLS}
        )
        path = self.month_path(ym)
        _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
        self.files_written.add(path)

    def add_gaps(self, ranges: list[tuple[int, int]]) -> None:
        if not ranges:
            return
        self._gaps = _merge_ranges([*self.gaps, *ranges])
        self.directory.mkdir(parents=True, exist_ok=True)
        doc = {
            "symbol": self.symbol,
            "interval": self.interval,
            "note": "ranges [start, end) in ms with no candles on the exchange",
            "gaps": [[a, b] for a, b in self._gaps],
        }
        _atomic_write(self.gaps_path, lambda tmp: tmp.write_text(json.dumps(doc, indent=1)))


# ====================================================================== progress


class Progress:
    """A one-line progress bar on a terminal; silent otherwise (logs and pipes stay clean)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = max(total, 0)
        self.done = 0
        self.label = label
        self._last = 0.0

    def advance(self, n: int) -> None:
        self.done = min(self.total, self.done + n)
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.1 or self.done == self.total):
            self._last = now
            self._draw()

    def _draw(self) -> None:
        frac = self.done / self.total if self.total else 1.0
        width = 30
        filled = int(frac * width)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {frac * 100:5.1f}% "
            f"{self.done:,}/{self.total:,} candles"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.total:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


# ====================================================================== the download


@dataclass(slots=True)
class DownloadResult:
    symbol: str
    interval: str
    market: str
    directory: Path
    start_ms: int  # first grid point of the range
    end_ms: int  # exclusive; capped at the exchange's current (open) candle
    new_candles: int = 0
    kline_requests: int = 0
    files_written: list[Path] = field(default_factory=list)
    exchange_gaps: list[tuple[int, int]] = field(default_factory=list)  # within the range
    missing: list[tuple[int, int]] = field(default_factory=list)  # unexplained holes left

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        lines = [
            f"{self.symbol} {self.interval} {self.market}: {self.new_candles} new candle(s) in "
            f"{self.kline_requests} request(s) -> {self.directory}"
        ]
        if self.end_ms > self.start_ms:
            lines.append(f"range {iso_ms(self.start_ms)} .. {iso_ms(self.end_ms)} (end exclusive)")
        for a, b in self.exchange_gaps:
            lines.append(f"exchange has no candles {iso_ms(a)} .. {iso_ms(b)}")
        for a, b in self.missing:
            lines.append(f"MISSING {iso_ms(a)} .. {iso_ms(b)}: rerun to fetch")
        if self.complete:
            lines.append("cache is continuous over the range")
        return "\n".join(lines)


def download_history(
    rest: KlineRestClient,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    partial: list[DownloadResult] | None = None,
) -> DownloadResult:
    """Make the cache hold every closed candle with ``start_ms <= open_time < end_ms`` (``end_ms``
    None = up to the current candle), fetching only what is missing. Raises ``RestError`` if
    Binance keeps failing; what was fetched until then stays cached (and is counted in the
    result appended to ``partial``, which is filled in even when this raises)."""
    symbol = symbol.upper()
    step = interval_ms(interval)
    cache_dir = Path(directory) if directory is not None else history_cache_dir(symbol, interval, rest.market)
    cache = HistoryCache(cache_dir, symbol, interval)
    current_open = align_down(rest.server_time_ms(), interval)
    lo = align_up(start_ms, interval)
    hi = current_open if end_ms is None else min(align_up(end_ms, interval), current_open)
    result = DownloadResult(symbol, interval, rest.market, cache_dir, lo, max(lo, hi))
    if partial is not None:  # lets a caller say what was cached when this raises half-way
        partial.append(result)
    if hi <= lo:
        return result
    requests_before = rest.stats.kline_requests
    todo = cache.missing(lo, hi)
    if progress is not None:
        progress.total = len(todo)
    try:
        for a, b in _runs(todo, step):
            for page in rest.iter_pages(symbol, interval, a, b):
                result.new_candles += cache.add(page.candles)
                got = np.fromiter((c.open_time for c in page.candles), dtype=np.int64, count=len(page.candles))
                span = np.arange(page.start, page.covered_until, step, dtype=np.int64)
                cache.add_gaps(_runs(span[~np.isin(span, got)], step))
                if progress is not None:
                    progress.advance(len(span))
    finally:
        if progress is not None:
            progress.close()
        result.kline_requests = rest.stats.kline_requests - requests_before
        result.files_written = sorted(cache.files_written)
    result.exchange_gaps = [(max(a, lo), min(b, hi)) for a, b in cache.gaps if a < hi and b > lo]
    result.missing = _runs(cache.missing(lo, hi), step)
    return result


def _check_resolves(url: str) -> None:
    """Raise ``Offline`` at once when the host of ``url`` does not resolve: without DNS every
    request would only fail again, and retrying for a minute with a warning per attempt tells
    the user nothing the first failure did not."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Offline(f"cannot resolve {host} ({exc.strerror or exc}): no network or DNS") from None


class Offline(RuntimeError):
    """The exchange's host name does not resolve (no network, no DNS)."""


def _cached_note(result: DownloadResult | None) -> str:
    """The truth about what a failed run left in the cache."""
    if result is None or result.new_candles == 0:
        return "nothing was downloaded"
    months = len(result.files_written)
    return (
        f"{result.new_candles} new candle(s) in {months} month file(s) were cached; "
        "run the same command again to resume"
    )


def cli_main(args: argparse.Namespace) -> int:
    """``tradeconsole data download SYMBOL INTERVAL --from DATE [--to DATE] [--market M]``.
    Exit codes: 0 cache continuous over the range, 1 download failed or holes remain (rerun to
    resume), 2 bad arguments. Failures are raised as ``tradeconsole.tui.cli`` errors (one line each)."""
    from tradeconsole.core.errors import EnvironmentFailure, UserError
    from tradeconsole.infra.binance.http.endpoints import make_client, resolve_endpoints
    from tradeconsole.infra.settings import load_settings

    interval_ms(args.interval)
    start = parse_date(args.date_from)
    end = parse_date(args.date_to) if args.date_to else None
    if end is not None and end <= start:
        raise UserError("--to must be after --from")
    endpoints = resolve_endpoints(load_settings(getattr(args, "config", None)).binance, os.environ)
    base = endpoints.futures_rest if args.market == "futures" else endpoints.spot_rest

    def sleep_unless_offline(seconds: float) -> None:
        # before each retry: a lost name resolution ends the run now instead of after every retry
        _check_resolves(base)
        time.sleep(seconds)

    partial: list[DownloadResult] = []
    try:
        _check_resolves(base)
        rest = KlineRestClient(make_client(endpoints), args.market, sleep=sleep_unless_offline)
        progress = Progress(0, f"{args.symbol.upper()} {args.interval}")
        result = download_history(rest, args.symbol, args.interval, start, end, progress=progress, partial=partial)
    except Offline as exc:
        raise EnvironmentFailure(f"{exc}; {_cached_note(partial[0] if partial else None)}") from None
    except (RestError, CacheError) as exc:
        raise EnvironmentFailure(f"{exc}; {_cached_note(partial[0] if partial else None)}") from None
    print(result.summary())
    return 0 if result.complete else 1
