"""Where tradeconsole keeps its files: the data directory (history cache, journal, spool).

``TRADECONSOLE_DATA_DIR`` overrides the platform's user data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "history_cache_dir", "journal_path", "spool_dir", "strategies_dir", "strategy_checks_path"]


def data_dir() -> Path:
    env = os.environ.get("TRADECONSOLE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("tradeconsole", appauthor=False))


def history_cache_dir(symbol: str, interval: str, market: str = "spot") -> Path:
    """``<data>/binance/<market>/<SYMBOL>/<interval>/``: monthly Parquet files
    ``<SYMBOL>-<interval>-YYYY-MM.parquet`` readable by ``tradeconsole.backtest.data.load_candles``."""
    return data_dir() / "binance" / market / symbol.upper() / interval


def journal_path(name: str = "journal.sqlite") -> Path:
    return data_dir() / name


def spool_dir() -> Path:
    return data_dir() / "spool"


def strategies_dir() -> Path:
    """``<data>/strategies/``: strategy files found by every command without ``--strategy-path``."""
    return data_dir() / "strategies"


def strategy_checks_path() -> Path:
    """``<data>/strategy-checks.json``: which strategy files (by content hash) passed
    ``tradeconsole strategy check``, so a backtest can say when its strategy never did."""
    return data_dir() / "strategy-checks.json"
