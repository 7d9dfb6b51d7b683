"""Choosing the data source: the network probe, history-cache candidates, replay paths that follow
a symbol/interval switch."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from tradeconsole.tui.runtime import RuntimeOptions
from tradeconsole.tui.startup import probe_binance, replay_candidates, retarget_replay, symbol_problem, with_market

pytestmark = pytest.mark.timeout(30)


def test_probe_reports_an_unreachable_host(monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    monkeypatch.setenv("TRADECONSOLE_BINANCE_FUTURES_REST", f"http://127.0.0.1:{port}/fapi")
    reason = probe_binance(RuntimeOptions(), timeout=2)
    assert reason is not None and f"127.0.0.1:{port}" in reason


def test_probe_accepts_a_listening_host(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        monkeypatch.setenv("TRADECONSOLE_BINANCE_SPOT_REST", f"http://127.0.0.1:{s.getsockname()[1]}/api")
        assert probe_binance(RuntimeOptions(market="spot"), timeout=2) is None


def test_replay_candidates_are_cache_dirs_with_data(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADECONSOLE_DATA_DIR", str(tmp_path))
    assert replay_candidates("ETHUSDT", "1h") == []
    d = tmp_path / "binance" / "spot" / "ETHUSDT" / "1h"
    d.mkdir(parents=True)
    assert replay_candidates("ETHUSDT", "1h") == []  # an empty directory is no candidate
    (d / "ETHUSDT-1h-2022-01.parquet").write_bytes(b"")
    assert replay_candidates("ETHUSDT", "1h") == [str(d)]


def test_retarget_follows_the_public_data_layout(data_1h: Path, data_5m: Path):
    assert retarget_replay(str(data_1h), "ETHUSDT", "ETHUSDT", "1h", "5m") == str(data_5m)
    # a single month file: 5m data for January 2022 is not there, so no guess is made
    assert retarget_replay(str(data_1h / "ETHUSDT-1h-2022-01.csv"), "ETHUSDT", "ETHUSDT", "1h", "5m") is None
    assert retarget_replay(str(data_5m / "ETHUSDT-5m-2022-08.csv"), "ETHUSDT", "ETHUSDT", "5m", "1h") == str(
        data_1h / "ETHUSDT-1h-2022-08.csv"
    )
    assert retarget_replay(str(data_1h), "ETHUSDT", "BTCUSDT", "1h", "1h") is None


def test_symbol_validation_and_options_copy():
    assert symbol_problem("ethusdt") is None
    assert symbol_problem("ETH") is not None and symbol_problem("ETH/USDT") is not None
    opts = RuntimeOptions(strategies=[("basic", "5m"), ("engulfing", "5m")], replay="x")
    new = with_market(opts, symbol="btcusdt", interval="1h")
    assert new.symbol == "BTCUSDT" and new.strategies == [("basic", "1h"), ("engulfing", "1h")]
    assert opts.strategies == [("basic", "5m"), ("engulfing", "5m")]  # the original is untouched


def test_main_rejects_a_missing_replay_path(tmp_path: Path, capsys):
    from tradeconsole.tui.cli import main

    assert main(["--replay", str(tmp_path / "nothing.csv")]) == 2
    assert "no such replay" in capsys.readouterr().err
