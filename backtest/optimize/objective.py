"""Objectives and constraints: which combination is "best".

Built-in objectives read the backtest metrics (definitions in ``tradeconsole.backtest.metrics``): ``return``
(``return_pct``), ``sharpe``, ``sortino``, ``calmar`` (``return_pct / max_drawdown_pct`` over the
window, not annualised; undefined without a drawdown), ``profit_factor``. ``module:function`` is a
user function ``f(metrics: dict) -> float | None``. Larger is better. An undefined value (None,
NaN) or a combination breaking a constraint (``--min-trades``, ``--max-drawdown`` in percent)
is *infeasible*: kept in the results with ``feasible = False`` and never chosen.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

__all__ = ["BUILTIN", "Objective", "load_objective"]

Metrics = dict[str, Any]


def _calmar(m: Metrics) -> float | None:
    dd = m.get("max_drawdown_pct") or 0.0
    return None if dd <= 0 else m["return_pct"] / dd


BUILTIN: dict[str, Callable[[Metrics], float | None]] = {
    "return": lambda m: m["return_pct"],
    "sharpe": lambda m: m["sharpe"],
    "sortino": lambda m: m["sortino"],
    "calmar": _calmar,
    "profit_factor": lambda m: m["profit_factor"],
}


class Objective:
    """A scoring function plus the constraints; ``score`` is None for an infeasible combination."""

    def __init__(
        self,
        name: str,
        fn: Callable[[Metrics], float | None],
        *,
        min_trades: int = 0,
        max_drawdown: float | None = None,
    ) -> None:
        self.name, self.fn, self.min_trades, self.max_drawdown = name, fn, min_trades, max_drawdown

    def score(self, m: Metrics) -> float | None:
        if m["trades"] < self.min_trades:
            return None
        if self.max_drawdown is not None and m["max_drawdown_pct"] > self.max_drawdown:
            return None
        v = self.fn(m)
        if v is None or isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        return float(v)


def load_objective(spec: str) -> Callable[[Metrics], float | None]:
    """A built-in name or ``module:function`` (imported; ValueError naming what is wrong)."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    mod, sep, func = spec.partition(":")
    if not sep or not mod or not func:
        raise ValueError(f"--objective {spec[:60]!r}: use one of {', '.join(BUILTIN)} or module:function")
    try:
        module = importlib.import_module(mod)
    except ImportError as exc:
        raise ValueError(f"--objective {spec[:60]!r}: cannot import {mod[:60]!r} ({exc})") from None
    fn: Callable[[Metrics], float | None] | None = getattr(module, func, None)
    if not callable(fn):
        raise ValueError(f"--objective {spec[:60]!r}: {mod[:60]} has no function {func[:60]!r}")
    return fn
