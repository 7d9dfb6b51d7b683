"""tradeconsole: the public API for users' own code.

This file is the ``tradeconsole`` package itself (``pyproject.toml`` maps the import name
``tradeconsole`` onto ``core/public/``, and ``tradeconsole.core``/``.backtest``/``.infra``/``.tui``
onto the repository's top-level folders). What is named here is the stable surface a strategy
file or a research notebook should use::

    from tradeconsole import Strategy, StrategyParams, param, ta, atr, trailing
    from tradeconsole import Backtest, load_candles

Names resolve lazily (PEP 562), so ``import tradeconsole.core.domain`` -- which imports this
package first -- stays as light as before and no layer of the project imports another through it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # the strategy API (docs/strategies.md)
    **{
        name: "tradeconsole.core.strategies"
        for name in (
            "ATR",
            "Fixed",
            "IndicatorLevel",
            "Param",
            "PerSide",
            "Sizing",
            "Strategy",
            "StrategyDefinitionError",
            "StrategyParams",
            "Trailing",
            "atr",
            "custom",
            "equity_fraction",
            "fixed",
            "fixed_notional",
            "level",
            "make_strategy",
            "param",
            "param_ranges",
            "per_side",
            "register_strategy",
            "risk_per_trade",
            "ta",
            "trailing",
        )
    },
    # the domain types a strategy sees
    "Candle": "tradeconsole.core.domain",
    "Position": "tradeconsole.core.domain",
    "Side": "tradeconsole.core.domain",
    "CandleArrays": "tradeconsole.core.candles",
    # history and backtests
    "load_candles": "tradeconsole.backtest.data",
    "DataError": "tradeconsole.backtest.data",
    "Backtest": "tradeconsole.backtest.facade",
    "BacktestOutcome": "tradeconsole.backtest.facade",
    "run_backtest": "tradeconsole.backtest.runner",
    "BacktestResult": "tradeconsole.backtest.runner",
    "compute_metrics": "tradeconsole.backtest.metrics",
}

__all__ = sorted([*_EXPORTS, "__version__"])  # noqa: PLE0605 - from _EXPORTS, so the two cannot drift


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tradeconsole' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return __all__
