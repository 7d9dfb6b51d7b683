"""Indicators: RSI, MACD (line/signal/histogram), CCI, the bull/bear flag and the engulfing pattern.

Two ways to compute the same numbers:

* ``compute_history`` works on a whole history at once (backtests, warm-up): the pandas-ta
  definitions (``compute_history_pandas``), reproduced bit for bit without pandas by
  ``tradeconsole.core.base_indicators``;
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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from tradeconsole.core.domain import Candle

if TYPE_CHECKING:  # pandas is imported lazily: the live path never needs it
    import pandas as pd

__all__ = [
    "IndicatorSettings",
    "IndicatorValues",
    "IncrementalIndicators",
    "IndicatorPlan",
    "IndicatorPlanError",
    "IndicatorSpec",
    "LiveIndicators",
    "O1_INDICATORS",
    "compute_history",
    "compute_history_pandas",
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

    def as_dict(self) -> dict[str, float | int | None]:
        return self._asdict()


# --------------------------------------------------------------------------- whole history


def engulfing_pattern(open_: NDArray[Any], close: NDArray[Any]) -> NDArray[Any]:
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


def _wilder_seeded(values: pd.Series[float], length: int) -> pd.Series[float]:
    """pandas-ta ``rma`` with the SMA seed of TradingView/TA-Lib placed at index ``length``."""
    import pandas_ta as ta

    seeded = values.copy()
    seeded.iloc[length] = values.iloc[1 : length + 1].mean()
    seeded.iloc[:length] = np.nan
    out: pd.Series[float] = ta.rma(seeded, length=length)
    return out


_MAD_BLOCK = 1 << 15  # rows of the CCI's mean-deviation window per block


def compute_history(
    open_: NDArray[Any],
    high: NDArray[Any],
    low: NDArray[Any],
    close: NDArray[Any],
    settings: IndicatorSettings = IndicatorSettings(),
    *,
    compiled: bool = False,
) -> dict[str, NDArray[Any]]:
    """Indicators over a whole history; returns float arrays (int8 for bull/engulfing).

    The numbers of ``compute_history_pandas`` (the pandas-ta definitions), bit for bit, from
    ``tradeconsole.core.base_indicators`` without pandas; ``compiled`` runs its loops with numba
    (worth it from a few hundred thousand bars)."""
    from tradeconsole.core.base_indicators import base_history

    return base_history(open_, high, low, close, settings, compiled=compiled)


def compute_history_pandas(
    open_: NDArray[Any],
    high: NDArray[Any],
    low: NDArray[Any],
    close: NDArray[Any],
    settings: IndicatorSettings = IndicatorSettings(),
) -> dict[str, NDArray[Any]]:
    """The reference definition of the base indicators through pandas-ta and pandas (what
    ``compute_history`` must equal exactly; the tests hold the two together)."""
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

        def ewm(x: pd.Series[float], span: int) -> pd.Series[float]:
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
        mad = np.empty(len(win))
        # in blocks of rows: the same numpy expression per row (so the same bits), without
        # materialising two n x cci_length temporaries (840 MB at 2.6M bars)
        for a in range(0, len(win), _MAD_BLOCK):
            w = win[a : a + _MAD_BLOCK]
            mad[a : a + _MAD_BLOCK] = np.abs(w - w.mean(axis=1, keepdims=True)).mean(axis=1)
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
            # _loss is always built like _gain (both _Ema, or both windows); mypy narrows only _gain
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
            # research RSI: both are windows (see __init__), which mypy cannot tell from the union
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


class IncrementalSupertrend:
    """pandas-ta ``supertrend(length, multiplier, atr_length)`` in O(1) per closed candle, with
    ``preview`` for the open candle: the same recurrence step by step, so a live strategy pays
    microseconds instead of a window recomputation (``bench/bench_strategy_window.py``).

    What it mirrors (pandas-ta 0.4, ``overlap/supertrend.py``): ATR as pandas-ta computes it
    inside ``supertrend`` (whose ``atr`` call keeps its ``talib`` default, so TA-Lib's ``ATR``
    when TA-Lib is installed: first value the mean true range of bars 1..n at bar n, then
    ``(prev * (n - 1) + tr) / n``; otherwise the true range from bar 0 (bar 0: high - low), its
    first ``n`` values' mean at bar n - 1, then Wilder's ``ewm(alpha=1/n, adjust=False)``);
    bands ``hl2 -/+ multiplier * atr``; direction flips when the close crosses the previous
    bar's (carried) band, else a band only tightens. Values are NaN until the history is long
    enough for pandas-ta to return anything (``max(length, atr_length) + 1`` candles), as a live
    start computing it over the candles so far sees them. pandas-ta adds 2.2e-16 to every
    high-low range of a history holding a zero-range candle; that is below 1e-12 relative and
    not reproduced. ``tests/strategies/test_incremental_supertrend.py`` proves the equality on
    real data in both ATR modes."""

    #: keyword arguments this form reproduces (others fall back to the window recomputation)
    KWARGS = ("length", "multiplier", "atr_length", "atr_mamode", "offset")

    def __init__(
        self, length: int = 7, multiplier: float = 3.0, atr_length: int | None = None, talib: bool | None = None
    ) -> None:
        if talib is None:
            from pandas_ta.maps import Imports

            talib = bool(Imports["talib"])
        self.length, self.multiplier = int(length), float(multiplier)
        self.atr_length = int(atr_length) if atr_length else self.length
        self.talib = talib
        self.first = max(self.length, self.atr_length)  # first bar pandas-ta returns values for
        n = self.atr_length
        self._ema = None if talib else _Ema(n, alpha=1.0 / n)
        self._tr_sum = 0.0  # TA-Lib: true ranges of bars 1..n before the first ATR
        self.atr = NAN
        self.count = 0
        self._prev_close = NAN
        self._lb = NAN
        self._ub = NAN
        self._dir = 1

    def update(self, c: Candle) -> tuple[float, float, float, float]:
        """(trend, direction, long, short) on this closed candle (the columns ``SUPERT``,
        ``SUPERTd``, ``SUPERTl``, ``SUPERTs``)."""
        return self._step(c, True)

    def preview(self, c: Candle) -> tuple[float, float, float, float]:
        return self._step(c, False)

    def _step(self, c: Candle, commit: bool) -> tuple[float, float, float, float]:
        i, n, pc = self.count, self.atr_length, self._prev_close
        hl = c.high - c.low
        if i == 0:
            tr = hl
        else:
            tr = max(abs(hl), abs(c.high - pc), abs(pc - c.low))
        if self._ema is not None:  # pandas-ta: true range from bar 0, SMA seed at bar n - 1, Wilder after
            atr = self._ema.push(tr) if commit else self._ema.peek(tr)
            tr_sum = 0.0
        else:  # TA-Lib ATR: first value at bar n, the mean of the true ranges of bars 1..n
            tr_sum = self._tr_sum
            if i == 0:
                atr = NAN
            elif i < n:
                tr_sum += tr
                atr = NAN
            elif i == n:
                atr = (tr_sum + tr) / n
            else:
                atr = (self.atr * (n - 1) + tr) / n
        mid = 0.5 * (c.high + c.low)
        matr = self.multiplier * atr
        lb, ub = mid - matr, mid + matr
        d = self._dir
        if i >= 1:
            if c.close > self._ub:
                d = 1
            elif c.close < self._lb:
                d = -1
            else:
                if d > 0 and lb < self._lb:
                    lb = self._lb
                if d < 0 and ub > self._ub:
                    ub = self._ub
        if commit:
            self.count, self._prev_close, self._lb, self._ub, self._dir = i + 1, c.close, lb, ub, d
            self._tr_sum, self.atr = tr_sum, atr
        if i < self.first:
            return (NAN, NAN, NAN, NAN)
        trend = lb if d > 0 else ub
        return (trend, float(d), lb if d > 0 else NAN, NAN if d > 0 else ub)

    @staticmethod
    def supports(spec: Any) -> bool:
        """Whether ``spec`` (a declared ``ta("supertrend", ...)``) is one this form reproduces."""
        if spec.kind != "ta" or spec.name != "supertrend":
            return False
        kw = dict(spec.kwargs)
        return (
            set(kw) <= set(IncrementalSupertrend.KWARGS)
            and kw.get("atr_mamode") in (None, "rma")
            and kw.get("offset") in (None, 0)
        )

    @staticmethod
    def for_spec(spec: Any) -> IncrementalSupertrend:
        kw = dict(spec.kwargs)
        return IncrementalSupertrend(kw.get("length") or 7, kw.get("multiplier") or 3.0, kw.get("atr_length"))


#: the pandas-ta column prefix of each ``IncrementalSupertrend`` output, in its order
_SUPERTREND_COLUMNS = ("SUPERT", "SUPERTd", "SUPERTl", "SUPERTs")


# --------------------------------------------------------------------------- declared indicators
#
# A strategy declares the indicators it needs (``tradeconsole.core.strategies.base.ta`` / ``custom``). Each
# declaration becomes an ``IndicatorSpec``; an ``IndicatorPlan`` is the strategy's whole set: the
# seven base values above (always there, the dashboard charts them) plus the declared ones.
#
# * ``rsi``, ``macd`` and ``cci`` declared by name use the project's own definitions (the
#   conventions at the top of this module, in the fill model's style) and are O(1) per candle
#   live: an ``IncrementalIndicators`` with those lengths.
# * Any other pandas-ta indicator, and any user function over the candle history, is computed
#   whole-history in a backtest and, live, over a bounded window of the most recent closed
#   candles (``IndicatorSpec.window``): the same function over the same last ``window`` candles.
#   The two agree whenever the indicator's value depends on at most ``window`` candles (finite
#   memory: SMA, Bollinger Bands, Donchian...) or its memory has decayed within them (EMA-based:
#   ATR, Supertrend); ``tradeconsole strategy check`` measures it on real data.
# * Live, a pandas-ta indicator with an O(1) form skips the window: ``supertrend``
#   (``IncrementalSupertrend`` above) and ``sma``, ``ema``, ``atr``, ``bbands``
#   (``tradeconsole.core.incremental``, found through ``_incremental_form``), each reproducing
#   pandas-ta's whole-history recurrence, so live values equal the backtest's exactly.

#: the pandas-ta names that have an O(1) form here, with the keyword arguments each accepts
O1_INDICATORS: dict[str, tuple[str, ...]] = {
    "rsi": ("length",),
    "macd": ("fast", "slow", "signal"),
    "cci": ("length", "c"),
}


@dataclass(frozen=True)
class IndicatorSpec:
    """One declared indicator. ``key`` is the name the strategy reads it by (``ind.<key>``; a
    multi-column result adds ``_<column>`` suffixes, see ``IndicatorPlan``)."""

    key: str
    kind: str  # "o1" (rsi/macd/cci, incremental), "ta" (pandas-ta by name), "custom" (user function)
    name: str = ""  # pandas-ta function name
    kwargs: tuple[tuple[str, Any], ...] = ()
    fn: Any = None  # custom: (DataFrame of open/high/low/close/volume) -> Series | DataFrame | ndarray
    window: int = 0  # live window in closed candles (ta/custom); 0 for o1
    columns: tuple[tuple[str, str], ...] = ()  # our suffix -> pandas-ta column prefix (multi-column results)
    plot: str = "auto"  # how the dashboard charts it: "auto", "overlay" (price chart), "pane" or "none"
    levels: tuple[float, ...] = ()  # reference lines drawn with it (RSI 30/70, ADX 25)

    def settings(self, base: IndicatorSettings) -> IndicatorSettings:
        """The o1 indicator's ``IndicatorSettings``: the fill model's style with the declared lengths."""
        kw = dict(self.kwargs)
        if self.name == "rsi":
            return replace(base, rsi_length=int(kw.get("length", 14)))
        if self.name == "macd":
            return replace(
                base,
                macd_fast=int(kw.get("fast", 12)),
                macd_slow=int(kw.get("slow", 26)),
                macd_signal=int(kw.get("signal", 9)),
            )
        return replace(base, cci_length=int(kw.get("length", 20)), cci_constant=float(kw.get("c", 0.015)))

    def o1_outputs(self) -> dict[str, str]:
        """Output name -> base field of an o1 indicator."""
        if self.name == "macd":
            return {self.key: "macd", f"{self.key}_signal": "macd_signal", f"{self.key}_hist": "macd_hist"}
        return {self.key: self.name}

    def evaluate(self, frame: Any) -> Any:
        """The raw result of a ta/custom indicator over ``frame`` (a DataFrame of the candles)."""
        if self.kind == "custom":
            return self.fn(frame)
        func, params = _ta_function(self.name)
        kw = dict(self.kwargs)
        args: dict[str, Any] = {k: frame[k] for k in ("high", "low", "close", "volume") if k in params}
        if "open_" in params:
            args["open_"] = frame["open"]
        if "talib" in params:
            kw.setdefault("talib", False)
        return func(**args, **kw)


_TA_CACHE: dict[str, tuple[Any, frozenset[str]]] = {}


def _ta_function(name: str) -> tuple[Any, frozenset[str]]:
    """pandas-ta's function and its parameter names (looked up once: ``inspect`` is slow)."""
    hit = _TA_CACHE.get(name)
    if hit is None:
        import inspect

        import pandas_ta as ta

        func = getattr(ta, name)
        hit = _TA_CACHE[name] = (func, frozenset(inspect.signature(func).parameters))
    return hit


