"""The base indicators without pandas are pandas-ta's numbers, bit for bit.

``compute_history`` (``tradeconsole.core.base_indicators``: numpy and the loops of
``tradeconsole.core.indicator_kernels``) must equal ``compute_history_pandas`` (pandas-ta and
pandas, the definition) exactly: ``np.array_equal`` with NaN in the same places and the same sign
of zero, on the shared data in every indicator setting, on short histories (warm-up edges), and
kernel by kernel on random series with gaps, flat runs and negative zeros, interpreted and
compiled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from tradeconsole.core import indicator_kernels as kern
from tradeconsole.core.indicators import IndicatorSettings, compute_history, compute_history_pandas
from tradeconsole.core.jit import compiled

SETTINGS = {
    "realistic": IndicatorSettings(),
    "seed": IndicatorSettings(rsi_smoothing="sma", style="research"),
    "sma-standard": IndicatorSettings(rsi_smoothing="sma"),
    "wilder-research": IndicatorSettings(style="research"),
    "odd-lengths": IndicatorSettings(rsi_length=7, macd_fast=5, macd_slow=35, macd_signal=5, cci_length=14),
}


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and np.array_equal(a, b, equal_nan=True)
        and np.array_equal(np.signbit(a), np.signbit(b))
    )


@pytest.mark.parametrize("jit", [False, True], ids=["interpreted", "compiled"])
@pytest.mark.parametrize("name", list(SETTINGS))
@pytest.mark.parametrize("which", ["5m", "1h"])
def test_equal_to_pandas_ta_on_the_shared_data(which, name, jit, candles_5m, candles_1h):
    c = candles_5m if which == "5m" else candles_1h
    s = SETTINGS[name]
    for n in (len(c), 3_000, 60, 40, 34, 30, 26, 20, 14, 10, 2, 1):  # whole history, then the warm-up edges
        cols = (c.open[:n], c.high[:n], c.low[:n], c.close[:n])
        want = compute_history_pandas(*cols, s)
        got = compute_history(*cols, s, compiled=jit)
        assert set(got) == set(want)
        for key in want:
            assert _identical(got[key], want[key]), (n, key)


def _series() -> list[np.ndarray]:
    rng = np.random.default_rng(15)
    walk = 1_000 + np.cumsum(rng.normal(size=4_000))
    holes = rng.normal(size=3_000)
    holes[100:130] = np.nan
    holes[500:520] = 2.5  # a flat run
    holes[600:610] = -0.0
    holes[700:705] = 0.0
    holes[0] = np.nan
    return [walk, holes, np.abs(rng.normal(size=500)), -np.abs(rng.normal(size=500))]


@pytest.mark.parametrize("jit", [False, True], ids=["interpreted", "compiled"])
def test_kernels_equal_pandas_and_numpy(jit):
    ewm = compiled(kern.ewm_mean) if jit else kern.ewm_mean
    roll = compiled(kern.rolling_mean) if jit else kern.rolling_mean
    mad = compiled(kern.rolling_mean_abs_dev) if jit else kern.rolling_mean_abs_dev
    cases = [  # pandas keywords -> (centre of mass as pandas derives it, adjust, min_periods)
        (dict(span=12, adjust=False), (12 - 1) / 2, False, 1),
        (dict(span=26, adjust=True, min_periods=25), (26 - 1) / 2, True, 25),
        (dict(alpha=1 / 14, adjust=False), (1 - 1 / 14) / (1 / 14), False, 1),
        (dict(alpha=0.5, adjust=False), 1.0, False, 1),  # pandas' special case for com == 1
        (dict(span=9, adjust=True, min_periods=8), 4.0, True, 8),
    ]
    for v in _series():
        arg = v if jit else v.tolist()
        s = pd.Series(v)
        for kw, com, adjust, minp in cases:
            out = np.empty(len(v))
            ewm(arg, out, com, adjust, minp)
            assert _identical(out, s.ewm(**kw).mean().to_numpy()), kw
        for w in (3, 14, 20):
            out = np.empty(len(v))
            roll(arg, out, w)
            assert _identical(out, s.rolling(w).mean().to_numpy()), w
        for w in (5, 9, 14, 20, kern.PAIRWISE_MAX):
            win = sliding_window_view(v, w)
            out = np.empty(len(win))
            mad(arg, out, w, np.empty(w) if jit else [0.0] * w)
            assert _identical(out, np.abs(win - win.mean(axis=1, keepdims=True)).mean(axis=1)), w


def test_pairwise_sum_is_numpys():
    rng = np.random.default_rng(3)
    for n in range(kern.PAIRWISE_MAX + 1):
        x = rng.normal(size=n) * 10 ** rng.uniform(-3, 6, size=n)
        want = x.sum() if n else 0.0
        assert kern.pairwise_sum(x.tolist(), 0, n) == want, n
        assert compiled(kern.pairwise_sum)(x, 0, n) == want, n
