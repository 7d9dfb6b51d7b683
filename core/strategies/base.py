"""The strategy interface: a small class that looks at one closed candle and its indicators and
says whether to open a position.

Strategies decide entries only. Exits (stop-loss, take-profit, liquidation) belong to the broker,
which places them right after an entry, exactly as a live exchange would hold protective orders.
That keeps a strategy a pure function of the bar: the same candles give the same signals in a
backtest, in paper trading and live, because all three call the very same ``entry_signal``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from core.domain import Candle, Side
from core.indicators import IndicatorValues

__all__ = ["Strategy", "StrategyParams"]


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Parameters every strategy has: protective levels and position size.

    ``stop_loss_pct`` and ``take_profit_pct`` are fractions of the entry price (0.015 = 1.5%),
    the same for longs and shorts. ``stake_fraction`` is the share of equity committed per trade
    (1.0 = whole equity, as the original research ran it).
    """

    stop_loss_pct: float = 0.015
    take_profit_pct: float = 0.03
    stake_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.stop_loss_pct < 1:
            raise ValueError("stop_loss_pct must be between 0 and 1 (0.015 = 1.5%)")
        if not 0 < self.take_profit_pct < 10:
            raise ValueError("take_profit_pct must be positive (0.03 = 3%)")
        if not 0 < self.stake_fraction <= 1:
            raise ValueError("stake_fraction must be in (0, 1]")


class Strategy(ABC):
    """Base class. Subclasses set ``name``, ``default_interval``, ``Params`` and implement
    ``entry_signal``."""

    name: ClassVar[str]
    default_interval: ClassVar[str]
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, params: StrategyParams | None = None) -> None:
        self.params = params if params is not None else self.Params()

    @classmethod
    def with_overrides(cls, **overrides: Any) -> Strategy:
        """Build with default parameters, replacing the given ones (unknown names raise)."""
        known = {f.name for f in fields(cls.Params)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(
                f"unknown parameter(s) for strategy {cls.name!r}: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(replace(cls.Params(), **overrides))

    @abstractmethod
    def entry_signal(self, candle: Candle, ind: IndicatorValues) -> Side | None:
        """Side to open on this closed candle, or None. Comparisons with NaN (warm-up) are False,
        so no signal is produced before the indicators are defined."""

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, **{f.name: getattr(self.params, f.name) for f in fields(self.params)}}