def _probe_frame(n: int) -> Any:
    """A deterministic synthetic history (trend + two cycles) used once per plan to learn the
    declared indicators' output columns and to reject a bad declaration before any run."""
    import pandas as pd

    i = np.arange(n, dtype="float64")
    close = 100.0 + 0.01 * i + 3.0 * np.sin(i / 7.0) + 1.5 * np.sin(i / 23.0)
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) + 0.5 + 0.25 * np.abs(np.sin(i / 3.0))
    low = np.minimum(open_, close) - 0.5 - 0.25 * np.abs(np.cos(i / 5.0))
    volume = 1000.0 + 100.0 * np.abs(np.sin(i / 11.0))
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume})


class IndicatorPlanError(ValueError):
    """A declared indicator cannot be computed (unknown name, bad arguments, wrong output)."""


class IndicatorPlan:
    """Every value a strategy reads on a bar: the base ``IndicatorValues`` fields, then each
    declared indicator's outputs. ``values_type`` is the per-bar NamedTuple (``IndicatorValues``
    itself when nothing is declared, so the built-ins pay nothing)."""

    def __init__(self, specs: tuple[IndicatorSpec, ...], settings: IndicatorSettings) -> None:
        self.specs = specs
        self.settings = settings
        self.outputs: dict[str, tuple[IndicatorSpec, str]] = {}  # output name -> (spec, column or base field)
        probe = None
        for spec in specs:
            if spec.kind == "o1":
                for out, fld in spec.o1_outputs().items():
                    self._add(out, spec, fld)
                continue
            if probe is None:
                probe = _probe_frame(max(300, max((s.window for s in specs), default=0) + 50))
            for out, col in self._columns_of(spec, probe).items():
                self._add(out, spec, col)
        names = tuple(IndicatorValues._fields) + tuple(self.outputs)
        self.fields = names
        if not self.outputs:
            self.values_type: Any = IndicatorValues
        else:
            # the fields are the strategy's own declarations, so the NamedTuple is built at run time
            base = NamedTuple("StrategyIndicatorValues", [(n, float) for n in names])  # type: ignore[misc]
            self.values_type = type("StrategyIndicatorValues", (base,), {"__slots__": (), "as_dict": _as_dict})
        self.window = max((s.window for s in specs if s.kind != "o1"), default=0)

    def _add(self, out: str, spec: IndicatorSpec, col: str) -> None:
        if out in IndicatorValues._fields or out in self.outputs or not out.isidentifier():
            raise IndicatorPlanError(f"indicator {spec.key!r}: output name {out!r} is not a free identifier")
        self.outputs[out] = (spec, col)

    @staticmethod
    def _columns_of(spec: IndicatorSpec, probe: Any) -> dict[str, str]:
        import pandas as pd

        what = (
            f"pandas-ta {spec.name!r}" if spec.kind == "ta" else f"function {getattr(spec.fn, '__name__', spec.fn)!r}"
        )
        try:
            res = spec.evaluate(probe)
        except Exception as exc:  # noqa: BLE001 - the user's declaration: report it, never a traceback
            raise IndicatorPlanError(
                f"indicator {spec.key!r} ({what}) failed on a test history: {type(exc).__name__}: {exc}"
            ) from None
        if res is None:
            raise IndicatorPlanError(f"indicator {spec.key!r} ({what}) returned nothing (bad arguments?)")
        if isinstance(res, pd.DataFrame):
            cols = [str(c) for c in res.columns]
            if spec.columns:
                out = {}
                for suffix, prefix in spec.columns:
                    match = [c for c in cols if c == prefix or c.split("_")[0] == prefix]
                    if len(match) != 1:
                        raise IndicatorPlanError(
                            f"indicator {spec.key!r}: column {prefix!r} not found once in {what}'s output {cols}"
                        )
                    out[f"{spec.key}_{suffix}"] = match[0]
                return out
            return {f"{spec.key}_{c.split('_')[0].lower()}": c for c in cols}
        arr = np.asarray(res)
        if arr.ndim != 1 or len(arr) != len(probe):
            raise IndicatorPlanError(
                f"indicator {spec.key!r} ({what}) must return one value per candle "
                f"(got shape {arr.shape} for {len(probe)} candles)"
            )
        return {spec.key: ""}

    # -- whole history (backtests, checks)
    def compute_history(
        self,
        open_: NDArray[Any],
        high: NDArray[Any],
        low: NDArray[Any],
        close: NDArray[Any],
        volume: NDArray[Any] | None = None,
        *,
        compiled: bool = False,
    ) -> dict[str, NDArray[Any]]:
        """Every field over a whole history (float arrays; bull/engulfing int8); ``compiled``:
        the base values' loops with numba (``compute_history``)."""
        out = compute_history(open_, high, low, close, self.settings, compiled=compiled)
        if not self.outputs:
            return out
        frame = None
        results: dict[str | tuple[str, str], Any] = {}  # o1 results under ("o1", key), ta/custom under key
        for name, (spec, col) in self.outputs.items():
            if spec.kind == "o1":
                key = ("o1", spec.key)
                if key not in results:
                    results[key] = compute_history(
                        open_, high, low, close, spec.settings(self.settings), compiled=compiled
                    )
                out[name] = results[key][col]
                continue
            if frame is None:
                frame = _frame(open_, high, low, close, volume)
            if spec.key not in results:
                try:
                    full = spec.evaluate(frame)
                except Exception as exc:  # noqa: BLE001 - the user's function or arguments: one clear message
                    raise IndicatorPlanError(
                        f"indicator {spec.key!r} failed on this history: {type(exc).__name__}: {exc}"
                    ) from None
                cols = [c for sp, c in self.outputs.values() if sp is spec]
                results[spec.key] = (full, _head(spec, frame, full, cols))
            res, head = results[spec.key]
            arr = _column(res, col, len(close), spec).copy()
            arr[: len(head[col])] = head[col]
            out[name] = arr
        return out


