"""``basic``: MACD trend filter with RSI and CCI extremes (default interval 5m)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tradeconsole.core.domain import Candle, Side
from tradeconsole.core.indicators import IndicatorValues
from tradeconsole.core.strategies.base import CCI, RSI, Strategy, StrategyParams, equity_fraction, fixed, param


@dataclass(frozen=True, slots=True)
class BasicParams(StrategyParams):
    rsi_oversold: float = param(30.0, **RSI)
    rsi_overbought: float = param(70.0, **RSI)
    cci_long_min: float = param(-100.0, **CCI)
    cci_short_max: float = param(100.0, **CCI)


class BasicStrategy(Strategy):
    """Long when MACD line > signal, RSI < oversold and CCI > -100;
    short when MACD line < signal, RSI > overbought and CCI < 100."""

    name: ClassVar[str] = "basic"
    default_interval: ClassVar[str] = "5m"
    Params = BasicParams
    params: BasicParams
    # reads the base values only (rsi, macd, macd_signal, cci): O(1) live, nothing to declare
    stop_loss = fixed("stop_loss_pct")
    take_profit = fixed("take_profit_pct")
    sizing = equity_fraction("stake_fraction")

    def entry_signal(self, candle: Candle, ind: IndicatorValues) -> Side | None:
        p = self.params
        if ind.macd > ind.macd_signal and ind.rsi < p.rsi_oversold and ind.cci > p.cci_long_min:
            return Side.LONG
        if ind.macd < ind.macd_signal and ind.rsi > p.rsi_overbought and ind.cci < p.cci_short_max:
            return Side.SHORT
        return None
