"""The strategy interface: a small class that looks at one closed candle and its indicators and
says whether to open a position.

Strategies decide entries only. Exits (stop-loss, take-profit, liquidation) belong to the broker,
which places them right after an entry, exactly as a live exchange would hold protective orders.
That keeps a strategy a pure function of the bar: the same candles give the same signals in a
backtest, in paper trading and live, because all three call the very same ``entry_signal``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from core.domain import Candle, Side
from core.indicators import IndicatorValues

__all__ = ["Param", "Strategy", "StrategyParams", "param", "param_ranges"]


@dataclass(frozen=True, slots=True)
class Param:
    """The declared range of one strategy parameter: the one place a value typed by the user
    (``--param``, ``--stop-loss``) is checked against, so ``nan`` or ``rsi_overbought=-5`` cannot
    silently disable or invert a strategy."""

    default: float
    low: float
    high: float
    low_open: bool = False  # True: ``low`` itself is not allowed
    high_open: bool = False
    doc: str = ""

    def allowed(self, name: str) -> str:
        return (f"{self.low:g} {'<' if self.low_open else '<='} {name} "
                f"{'<' if self.high_open else '<='} {self.high:g}")

    def check(self, name: str, value: object) -> None:
        """ValueError naming the allowed range unless ``value`` is a finite number inside it."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, not {type(value).__name__}")
        v = float(value)
        ok = math.isfinite(v) and (self.low < v if self.low_open else self.low <= v) and \
            (v < self.high if self.high_open else v <= self.high)
        if not ok:
            raise ValueError(f"{name}={v:g} is out of range: allowed {self.allowed(name)}"
                             + (f" ({self.doc})" if self.doc else ""))


def param(default: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
          doc: str = "") -> Any:
    """A dataclass field with its declared range (see ``Param``)."""
    return field(default=default, metadata={"param": Param(default, low, high, low_open, high_open, doc)})


def param_ranges(params_cls: type[StrategyParams]) -> dict[str, Param]:
    """Name -> declared range of every parameter of a strategy's ``Params`` class."""
    return {f.name: f.metadata["param"] for f in fields(params_cls) if "param" in f.metadata}


#: RSI is bounded by definition
RSI = {"low": 0.0, "high": 100.0, "doc": "RSI is between 0 and 100"}
#: CCI(20) = (TP - SMA) / (0.015 * mean deviation) cannot leave +-n/0.03 = +-666.7 for n = 20
CCI = {"low": -1000.0, "high": 1000.0, "doc": "CCI(20) never leaves about +-667"}


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Parameters every strategy has: protective levels and position size.

    ``stop_loss_pct`` and ``take_profit_pct`` are fractions of the entry price (0.015 = 1.5%),
    the same for longs and shorts. ``stake_fraction`` is the share of equity committed per trade
    (1.0 = whole equity, as the original research ran it). Every field is declared with
    ``param`` and checked against its range on construction.
    """

    stop_loss_pct: float = param(0.015, 0.0, 1.0, low_open=True, high_open=True, doc="0.015 = 1.5%")
    take_profit_pct: float = param(0.03, 0.0, 10.0, low_open=True, high_open=True, doc="0.03 = 3%")
    stake_fraction: float = param(1.0, 0.0, 1.0, low_open=True, doc="1.0 = whole equity")

    def __post_init__(self) -> None:
        for name, spec in param_ranges(type(self)).items():
            spec.check(name, getattr(self, name))


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