def _head(spec: IndicatorSpec, frame: Any, full: Any, names: list[str]) -> dict[str, NDArray[Any]]:
    """The first bars of a ta/custom indicator exactly as the live path computes them: over the
    candles up to each bar. pandas-ta returns nothing for a history shorter than it wants (and a
    function may seed differently), so the whole-history value of an early bar need not be what
    a live start sees. Bars are recomputed from the first one until three defined ones in a row
    equal the whole-history values (a causal function agrees from then on), at most ``window`` bars."""
    n_all = len(frame)
    n = min(spec.window, n_all)
    whole = {c: _column(full, c, n_all, spec) for c in names}
    cols: dict[str, list[float]] = {c: [] for c in names}
    agree = 0
    for t in range(n):
        try:
            res = spec.evaluate(frame.iloc[: t + 1])
        except Exception:  # noqa: BLE001 - too short for the function yet: undefined, as live
            res = None
        same, defined = True, False
        for c in names:
            try:
                v = float(_column(res, c, t + 1, spec)[-1]) if res is not None else NAN
            except (KeyError, IndicatorPlanError):
                v = NAN
            cols[c].append(v)
            w = float(whole[c][t])
            same = same and ((v != v and w != w) or v == w or abs(v - w) <= 1e-12 * max(1.0, abs(v), abs(w)))
            defined = defined or v == v
        agree = agree + 1 if same and defined else 0  # both still undefined proves nothing
        if agree >= 3:
            break
    return {c: np.array(v, dtype="float64") for c, v in cols.items()}


