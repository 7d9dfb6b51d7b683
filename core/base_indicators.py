"""The base indicators over a whole history without pandas: the numbers of pandas-ta, bit for bit.

``tradeconsole.core.indicators.compute_history_pandas`` defines the base values (RSI, MACD, CCI)
through pandas-ta and pandas; this module computes the very same numbers with numpy and the
kernels of ``tradeconsole.core.indicator_kernels`` (pandas' ewm and rolling-mean loops, numpy's
pairwise sums), operation for operation, so that a backtest needs neither pandas nor pandas-ta
(~0.5 s of imports) and a history of millions of bars takes milliseconds compiled. Every
pandas/pandas-ta step it mirrors is named next to it; ``tests/core/test_indicator_kernels.py``
proves the results identical (``np.array_equal``, sign of zero included) on the shared data, in
both indicator styles, and on random series.

``compiled`` chooses the kernels' numba versions (long histories) or the interpreted ones (short
ones, where compiling would cost more than it saves); both give the same bits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from tradeconsole.core import indicator_kernels as kern
from tradeconsole.core.jit import compiled as jit

if TYPE_CHECKING:
    from tradeconsole.core.indicators import IndicatorSettings

__all__ = ["base_history"]

_F64 = NDArray[np.float64]


class _Kernels:
    """The kernels as the caller chose them: numba-compiled over arrays, or interpreted over
    Python lists (the interpreter reads a list several times faster than numpy scalars)."""

    def __init__(self, compiled: bool) -> None:
        self.compiled = compiled
        self._ewm = jit(kern.ewm_mean) if compiled else kern.ewm_mean
        self._roll = jit(kern.rolling_mean) if compiled else kern.rolling_mean
        self._clip = jit(kern.clipped_changes) if compiled else kern.clipped_changes
        self._mad = jit(kern.rolling_mean_abs_dev) if compiled else None

    def _in(self, a: _F64) -> Any:
        return np.ascontiguousarray(a, dtype=np.float64) if self.compiled else a.tolist()

    def _out(self, n: int) -> Any:
        return np.empty(n) if self.compiled else [0.0] * n

    def ewm(self, vals: _F64, com: float, adjust: bool, min_periods: int) -> _F64:
        """``pd.Series(vals).ewm(com=com, adjust=adjust, min_periods=min_periods).mean()``
        (pandas makes ``min_periods`` at least 1)."""
        out = self._out(len(vals))
        self._ewm(self._in(vals), out, com, adjust, max(int(min_periods), 1))
        return np.asarray(out, dtype=np.float64)

    def clipped_changes(self, close: _F64, sign: float, first: float, out: _F64 | None = None) -> _F64:
        """``Series.diff()`` (times ``sign``) then ``clip(lower=0)``; into ``out`` when given."""
        res = np.empty(len(close)) if out is None else out
        if self.compiled:
            self._clip(self._in(close), res, sign, first)
        else:
            tmp = [0.0] * len(close)
            self._clip(close.tolist(), tmp, sign, first)
            res[:] = tmp
        return res

    def ewm_inplace(self, x: _F64, com: float, adjust: bool, min_periods: int) -> _F64:
        """``ewm`` over ``x`` written back into ``x`` (the kernel reads each value before it
        writes that index, so this is exact)."""
        if self.compiled:
            self._ewm(x, x, com, adjust, max(int(min_periods), 1))
        else:
            x[:] = self.ewm(x, com, adjust, min_periods)
        return x

    def rolling_mean(self, vals: _F64, window: int) -> _F64:
        """``pd.Series(vals).rolling(window).mean()``."""
        out = self._out(len(vals))
        self._roll(self._in(vals), out, window)
        return np.asarray(out, dtype=np.float64)

    def mean_abs_dev(self, vals: _F64, window: int) -> _F64:
        """Per full window ``w`` of ``vals``: ``np.abs(w - w.mean()).mean()`` (numpy's own
        vectorised form when interpreted, in blocks of rows so no n x window temporaries)."""
        m = len(vals) - window + 1
        out = np.empty(m)
        if self._mad is not None and window <= kern.PAIRWISE_MAX:
            self._mad(np.ascontiguousarray(vals, dtype=np.float64), out, window, np.empty(window))
            return out
        from numpy.lib.stride_tricks import sliding_window_view

        win = sliding_window_view(vals, window)
        block = 1 << 15
        for a in range(0, m, block):
            w = win[a : a + block]
            out[a : a + block] = np.abs(w - w.mean(axis=1, keepdims=True)).mean(axis=1)
        return out


def _span_com(span: int) -> float:
    """pandas ``get_center_of_mass`` for ``span``."""
    return (span - 1) / 2


def _alpha_com(alpha: float) -> float:
    """pandas ``get_center_of_mass`` for ``alpha``."""
    return (1 - alpha) / alpha


def _nanmean(a: _F64) -> float:
    """``Series.mean()`` of NaN-free values (pandas ``nanops.nanmean`` without bottleneck: numpy's
    pairwise sum divided by the count)."""
    return float(a.sum(dtype=np.float64) / np.float64(len(a)))


def _ta_ema(k: _Kernels, close: _F64, length: int, out: _F64 | None = None) -> _F64:
    """pandas-ta ``ema(close, length, talib=False)``: ``presma`` seeds bar ``length - 1`` with
    the mean of the first ``length`` values (earlier bars NaN), then ``ewm(span, adjust=False)``.
    Computed in place in ``out`` (a new array by default; ``out`` may be ``close`` itself)."""
    x = close.astype(np.float64, copy=True) if out is None else out
    if x is not close:
        x[:] = close
    sma_nth = _nanmean(x[0:length])
    x[: length - 1] = np.nan
    x[length - 1] = sma_nth
    return k.ewm_inplace(x, _span_com(length), False, 0)


def _wilder_seeded(k: _Kernels, values: _F64, length: int) -> _F64:
    """``indicators._wilder_seeded``: the SMA seed at bar ``length`` then pandas-ta ``rma``
    (``ewm(alpha=1/length, adjust=False)``). ``values`` is a scratch series: it is overwritten."""
    seeded = values
    seeded[length] = _nanmean(values[1 : length + 1])
    seeded[:length] = np.nan
    alpha = (1.0 / length) if length > 0 else 0.5
    return k.ewm(seeded, _alpha_com(alpha), False, 0)


def base_history(
    open_: NDArray[Any],
    high: NDArray[Any],
    low: NDArray[Any],
    close: NDArray[Any],
    settings: IndicatorSettings,
    *,
    compiled: bool = False,
) -> dict[str, NDArray[Any]]:
    """``compute_history_pandas``'s numbers (same keys, dtypes and bits) without pandas.

    Each indicator is built in its own function, reusing its temporaries in place (``out=``
    forms of the very same operations, so the same bits), so that at millions of bars the peak
    memory is the results plus a few columns, not every intermediate series at once."""
    from tradeconsole.core.indicators import engulfing_pattern

    k = _Kernels(compiled)
    c = np.asarray(close, dtype=np.float64)
    # in the order of falling temporaries: each stage's scratch columns meet the fewest results
    cci = _cci(k, np.asarray(high, dtype=np.float64), np.asarray(low, dtype=np.float64), c, settings)
    rsi = _rsi(k, c, settings)
    macd, signal, hist = _macd(k, c, settings)
    return {
        "rsi": rsi,
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "cci": cci,
        "bull": (close >= open_).astype(np.int8),
        "engulfing": engulfing_pattern(open_, close),
    }


def _rsi(k: _Kernels, c: _F64, s: IndicatorSettings) -> _F64:
    """RSI (research: the first bar's missing change counts as 0, so it starts one bar earlier)."""
    n = len(c)
    research_rsi = s.style == "research" and s.rsi_smoothing == "sma"
    first_rsi = s.rsi_length - 1 if research_rsi else s.rsi_length
    if n <= first_rsi:
        return np.full(n, np.nan)
    first = 0.0 if research_rsi else np.nan  # Series.diff(): the first change is NaN
    buf = k.clipped_changes(c, 1.0, first)  # gains, then (reused) losses
    g = k.rolling_mean(buf, s.rsi_length) if s.rsi_smoothing == "sma" else _wilder_seeded(k, buf, s.rsi_length)
    buf = k.clipped_changes(c, -1.0, first, out=buf)
    lo = k.rolling_mean(buf, s.rsi_length) if s.rsi_smoothing == "sma" else _wilder_seeded(k, buf, s.rsi_length)
    del buf
    with np.errstate(invalid="ignore", divide="ignore"):
        np.add(g, lo, out=lo)  # rsi = 100.0 * g / (g + lo), evaluated in that order
        np.multiply(100.0, g, out=g)
        np.divide(g, lo, out=g)
    g[:first_rsi] = np.nan
    return g


def _macd(k: _Kernels, c: _F64, s: IndicatorSettings) -> tuple[_F64, _F64, _F64]:
    """MACD line, signal and histogram."""
    n = len(c)
    if s.style == "research":
        # pandas ewm(span, adjust=True, min_periods=span - 1) for each of the three EMAs
        macd = k.ewm(c, _span_com(s.macd_fast), True, s.macd_fast - 1)
        np.subtract(macd, k.ewm(c, _span_com(s.macd_slow), True, s.macd_slow - 1), out=macd)
        signal = k.ewm(macd, _span_com(s.macd_signal), True, s.macd_signal - 1)
        return macd, signal, macd - signal
    if n >= s.macd_slow + s.macd_signal - 1:
        # pandas-ta macd(talib=False): the signal EMA runs on the MACD from its first valid bar
        macd = _ta_ema(k, c, s.macd_fast)
        np.subtract(macd, _ta_ema(k, c, s.macd_slow), out=macd)
        first = s.macd_slow - 1  # macd.first_valid_index(): the slow EMA's seed bar
        signal = np.full(n, np.nan)
        _ta_ema(k, macd[first:], s.macd_signal, out=signal[first:])
        return macd, signal, macd - signal
    signal, hist = np.full(n, np.nan), np.full(n, np.nan)
    if n < s.macd_slow:
        return np.full(n, np.nan), signal, hist
    macd = _ta_ema(k, c, s.macd_fast)
    np.subtract(macd, _ta_ema(k, c, s.macd_slow), out=macd)
    return macd, signal, hist


def _cci(k: _Kernels, high: _F64, low: _F64, c: _F64, s: IndicatorSettings) -> _F64:
    """CCI: pandas-ta hlc3, pandas' rolling mean, numpy's mean absolute deviation."""
    n, length = len(c), s.cci_length
    cci = np.full(n, np.nan)
    if n < length:
        return cci
    tp = np.add(high, low)  # hlc3 = (high + low + close) / 3.0
    np.add(tp, c, out=tp)
    np.divide(tp, 3.0, out=tp)
    num = k.rolling_mean(tp, length)[length - 1 :]
    np.subtract(tp[length - 1 :], num, out=num)  # tp - mean_tp
    den = k.mean_abs_dev(tp, length)
    del tp
    np.multiply(s.cci_constant, den, out=den)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(num, den, out=cci[length - 1 :])
    return cci
