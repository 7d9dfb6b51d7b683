"""Issue 12, item 3: `--from/--to` select the traded window while earlier candles warm the
indicators up, and seed mode reproduces the research code's indicator definitions exactly, also
in short windows.

The research code's definitions are re-implemented here independently, in plain Python loops
from their textbook formulas (no pandas, nothing shared with ``tradeconsole.core.indicators``):

* each MACD EMA is pandas ``ewm(span, adjust=True, min_periods=span - 1).mean()``: at bar t the
  weighted mean of all observations so far with weights (1 - a)^age, a = 2 / (span + 1),
  undefined until span - 1 observations exist; the signal is the same EMA of the MACD line;
* RSI: changes ``close.diff().where(d > 0, 0)`` (the first bar's missing change counts as 0),
  14-bar simple means of gains and losses, RSI = 100 - 100 / (1 + gain / loss): defined from
  bar 13;
* CCI: typical price, its 20-bar simple mean and mean absolute deviation, constant 0.015.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tradeconsole.backtest.data import window_with_warmup
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.broker import FILL_MODELS
from tradeconsole.core.domain import parse_utc_ms
from tradeconsole.core.events import CandleEvent
from tradeconsole.core.indicators import IncrementalIndicators, IndicatorSettings, compute_history
from tradeconsole.core.strategies import make_strategy
from tradeconsole.tui.cli import main

NAN = math.nan
FIELDS = ("rsi", "macd", "macd_signal", "macd_hist", "cci")


# ---------------------------------------------------------------- independent research definitions


def research_ewm(xs: list[float], span: int) -> list[float]:
    a = 2.0 / (span + 1.0)
    obs: list[float] = []
    out = []
    for x in xs:
        if not math.isnan(x):
            obs.append(x)
        if len(obs) < span - 1 or not obs:
            out.append(NAN)
            continue
        weights = [(1.0 - a) ** age for age in range(len(obs))]
        out.append(math.fsum(w * v for w, v in zip(weights, reversed(obs))) / math.fsum(weights))
    return out


def research_indicators(o, h, lo, c) -> dict[str, list[float]]:
    n = len(c)
    deltas = [0.0] + [c[i] - c[i - 1] for i in range(1, n)]
    gains = [d if d > 0 else 0.0 for d in deltas]
    losses = [-d if d < 0 else 0.0 for d in deltas]
    rsi = []
    for i in range(n):
        if i < 13:
            rsi.append(NAN)
            continue
        g, lo_ = math.fsum(gains[i - 13 : i + 1]) / 14, math.fsum(losses[i - 13 : i + 1]) / 14
        rsi.append(NAN if g == lo_ == 0 else 100.0 if lo_ == 0 else 100.0 - 100.0 / (1.0 + g / lo_))
    line = [f - s for f, s in zip(research_ewm(c, 12), research_ewm(c, 26))]
    signal = research_ewm(line, 9)
    tp = [(h[i] + lo[i] + c[i]) / 3.0 for i in range(n)]
    cci = []
    for i in range(n):
        if i < 19:
            cci.append(NAN)
            continue
        win = tp[i - 19 : i + 1]
        mean = math.fsum(win) / 20
        mad = math.fsum(abs(x - mean) for x in win) / 20
        cci.append((tp[i] - mean) / (0.015 * mad) if mad else NAN)
    return {
        "rsi": rsi,
        "macd": line,
        "macd_signal": signal,
        "macd_hist": [x - y for x, y in zip(line, signal)],
        "cci": cci,
    }


def assert_same(got: dict, want: dict, tol: float = 1e-9, label: str = "") -> None:
    for k in FIELDS:
        a, b = np.asarray(got[k], dtype=float), np.asarray(want[k], dtype=float)
        assert (np.isnan(a) == np.isnan(b)).all(), f"{label} {k}: defined on different bars"
        if (~np.isnan(a)).any():
            assert np.nanmax(np.abs(a - b)) <= tol, f"{label} {k}: differs by {np.nanmax(np.abs(a - b))}"


WINDOWS = [(0, 30), (500, 36), (1_000, 60), (7_777, 150), (9_000, 400)]


@pytest.mark.parametrize("start,length", WINDOWS)
def test_seed_indicators_equal_the_research_definitions_on_short_windows(candles_1h, start, length):
    w = candles_1h.take(slice(start, start + length))
    want = research_indicators(w.open.tolist(), w.high.tolist(), w.low.tolist(), w.close.tolist())
    settings = FILL_MODELS["seed"].indicator_settings()
    assert_same(compute_history(w.open, w.high, w.low, w.close, settings), want, label=f"history {start}+{length}")
    inc = IncrementalIndicators(settings)
    rows = [inc.update(c) for c in w.candles()]
    assert_same({k: [getattr(r, k) for r in rows] for k in FIELDS}, want, label=f"incremental {start}+{length}")
    # the research code's bars of definition: RSI from 13, MACD from 24, signal from 31
    assert math.isnan(want["rsi"][12]) and not math.isnan(want["rsi"][13])
    assert math.isnan(want["macd"][23]) and not math.isnan(want["macd"][24])
    if length > 31:
        assert math.isnan(want["macd_signal"][30]) and not math.isnan(want["macd_signal"][31])
    else:  # shorter than the signal's warm-up: undefined throughout, in both
        assert all(math.isnan(x) for x in want["macd_signal"])


def test_standard_definitions_differ_on_short_windows(candles_1h):
    """Guard: the comparison above is sensitive to the definitions (pandas-ta's warm-up differs)."""
    w = candles_1h.take(slice(1_000, 1_060))
    want = research_indicators(w.open.tolist(), w.high.tolist(), w.low.tolist(), w.close.tolist())
    std = compute_history(w.open, w.high, w.low, w.close, IndicatorSettings(rsi_smoothing="sma"))
    with pytest.raises(AssertionError):
        assert_same(std, want)


def test_seed_backtest_trades_on_the_research_definitions_in_a_short_window(candles_5m):
    w = candles_5m.take(slice(20_000, 20_300))
    events: list = []
    run_backtest(w, make_strategy("basic"), interval="5m", fill_model="seed", publish=events.append)
    used = [e.indicators for e in events if isinstance(e, CandleEvent)]
    want = research_indicators(w.open.tolist(), w.high.tolist(), w.low.tolist(), w.close.tolist())
    assert_same({k: [u[k] for u in used] for k in FIELDS}, want)


# ---------------------------------------------------------------- warm-up


@pytest.mark.parametrize("mode", ["realistic", "seed"])
def test_window_indicators_equal_a_full_run_sliced(candles_5m, mode):
    start, end = parse_utc_ms("2022-12-01"), parse_utc_ms("2022-12-08")
    upto, warmup = window_with_warmup(candles_5m, start, end)
    lo = int(np.searchsorted(candles_5m.open_time, start))
    hi = int(np.searchsorted(candles_5m.open_time, end))
    assert warmup == lo > 0 and len(upto) == hi
    events: list = []
    r = run_backtest(upto, make_strategy("basic"), interval="5m", fill_model=mode, publish=events.append, warmup=warmup)
    assert r.warmup_bars == warmup and len(r.equity) == hi - lo and r.open_time[0] == start
    assert all(f.time >= start for f in r.fills)  # warm-up candles are never traded
    used = [e.indicators for e in events if isinstance(e, CandleEvent)]
    assert len(used) == hi - lo
    c = candles_5m
    full = compute_history(c.open, c.high, c.low, c.close, FILL_MODELS[mode].indicator_settings())
    for k in FIELDS:
        np.testing.assert_array_equal(np.array([u[k] for u in used]), full[k][lo:hi], err_msg=k)
    # a cold start on the window alone is what the warm-up prevents: it differs
    cold = c.take(slice(lo, hi))
    cold_ind = compute_history(cold.open, cold.high, cold.low, cold.close, FILL_MODELS[mode].indicator_settings())
    assert np.isnan(cold_ind["macd_signal"][0]) and not np.isnan(full["macd_signal"][lo])


def test_cli_reports_warmup_in_json_and_text(capsys, data_1h, candles_1h):
    code = main(
        [
            "backtest",
            "--strategy",
            "engulfing",
            "--data",
            str(data_1h),
            "--from",
            "2022-06-01",
            "--to",
            "2022-09-01",
            "--json",
        ]
    )
    r = json.loads(capsys.readouterr().out)
    before = int(np.searchsorted(candles_1h.open_time, parse_utc_ms("2022-06-01")))
    assert code == 0 and r["warmup_bars"] == before == (31 + 28 + 31 + 30 + 31) * 24
    assert r["start"] == "2022-06-01T00:00:00.000Z" and r["bars"] == (30 + 31 + 31) * 24
    code = main(["backtest", "--strategy", "engulfing", "--data", str(data_1h), "--from", "2022-06-01"])
    assert code == 0 and f"Warm-up              {before:,} candle(s) before the window" in capsys.readouterr().out


def test_window_at_the_start_of_the_data_says_it_starts_cold(capsys, data_1h):
    code = main(
        ["backtest", "--strategy", "engulfing", "--data", str(data_1h), "--from", "2021-01-01", "--to", "2022-02-01"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "Warm-up              0 candles (the window starts with the data" in out


def test_runner_refuses_a_warmup_that_leaves_nothing_to_trade(candles_1h):
    with pytest.raises(ValueError, match="warmup must leave at least one candle"):
        run_backtest(candles_1h.take(slice(0, 10)), make_strategy("engulfing"), interval="1h", warmup=10)
