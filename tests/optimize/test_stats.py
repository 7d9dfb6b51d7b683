"""PBO and the deflated Sharpe ratio behave as their definitions say."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from tradeconsole.backtest.optimize.stats import EULER_GAMMA, block_stats, deflated_sharpe, pbo_cscv


def _stats(rets: np.ndarray, blocks: int = 10) -> np.ndarray:
    return np.array([block_stats(r, blocks) for r in rets])


def test_pbo_of_pure_noise_is_about_one_half():
    rng = np.random.default_rng(1)
    rets = rng.normal(0, 0.01, size=(60, 2000))  # 60 strategies without skill
    out = pbo_cscv(_stats(rets))
    assert out["splits"] == 252  # C(10, 5)
    assert 0.3 < out["pbo"] < 0.7


def test_pbo_of_a_real_edge_is_near_zero():
    rng = np.random.default_rng(2)
    rets = rng.normal(0, 0.01, size=(60, 2000))
    rets[np.arange(60) < 5] += 0.002  # five strategies with a persistent edge
    assert pbo_cscv(_stats(rets))["pbo"] < 0.05


def test_pbo_refuses_odd_blocks():
    assert pbo_cscv(np.zeros((3, 5, 3)))["pbo"] is None


def test_block_stats_sum_to_the_whole():
    r = np.random.default_rng(3).normal(size=1001)
    bs = np.array(block_stats(r, 16))
    assert bs[:, 0].sum() == 1001
    assert math.isclose(bs[:, 1].sum(), r.sum(), rel_tol=1e-12, abs_tol=1e-12)


def test_deflated_sharpe_matches_the_formula():
    rng = np.random.default_rng(4)
    best = rng.normal(0.001, 0.01, size=5000)
    trials = rng.normal(0.0, 0.02, size=100)
    out = deflated_sharpe(trials, best)
    sr = best.mean() / best.std(ddof=1)
    z = (best - best.mean()) / best.std()
    g3, g4 = (z**3).mean(), (z**4).mean()
    nd = NormalDist()
    sr0 = trials.std(ddof=1) * (
        (1 - EULER_GAMMA) * nd.inv_cdf(1 - 1 / 100) + EULER_GAMMA * nd.inv_cdf(1 - 1 / (100 * math.e))
    )
    expect = nd.cdf((sr - sr0) * math.sqrt(4999) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    assert out["dsr"] == pytest.approx(expect, rel=1e-12)
    # more trials with the same spread raise the bar: the deflated value falls
    many = deflated_sharpe(np.tile(trials, 100), best)
    assert many["dsr"] < out["dsr"]
