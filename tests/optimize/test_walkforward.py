"""Walk-forward windows never see their future: training results are identical when every candle
after the training window is removed, test windows start where training ends, and a test
window's indicators warm up on earlier candles only."""

from __future__ import annotations

import argparse

import pytest
from tradeconsole.backtest.optimize.cli import _windows, parse_duration
from tradeconsole.backtest.optimize.run import Job, evaluate_batch
from tradeconsole.core.broker import BrokerSettings
from tradeconsole.tui.cli import UserError

pytestmark = pytest.mark.xdist_group("optimize")

POINTS = [
    {"rsi_oversold": 25.0, "rsi_overbought": 70.0, "stop_loss_pct": 0.01, "take_profit_pct": 0.02},
    {"rsi_oversold": 35.0, "rsi_overbought": 65.0, "stop_loss_pct": 0.02, "take_profit_pct": 0.05},
    {"rsi_oversold": 30.0, "rsi_overbought": 75.0, "stop_loss_pct": 0.015, "take_profit_pct": 0.03},
]


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"train": None, "test": None, "folds": None, **kw})


@pytest.mark.parametrize("model", ["seed", "realistic"])
def test_training_results_identical_when_later_data_is_removed(candles_5m, model):
    data = candles_5m.take(slice(0, 30_000))
    folds = _windows(_args(folds=3), 0, len(data), 300_000)
    for train, test in folds:
        assert train.end == test.start and train.start < train.end < test.end
        truncated = data.take(slice(0, train.end))  # nothing after the training window exists
        for name, src in (("train", data), ("cut", truncated)):
            job = Job(src, "basic", model, BrokerSettings(), "ETHUSDT", "5m", blocks=0)
            rows = evaluate_batch(job, {}, train, POINTS)
            if name == "train":
                first = rows
        assert rows == first, train
        # and the test window, evaluated on data ending with it, equals the same window in the full data
        job_full = Job(data, "basic", model, BrokerSettings(), "ETHUSDT", "5m", blocks=0)
        job_cut = Job(data.take(slice(0, test.end)), "basic", model, BrokerSettings(), "ETHUSDT", "5m", blocks=0)
        assert evaluate_batch(job_full, {}, test, POINTS) == evaluate_batch(job_cut, {}, test, POINTS)


def test_test_window_warms_up_on_earlier_candles(candles_5m):
    """A test window is traded from its first bar with indicators already defined (warm-up is the
    earlier history), and is not the same as trading the window's candles alone."""
    from tradeconsole.backtest.optimize.evaluate import Workspace

    data = candles_5m.take(slice(0, 20_000))
    ws = Workspace(data, "basic", "realistic", BrokerSettings(), warmup=15_000)
    assert ws.warmup == 15_000 and len(ws.traded) == 5_000
    assert all(v[0] == v[0] for k, v in ws.ind.items() if k in ("rsi", "macd", "cci"))  # not NaN
    alone = Workspace(data.take(slice(15_000, 20_000)), "basic", "realistic", BrokerSettings())
    import numpy as np

    assert np.isnan(alone.ind["rsi"][0])


def test_rolling_train_test_windows():
    folds = _windows(_args(train="10d", test="5d"), 100, 100 + 288 * 40, 300_000)
    assert len(folds) == 6  # (40 - 10) / 5 tests of 5 days
    for (tr, te), (tr2, _) in zip(folds, folds[1:]):
        assert tr.end == te.start and te.end - te.start == 5 * 288 and tr.end - tr.start == 10 * 288
        assert tr2.start == tr.start + 5 * 288
    assert folds[0][0].start == 100  # never before the requested window
    with pytest.raises(UserError, match="longer than the data"):
        _windows(_args(train="60d", test="20d"), 0, 288 * 30, 300_000)
    with pytest.raises(UserError, match="go together"):
        _windows(_args(train="60d"), 0, 288 * 300, 300_000)
    assert _windows(_args(folds=0), 0, 1000, 300_000) == []
    assert parse_duration("2w", 3_600_000, "--train") == 336
    with pytest.raises(UserError):
        parse_duration("abc", 300_000, "--train")
