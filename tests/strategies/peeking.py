"""Test strategy (exists only under tests/): deliberately reads the NEXT candle's close through a
custom indicator (``shift(-1)``), the look-ahead ``strategy check`` must catch."""

from tradeconsole.core.strategies import Side, Strategy, custom


def next_close(df):
    return df.close.shift(-1)  # the future: not known when the bar closes


class Peeking(Strategy):
    name = "peeking"
    default_interval = "1h"
    startup_candle_count = 400
    indicators = {"nxt": custom(next_close, window=50)}

    def entry_signal(self, candle, ind):
        if ind.nxt > candle.close * 1.004:
            return Side.LONG
        if ind.nxt < candle.close * 0.996:
            return Side.SHORT
        return None