def _as_dict(self: Any) -> dict[str, float | int | None]:
    out: dict[str, float | int | None] = self._asdict()
    return out


def _frame(
    open_: NDArray[Any], high: NDArray[Any], low: NDArray[Any], close: NDArray[Any], volume: NDArray[Any] | None
) -> Any:
    import pandas as pd

    n = len(close)
    return pd.DataFrame(
        {
            "open": np.asarray(open_, dtype="float64"),
            "high": np.asarray(high, dtype="float64"),
            "low": np.asarray(low, dtype="float64"),
            "close": np.asarray(close, dtype="float64"),
            "volume": np.zeros(n) if volume is None else np.asarray(volume, dtype="float64"),
        }
    )


def _column(res: Any, col: str, n: int, spec: IndicatorSpec) -> NDArray[Any]:
    """One output column of a ta/custom result as a float array of length ``n``."""
    import pandas as pd

    if res is None:
        return np.full(n, np.nan)  # pandas-ta returns None when the history is shorter than it needs
    arr = res[col].to_numpy(dtype="float64") if isinstance(res, pd.DataFrame) else np.asarray(res, dtype="float64")
    if arr.shape != (n,):
        raise IndicatorPlanError(
            f"indicator {spec.key!r} returned {arr.shape[0] if arr.ndim else 0} values for {n} candles"
        )
    return arr


