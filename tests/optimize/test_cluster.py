"""``--backend dask`` on a real local Dask cluster (scheduler + 2 worker processes over TCP on
127.0.0.1) gives exactly the local run's results."""

from __future__ import annotations

import json

import pytest
from tradeconsole.tui.cli import main

pytestmark = pytest.mark.xdist_group("optimize")

try:
    from distributed import LocalCluster
except ImportError as exc:  # the cluster extra is part of dev; skip only when it is absent
    pytest.skip(f"distributed (the cluster extra) is not importable: {exc}", allow_module_level=True)


def _cached_windows() -> int:
    from tradeconsole.backtest.optimize import cluster

    return sum(len(c) for c in cluster._CACHES.values())


def test_dask_cluster_equals_local(capsys, data_5m):
    args = [
        "optimize",
        "--strategy",
        "basic",
        "--data",
        str(data_5m),
        "--from",
        "2022-08-01",
        "--to",
        "2022-10-15",
        "--param",
        "rsi_oversold=25,30,35",
        "--param",
        "rsi_overbought=65,75",
        "--param",
        "stop_loss_pct=0.01,0.02",
        "--folds",
        "2",
        "--json",
        "--mode",
        "realistic",
    ]
    assert main([*args, "--workers", "2"]) == 0
    local = json.loads(capsys.readouterr().out)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, scheduler_port=0
    ) as cluster:
        code = main([*args, "--backend", "dask", "--address", cluster.scheduler_address])
        out, err = capsys.readouterr()
        assert code == 0, err
        with cluster.get_client() as client:  # both workers took part, each with its own cached workspaces
            caches = client.run(_cached_windows)
            assert len(caches) == 2 and all(n > 0 for n in caches.values()), caches
    remote = json.loads(out)
    for k in ("elapsed_s", "results_file"):
        local.pop(k), remote.pop(k)
    assert remote == local
    assert remote["evaluated"] == 12


def test_unreachable_scheduler_is_one_line_exit_1(capsys, data_5m):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    code = main(
        [
            "optimize",
            "--strategy",
            "basic",
            "--data",
            str(data_5m),
            "--to",
            "2022-08-10",
            "--param",
            "rsi_oversold=25,30",
            "--folds",
            "0",
            "--backend",
            "dask",
            "--address",
            f"tcp://127.0.0.1:{port}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the Dask scheduler" in err
