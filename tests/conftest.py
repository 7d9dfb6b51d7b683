"""Shared test fixtures: paths to the real Binance data in ../shared (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT.parent / "shared" / "data" / "binance" / "spot" / "ETHUSDT").resolve()
DATA_5M = SHARED_DATA / "5m"
DATA_1H = SHARED_DATA / "1h"


def _require(path: Path) -> Path:
    if not path.is_dir():
        pytest.fail(f"real market data missing: {path} (tests read ../shared/data next to the repo)")
    return path


@pytest.fixture(scope="session")
def data_5m() -> Path:
    return _require(DATA_5M)


@pytest.fixture(scope="session")
def data_1h() -> Path:
    return _require(DATA_1H)


@pytest.fixture(scope="session")
def candles_1h(data_1h):
    from tradeconsole.backtest.data import load_candles

    return load_candles(data_1h, interval="1h")[0]


@pytest.fixture(scope="session")
def candles_5m(data_5m):
    from tradeconsole.backtest.data import load_candles

    return load_candles(data_5m, interval="5m")[0]


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    """Every test gets its own TRADECONSOLE_DATA_DIR so nothing touches the user's files."""
    monkeypatch.setenv("TRADECONSOLE_DATA_DIR", str(tmp_path_factory.mktemp("tcdata")))
