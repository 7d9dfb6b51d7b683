"""Test strategy (exists only under tests/): Bollinger Bands (pandas-ta ``bbands``, which the
built-ins do not use) mean reversion with a trailing stop and an indicator-based stop per side."""

from dataclasses import dataclass

from tradeconsole.core.strategies import Side, Strategy, StrategyParams, fixed, level, param, per_side, ta, trailing


@dataclass(frozen=True, slots=True)
class Params(StrategyParams):
    trail_pct: float = param(0.01, 0.001, 0.2, doc="trailing distance")


class BollingerTrail(Strategy):
    name = "bollinger_trail"
    default_interval = "1h"
    startup_candle_count = 400  # the base RSI it reads is Wilder-smoothed: a few hundred candles
    Params = Params
    indicators = {
        "bb": ta("bbands", length=20, std=2.0, window=60, columns={"lower": "BBL", "mid": "BBM", "upper": "BBU"})
    }
    stop_loss = per_side(long=fixed(0.03), short=fixed(0.03))
    take_profit = per_side(long=level("bb_upper"), short=level("bb_lower"))
    trailing_stop = trailing("trail_pct")

    def entry_signal(self, candle, ind):
        if candle.close < ind.bb_lower and ind.rsi < 35:
            return Side.LONG
        if candle.close > ind.bb_upper and ind.rsi > 65:
            return Side.SHORT
        return None
