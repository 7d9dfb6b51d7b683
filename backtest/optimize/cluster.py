"""``--backend dask``: the same batches on a Dask distributed cluster.

Why Dask rather than Ray: ``Client.scatter(job, broadcast=True)`` puts the data on every worker
once and tasks refer to it by future, exactly the "ship once per worker" the local executor does
with its initializer; ``distributed`` is pure Python (wheels for every Python the project runs,
no native object store to size), and ``LocalCluster`` gives the tests a real scheduler and real
worker processes over TCP. Ray's object store would do the same job but brings a large native
runtime for no gain here.

Each worker keeps one workspace cache per job (keyed by the scattered job's key), so indicators
and signals are computed once per worker and window, as locally. Results are identical to the
local run because both call ``tradeconsole.backtest.optimize.run.evaluate_batch``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from tradeconsole.backtest.optimize.run import (
    Job,
    Window,
    WorkspaceCache,
    ensure_strategy,
    evaluate_batch,
    reference_rows,
)

__all__ = ["DaskExecutor"]

_CACHES: dict[str, WorkspaceCache] = {}


def _task(job: Job, job_key: str, window: Window, points: list[dict[str, float]]) -> list[dict[str, Any]]:
    if job_key not in _CACHES:
        _CACHES.clear()  # a long-lived worker keeps the workspaces of the latest job only
    cache = _CACHES.setdefault(job_key, {})
    ensure_strategy(job)
    return evaluate_batch(job, cache, window, points)


def _reference_task(job: Job, window: Window, points: list[dict[str, float]]) -> list[dict[str, Any]]:
    ensure_strategy(job)
    return reference_rows(job, window, points)


class DaskExecutor:
    """Submit batches to the scheduler at ``address``; the job is scattered to every worker once."""

    def __init__(self, job: Job, address: str) -> None:
        try:
            from distributed import Client
        except ImportError as exc:  # the optional extra
            from tradeconsole.core.errors import EnvironmentFailure

            raise EnvironmentFailure(
                f"--backend dask needs the cluster extra (pip install 'tradeconsole[cluster]'): {exc}"
            ) from None
        try:
            self.client = Client(address, timeout=10)
        except OSError as exc:
            from tradeconsole.core.errors import EnvironmentFailure

            raise EnvironmentFailure(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self.job_future = self.client.scatter(job, broadcast=True)
        self.job_key = self.job_future.key
        nworkers = len(self.client.scheduler_info().get("workers", {})) or 1
        self.in_flight = 2 * nworkers

    def run(self, window: Window, batches: Iterable[list[dict[str, float]]]) -> Iterator[tuple[list[Any], list[Any]]]:
        from distributed import as_completed

        it = iter(batches)
        futs = {}
        for b in it:
            futs[self.client.submit(_task, self.job_future, str(self.job_key), window, b, pure=False)] = b
            if len(futs) >= self.in_flight:
                break
        ac = as_completed(list(futs))
        try:
            for f in ac:
                b = futs.pop(f)
                yield b, f.result()
                nxt = next(it, None)
                if nxt is not None:
                    nf = self.client.submit(_task, self.job_future, str(self.job_key), window, nxt, pure=False)
                    futs[nf] = nxt
                    ac.add(nf)
        finally:
            for f in futs:
                f.cancel()

    def references(self, tasks: list[tuple[Window, dict[str, float]]]) -> list[dict[str, Any]]:
        """The one path's scalar metrics for each (window, params), on the cluster."""
        futs = [self.client.submit(_reference_task, self.job_future, w, [p], pure=False) for w, p in tasks]
        return [f.result()[0] for f in futs]

    def close(self) -> None:
        self.client.close()