def _incremental_form(spec: IndicatorSpec) -> Any:
    """The O(1) live form of a declared indicator, or None (then it is recomputed over the
    window). The registration hook: ``IncrementalSupertrend`` here, the others in
    ``tradeconsole.core.incremental.FORMS`` (each with ``supports``/``for_spec``/``COLUMNS``)."""
    from tradeconsole.core.incremental import FORMS

    for form in (IncrementalSupertrend, *FORMS):
        if form.supports(spec):
            return form.for_spec(spec)
    return None


def _form_index(form: Any, col: str) -> int | None:
    """Which of an O(1) form's outputs is the pandas-ta column ``col`` (by its prefix, as
    ``BBL`` in ``BBL_20_2.0_2.0``; ``""``, a one-Series result, is the first), or None."""
    names = _SUPERTREND_COLUMNS if isinstance(form, IncrementalSupertrend) else tuple(form.COLUMNS)
    prefix = col.split("_")[0] if col else names[0]
    return names.index(prefix) if prefix in names else None


def _evaluator(spec: IndicatorSpec) -> Any:
    """``spec.evaluate`` with its lookups done once: the pandas-ta function, which frame
    columns it takes and its keyword arguments (the same call, per candle without the set-up)."""
    if spec.kind == "custom":
        return spec.fn
    func, params = _ta_function(spec.name)
    kw = dict(spec.kwargs)
    if "talib" in params:
        kw.setdefault("talib", False)
    take: list[tuple[str, str]] = [(k, k) for k in ("high", "low", "close", "volume") if k in params]
    if "open_" in params:
        take.append(("open_", "open"))

    def evaluate(frame: Any) -> Any:
        return func(**{arg: frame[col] for arg, col in take}, **kw)

    return evaluate


