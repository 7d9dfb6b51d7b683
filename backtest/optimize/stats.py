"""Overfitting statistics and parameter stability.

Per-bar returns are the metrics' own: r_t = E_t / E_{t-1} - 1 on the marked equity curve
(``tradeconsole.backtest.metrics``), E_0 = initial cash. The full window is cut into ``S`` contiguous blocks
of (almost) equal length, and for every combination each block keeps (count, sum r, sum r^2), so
the Sharpe ratio of any union of blocks is exact (mean / sample standard deviation, ddof 1).

**PBO**, probability of backtest overfitting, by combinatorially symmetric cross-validation
(Bailey, Borwein, Lopez de Prado, Zhu, "The Probability of Backtest Overfitting", J. Comput.
Finance 2017; SSRN 2326253, 2015): for each of the C(S, S/2) ways to pick half the blocks as
in-sample (IS) and the other half as out-of-sample (OOS), take the combination n* with the best
IS Sharpe, its relative rank w in OOS Sharpe among all N combinations (rank / (N + 1)) and the
logit lambda = ln(w / (1 - w)). PBO = the share of splits with lambda <= 0, i.e. how often the
in-sample winner is at or below the OOS median. Near 0: the selection carries over; 0.5 or more:
choosing the best in-sample is no better than chance.

**Deflated Sharpe ratio** (Bailey, Lopez de Prado, "The Deflated Sharpe Ratio", J. Portfolio
Management 2014): DSR = Phi( (SR* - SR0) sqrt(T - 1) / sqrt(1 - g3 SR* + (g4 - 1) / 4 SR*^2) ), with
SR* the chosen combination's per-bar (not annualised) Sharpe, T its bars, g3/g4 the skewness and
(non-excess) kurtosis of its per-bar returns, and SR0 = sqrt(Var[SR_n]) ((1 - g) Phi^-1(1 - 1/N) +
g Phi^-1(1 - 1/(N e))) the Sharpe ratio the best of N unskilled trials would reach by luck (g =
Euler-Mascheroni constant, Var[SR_n] the variance of the N trials' Sharpe ratios). DSR is the
probability that the true Sharpe ratio is above zero after accounting for the N trials.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["block_stats", "deflated_sharpe", "neighbourhood", "pbo_cscv", "returns_of"]

EULER_GAMMA = 0.5772156649015329


def returns_of(equity: NDArray[Any], initial_cash: float) -> NDArray[Any]:
    """Per-bar simple returns exactly as ``tradeconsole.backtest.metrics`` computes them."""
    full = np.concatenate(([initial_cash], equity))
    rets: NDArray[np.float64] = np.diff(full) / full[:-1]
    return rets


def block_stats(rets: NDArray[Any], blocks: int) -> list[list[float]]:
    """[count, sum, sum of squares] of the returns in each of ``blocks`` contiguous blocks."""
    edges = np.linspace(0, len(rets), blocks + 1).round().astype(int)
    return [
        [float(b - a), float(rets[a:b].sum()), float((rets[a:b] ** 2).sum())] for a, b in zip(edges[:-1], edges[1:])
    ]


def _sharpe(cnt: NDArray[Any], s: NDArray[Any], ss: NDArray[Any]) -> NDArray[Any]:
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / cnt
        var = (ss - cnt * mean**2) / (cnt - 1)
        sd = np.sqrt(np.maximum(var, 0.0))
        out = np.where(sd > 1e-15, mean / sd, 0.0)
    return np.nan_to_num(out, nan=0.0)


def pbo_cscv(stats: NDArray[Any]) -> dict[str, Any]:
    """PBO of N combinations from their block stats, shape (N, S, 3); S must be even."""
    n, s, _ = stats.shape
    if n < 2 or s < 2 or s % 2:
        return {"pbo": None, "note": "needs at least 2 combinations and an even number of blocks"}
    lambdas: list[NDArray[Any]] = []
    splits = list(itertools.combinations(range(s), s // 2))
    for lo in range(0, len(splits), 512):
        chunk = splits[lo : lo + 512]
        mask = np.zeros((len(chunk), s))
        for i, c in enumerate(chunk):
            mask[i, list(c)] = 1.0
        is_ = [mask @ stats[:, :, k].T for k in range(3)]  # (splits, N)
        oos = [(1.0 - mask) @ stats[:, :, k].T for k in range(3)]
        sr_is, sr_oos = _sharpe(*is_), _sharpe(*oos)
        best = np.argmax(sr_is, axis=1)
        chosen = sr_oos[np.arange(len(chunk)), best]
        rank = (sr_oos < chosen[:, None]).sum(axis=1) + 0.5 * ((sr_oos == chosen[:, None]).sum(axis=1) - 1) + 1
        w = rank / (n + 1)
        lambdas.append(np.log(w / (1 - w)))
    lam = np.concatenate(lambdas)
    return {
        "pbo": float(np.mean(lam <= 0)),
        "splits": len(lam),
        "blocks": s,
        "combinations": n,
        "median_logit": float(np.median(lam)),
    }


def deflated_sharpe(trial_sharpes: NDArray[Any], best_rets: NDArray[Any]) -> dict[str, Any]:
    """DSR of the chosen combination (its per-bar returns) among ``trial_sharpes`` (per bar)."""
    n, t = len(trial_sharpes), len(best_rets)
    if n < 2 or t < 4 or float(np.std(best_rets, ddof=1)) == 0:
        return {"dsr": None, "note": "needs at least 2 trials and a varying equity curve"}
    sd = float(np.std(best_rets, ddof=1))
    sr = float(np.mean(best_rets)) / sd
    z = (best_rets - best_rets.mean()) / best_rets.std()
    g3, g4 = float(np.mean(z**3)), float(np.mean(z**4))
    nd = NormalDist()
    v = float(np.var(trial_sharpes, ddof=1))
    sr0 = math.sqrt(v) * ((1 - EULER_GAMMA) * nd.inv_cdf(1 - 1 / n) + EULER_GAMMA * nd.inv_cdf(1 - 1 / (n * math.e)))
    den = 1 - g3 * sr + (g4 - 1) / 4 * sr**2
    dsr = nd.cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(den)) if den > 0 else None
    return {"dsr": dsr, "sharpe_per_bar": sr, "sr0_per_bar": sr0, "trials": n, "bars": t, "skew": g3, "kurtosis": g4}


def neighbourhood(points: list[dict[str, float]], scores: list[float | None], best: int, dims: list[Any]) -> list[int]:
    """Indices of the best point's neighbours: grid points at most one step away in every
    dimension (grid values of ``dims``); off-grid points (random/Optuna): the 8 nearest in
    range-normalised distance."""
    bp = points[best]
    idx = {d.name: {v: i for i, v in enumerate(d.values)} for d in dims}
    if all(p[d.name] in idx[d.name] for p in points for d in dims):
        out = []
        for j, p in enumerate(points):
            if j != best and all(abs(idx[d.name][p[d.name]] - idx[d.name][bp[d.name]]) <= 1 for d in dims):
                out.append(j)
        return out
    spans = {d.name: (max(p[d.name] for p in points) - min(p[d.name] for p in points)) or 1.0 for d in dims}
    dist = [
        (sum(((p[d.name] - bp[d.name]) / spans[d.name]) ** 2 for d in dims), j)
        for j, p in enumerate(points)
        if j != best
    ]
    return [j for _, j in sorted(dist)[:8]]
