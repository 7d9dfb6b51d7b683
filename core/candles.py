"""Candle history as column arrays: the form backtests, the optimiser and the history download share.

It lives in ``core`` (no I/O) because both ``backtest`` (loaders, runner) and ``infra`` (the
Binance history download) produce or consume it, and neither may import the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tradeconsole.core.domain import Candle

__all__ = ["COLUMNS", "CandleArrays"]

#: the column order of ``CandleArrays`` (and of Binance's kline rows)
COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time")
_COLS = COLUMNS


@dataclass(slots=True)
class CandleArrays:
    """Column arrays of a candle history (the fast form for backtests)."""

    open_time: NDArray[np.int64]  # int64 ms
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]
    close_time: NDArray[np.int64]  # int64 ms

    def __len__(self) -> int:
        return len(self.close)

    def candle(self, i: int) -> Candle:
        return Candle(
            int(self.open_time[i]),
            float(self.open[i]),
            float(self.high[i]),
            float(self.low[i]),
            float(self.close[i]),
            float(self.volume[i]),
            int(self.close_time[i]),
            True,
        )

    def candles(self) -> list[Candle]:
        cols = [
            a.tolist()
            for a in (self.open_time, self.open, self.high, self.low, self.close, self.volume, self.close_time)
        ]
        return [Candle(*row) for row in zip(*cols)]  # closed defaults to True

    def take(self, sl: slice | NDArray[Any]) -> CandleArrays:
        return CandleArrays(*(getattr(self, c)[sl] for c in _COLS))

    @classmethod
    def from_candles(cls, candles: list[Candle]) -> CandleArrays:
        if not candles:
            empty: list[NDArray[Any]] = [
                np.empty(0, dtype=np.int64 if c.endswith("time") else np.float64) for c in _COLS
            ]
            return cls(*empty)
        cols = list(zip(*candles))
        arrays: list[NDArray[Any]] = [
            np.asarray(cols[i], dtype=np.int64 if c.endswith("time") else np.float64) for i, c in enumerate(_COLS)
        ]
        return cls(*arrays)
