"""``engulfing``: engulfing candles at RSI extremes (default interval 1h)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tradeconsole.core.domain import Candle, Side
from tradeconsole.core.indicators import IndicatorValues
from tradeconsole.core.strategies.base import RSI, Strategy, StrategyParams, equity_fraction, fixed, param


@dataclass(frozen=True, slots=True)
class EngulfingParams(StrategyParams):
    rsi_oversold: float = param(25.0, **RSI)
    rsi_overbought: float = param(70.0, **RSI)


class EngulfingStrategy(Strategy):
    """Long on a bullish engulfing candle with RSI < oversold; short on a bearish engulfing
    candle with RSI > overbought (pattern definition in ``tradeconsole.core.indicators``)."""

    name: ClassVar[str] = "engulfing"
    default_interval: ClassVar[str] = "1h"
    Params = EngulfingParams
    params: EngulfingParams
    # reads the base values only (engulfing, rsi): O(1) live, nothing to declare
    stop_loss = fixed("stop_loss_pct")
    take_profit = fixed("take_profit_pct")
    sizing = equity_fraction("stake_fraction")

    def entry_signal(self, candle: Candle, ind: IndicatorValues) -> Side | None:
        p = self.params
        if ind.engulfing == 1 and ind.rsi < p.rsi_oversold:
            return Side.LONG
        if ind.engulfing == -1 and ind.rsi > p.rsi_overbought:
            return Side.SHORT
        return None
