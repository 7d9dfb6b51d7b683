"""Candle history as column arrays: the form backtests, the optimiser and the history download share.

It lives in ``core`` (no I/O) because both ``backtest`` (loaders, runner) and ``infra`` (the
Binance history download) produce or consume it, and neither may import the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradeconsole.core.domain import Candle

__all__ = ["COLUMNS", "CandleArrays"]

#: the column order of ``CandleArrays`` (and of Binance's kline rows)
COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time")
_COLS = COLUMNS


@dataclass(slots=True)
class CandleArrays:
    """Column arrays of a candle history (the fast form for backtests)."""

    open_time: np.ndarray  # int64 ms
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    close_time: np.ndarray  # int64 ms

    def __len__(self) -> int:
        return len(self.close)

    def candle(self, i: int) -> Candle:
        return Candle(int(self.open_time[i]), float(self.open[i]), float(self.high[i]), float(self.low[i]),
                      float(self.close[i]), float(self.volume[i]), int(self.close_time[i]), True)

    def candles(self) -> list[Candle]:
        cols = [a.tolist() for a in (self.open_time, self.open, self.high, self.low, self.close,
                                     self.volume, self.close_time)]
        return [Candle(*row, True) for row in zip(*cols)]

    def take(self, sl: slice | np.ndarray) -> CandleArrays:
        return CandleArrays(*(getattr(self, c)[sl] for c in _COLS))

    @classmethod
    def from_candles(cls, candles: list[Candle]) -> CandleArrays:
        if not candles:
            return cls(*(np.empty(0, dtype=np.int64 if c.endswith("time") else np.float64) for c in _COLS))
        cols = list(zip(*candles))
        return cls(*(np.asarray(cols[i], dtype=np.int64 if c.endswith("time") else np.float64)
                     for i, c in enumerate(_COLS)))
