"""The O(1) live forms of ``tradeconsole.core.incremental`` (sma, ema, atr, bbands) equal
pandas-ta's whole-history output on real 5m and 1h data, bar for bar from the first candle, far
inside ``strategy check``'s tolerance; the live path picks them, previews without committing,
and a strategy trading on them fills exactly as its backtest does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tradeconsole.backtest.data import load_candles
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.backtest.strategy_check import TOLERANCE
from tradeconsole.backtest.strategy_loader import load_file
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, SimulatedFuturesBroker
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.incremental import IncrementalAtr, IncrementalBBands, IncrementalEma, IncrementalSma
from tradeconsole.core.indicators import IndicatorSpec, LiveIndicators
from tradeconsole.core.session import StrategySession
from tradeconsole.core.strategies import Side, Strategy, make_strategy, register_strategy, ta

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "binance" / "spot" / "ETHUSDT"
STRATS = Path(__file__).resolve().parents[1]
REL = 1e-9  # what the live path is held to here: a thousand times inside the check's TOLERANCE


@pytest.fixture(scope="module", params=["5m", "1h"])
def candles(request) -> CandleArrays:
    d = SHARED / request.param
    if not d.is_dir():
        pytest.fail(f"real market data missing: {d}")
    arrays = load_candles(d, interval=request.param)[0]
    # 5m: 30,000 candles (~3.5 months), long enough for pandas' rolling-variance drift to show
    return arrays.take(slice(0, 30_000)) if request.param == "5m" else arrays


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    both_nan = np.isnan(a) & np.isnan(b)
    close = np.abs(a - b) <= REL * np.maximum(1.0, np.abs(b))
    return bool(np.all(both_nan | close))


def _reference(spec: IndicatorSpec, c: CandleArrays, first: int) -> np.ndarray:
    """pandas-ta over the whole history (what a backtest computes), one column per output, with
    the bars before ``first`` NaN: pandas-ta returns nothing for a history that short."""
    frame = pd.DataFrame({"open": c.open, "high": c.high, "low": c.low, "close": c.close, "volume": c.volume})
    res = spec.evaluate(frame)
    ref = np.asarray(res.to_numpy(dtype="float64"), dtype="float64")
    ref = ref.reshape(len(frame), -1).copy()
    ref[:first] = np.nan
    return ref


CASES = [
    (IncrementalSma, "sma", {"length": 20}),
    (IncrementalSma, "sma", {"length": 3}),
    (IncrementalEma, "ema", {"length": 21}),
    (IncrementalEma, "ema", {}),
    (IncrementalAtr, "atr", {"length": 14}),
    (IncrementalAtr, "atr", {"length": 5, "mamode": "rma"}),
    (IncrementalBBands, "bbands", {"length": 20, "std": 2.0}),
    (IncrementalBBands, "bbands", {"length": 20, "lower_std": 1.5, "upper_std": 2.5, "ddof": 0}),
    (IncrementalBBands, "bbands", {"length": 50, "std": 3.0}),
    (IncrementalBBands, "bbands", {}),
]


@pytest.mark.parametrize(
    "form,name,kw", CASES, ids=[f"{n}-{'-'.join(f'{k}{v}' for k, v in kw.items())}" for _, n, kw in CASES]
)
def test_equals_pandas_ta_whole_history(candles, form, name, kw):
    spec = IndicatorSpec("x", "ta", name, tuple(kw.items()), window=200)
    assert form.supports(spec)
    inc = form.for_spec(spec)
    mine = np.array([inc.update(c) for c in candles.candles()], dtype="float64")
    ref = _reference(spec, candles, inc.first)
    assert mine.shape == ref.shape
    assert np.isnan(mine[: inc.first]).all() and not np.isnan(mine[inc.first]).any()
    for j in range(ref.shape[1]):
        assert _same(mine[:, j], ref[:, j]), (form.COLUMNS[j], np.nanmax(np.abs(mine[:, j] - ref[:, j])))
    assert REL < TOLERANCE


def test_bbands_reproduces_pandas_rolling_variance_drift(candles):
    """Not an approximation: the band width pandas computes with its online variance over a long
    history drifts from the exact one by more than the live path is held to, and the form follows
    pandas (a two-pass std over each window would not)."""
    spec = IndicatorSpec("x", "ta", "bbands", (("length", 20),), window=200)
    inc = IncrementalBBands.for_spec(spec)
    mine = np.array([inc.update(c) for c in candles.candles()], dtype="float64")
    ref = _reference(spec, candles, inc.first)
    close = np.asarray(candles.close, dtype="float64")
    exact = np.full(len(close), np.nan)
    exact[19:] = np.lib.stride_tricks.sliding_window_view(close, 20).std(axis=1, ddof=1)
    std_ref = (ref[:, 2] - ref[:, 1]) / 2.0
    std_mine = (mine[:, 2] - mine[:, 1]) / 2.0
    ok = ~np.isnan(std_ref)
    assert np.max(np.abs(std_mine[ok] - std_ref[ok])) <= 1e-9
    if len(close) > 20_000:  # the drift shows on the long (5m) history
        assert np.max(np.abs(exact[ok] - std_ref[ok])) > 1e-9


@pytest.mark.parametrize(
    "name,kw",
    [
        ("bbands", {"length": 20, "talib": True}),
        ("bbands", {"length": 20, "mamode": "ema"}),
        ("bbands", {"length": 20, "offset": 1}),
        ("atr", {"length": 14, "percent": True}),
        ("ema", {"length": 2.5}),
        ("sma", {"length": 10, "fillna": 0}),
        ("rsi", {"length": 10}),
    ],
)
def test_arguments_it_does_not_reproduce_stay_windowed(name, kw):
    spec = IndicatorSpec("x", "ta", name, tuple(kw.items()), window=200)
    assert not any(f.supports(spec) for f in (IncrementalSma, IncrementalEma, IncrementalAtr, IncrementalBBands))


def test_preview_is_the_next_update_and_changes_nothing(candles):
    bars = candles.candles()
    for form, name, kw in CASES[::2]:
        inc = form.for_spec(IndicatorSpec("x", "ta", name, tuple(kw.items()), window=200))
        for c in bars[:300]:
            inc.update(c)
        nxt = bars[300]
        moved = inc.preview(nxt._replace(high=nxt.high * 1.05, close=nxt.close * 1.04))
        p = inc.preview(nxt)
        assert p == inc.update(nxt)
        assert moved != p


class _Bands(Strategy):
    name = "t_inc_bands"
    default_interval = "5m"
    indicators = {
        "bb": ta("bbands", length=20, std=2.0, window=100, columns={"lower": "BBL", "mid": "BBM", "upper": "BBU"}),
        "fast": ta("ema", length=9, window=300),
        "slow": ta("sma", length=30, window=100),
        "atr": ta("atr", length=14, window=300),
    }

    def entry_signal(self, candle, ind):
        if candle.close < ind.bb_lower and ind.fast > ind.slow:
            return Side.LONG
        if candle.close > ind.bb_upper and ind.fast < ind.slow:
            return Side.SHORT
        return None


@pytest.mark.parametrize("model", ["seed", "realistic"])
def test_live_path_uses_them_and_equals_the_backtest(candles, model):
    plan = _Bands.indicator_plan(FILL_MODELS[model].indicator_settings())
    live = LiveIndicators(plan)
    assert set(live._inc) == {"bb", "fast", "slow", "atr"} and not live._windowed
    c = candles.take(slice(0, 5000))
    rows = [live.update(x) for x in c.candles()]
    hist = plan.compute_history(c.open, c.high, c.low, c.close, c.volume)
    for name in plan.fields:
        got = np.array([getattr(r, name) for r in rows], dtype="float64")
        assert _same(got, np.asarray(hist[name], dtype="float64")), name


def _live_fills(candles: CandleArrays, strategy: Strategy, model: str, interval: str) -> list:
    """The engine's path: ``LiveIndicators`` candle by candle into a ``StrategySession`` with
    the simulated broker (as tests/backtest/test_one_code_path.py does for the built-ins)."""
    fm = FILL_MODELS[model]
    broker = SimulatedFuturesBroker("ETHUSDT", BrokerSettings(), fm)
    session = StrategySession(
        symbol="ETHUSDT",
        interval=interval,
        strategy=strategy,
        broker=broker,
        run_id="live",
        mode="paper",
        initial_cash=10_000,
        reenter_on_exit_candle=fm.reenter_on_exit_candle,
        publish=lambda e: None,
    )
    live = LiveIndicators(strategy.indicator_plan(fm.indicator_settings()))
    for x in candles.candles():
        session.on_closed_candle(x, live.update(x))
    return broker.fills


@pytest.fixture(scope="module")
def loaded():
    for f in ("bollinger_trail.py", "signal_time_exit.py"):
        for cls in load_file(STRATS / f):
            register_strategy(cls, str(STRATS / f))


@pytest.mark.parametrize("model", ["seed", "realistic"])
@pytest.mark.parametrize("name", ["bollinger_trail", "signal_time_exit", "t_inc_bands"])
def test_fills_of_the_live_path_equal_the_backtest(loaded, candles, name, model):
    if name == "t_inc_bands":
        register_strategy(_Bands, __file__)
    interval = "5m" if len(candles) > 20_000 else "1h"
    c = candles.take(slice(0, 8000))
    strategy = make_strategy(name)
    live = LiveIndicators(strategy.indicator_plan(FILL_MODELS[model].indicator_settings()))
    assert live._inc  # bbands / atr / ema / sma: the O(1) forms, not a window
    bt = run_backtest(c, make_strategy(name), interval=interval, fill_model=model)
    fills = _live_fills(c, make_strategy(name), model, interval)
    assert len(bt.fills) > 4
    assert [f.to_dict() for f in bt.fills] == [f.to_dict() for f in fills]