def _last_row(res: Any, cols: list[str], n: int, spec: IndicatorSpec) -> list[float]:
    """The last bar's value of each of ``cols`` in a ta/custom result over ``n`` candles: one
    conversion of the result instead of one per column (what ``_column`` checks, it checks too)."""
    import pandas as pd

    if res is None:
        return [NAN] * len(cols)
    try:
        if isinstance(res, pd.DataFrame):
            if len(res) == n:
                row = res.to_numpy(dtype="float64")[-1]
                names = res.columns
                return [float(row[names.get_loc(c)]) for c in cols]
        else:
            arr = np.asarray(res, dtype="float64")
            if arr.shape == (n,):
                return [float(arr[-1])] * len(cols)
    except (TypeError, ValueError, KeyError):
        pass  # not plain float columns: the slow path says what is wrong, or converts
    return [float(_column(res, c, n, spec)[-1]) for c in cols]


class LiveIndicators:
    """The live path for one strategy: the base ``IncrementalIndicators``, one more per declared
    o1 indicator, an O(1) form for each declared pandas-ta indicator that has one
    (``IncrementalSupertrend``, ``tradeconsole.core.incremental``), and the other ta/custom ones
    recomputed over the last ``plan.window`` closed candles (plus the open one for ``preview``),
    held in numpy buffers (``CandleWindow``). Same interface as ``IncrementalIndicators``."""

    def __init__(self, plan: IndicatorPlan) -> None:
        from tradeconsole.core.live_window import CandleWindow

        self.plan = plan
        self.base = IncrementalIndicators(plan.settings)
        self._o1: dict[str, IncrementalIndicators] = {
            s.key: IncrementalIndicators(s.settings(plan.settings)) for s in plan.specs if s.kind == "o1"
        }
        #: declared indicators with an O(1) form, the rest recomputed over the window
        self._inc: dict[str, Any] = {}
        for s in plan.specs:
            form = _incremental_form(s) if s.kind == "ta" else None
            cols = [col for sp, col in plan.outputs.values() if sp is s]
            if form is not None and all(_form_index(form, col) is not None for col in cols):
                self._inc[s.key] = form
        self._windowed = [s for s in plan.specs if s.kind != "o1" and s.key not in self._inc]
        self._window = CandleWindow(max(plan.window, 1))
        self._kept: deque[Candle] = deque(maxlen=max(plan.window, self.KEEP))  # to warm up a switched strategy
        self._simple = not plan.outputs
        self._plan_rows()

    def _plan_rows(self) -> None:
        """Where each output comes from, worked out once: (0, o1 key, field), (1, form key,
        column index) or (2, windowed key, position in that spec's list of columns)."""
        self._evals = [(s, _evaluator(s)) for s in self._windowed]
        self._cols: dict[str, list[str]] = {s.key: [] for s in self._windowed}
        self._rows: list[tuple[int, str, Any]] = []
        for spec, col in self.plan.outputs.values():
            if spec.kind == "o1":
                self._rows.append((0, spec.key, col))
            elif spec.key in self._inc:
                self._rows.append((1, spec.key, _form_index(self._inc[spec.key], col)))
            else:
                self._cols[spec.key].append(col)
                self._rows.append((2, spec.key, len(self._cols[spec.key]) - 1))

    #: closed candles kept so a strategy switch can warm its own declared indicators up
    KEEP = 1000

    def switched(self, plan: IndicatorPlan) -> LiveIndicators:
        """The live path for another strategy's ``plan`` (same fill model), continuing from here:
        the base values carry on unchanged; the new declared ones are warmed up on the kept
        candles (exact for windowed ones within ``KEEP``; O(1) ones start from those candles)."""
        if plan.specs == self.plan.specs:
            return self
        fresh = LiveIndicators(plan)
        fresh.base = self.base
        for c in self._kept:
            for inc in fresh._o1.values():
                inc.update(c)
            for st in fresh._inc.values():
                st.update(c)
            fresh._window.append(c)
            fresh._kept.append(c)
        return fresh

    @property
    def last_candle(self) -> Candle | None:
        return self.base.last_candle

    @property
    def count(self) -> int:
        return self.base.count

    def update(self, candle: Candle) -> Any:
        return self._step(candle, commit=True)

    def preview(self, candle: Candle) -> Any:
        return self._step(candle, commit=False)

    def _step(self, c: Candle, commit: bool) -> Any:
        base = self.base.update(c) if commit else self.base.preview(c)
        if commit:
            self._kept.append(c)
        if self._simple:
            return base
        o1 = {k: (inc.update(c) if commit else inc.preview(c)) for k, inc in self._o1.items()}
        inc_vals = {k: (st.update(c) if commit else st.preview(c)) for k, st in self._inc.items()}
        results: dict[str, list[float]] = {}
        if self._evals:
            if commit:
                self._window.append(c)
                frame = self._window.frame()
            else:  # the open candle takes the oldest one's place, as it will once it closes
                frame = self._window.preview_frame(c)
            n = len(frame)
            for spec, evaluate in self._evals:
                try:
                    res = evaluate(frame)
                except Exception:  # noqa: BLE001 - a short window (warm-up) the function cannot handle yet
                    res = None
                results[spec.key] = _last_row(res, self._cols[spec.key], n, spec)
        vals: list[Any] = list(base)
        for kind, key, where in self._rows:
            if kind == 0:
                vals.append(getattr(o1[key], where))
            elif kind == 1:
                vals.append(inc_vals[key][where])
            else:
                vals.append(results[key][where])
        return self.plan.values_type._make(vals)
