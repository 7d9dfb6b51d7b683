"""``engulfing``: engulfing candles at RSI extremes (default interval 1h)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.domain import Candle, Side
from core.indicators import IndicatorValues
from core.strategies.base import RSI, Strategy, StrategyParams, param


@dataclass(frozen=True, slots=True)
class EngulfingParams(StrategyParams):
    rsi_oversold: float = param(25.0, **RSI)
    rsi_overbought: float = param(70.0, **RSI)


class EngulfingStrategy(Strategy):
    """Long on a bullish engulfing candle with RSI < oversold; short on a bearish engulfing
    candle with RSI > overbought (pattern definition in ``core.indicators``)."""

    name: ClassVar[str] = "engulfing"
    default_interval: ClassVar[str] = "1h"
    Params = EngulfingParams
    params: EngulfingParams

    def entry_signal(self, candle: Candle, ind: IndicatorValues) -> Side | None:
        p = self.params
        if ind.engulfing == 1 and ind.rsi < p.rsi_oversold:
            return Side.LONG
        if ind.engulfing == -1 and ind.rsi > p.rsi_overbought:
            return Side.SHORT
        return None
