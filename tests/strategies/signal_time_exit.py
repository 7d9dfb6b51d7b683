"""Test strategy (exists only under tests/): a user-function indicator (Donchian-style channel
from the candle history), an exit signal, a time exit and risk-per-trade sizing with an ATR stop."""

from dataclasses import dataclass

from tradeconsole.core.strategies import Side, Strategy, StrategyParams, atr, custom, param, risk_per_trade, ta


def channel(df):
    """Highest high / lowest low of the previous 24 candles (only looks backwards)."""
    return df.assign(hi=df.high.rolling(24).max().shift(1), lo=df.low.rolling(24).min().shift(1))[["hi", "lo"]]


@dataclass(frozen=True, slots=True)
class Params(StrategyParams):
    hold: float = param(12, 1, 500, doc="time exit in candles")


class SignalTimeExit(Strategy):
    name = "signal_time_exit"
    default_interval = "1h"
    startup_candle_count = 400  # ATR(14) is Wilder-smoothed: its memory fades over a few hundred candles
    Params = Params
    indicators = {"ch": custom(channel), "atr": ta("atr", length=14)}
    stop_loss = atr(3.0)
    take_profit = None
    max_bars_in_trade = "hold"
    sizing = risk_per_trade(0.01)

    def entry_signal(self, candle, ind):
        if candle.close > ind.ch_hi:
            return Side.LONG
        if candle.close < ind.ch_lo:
            return Side.SHORT
        return None

    def exit_signal(self, candle, ind, position):
        return ind.macd < ind.macd_signal if position.side is Side.LONG else ind.macd > ind.macd_signal
