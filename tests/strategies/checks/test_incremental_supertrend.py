"""The O(1) Supertrend (``IncrementalSupertrend``) equals pandas-ta's ``supertrend`` on real
data, bar for bar, in both of pandas-ta's ATR modes (TA-Lib's ``ATR`` when TA-Lib is installed,
its own Wilder ATR otherwise), and the live path of a strategy declaring it gives exactly the
backtest's values: so a Supertrend strategy is charted and traded live without recomputing a
window per candle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pandas_ta
import pytest
from pandas_ta.maps import Imports
from tradeconsole.backtest.data import load_candles
from tradeconsole.core.broker import FILL_MODELS
from tradeconsole.core.indicators import IncrementalSupertrend, LiveIndicators
from tradeconsole.core.strategies import Side, Strategy, ta

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "binance" / "spot" / "ETHUSDT" / "5m"


@pytest.fixture(scope="module")
def candles():
    if not DATA.is_dir():
        pytest.fail(f"real market data missing: {DATA}")
    return load_candles(DATA, interval="5m")[0].candles()[:3000]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    both_nan = np.isnan(a) & np.isnan(b)
    close = np.abs(a - b) <= 1e-9 * np.maximum(1.0, np.abs(b))
    return bool(np.all(both_nan | close))


@pytest.mark.parametrize("talib", [True, False], ids=["talib-atr", "pandas-ta-atr"])
@pytest.mark.parametrize(
    "kw",
    [dict(length=7, multiplier=3.0), dict(length=10, multiplier=2.5, atr_length=14), dict(length=3, multiplier=1)],
    ids=["7x3", "10x2.5-atr14", "3x1"],
)
def test_equals_pandas_ta(candles, monkeypatch, talib, kw):
    if talib and not Imports["talib"]:
        pytest.skip("TA-Lib not installed")
    monkeypatch.setitem(Imports, "talib", talib)
    df = pd.DataFrame([c[:6] for c in candles], columns=["t", "open", "high", "low", "close", "volume"])
    ref = np.array(pandas_ta.supertrend(df.high, df.low, df.close, **kw).to_numpy(dtype="float64"))
    st = IncrementalSupertrend(kw["length"], kw["multiplier"], kw.get("atr_length"), talib=talib)
    mine = np.array([st.update(c) for c in candles])
    # the first bars as a live start sees them: pandas-ta over the candles so far (it returns
    # nothing, or fails, until the history is long enough), as the backtest's first bars are
    for t in range(st.first + 5):
        try:
            r = pandas_ta.supertrend(df.high[: t + 1], df.low[: t + 1], df.close[: t + 1], **kw)
        except TypeError:  # atr_length > length: its ATR is None on a short history
            r = None
        ref[t] = np.nan if r is None else r.iloc[-1].to_numpy(dtype="float64")
    assert np.isnan(mine[: st.first]).all() and not np.isnan(mine[st.first, 0])
    for j in range(4):
        assert _same(mine[:, j], ref[:, j]), j
    # the direction flips on this data, so both bands are exercised
    assert {1.0, -1.0} <= set(mine[st.first :, 1].tolist())


def test_preview_is_the_next_update_and_changes_nothing(candles):
    st = IncrementalSupertrend(7, 3.0)
    for c in candles[:500]:
        st.update(c)
    nxt = candles[500]
    p1 = st.preview(nxt._replace(low=nxt.low * 0.8, close=nxt.low * 0.8))  # a crash below the band: flips
    p2 = st.preview(nxt)
    assert p2 == st.update(nxt)
    assert p1 != p2


class _ST(Strategy):
    name = "t_inc_supertrend"
    default_interval = "5m"
    indicators = {"st": ta("supertrend", length=7, multiplier=3.0, window=200)}

    def entry_signal(self, candle, ind):
        return Side.LONG if ind.st_supertd == 1 and candle.close > ind.st_supert else None


@pytest.mark.parametrize("model", ["seed", "realistic"])
def test_live_path_equals_backtest(candles, model):
    """Through LiveIndicators (the engine's path) the values equal the whole-history backtest's
    on every bar, past the 200-candle window too (no window approximation any more)."""
    plan = _ST.indicator_plan(FILL_MODELS[model].indicator_settings())
    live = LiveIndicators(plan)
    assert "st" in live._inc and not live._windowed
    rows = [live.update(c) for c in candles]
    arr = np.array([[c.open, c.high, c.low, c.close, c.volume] for c in candles])
    hist = plan.compute_history(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4])
    for name in ("st_supert", "st_supertd", "st_supertl", "st_superts"):
        got = np.array([getattr(r, name) for r in rows], dtype="float64")
        assert _same(got, hist[name]), name
