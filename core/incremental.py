"""O(1)-per-candle live forms of declared pandas-ta indicators: ``sma``, ``ema``, ``atr``, ``bbands``.

A declared ``ta(...)`` indicator without an O(1) form is recomputed live over a window of recent
candles, which costs pandas-ta's own overhead on every candle (~2.4 ms for ``bbands(20)``, see
``bench/bench_strategy_window.py``). The forms here follow the recurrences pandas-ta 0.4 runs
(``talib=False``, which ``IndicatorSpec.evaluate`` sets, so the backtest runs them too) step by
step from the first candle, so the live path gives the whole-history values rather than a
window's approximation of them; ``tests/strategies/checks/test_incremental_forms.py`` proves it
on real 5m and 1h data, far below ``strategy check``'s tolerance.

What each mirrors:

* ``sma(length)``: pandas-ta's numba convolution of the last ``length`` inputs with ``1/length``,
  called on the window so that it sums in the whole history's order (same bits).
* ``ema(length)``: ``ewm(span=length, adjust=False)`` seeded with the mean of the first
  ``length`` closes (pandas-ta's ``presma``, summed as pandas sums it), the recurrence of the
  ``_Ema`` the base MACD uses.
* ``atr(length)``: the true range from bar 0 (bar 0: high - low), its first ``length`` values'
  mean at bar ``length - 1``, then Wilder's ``ewm(alpha=1/length, adjust=False)``; defined from
  bar ``length`` (pandas-ta returns nothing for ``length`` candles or fewer).
* ``bbands(length, lower_std, upper_std, ddof)``: the SMA above, pandas' rolling variance
  (Welford's update with Kahan-compensated means, removing the leaving value before adding the
  new one, exactly as ``pandas.core.window`` does, so its rounding drift over a long history is
  reproduced, not just approximated), then the five columns as pandas-ta assembles them.

Not reproduced, both far below 1e-12 relative and stated so nobody hunts for them: pandas-ta adds
2.2e-16 to a whole difference series (``non_zero_range``) when any element of the history is 0
(a zero-range candle for ATR; a band width or a close on the lower band for ``bbands``). A
window of ``length`` identical closes (band width 0) makes pandas-ta's ``BBP`` 0/epsilon noise
that depends on the entire history, future included; no causal form can match that one value.

Each form has the interface ``LiveIndicators`` uses: ``supports(spec)``, ``for_spec(spec)``,
``update(candle)`` / ``preview(candle)`` returning the output columns in ``COLUMNS`` order
(pandas-ta's column-name prefixes), and ``first``, the first bar with values.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from tradeconsole.core.domain import Candle
from tradeconsole.core.indicators import NAN, _Ema

__all__ = ["FORMS", "IncrementalAtr", "IncrementalBBands", "IncrementalEma", "IncrementalSma"]

_EPS = 2.220446049250313e-16  # pandas-ta's sflt.epsilon, added where a difference is exactly 0


def _kwargs(spec: Any, name: str, allowed: dict[str, tuple[Any, ...] | None]) -> dict[str, Any] | None:
    """The declared keyword arguments when ``spec`` is ``ta(name, ...)`` with only ``allowed``
    ones (a tuple lists the values reproduced; ``None``: any value), else None."""
    if spec.kind != "ta" or spec.name != name:
        return None
    kw = dict(spec.kwargs)
    for k, v in kw.items():
        if k not in allowed:
            return None
        ok = allowed[k]
        if ok is not None and v not in ok:
            return None
    return kw


def _length(kw: dict[str, Any], default: int) -> int | None:
    """pandas-ta's ``v_pos_default`` for a length: a positive int, the default when not given;
    anything else (a float, a bool) is left to the windowed path rather than guessed."""
    v = kw.get("length")
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        return None
    return v if v > 0 else default


def _positive(kw: dict[str, Any], key: str, default: float) -> float | None:
    v = kw.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if v > 0 else default


_NO_TALIB = (None, False)  # pandas-ta's own code path (what ``IndicatorSpec.evaluate`` defaults to)
_NO_OFFSET = (None, 0)


class _SeededEma(_Ema):
    """``_Ema`` with its SMA seed summed as pandas' ``Series.mean`` sums it (numpy's pairwise
    sum of the first ``length`` inputs, then one division), so the seed has pandas' exact bits
    and so does every value after it: a level exit at an EMA/ATR price fills at the same price."""

    __slots__ = ()

    def peek(self, x: float) -> float:
        if self.count + 1 == self.length:
            return float(np.sum(np.array([*self.acc, x], dtype="float64"))) / self.length
        return super().peek(x)


def _convolution_mean(vals: list[float], length: int) -> float:
    """The mean of the last ``length`` of ``vals`` exactly as pandas-ta's ``sma`` computes it:
    its numba kernel (a BLAS dot product of the window with ``1/length``). Given one value more
    than the window, the kernel takes the same branch, and so the same summation order, as over
    a whole history (over exactly ``length`` values numba reverses the operands)."""
    from pandas_ta.overlap.sma import nb_sma

    if len(vals) == length:
        vals = [0.0, *vals]
    return float(nb_sma(np.array(vals, dtype="float64"), length)[-1])


class _Window:
    """The last ``length`` inputs, and the window a new input would make."""

    __slots__ = ("length", "values")

    def __init__(self, length: int) -> None:
        self.length = length
        self.values: deque[float] = deque(maxlen=length + 1)  # one more: see ``_convolution_mean``

    def full_with(self, x: float) -> list[float] | None:
        """The (up to ``length + 1``) last inputs ending with ``x``, or None while fewer than
        ``length`` are known."""
        if len(self.values) + 1 < self.length:
            return None
        vals = list(self.values)
        if len(vals) == self.length + 1:
            del vals[0]
        vals.append(x)
        return vals


class IncrementalSma:
    """pandas-ta ``sma(length)`` (column ``SMA``)."""

    COLUMNS = ("SMA",)

    def __init__(self, length: int = 10) -> None:
        self.length = length
        self.first = length - 1
        self._win = _Window(length)

    def update(self, c: Candle) -> tuple[float]:
        return self._step(c, True)

    def preview(self, c: Candle) -> tuple[float]:
        return self._step(c, False)

    def _step(self, c: Candle, commit: bool) -> tuple[float]:
        vals = self._win.full_with(c.close)
        if commit:
            self._win.values.append(c.close)
        return (NAN,) if vals is None else (_convolution_mean(vals, self.length),)

    @staticmethod
    def supports(spec: Any) -> bool:
        kw = _kwargs(spec, "sma", {"length": None, "talib": _NO_TALIB, "offset": _NO_OFFSET})
        return kw is not None and _length(kw, 10) is not None

    @staticmethod
    def for_spec(spec: Any) -> IncrementalSma:
        return IncrementalSma(_length(dict(spec.kwargs), 10) or 10)


class IncrementalEma:
    """pandas-ta ``ema(length)`` with its SMA seed (column ``EMA``)."""

    COLUMNS = ("EMA",)

    def __init__(self, length: int = 10) -> None:
        self.length = length
        self.first = length - 1
        self._ema = _SeededEma(length)

    def update(self, c: Candle) -> tuple[float]:
        return (self._ema.push(c.close),)

    def preview(self, c: Candle) -> tuple[float]:
        return (self._ema.peek(c.close),)

    @staticmethod
    def supports(spec: Any) -> bool:
        kw = _kwargs(
            spec,
            "ema",
            {"length": None, "talib": _NO_TALIB, "presma": (None, True), "adjust": (None, False), "offset": _NO_OFFSET},
        )
        return kw is not None and _length(kw, 10) is not None

    @staticmethod
    def for_spec(spec: Any) -> IncrementalEma:
        return IncrementalEma(_length(dict(spec.kwargs), 10) or 10)


class IncrementalAtr:
    """pandas-ta ``atr(length)`` (Wilder, column ``ATRr``)."""

    COLUMNS = ("ATRr",)

    def __init__(self, length: int = 14) -> None:
        self.length = length
        self.first = length  # pandas-ta needs length + 1 candles
        self._ema = _SeededEma(length, alpha=1.0 / length)
        self._prev_close = NAN
        self.count = 0

    def update(self, c: Candle) -> tuple[float]:
        return self._step(c, True)

    def preview(self, c: Candle) -> tuple[float]:
        return self._step(c, False)

    def _step(self, c: Candle, commit: bool) -> tuple[float]:
        pc, hl = self._prev_close, c.high - c.low
        tr = abs(hl) if self.count == 0 else max(abs(hl), abs(c.high - pc), abs(pc - c.low))
        atr = self._ema.push(tr) if commit else self._ema.peek(tr)
        i = self.count
        if commit:
            self.count, self._prev_close = i + 1, c.close
        return (NAN,) if i < self.first else (atr,)

    @staticmethod
    def supports(spec: Any) -> bool:
        kw = _kwargs(
            spec,
            "atr",
            {
                "length": None,
                "mamode": (None, "rma"),
                "talib": _NO_TALIB,
                "drift": (None, 1),
                "prenan": (None, False),
                "offset": _NO_OFFSET,
            },
        )
        return kw is not None and _length(kw, 14) is not None

    @staticmethod
    def for_spec(spec: Any) -> IncrementalAtr:
        return IncrementalAtr(_length(dict(spec.kwargs), 14) or 14)


class _RollingVar:
    """pandas' fixed-window rolling variance, one input at a time: Welford's update of the mean
    and the sum of squared deviations, each mean step Kahan-compensated (separate compensations
    for adding and removing), the leaving input removed before the new one is added."""

    __slots__ = ("length", "ddof", "nobs", "mean", "ssqdm", "comp_add", "comp_remove")

    def __init__(self, length: int, ddof: int) -> None:
        self.length, self.ddof = length, ddof
        self.nobs = self.mean = self.ssqdm = self.comp_add = self.comp_remove = 0.0

    def state(self) -> tuple[float, float, float, float, float]:
        return (self.nobs, self.mean, self.ssqdm, self.comp_add, self.comp_remove)

    def step(self, leaving: float | None, x: float) -> float:
        """Remove ``leaving`` (None while the window fills), add ``x``; the variance."""
        nobs, mean, ssqdm, comp_add, comp_remove = self.state()
        if leaving is not None:
            nobs -= 1.0
            if nobs:
                prev_mean = mean - comp_remove
                y = leaving - comp_remove
                t = y - mean
                comp_remove = t + mean - y
                mean = mean - t / nobs
                ssqdm = ssqdm - (leaving - prev_mean) * (leaving - mean)
            else:
                mean = ssqdm = 0.0
        nobs += 1.0
        prev_mean = mean - comp_add
        y = x - comp_add
        t = y - mean
        comp_add = t + mean - y
        mean = mean + t / nobs
        ssqdm = ssqdm + (x - prev_mean) * (x - mean)
        self.nobs, self.mean, self.ssqdm, self.comp_add, self.comp_remove = nobs, mean, ssqdm, comp_add, comp_remove
        if nobs >= self.length and nobs > self.ddof:
            return 0.0 if nobs == 1 else ssqdm / (nobs - self.ddof)
        return NAN


class IncrementalBBands:
    """pandas-ta ``bbands(length, lower_std, upper_std, ddof)`` with its SMA (columns ``BBL``,
    ``BBM``, ``BBU``, ``BBB``, ``BBP``)."""

    COLUMNS = ("BBL", "BBM", "BBU", "BBB", "BBP")

    def __init__(self, length: int = 5, lower_std: float = 2.0, upper_std: float = 2.0, ddof: int = 1) -> None:
        self.length, self.lower_std, self.upper_std = length, lower_std, upper_std
        self.first = length - 1
        self._win = _Window(length)
        self._var = _RollingVar(length, ddof)

    def update(self, c: Candle) -> tuple[float, float, float, float, float]:
        return self._step(c, True)

    def preview(self, c: Candle) -> tuple[float, float, float, float, float]:
        return self._step(c, False)

    def _step(self, c: Candle, commit: bool) -> tuple[float, float, float, float, float]:
        x = c.close
        win = self._win
        leaving = win.values[-self.length] if len(win.values) >= self.length else None
        saved = self._var.state()
        var = self._var.step(leaving, x)
        vals = win.full_with(x)
        if commit:
            win.values.append(x)
        else:
            self._var.nobs, self._var.mean, self._var.ssqdm, self._var.comp_add, self._var.comp_remove = saved
        if vals is None:
            return (NAN, NAN, NAN, NAN, NAN)
        mid = _convolution_mean(vals, self.length)
        std = math.sqrt(var) if var >= 0 else NAN  # numpy's sqrt of a negative is NaN too
        lower, upper = mid - self.lower_std * std, mid + self.upper_std * std
        ulr = upper - lower
        if ulr == 0:
            ulr = _EPS
        below = x - lower
        if below == 0:
            below = _EPS
        return (lower, mid, upper, 100 * ulr / mid, below / ulr)

    @staticmethod
    def _parse(spec: Any) -> tuple[int, float, float, int] | None:
        kw = _kwargs(
            spec,
            "bbands",
            {
                "length": None,
                "lower_std": None,
                "upper_std": None,
                "ddof": None,
                "mamode": (None, "sma"),
                "talib": _NO_TALIB,
                "offset": _NO_OFFSET,
                # not a bbands parameter: pandas-ta passes it on to ``sma``, which ignores it
                # (the project's own strategies declare it; the equality test covers it)
                "std": None,
            },
        )
        if kw is None:
            return None
        length = _length(kw, 5)
        lo, up = _positive(kw, "lower_std", 2.0), _positive(kw, "upper_std", 2.0)
        if length is None or lo is None or up is None:
            return None
        d = kw.get("ddof")
        ddof = int(d) if isinstance(d, int) and 0 <= d < length else 1  # pandas-ta's rule, bools included
        return length, lo, up, ddof

    @staticmethod
    def supports(spec: Any) -> bool:
        return IncrementalBBands._parse(spec) is not None

    @staticmethod
    def for_spec(spec: Any) -> IncrementalBBands:
        parsed = IncrementalBBands._parse(spec)
        if parsed is None:
            raise ValueError(f"bbands form does not reproduce {spec.kwargs!r}")
        return IncrementalBBands(*parsed)


#: the forms ``LiveIndicators`` asks, in order, besides ``IncrementalSupertrend``
FORMS: tuple[Any, ...] = (IncrementalSma, IncrementalEma, IncrementalAtr, IncrementalBBands)
