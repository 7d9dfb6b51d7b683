"""Strategy registry: name -> class. Add a strategy by writing a module and listing it here."""

from __future__ import annotations

from typing import Any

from core.strategies.base import Strategy, StrategyParams
from core.strategies.basic import BasicStrategy
from core.strategies.engulfing import EngulfingStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    BasicStrategy.name: BasicStrategy,
    EngulfingStrategy.name: EngulfingStrategy,
}

__all__ = ["STRATEGIES", "Strategy", "StrategyParams", "make_strategy"]


def make_strategy(name: str, **overrides: Any) -> Strategy:
    """Instantiate a registered strategy by name with parameter overrides."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}") from None
    return cls.with_overrides(**overrides)
