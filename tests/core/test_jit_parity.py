"""One implementation, run two ways: the interpreted and the numba-compiled kernels agree bit for bit.

``tradeconsole.core.jit`` keeps each rule an ordinary Python function and compiles it on demand;
short backtests and the live broker run it interpreted, long backtests and the optimiser compiled
(``tradeconsole.backtest.runner.use_compiled``). That is only one code path if both give the same
numbers, so: the broker's step loop over the shared data in both fill models with costly settings,
whole backtests with ``TRADECONSOLE_JIT`` forced each way, and the choice itself."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from tradeconsole.backtest.optimize.vector import VECTOR_SIGNALS
from tradeconsole.backtest.runner import COMPILE_MIN_BARS, run_backtest, simulate_signal, use_compiled
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings
from tradeconsole.core.strategies import make_strategy

COSTLY = BrokerSettings(slippage_bps=3.0, funding_rate_8h=0.0003, leverage=100.0)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    return a == b


@pytest.mark.parametrize("settings", [BrokerSettings(), COSTLY], ids=["default", "costly"])
@pytest.mark.parametrize("model", ["seed", "realistic"])
@pytest.mark.parametrize("strategy,which", [("basic", "5m"), ("engulfing", "1h")])
def test_step_loop_interpreted_equals_compiled(strategy, which, model, settings, candles_5m, candles_1h):
    candles = candles_5m if which == "5m" else candles_1h
    strat = make_strategy(strategy)
    fm = FILL_MODELS[model]
    ind = strat.indicator_plan(fm.indicator_settings()).compute_history(
        candles.open, candles.high, candles.low, candles.close, candles.volume
    )
    signal = VECTOR_SIGNALS[type(strat)](ind, strat.params)
    fast = simulate_signal(candles, strat, signal, fm, settings, compiled=True, record_cash=True)
    slow = simulate_signal(candles, strat, signal, fm, settings, compiled=False, record_cash=True)
    names = ("equity", "in_position", "fills", "trades", "dropped", "totals", "cash")
    for name, a, b in zip(names, fast, slow, strict=True):
        assert _same(a, b), name
    assert len(fast[3]) > 10  # round trips happened
    assert len(fast[6]) == len(candles)  # the cash at every close, recorded
    if settings is COSTLY:
        assert fast[5][1] != 0.0  # funding was paid
        assert (fast[2][:, 5] == 4).any()  # and a liquidation filled


@pytest.mark.parametrize("model", ["seed", "realistic"])
def test_whole_backtest_same_either_way(model, candles_5m, monkeypatch):
    """``run_backtest`` (indicators and the loop) forced interpreted and forced compiled."""
    results = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("TRADECONSOLE_JIT", mode)
        r = run_backtest(candles_5m, make_strategy("basic"), fill_model=model, settings=COSTLY)
        results[mode] = (r.equity, r.in_position, [f.to_dict() for f in r.fills], r.trades, r.dropped_entries)
    for a, b in zip(results["0"], results["1"], strict=True):
        assert _same(a, b)


def test_when_the_loop_compiles(monkeypatch):
    monkeypatch.delenv("TRADECONSOLE_JIT", raising=False)
    assert not use_compiled(COMPILE_MIN_BARS - 1) and use_compiled(COMPILE_MIN_BARS)
    monkeypatch.setenv("TRADECONSOLE_JIT", "0")
    assert not use_compiled(10**9)
    monkeypatch.setenv("TRADECONSOLE_JIT", "1")
    assert use_compiled(1)


def test_a_short_backtest_imports_neither_pandas_nor_numba(data_1h, tmp_path):
    """What keeps a six-month backtest's process short: the interpreted path needs neither
    library (each costs ~0.3 s to import), and the Parquet cache is read without pandas."""
    code = f"""
import sys
from tradeconsole.backtest.facade import Backtest
Backtest({str(data_1h)!r}, "engulfing", interval="1h").run()
print(sorted(m for m in ("pandas", "pandas_ta", "numba") if m in sys.modules))
"""
    env = {"TRADECONSOLE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)]
    runs.append(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300))
    for out in runs:
        assert out.returncode == 0, out.stderr
    # the first run parses the CSV files (pandas' C parser) and writes the cache; the second reads it
    assert list(tmp_path.rglob("*.parquet")), "the first run cached the candles"
    assert runs[1].stdout.strip().splitlines()[-1] == "[]", runs[1].stdout
