"""Indicators: incremental == whole history (1e-9), and both agree with TA-Lib as an independent
reference where the definitions coincide."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tradeconsole.core.domain import Candle
from tradeconsole.core.indicators import IncrementalIndicators, IndicatorSettings, IndicatorValues, compute_history

TOL = 1e-9


def _run_incremental(arr, settings, preview_every: int = 1):
    inc = IncrementalIndicators(settings)
    out = []
    for i, c in enumerate(arr.candles()):
        if i % preview_every == 0:
            # an open-candle preview must not disturb the closed sequence
            half = Candle(
                c.open_time,
                c.open,
                max(c.open, c.close),
                min(c.open, c.close),
                (c.open + c.close) / 2,
                0.0,
                c.close_time,
                closed=False,
            )
            inc.preview(half)
            p = inc.preview(c)
        v = inc.update(c)
        if i % preview_every == 0:
            assert all((a == b) or (math.isnan(a) and math.isnan(b)) for a, b in zip(p, v))
        out.append(v)
    return np.array(out, dtype=float)


@pytest.mark.parametrize("smoothing,style", [("wilder", "standard"), ("sma", "standard"), ("sma", "research")])
@pytest.mark.parametrize("which", ["1h", "5m"])
def test_incremental_matches_whole_history(which, smoothing, style, candles_1h, candles_5m):
    arr = candles_1h if which == "1h" else candles_5m.take(slice(0, 12_000))
    s = IndicatorSettings(rsi_smoothing=smoothing, style=style)
    hist = compute_history(arr.open, arr.high, arr.low, arr.close, s)
    inc = _run_incremental(arr, s, preview_every=7)
    for j, name in enumerate(IndicatorValues._fields):
        a, b = hist[name].astype(float), inc[:, j]
        assert (np.isnan(a) == np.isnan(b)).all(), f"{name}: warm-up NaNs differ"
        diff = np.nanmax(np.abs(a - b)) if (~np.isnan(a)).any() else 0.0
        assert diff <= TOL, f"{name}: incremental differs from whole history by {diff}"


def test_warmup_lengths(candles_1h):
    s = IndicatorSettings()
    h = compute_history(candles_1h.open, candles_1h.high, candles_1h.low, candles_1h.close, s)
    first = {k: int(np.argmax(~np.isnan(h[k]))) for k in ("rsi", "macd", "macd_signal", "cci")}
    assert first == {"rsi": 14, "macd": 25, "macd_signal": 33, "cci": 19}
    assert s.warmup_bars == 34


def test_against_talib(candles_1h):
    talib = pytest.importorskip("talib")
    a = candles_1h
    h = compute_history(a.open, a.high, a.low, a.close, IndicatorSettings(rsi_smoothing="wilder"))
    rsi = talib.RSI(a.close, 14)
    assert np.nanmax(np.abs(rsi[14:] - h["rsi"][14:])) < TOL  # Wilder, SMA-seeded: identical from bar 14
    cci = talib.CCI(a.high, a.low, a.close, 20)
    assert np.nanmax(np.abs(cci[19:] - h["cci"][19:])) < 1e-8  # CCI is ~100s: 1e-8 abs is ~1e-10 relative
    macd, sig, hist = talib.MACD(a.close, 12, 26, 9)
    # TA-Lib aligns its EMA seeds differently; after the seeds fade out the values coincide
    assert np.nanmax(np.abs(macd[300:] - h["macd"][300:])) < TOL
    assert np.nanmax(np.abs(sig[300:] - h["macd_signal"][300:])) < TOL
    assert np.nanmax(np.abs(hist[300:] - h["macd_hist"][300:])) < TOL


def test_sma_rsi_is_simple_means(candles_1h):
    c = candles_1h.close
    d = np.diff(c)
    g, lo = np.clip(d, 0, None), np.clip(-d, 0, None)
    k = 14
    ref = np.full(len(c), np.nan)
    for i in range(k, len(c)):
        ag, al = g[i - k : i].mean(), lo[i - k : i].mean()
        ref[i] = 100 - 100 / (1 + ag / al)
    h = compute_history(candles_1h.open, candles_1h.high, candles_1h.low, c, IndicatorSettings(rsi_smoothing="sma"))
    assert np.nanmax(np.abs(ref - h["rsi"])) < TOL


def _c(o, cl, t=0):
    return Candle(t, o, max(o, cl) + 1, min(o, cl) - 1, cl, 1.0, t + 59_999)


def test_engulfing_and_bull_flags():
    seq = [_c(10, 8, 0), _c(7.5, 11, 60_000), _c(11, 12, 120_000), _c(12.5, 10.5, 180_000), _c(10, 10, 240_000)]
    inc = IncrementalIndicators()
    vals = [inc.update(c) for c in seq]
    assert [v.engulfing for v in vals] == [0, 1, 0, -1, 0]
    assert [v.bull for v in vals] == [0, 1, 1, 0, 1]  # close >= open is bull, doji included
    o = np.array([c.open for c in seq])
    cl = np.array([c.close for c in seq])
    h = compute_history(o, o + 1, o - 1, cl)
    assert h["engulfing"].tolist() == [0, 1, 0, -1, 0]


def test_flat_prices_give_nan_rsi_not_crash():
    inc = IncrementalIndicators()
    for i in range(40):
        v = inc.update(Candle(i * 60_000, 5.0, 5.0, 5.0, 5.0, 0.0, i * 60_000 + 59_999))
    assert math.isnan(v.rsi) and math.isnan(v.cci)
    assert v.macd == 0.0


def test_settings_validation():
    with pytest.raises(ValueError):
        IndicatorSettings(rsi_smoothing="ema")
    with pytest.raises(ValueError):
        IndicatorSettings(macd_fast=30, macd_slow=26)
