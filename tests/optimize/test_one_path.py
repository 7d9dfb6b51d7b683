"""The optimiser's numbers are the backtest's: 30 randomised combinations per fill model, every
metric and every fill compared exactly with ``run_backtest`` (as ``tradeconsole backtest`` calls
it), on real 5m data, on the same data with gaps cut out (dropped entries), with warm-up
windows, leverage up to liquidation, slippage, fees and funding."""

from __future__ import annotations

import random

import numpy as np
import pytest
from tradeconsole.backtest.optimize.evaluate import Workspace, comparable, reference
from tradeconsole.backtest.optimize.store import scalar_row
from tradeconsole.core.broker import BrokerSettings

pytestmark = pytest.mark.xdist_group("optimize")


def _random_case(rng: random.Random) -> tuple[dict[str, float], BrokerSettings]:
    params = {
        "rsi_oversold": round(rng.uniform(15, 45), 2),
        "rsi_overbought": round(rng.uniform(55, 85), 2),
        "cci_long_min": round(rng.uniform(-200, 50), 1),
        "cci_short_max": round(rng.uniform(-50, 200), 1),
        "stop_loss_pct": round(rng.uniform(0.002, 0.08), 4),
        "take_profit_pct": round(rng.uniform(0.003, 0.1), 4),
        "stake_fraction": rng.choice([1.0, 0.5, round(rng.uniform(0.1, 1.0), 3)]),
    }
    settings = BrokerSettings(
        initial_cash=rng.choice([10_000.0, 1234.5]),
        leverage=rng.choice([1.0, 3.0, 20.0, 50.0]),  # 20x/50x: liquidation before wide stops
        fee_rate=rng.choice([0.0004, 0.0, 0.001]),
        slippage_bps=rng.choice([0.0, 2.0]),
        funding_rate_8h=rng.choice([0.0, 0.0001, -0.0003]),
    )
    return params, settings


def _gapped(candles):
    """The same history with holes (every 50th candle, and 7 and 40 candles): realistic entries
    signalled just before one are dropped."""
    keep = np.ones(len(candles), dtype=bool)
    keep[25::50] = False
    for a, k in ((5_000, 1), (12_345, 7), (20_000, 40)):
        keep[a : a + k] = False
    return candles.take(keep)


@pytest.mark.parametrize("model", ["seed", "realistic"])
def test_thirty_random_combinations_equal_the_backtest(candles_5m, model):
    rng = random.Random(f"optimize-{model}")
    sources = {"full": candles_5m.take(slice(0, 24_000)), "gapped": _gapped(candles_5m.take(slice(0, 24_000)))}
    workspaces: dict[tuple, Workspace] = {}
    checked = trades = liquidations = dropped = 0
    for case in range(30):
        params, settings = _random_case(rng)
        src = "gapped" if case % 3 == 0 else "full"
        warmup = rng.choice([0, 0, 3_000, 10_000])
        key = (src, warmup, settings)
        ws = workspaces.get(key)
        if ws is None:
            ws = workspaces[key] = Workspace(sources[src], "basic", model, settings, warmup=warmup)
        fast = comparable(ws.evaluate(params))
        ref = comparable(reference(sources[src], "basic", params, fill_model=model, settings=settings, warmup=warmup))
        assert fast == ref, (case, params, settings, [k for k in ref if fast.get(k) != ref[k]])
        lean, _ = ws.scalar_metrics(params)  # the rows the optimiser stores and reports
        assert lean == scalar_row(ref)
        checked += 1
        trades += ref["trades"]
        liquidations += sum(1 for f in ref["fills"] if f["reason"] == "liquidation")
        dropped += ref["entries_dropped"]
    assert checked == 30
    assert trades > 300  # the comparisons covered real trading, not empty runs
    assert liquidations > 0
    if model == "realistic":
        assert dropped > 0


def test_engulfing_on_1h_equals_the_backtest(candles_1h):
    rng = random.Random(7)
    for model in ("seed", "realistic"):
        ws = Workspace(candles_1h, "engulfing", model, BrokerSettings(), interval="1h")
        for _ in range(4):
            params = {
                "stop_loss_pct": round(rng.uniform(0.005, 0.05), 4),
                "take_profit_pct": round(rng.uniform(0.01, 0.08), 4),
            }
            assert comparable(ws.evaluate(params)) == comparable(
                reference(candles_1h, "engulfing", params, fill_model=model, settings=BrokerSettings(), interval="1h")
            )


def test_seed_defaults_reproduce_the_research_result(candles_5m):
    m = Workspace(candles_5m, "basic", "seed", BrokerSettings()).evaluate({})
    assert m["trades"] == 105
    assert round(m["final_equity"], 2) == 10_873.56


def test_signals_are_shared_across_exit_parameters(candles_5m):
    ws = Workspace(candles_5m.take(slice(0, 5_000)), "basic", "realistic", BrokerSettings())
    for sl in (0.01, 0.02):
        for tp in (0.02, 0.03, 0.04):
            ws.evaluate({"rsi_oversold": 25.0, "stop_loss_pct": sl, "take_profit_pct": tp})
    ws.evaluate({"rsi_oversold": 30.0})
    assert len(ws._signals) == 2  # two entry-parameter sets, six exit variants of the first


def test_verify_fails_loudly_on_a_difference(candles_5m, monkeypatch):
    from tradeconsole.backtest.optimize import evaluate as ev

    ws = Workspace(candles_5m.take(slice(0, 8_000)), "basic", "realistic", BrokerSettings())
    real = ws.run

    def off_by_a_cent(params):
        r = real(params)
        r.equity = r.equity.copy()
        r.equity[-1] += 0.01
        return r

    monkeypatch.setattr(ws, "run", off_by_a_cent)
    with pytest.raises(ev.MismatchError, match="final_equity"):
        ws.verify({"rsi_oversold": 35.0})


@pytest.mark.parametrize("strategy, data", [("basic", "candles_5m"), ("engulfing", "candles_1h")])
def test_vectorised_signals_equal_entry_signal(strategy, data, request):
    candles = request.getfixturevalue(data)
    rng = random.Random(strategy)
    for model in ("seed", "realistic"):
        vec = Workspace(candles, strategy, model, BrokerSettings(), interval="5m" if data == "candles_5m" else "1h")
        loop = Workspace(candles, strategy, model, BrokerSettings(), vectorised=False)
        for _ in range(6):
            params = {"rsi_oversold": round(rng.uniform(10, 50), 2), "rsi_overbought": round(rng.uniform(50, 90), 2)}
            assert np.array_equal(vec.signals(params), loop.signals(params))
        assert vec._vector_checked and not loop._vector_checked


def test_a_diverging_vectorised_signal_is_refused(candles_5m, monkeypatch):
    from tradeconsole.backtest.optimize import vector
    from tradeconsole.backtest.optimize.evaluate import MismatchError
    from tradeconsole.core.strategies.basic import BasicStrategy

    def wrong(ind, p):
        out = vector._basic(ind, p)
        out[-1] = 1 - out[-1]  # one bar differs
        return out

    monkeypatch.setitem(vector.VECTOR_SIGNALS, BasicStrategy, wrong)
    ws = Workspace(candles_5m.take(slice(0, 3_000)), "basic", "realistic", BrokerSettings())
    with pytest.raises(MismatchError, match="vectorised signals"):
        ws.signals({})
