"""The bounded window of recent candles that windowed indicators are recomputed over live.

``LiveIndicators`` recomputes every declared ta/custom indicator without an O(1) form over the
last ``size`` closed candles on each candle. Before this module the window was a deque of
``Candle`` tuples turned into a fresh numpy array (a Python comprehension over the window) and
a fresh five-column DataFrame every candle: ~0.65 ms of the ~3.7 ms per candle of a windowed
``bbands(20)``, before pandas-ta even ran (``bench/bench_strategy_window.py`` has the profile).

Here the window lives in preallocated numpy column buffers: a closed candle shifts them by one
(a memmove of ``5 * size`` floats, a microsecond) and writes its five numbers; once the window is
full the DataFrame over the buffer is built once and kept, because it is a view of it
(``copy=False``, one float block). Each evaluation gets a copy of that frame (one 8 KB block
copied, ~0.03 ms, against ~0.25 ms to construct a frame), so a function that adds or overwrites
columns changes only its own copy, never the buffer or the next candle's frame, whatever the
pandas version (pandas 2 without copy-on-write writes ``df.loc[...] = ...`` into shared blocks). The open candle's preview uses a second buffer with the
same layout (the last ``size - 1`` closed candles and the open one, as the window will be once it
closes), so a preview never touches the closed-candle window.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tradeconsole.core.domain import Candle

__all__ = ["CandleWindow"]

#: the frame's columns, in the buffers' row order (what ``IndicatorSpec.evaluate`` reads)
COLUMNS = ("open", "high", "low", "close", "volume")


class CandleWindow:
    """The last ``size`` closed candles as float columns, and DataFrames over them."""

    __slots__ = ("size", "count", "_buf", "_pbuf", "_frame", "_pframe")

    def __init__(self, size: int) -> None:
        self.size = max(int(size), 1)
        self.count = 0  # closed candles in the window (<= size)
        # rows are the columns: each is contiguous, and the frame over ``buf.T`` is one block
        self._buf = np.zeros((5, self.size), dtype="float64")
        self._pbuf = np.zeros((5, self.size), dtype="float64")
        self._frame: Any = None  # built once the window is full, then reused (a view of _buf)
        self._pframe: Any = None

    def __len__(self) -> int:
        return self.count

    def append(self, c: Candle) -> None:
        """Add a closed candle; the oldest one leaves once ``size`` are held."""
        buf = self._buf
        buf[:, :-1] = buf[:, 1:]  # overlapping copy: numpy buffers it, so it is exact
        buf[0, -1] = c.open
        buf[1, -1] = c.high
        buf[2, -1] = c.low
        buf[3, -1] = c.close
        buf[4, -1] = c.volume
        if self.count < self.size:
            self.count += 1

    def frame(self) -> Any:
        """A DataFrame of the window's closed candles (oldest first), for one evaluation."""
        n = self.count
        if n < self.size:  # warm-up (the first ``size`` candles only): a copy of the filled tail
            return _frame_over(self._buf[:, self.size - n :].copy())
        if self._frame is None:
            self._frame = _frame_over(self._buf)
        return self._frame.copy()

    def preview_frame(self, c: Candle) -> Any:
        """A DataFrame of the window as it will be once the open candle ``c`` closes: the last
        ``size - 1`` closed candles (all of them while fewer are held) and ``c``."""
        size, m = self.size, min(self.count + 1, self.size)
        p = self._pbuf
        p[:, size - m : size - 1] = self._buf[:, size - m + 1 :]
        p[0, -1] = c.open
        p[1, -1] = c.high
        p[2, -1] = c.low
        p[3, -1] = c.close
        p[4, -1] = c.volume
        if m < size:
            return _frame_over(p[:, size - m :].copy())
        if self._pframe is None:
            self._pframe = _frame_over(p)
        return self._pframe.copy()


def _frame_over(cols: np.ndarray[Any, Any]) -> Any:
    """A DataFrame viewing ``cols`` (5 x n, one row per column): no copy, one float block."""
    import pandas as pd

    return pd.DataFrame(cols.T, columns=list(COLUMNS), copy=False)
