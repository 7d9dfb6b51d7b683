"""The strategy API and the registry of available strategies.

Everything a strategy file needs is importable from here (``from tradeconsole.core.strategies import
Strategy, StrategyParams, param, ta, ...``); the names in ``__all__`` are the public, stable API
(documented in docs/strategies.md). The registry holds the built-ins; strategies loaded from files
or entry points (``tradeconsole.backtest.strategy_loader``; core itself reads no files) are added with
``register_strategy`` and are then found by ``make_strategy`` everywhere (backtest, engine, CLI).
"""

from __future__ import annotations

from typing import Any

from tradeconsole.core.domain import Candle, Position, Side
from tradeconsole.core.strategies.base import (
    ATR,
    Fixed,
    IndicatorLevel,
    Param,
    PerSide,
    Sizing,
    Strategy,
    StrategyDefinitionError,
    StrategyParams,
    Trailing,
    atr,
    custom,
    equity_fraction,
    fixed,
    fixed_notional,
    level,
    param,
    param_ranges,
    per_side,
    risk_per_trade,
    ta,
    trailing,
)
from tradeconsole.core.strategies.basic import BasicStrategy
from tradeconsole.core.strategies.engulfing import EngulfingStrategy

#: name -> class of every strategy available in this process (built-ins first)
STRATEGIES: dict[str, type[Strategy]] = {
    BasicStrategy.name: BasicStrategy,
    EngulfingStrategy.name: EngulfingStrategy,
}
#: name -> where it came from ("built-in", a file path, "entry point NAME (dist)")
SOURCES: dict[str, str] = {name: "built-in" for name in STRATEGIES}

__all__ = [
    "ATR",
    "Candle",
    "Fixed",
    "IndicatorLevel",
    "Param",
    "PerSide",
    "Position",
    "STRATEGIES",
    "SOURCES",
    "Side",
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
]


def register_strategy(cls: type[Strategy], source: str) -> None:
    """Make ``cls`` available by its ``name``. A second class under a name already taken by a
    different source is refused (a user file cannot silently replace ``basic``)."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyDefinitionError(f"{source}: {cls!r} is not a Strategy subclass")
    have = STRATEGIES.get(cls.name)
    if have is not None and have is not cls and SOURCES.get(cls.name) != source:
        raise StrategyDefinitionError(
            f"{source}: strategy name {cls.name!r} is already taken by {SOURCES.get(cls.name, 'another strategy')}"
        )
    STRATEGIES[cls.name] = cls
    SOURCES[cls.name] = source


def make_strategy(name: str, **overrides: Any) -> Strategy:
    """Instantiate a registered strategy by name with parameter overrides."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}") from None
    return cls.with_overrides(**overrides)
