"""Indicators: RSI, MACD (line/signal/histogram), CCI, the bull/bear flag and the engulfing pattern.

Two ways to compute the same numbers:

* ``compute_history`` works on a whole history at once (backtests, warm-up) through pandas-ta;
* ``IncrementalIndicators`` updates in O(1) per closed candle and can *preview* the still-open
  candle without committing it (live view). It reproduces pandas-ta's recurrences step by step,
  including how each series is seeded, so both agree to 1e-9 on every bar (tests prove it).

Conventions (stated because charting tools differ):

* RSI ``wilder`` (default): Wilder's smoothing, seeded with the simple mean of the first ``length``
  gains/losses, as TradingView, Binance and TA-Lib do. pandas-ta's ``rma`` alone starts from the
  first gain instead, so the seed is placed before handing the series to it.
  RSI ``sma``: simple rolling means of gains and losses.
* MACD: pandas-ta's EMAs (SMA-seeded, ``adjust=False``); the signal EMA starts on the first MACD
  value. Early values differ from TA-Lib, whose MACD aligns its seeds differently; they converge
  after a few hundred bars.
* ``style="research"`` (the seed fill model) reproduces the original research code's definitions
  exactly, which differ only while a history is short (they converge within a few hundred bars,
  so full-length runs agree either way): each MACD EMA (fast, slow and signal) is pandas
  ``ewm(span, adjust=True, min_periods=span - 1).mean()``, so the line exists from bar
  ``slow - 2`` and the signal ``signal - 2`` bars later; the RSI (with ``sma``) takes
  ``close.diff().where(d > 0, 0)``, which counts the first bar's missing change as 0, so it is
  defined from bar ``rsi_length - 1`` (bar 13) instead of ``rsi_length``.
* CCI: typical price (h+l+c)/3, its simple mean and mean absolute deviation over ``length``,
  constant 0.015. pandas-ta 0.4's own ``cci`` (without TA-Lib) divides with the wrong operator
  precedence, so CCI is assembled from pandas-ta's ``hlc3`` and ``sma`` plus a vectorised mean
  absolute deviation (pandas-ta's ``mad`` is a Python-level rolling apply, ~10x slower).
* Simple moving averages come from pandas' rolling mean, which is what pandas-ta's ``sma``
  computes; pandas-ta's own is a numba kernel whose JIT start-up alone costs ~0.35 s.
* ``bull`` is 1 when close >= open. ``engulfing`` is +1 for a bullish engulfing candle (closes above
  its open, the previous closed below its open, previous close >= this open, previous open <= this
  close), -1 for the mirror-image bearish one, 0 otherwise.

Values that are not defined yet (warm-up) are NaN.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from core.domain import Candle

if TYPE_CHECKING:  # pandas is imported lazily: the live path never needs it
    pass

__all__ = [
    "IndicatorSettings",
    "IndicatorValues",
    "IncrementalIndicators",
    "compute_history",
    "engulfing_pattern",
]

NAN = math.nan


@dataclass(frozen=True, slots=True)
class IndicatorSettings:
    rsi_length: int = 14
    rsi_smoothing: str = "wilder"  # "wilder" or "sma"
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    cci_length: int = 20
    cci_constant: float = 0.015
    style: str = "standard"  # "standard" (pandas-ta) or "research" (the original research code's warm-up)

    def __post_init__(self) -> None:
        if self.rsi_smoothing not in ("wilder", "sma"):
            raise ValueError(f"rsi_smoothing must be 'wilder' or 'sma', not {self.rsi_smoothing!r}")
        if self.style not in ("standard", "research"):
            raise ValueError(f"style must be 'standard' or 'research', not {self.style!r}")
        for name in ("rsi_length", "macd_fast", "macd_slow", "macd_signal", "cci_length"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be at least 2")
        if self.macd_fast >= self.macd_slow:
            raise ValueError("macd_fast must be shorter than macd_slow")

    @property
    def warmup_bars(self) -> int:
        """Bars after which every indicator is defined."""
        return max(self.rsi_length + 1, self.macd_slow + self.macd_signal - 1, self.cci_length)


class IndicatorValues(NamedTuple):
    rsi: float
    macd: float
    macd_signal: float
    macd_hist: float
    cci: float
    bull: int
    engulfing: int

    def as_dict(self) -> dict[str, float | int]:
        return self._asdict()


# --------------------------------------------------------------------------- whole history


def engulfing_pattern(open_: np.ndarray, close: np.ndarray) -> np.ndarray:
    """+1 bullish engulfing, -1 bearish engulfing, 0 otherwise (vectorised)."""
    out = np.zeros(len(close), dtype=np.int8)
    if len(close) < 2:
        return out
    o, c, po, pc = open_[1:], close[1:], open_[:-1], close[:-1]
    bull = (c > o) & (pc < po) & (pc >= o) & (po <= c)
    bear = (c < o) & (pc > po) & (pc <= o) & (po >= c)
    out[1:][bull] = 1
    out[1:][bear] = -1
    return out


def _wilder_seeded(values, length: int):
    """pandas-ta ``rma`` with the SMA seed of TradingView/TA-Lib placed at index ``length``."""
    import pandas_ta as ta

    seeded = values.copy()
    seeded.iloc[length] = values.iloc[1 : length + 1].mean()
    seeded.iloc[: length] = np.nan
    return ta.rma(seeded, length=length)


def compute_history(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    settings: IndicatorSettings = IndicatorSettings(),
) -> dict[str, np.ndarray]:
    """Indicators over a whole history; returns float arrays (int8 for bull/engulfing)."""
    import pandas as pd
    import pandas_ta as ta
    from numpy.lib.stride_tricks import sliding_window_view

    n = len(close)
    s = settings
    research = s.style == "research"
    c = pd.Series(close, dtype="float64")
    nan_col = np.full(n, np.nan)

    # RSI (research: the first bar's missing change counts as 0, so it starts one bar earlier)
    research_rsi = research and s.rsi_smoothing == "sma"
    first_rsi = s.rsi_length - 1 if research_rsi else s.rsi_length
    if n > first_rsi:
        diff = c.diff()
        if research_rsi:
            diff.iloc[0] = 0.0
        gain, loss = diff.clip(lower=0), (-diff).clip(lower=0)
        if s.rsi_smoothing == "sma":
            # pandas-ta's rsi(mamode="sma") formula; its sma() is a numba kernel whose JIT start-up
            # (~0.35 s) would dominate a backtest, so the same rolling mean comes from pandas.
            g = gain.rolling(s.rsi_length).mean().to_numpy()
            lo = loss.rolling(s.rsi_length).mean().to_numpy()
        else:
            g = _wilder_seeded(gain, s.rsi_length).to_numpy()
            lo = _wilder_seeded(loss, s.rsi_length).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            rsi = 100.0 * g / (g + lo)
        rsi = rsi.astype("float64", copy=True)
        rsi[:first_rsi] = np.nan
    else:
        rsi = nan_col.copy()

    # MACD
    if research:
        def ewm(x, span: int):
            return x.ewm(span=span, adjust=True, min_periods=span - 1).mean()

        line = ewm(c, s.macd_fast) - ewm(c, s.macd_slow)
        sig = ewm(line, s.macd_signal)
        macd, signal = line.to_numpy(dtype="float64"), sig.to_numpy(dtype="float64")
        hist = macd - signal
    elif n >= s.macd_slow + s.macd_signal - 1:
        m = ta.macd(c, fast=s.macd_fast, slow=s.macd_slow, signal=s.macd_signal, talib=False)
        macd = m.iloc[:, 0].to_numpy(dtype="float64")
        hist = m.iloc[:, 1].to_numpy(dtype="float64")
        signal = m.iloc[:, 2].to_numpy(dtype="float64")
    else:
        macd, hist, signal = nan_col.copy(), nan_col.copy(), nan_col.copy()
        if n >= s.macd_slow:
            fast = ta.ema(c, length=s.macd_fast, talib=False).to_numpy()
            slow = ta.ema(c, length=s.macd_slow, talib=False).to_numpy()
            macd = fast - slow

    # CCI
    cci = nan_col.copy()
    if n >= s.cci_length:
        tp = ta.hlc3(pd.Series(high), pd.Series(low), c)
        mean_tp = tp.rolling(s.cci_length).mean().to_numpy()  # = ta.sma, without numba start-up
        tp_arr = tp.to_numpy(dtype="float64")
        win = sliding_window_view(tp_arr, s.cci_length)
        mad = np.abs(win - win.mean(axis=1, keepdims=True)).mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cci[s.cci_length - 1 :] = (tp_arr[s.cci_length - 1 :] - mean_tp[s.cci_length - 1 :]) / (
                s.cci_constant * mad
            )

    return {
        "rsi": rsi,
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "cci": cci,
        "bull": (close >= open_).astype(np.int8),
        "engulfing": engulfing_pattern(open_, close),
    }


# --------------------------------------------------------------------------- incremental


class _Ema:
    """pandas ``ewm(adjust=False)`` seeded with the SMA of the first ``length`` inputs."""

    __slots__ = ("length", "a", "b", "norm", "count", "acc", "value")

    def __init__(self, length: int, alpha: float | None = None) -> None:
        self.length = length
        self.a = alpha if alpha is not None else 2.0 / (length + 1.0)
        self.b = 1.0 - self.a
        self.norm = self.b + self.a  # pandas divides by (old_wt + new_wt); mirror it exactly
        self.count = 0
        self.acc: list[float] = []
        self.value = NAN

    def peek(self, x: float) -> float:
        if self.count + 1 < self.length:
            return NAN
        if self.count + 1 == self.length:
            return (sum(self.acc) + x) / self.length
        return (self.b * self.value + self.a * x) / self.norm

    def push(self, x: float) -> float:
        v = self.peek(x)
        self.count += 1
        if self.count < self.length:
            self.acc.append(x)
        elif self.count == self.length:
            self.acc = []
        self.value = v
        return v


class _EwmAdjusted:
    """pandas ``ewm(span, adjust=True, min_periods=span - 1)``, step by step as pandas computes
    it (its recursion and its division), for the research style."""

    __slots__ = ("decay", "minp", "nobs", "old_wt", "value")

    def __init__(self, span: int) -> None:
        self.decay = 1.0 - 2.0 / (span + 1.0)
        self.minp = max(span - 1, 1)
        self.nobs = 0
        self.old_wt = 1.0
        self.value = NAN

    def _next(self, x: float) -> tuple[float, float]:
        if self.nobs == 0:
            return x, 1.0
        old_wt = self.old_wt * self.decay
        w = self.value
        if w != x:
            w = (old_wt * w + x) / (old_wt + 1.0)
        return w, old_wt + 1.0

    def peek(self, x: float) -> float:
        w, _ = self._next(x)
        return w if self.nobs + 1 >= self.minp else NAN

    def push(self, x: float) -> float:
        w, self.old_wt = self._next(x)
        self.value = w
        self.nobs += 1
        return w if self.nobs >= self.minp else NAN


class _Rolling:
    """Last ``length`` inputs (for simple means and mean absolute deviation)."""

    __slots__ = ("length", "window")

    def __init__(self, length: int) -> None:
        self.length = length
        self.window: deque[float] = deque(maxlen=length)

    def values_with(self, x: float) -> list[float] | None:
        if len(self.window) + 1 < self.length:
            return None
        vals = list(self.window)
        if len(vals) == self.length:
            vals.pop(0)
        vals.append(x)
        return vals


class IncrementalIndicators:
    """O(1)-per-candle indicators that match ``compute_history`` bar for bar.

    ``update`` consumes a closed candle; ``preview`` computes what the values would be if the
    given (open) candle closed now, without changing any state, so a live view can redraw every
    update of the open candle at no cost to the closed-candle sequence.
    """

    def __init__(self, settings: IndicatorSettings = IndicatorSettings()) -> None:
        s = self.settings = settings
        self._prev: Candle | None = None
        # RSI state
        if s.rsi_smoothing == "wilder":
            self._gain: _Ema | _Rolling = _Ema(s.rsi_length, alpha=1.0 / s.rsi_length)
            self._loss: _Ema | _Rolling = _Ema(s.rsi_length, alpha=1.0 / s.rsi_length)
        else:
            self._gain = _Rolling(s.rsi_length)
            self._loss = _Rolling(s.rsi_length)
        ema = _EwmAdjusted if s.style == "research" else _Ema
        self._fast: _Ema | _EwmAdjusted = ema(s.macd_fast)
        self._slow: _Ema | _EwmAdjusted = ema(s.macd_slow)
        self._signal: _Ema | _EwmAdjusted = ema(s.macd_signal)
        self._research_rsi = s.style == "research" and s.rsi_smoothing == "sma"
        self._tp = _Rolling(s.cci_length)
        self.count = 0

    # -- public API
    def update(self, candle: Candle) -> IndicatorValues:
        return self._step(candle, commit=True)

    def preview(self, candle: Candle) -> IndicatorValues:
        return self._step(candle, commit=False)

    @property
    def last_candle(self) -> Candle | None:
        return self._prev

    # -- internals
    def _step(self, c: Candle, commit: bool) -> IndicatorValues:
        prev = self._prev
        # RSI
        rsi = NAN
        if prev is not None:
            d = c.close - prev.close
            g, lo = (d if d > 0 else 0.0), (-d if d < 0 else 0.0)
            if isinstance(self._gain, _Ema):
                ga = self._gain.push(g) if commit else self._gain.peek(g)
                la = self._loss.push(lo) if commit else self._loss.peek(lo)  # type: ignore[union-attr]
            else:
                gw = self._gain.values_with(g)
                lw = self._loss.values_with(lo)  # type: ignore[union-attr]
                ga = math.fsum(gw) / len(gw) if gw else NAN
                la = math.fsum(lw) / len(lw) if lw else NAN
                if commit:
                    self._gain.window.append(g)
                    self._loss.window.append(lo)  # type: ignore[union-attr]
            den = ga + la
            rsi = 100.0 * ga / den if den == den and den != 0 else NAN
        elif self._research_rsi and commit:  # the first bar's missing change counts as 0
            self._gain.window.append(0.0)  # type: ignore[union-attr]
            self._loss.window.append(0.0)  # type: ignore[union-attr]
        # MACD
        if commit:
            f, sl = self._fast.push(c.close), self._slow.push(c.close)
        else:
            f, sl = self._fast.peek(c.close), self._slow.peek(c.close)
        macd = f - sl
        if macd == macd:
            sig = self._signal.push(macd) if commit else self._signal.peek(macd)
        else:
            sig = NAN
        hist = macd - sig
        # CCI
        tp = (c.high + c.low + c.close) / 3.0
        win = self._tp.values_with(tp)
        cci = NAN
        if win is not None:
            n = len(win)
            mean = math.fsum(win) / n
            mad = math.fsum(abs(x - mean) for x in win) / n
            if mad > 0:
                cci = (tp - mean) / (self.settings.cci_constant * mad)
        if commit:
            self._tp.window.append(tp)
        # candle patterns
        bull = 1 if c.close >= c.open else 0
        eng = 0
        if prev is not None:
            if c.close > c.open and prev.close < prev.open and prev.close >= c.open and prev.open <= c.close:
                eng = 1
            elif c.close < c.open and prev.close > prev.open and prev.close <= c.open and prev.open >= c.close:
                eng = -1
        if commit:
            self._prev = c
            self.count += 1
        return IndicatorValues(rsi, macd, sig, hist, cci, bull, eng)
