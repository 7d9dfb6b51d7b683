"""Test strategy (exists only under tests/): charted from its declarations alone. Bollinger Bands
overlay the price chart (``plot="overlay"``, only the three price columns), an ADX gets its own
pane with a reference line at 25 and a Stochastic one with 20/80; the base panes are MACD only.
Long below the lower band in a weak trend, short above the upper one."""

from tradeconsole.core.strategies import Side, Strategy, ta


class BandsOscillator(Strategy):
    name = "bands_oscillator"
    default_interval = "1h"
    startup_candle_count = 300
    base_panes = ("macd",)
    indicators = {
        "bb": ta("bbands", length=20, std=2.0, plot="overlay", columns={"lower": "BBL", "mid": "BBM", "upper": "BBU"}),
        "adx": ta("adx", length=14, plot="pane", levels=(25,), columns={"adx": "ADX"}),
        "stoch": ta("stoch", levels=(20, 80), columns={"k": "STOCHk", "d": "STOCHd"}),
    }

    def entry_signal(self, candle, ind):
        if ind.adx_adx < 25 and candle.close < ind.bb_lower:
            return Side.LONG
        if ind.adx_adx < 25 and candle.close > ind.bb_upper:
            return Side.SHORT
        return None
