"""Running an optimisation: windows, executors, searches, resumable rows.

Executors evaluate batches of parameter points on a window and ship the data *once per worker*:

* ``LocalExecutor`` - ``concurrent.futures.ProcessPoolExecutor`` whose initializer receives the
  candles once; each worker builds one ``Workspace`` per window and reuses it (indicators,
  per-bar tuples, signal series) for every batch. ``workers=1`` runs in this process.
* ``tradeconsole.backtest.optimize.cluster.DaskExecutor`` - the same batches on a Dask cluster.

Workers ignore SIGINT: Ctrl-C reaches this process only, which stops submitting, keeps every
finished row (the results file is written as rows arrive) and exits 130.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from tradeconsole.backtest.optimize.evaluate import Workspace
from tradeconsole.backtest.optimize.stats import block_stats, returns_of
from tradeconsole.backtest.optimize.store import scalar_row
from tradeconsole.core.broker import BrokerSettings
from tradeconsole.core.candles import CandleArrays

__all__ = ["Job", "LocalExecutor", "Window", "evaluate_batch", "Progress"]


@dataclass(frozen=True)
class Window:
    """Trade candles ``[start, end)``; ``[0, start)`` only warms the indicators up, and nothing at
    or after ``end`` is given to the backtest (``window_with_warmup``'s rule, by index)."""

    name: str
    start: int
    end: int


@dataclass(frozen=True)
class Job:
    """What every worker needs once: the data and the fixed settings of the run."""

    candles: CandleArrays
    strategy: str
    fill_model: str
    settings: BrokerSettings
    symbol: str
    interval: str
    blocks: int  # PBO blocks kept for the "full" window (0: none)
    #: where a user strategy was found (``--strategy-path``): a worker process registers it again
    strategy_paths: tuple[str, ...] = ()


def ensure_strategy(job: Job) -> None:
    """Register the job's strategy in this process if it is not (a fresh worker or Dask process
    knows only the built-ins): the same search as the CLI's (paths, user directory, entry points)."""
    from tradeconsole.core.strategies import STRATEGIES

    if job.strategy not in STRATEGIES:
        from tradeconsole.backtest.strategy_loader import load_strategies

        load_strategies(list(job.strategy_paths))


#: a process's workspaces by window (start, end): one per window, reused across batches
WorkspaceCache = dict[tuple[int, int], Workspace]

_STATE: dict[str, Any] = {}


def init_worker(job: Job, ignore_sigint: bool = True) -> None:
    """Per-process setup: keep the job (shipped once) and an empty workspace cache."""
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    ensure_strategy(job)
    _STATE["job"] = job
    _STATE["ws"] = {}


def _workspace(job: Job, w: Window, cache: WorkspaceCache) -> Workspace:
    key = (w.start, w.end)
    ws = cache.get(key)
    if ws is None:
        ws = cache[key] = Workspace(
            job.candles.take(slice(0, w.end)),
            job.strategy,
            job.fill_model,
            job.settings,
            warmup=w.start,
            symbol=job.symbol,
            interval=job.interval,
        )
    return ws


def evaluate_batch(
    job: Job, cache: WorkspaceCache, window: Window, points: list[dict[str, float]]
) -> list[dict[str, Any]]:
    """Scalar metrics (plus PBO block stats for the full window) of ``points`` on ``window``."""
    ws = _workspace(job, window, cache)
    out = []
    for p in points:
        m, result = ws.scalar_metrics(p)
        if job.blocks and window.name == "full":
            m["blocks"] = block_stats(returns_of(result.equity, job.settings.initial_cash), job.blocks)
        out.append(m)
    return out


def reference_rows(job: Job, window: Window, points: list[dict[str, float]]) -> list[dict[str, Any]]:
    """Scalar metrics of ``points`` through the one path, ``run_backtest`` (the self-check)."""
    from tradeconsole.backtest.optimize.evaluate import reference

    candles = job.candles.take(slice(0, window.end))
    return [
        scalar_row(
            reference(
                candles,
                job.strategy,
                p,
                fill_model=job.fill_model,
                settings=job.settings,
                warmup=window.start,
                symbol=job.symbol,
                interval=job.interval,
            )
        )
        for p in points
    ]


def _worker_batch(window: Window, points: list[dict[str, float]]) -> list[dict[str, Any]]:
    return evaluate_batch(_STATE["job"], _STATE["ws"], window, points)


def _worker_reference(window: Window, points: list[dict[str, float]]) -> list[dict[str, Any]]:
    return reference_rows(_STATE["job"], window, points)


class LocalExecutor:
    """Batches on local worker processes (or in this process with ``workers=1``)."""

    def __init__(self, job: Job, workers: int) -> None:
        self.job, self.workers = job, workers
        self._pool: ProcessPoolExecutor | None = None
        self._cache: WorkspaceCache = {}
        if workers > 1:
            import multiprocessing

            # Workers fork from a fork server that has imported the optimiser (numpy, numba, the
            # kernels' module) once: as cheap as fork, without forking this process, whose native
            # threads (BLAS, a Dask client, the test runner) could deadlock a forked child. numba
            # is named: tradeconsole.core.jit imports it only on first use, which would otherwise
            # cost every worker its ~0.3 s import.
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(
                [
                    "numba",
                    "tradeconsole.backtest.optimize.run",
                    "tradeconsole.core.broker_step",
                    "tradeconsole.backtest.metrics",
                ]
            )
            self._pool = ProcessPoolExecutor(
                max_workers=workers, initializer=init_worker, initargs=(job,), mp_context=ctx
            )

    def run(self, window: Window, batches: Iterable[list[dict[str, float]]]) -> Iterator[tuple[list[Any], list[Any]]]:
        """Yield (points, rows) per finished batch, at most 2 batches in flight per worker."""
        if self._pool is None:
            for b in batches:
                yield b, evaluate_batch(self.job, self._cache, window, b)
            return
        it = iter(batches)
        pending: dict[Future[Any], list[Any]] = {}
        try:
            for b in it:
                pending[self._pool.submit(_worker_batch, window, b)] = b
                if len(pending) >= 2 * self.workers:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    b = pending.pop(f)
                    yield b, f.result()
                    nxt = next(it, None)
                    if nxt is not None:
                        pending[self._pool.submit(_worker_batch, window, nxt)] = nxt
        finally:
            for f in pending:
                f.cancel()

    def references(self, tasks: list[tuple[Window, dict[str, float]]]) -> list[dict[str, Any]]:
        """The one path's scalar metrics for each (window, params), in parallel on the workers."""
        if self._pool is None:
            return [reference_rows(self.job, w, [p])[0] for w, p in tasks]
        futs = [self._pool.submit(_worker_reference, w, [p]) for w, p in tasks]
        return [f.result()[0] for f in futs]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class Progress:
    """A one-line bar with ETA on stderr when it is a terminal (silent otherwise)."""

    def __init__(
        self,
        label: str,
        total: int,
        stream: Any = None,
        on_update: Callable[[str, int, int], bool | None] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        # a caller with its own display (the console) gets the numbers, never a bar on its terminal
        self.on = on_update is None and bool(getattr(self.stream, "isatty", lambda: False)())
        self.label, self.total, self.done, self.t0 = label, total, 0, time.perf_counter()
        self.on_update = on_update  # e.g. the console's progress bar; returning False stops the run

    def add(self, k: int) -> None:
        self.done += k
        if self.on_update is not None and self.on_update(self.label, self.done, self.total) is False:
            raise KeyboardInterrupt  # the same path as Ctrl-C: finished rows are kept
        if not self.on:
            return
        el = time.perf_counter() - self.t0
        frac = self.done / self.total if self.total else 1.0
        eta = el / self.done * (self.total - self.done) if self.done else 0.0
        bar = "#" * int(frac * 30) + "-" * (30 - int(frac * 30))
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {el:5.1f}s ETA {eta:5.1f}s")
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()

    def end(self) -> None:
        if self.on and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()


def batched(points: list[dict[str, float]], size: int) -> Iterator[list[dict[str, float]]]:
    for i in range(0, len(points), size):
        yield points[i : i + size]


def evaluate_points(
    executor: Any,
    window: Window,
    points: list[dict[str, float]],
    lookup: Callable[[dict[str, float]], dict[str, Any] | None],
    record: Callable[[dict[str, float], dict[str, Any]], dict[str, Any]],
    progress: Progress | None = None,
    batch: int = 16,
) -> list[dict[str, Any]]:
    """Rows for ``points`` in order: taken from the store when already there, computed otherwise."""
    rows: dict[int, dict[str, Any]] = {}
    todo: list[tuple[int, dict[str, float]]] = []
    for i, p in enumerate(points):
        r = lookup(p)
        if r is not None:
            rows[i] = r
        else:
            todo.append((i, p))
    if progress is not None:
        progress.add(len(rows))
    index = {id(p): i for i, p in todo}
    for b, results in executor.run(window, batched([p for _, p in todo], batch)):
        for p, m in zip(b, results, strict=True):
            rows[index[id(p)]] = record(p, m)
        if progress is not None:
            progress.add(len(b))
    return [rows[i] for i in range(len(points))]
