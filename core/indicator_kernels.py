"""The base indicators' loops as kernels: pandas' and numpy's algorithms, operation for operation.

The base indicators (RSI, MACD, CCI) are defined by pandas-ta, which computes them with pandas
(``Series.ewm(...).mean()``, ``Series.rolling(n).mean()``) and numpy. Importing pandas and
pandas-ta costs a backtest ~0.5 s and their per-call overhead dominates a short one, while a
compiled loop over millions of bars takes milliseconds. These kernels replay exactly the
arithmetic of the pandas and numpy routines the definitions use, in the same order, so the values
are bit-identical, not merely close (``tests/core/test_indicator_kernels.py`` compares them with
``tradeconsole.core.indicators.compute_history_pandas``, the pandas-ta reference, on the shared
data and on random series with gaps, flat runs and negative zeros):

* ``ewm_mean``: ``pandas._libs.window.aggregations.ewm`` (pandas 3.x, ``normalize=True``, no
  ``times``, ``ignore_na=False``), the ``Series.ewm(...).mean()`` behind pandas-ta's ``ema``/``rma``;
* ``rolling_mean``: ``aggregations.roll_mean`` for a fixed window (Kahan-compensated add and
  remove, the consecutive-equal-values and sign rules);
* ``rolling_mean_abs_dev``: numpy's ``mean(axis=1)`` of a sliding window (its pairwise summation
  for the window's length), used for the CCI's mean absolute deviation.

They are ``tradeconsole.core.jit`` kernels: plain Python (fast enough for a few hundred
thousand bars) or compiled with numba for more.
"""

from __future__ import annotations

import math
from typing import Any

from tradeconsole.core.jit import kernel

__all__ = ["PAIRWISE_MAX", "clipped_changes", "ewm_mean", "pairwise_sum", "rolling_mean", "rolling_mean_abs_dev"]


@kernel
def ewm_mean(vals: Any, out: Any, com: float, adjust: bool, minp: int) -> None:
    """``out[i]`` = pandas' exponentially weighted mean of ``vals[:i+1]`` with centre of mass
    ``com`` (pandas derives it from span/alpha/halflife; pass the same value pandas computes)."""
    n = len(vals)
    if n == 0:
        return
    alpha = 1.0 / (1.0 + com)
    old_wt_factor = 1.0 - alpha
    new_wt = 1.0 if adjust else alpha
    weighted = vals[0]
    nobs = 1 if weighted == weighted else 0
    out[0] = weighted if nobs >= minp else math.nan
    old_wt = 1.0
    for i in range(1, n):
        cur = vals[i]
        is_observation = cur == cur
        if is_observation:
            nobs += 1
        if weighted == weighted:
            old_wt *= old_wt_factor
            if is_observation:
                if weighted != cur:  # pandas: "avoid numerical errors on constant series"
                    if not adjust and com == 1.0:
                        new_wt = 1.0 - old_wt
                    weighted = old_wt * weighted + new_wt * cur
                    weighted /= old_wt + new_wt
                if adjust:
                    old_wt += new_wt
                else:
                    old_wt = 1.0
        elif is_observation:
            weighted = cur
        out[i] = weighted if nobs >= minp else math.nan


@kernel
def clipped_changes(close: Any, out: Any, sign: float, first: float) -> None:
    """RSI's gains (``sign`` 1) or losses (``sign`` -1): pandas ``Series.diff()`` (``first`` is
    what bar 0 holds: NaN, or 0.0 in the research style), negated for losses, then
    ``Series.clip(lower=0)`` (NaN and values ``>= 0``, negative zero too, kept; the rest 0)."""
    n = len(close)
    if n == 0:
        return
    x = first if sign > 0 else -first
    out[0] = x if (x != x or x >= 0.0) else 0.0
    for i in range(1, n):
        x = close[i] - close[i - 1]
        if sign < 0:
            x = -x
        out[i] = x if (x != x or x >= 0.0) else 0.0


@kernel
def rolling_mean(vals: Any, out: Any, window: int) -> None:
    """``out[i]`` = pandas' ``Series.rolling(window).mean()`` (``min_periods=window``)."""
    n = len(vals)
    if n == 0:
        return
    sum_x = 0.0
    comp_add = 0.0
    comp_remove = 0.0
    nobs = 0
    neg_ct = 0
    same = 0
    prev = vals[0]
    for i in range(n):
        s = i + 1 - window
        if s < 0:
            s = 0
        if i > 0 and s > 0:  # the fixed window slid by one: value s - 1 leaves
            val = vals[s - 1]
            if val == val:
                nobs -= 1
                y = -val - comp_remove
                t = sum_x + y
                comp_remove = t - sum_x - y
                sum_x = t
                if val < 0.0 or (val == 0.0 and math.copysign(1.0, val) < 0.0):  # signbit
                    neg_ct -= 1
        val = vals[i]
        if val == val:
            nobs += 1
            y = val - comp_add
            t = sum_x + y
            comp_add = t - sum_x - y
            sum_x = t
            if val < 0.0 or (val == 0.0 and math.copysign(1.0, val) < 0.0):  # signbit
                neg_ct += 1
            if val == prev:
                same += 1
            else:
                same = 1
            prev = val
        if nobs >= window and nobs > 0:
            result = sum_x / nobs
            if same >= nobs:
                result = prev
            elif neg_ct == 0 and result < 0.0:
                result = 0.0
            elif neg_ct == nobs and result > 0.0:
                result = 0.0
            out[i] = result
        else:
            out[i] = math.nan


#: the longest run ``pairwise_sum`` reproduces (numpy's ``PW_BLOCKSIZE``; longer runs it splits
#: recursively, which numba's cache cannot hold: callers fall back to numpy itself)
PAIRWISE_MAX = 128


@kernel
def pairwise_sum(a: Any, lo: int, n: int) -> float:
    """numpy's ``pairwise_sum`` of ``a[lo:lo+n]`` for ``n <= PAIRWISE_MAX`` (the float64
    add-reduction of a contiguous run): below 8 values a plain loop, else eight interleaved
    partial sums combined pairwise, then the remainder."""
    if n < 8:
        res: float = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    i = 8
    stop = n - n % 8
    while i < stop:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@kernel
def rolling_mean_abs_dev(vals: Any, out: Any, window: int, scratch: Any) -> None:
    """``out[j]`` for each full window ``vals[j:j+window]``: numpy's
    ``np.abs(w - w.mean()).mean()`` (``scratch`` holds ``window`` floats; ``window`` at most
    ``PAIRWISE_MAX``)."""
    n = len(vals)
    for j in range(n - window + 1):
        mean = pairwise_sum(vals, j, window) / window
        for k in range(window):
            scratch[k] = abs(vals[j + k] - mean)
        out[j] = pairwise_sum(scratch, 0, window) / window
