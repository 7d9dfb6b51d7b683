"""Evaluating parameter combinations: the shared workspace, the fast path and the one path.

What does not change between combinations is prepared once per window (``Workspace``): the
candles, the indicators of the fill model (``compute_history`` over exactly the candles
``run_backtest`` would see, sliced after the warm-up exactly as it slices them), the per-bar
``Candle``/``IndicatorValues`` tuples. Entry signals are the strategy's own ``entry_signal``
evaluated once per distinct set of *entry* parameters (everything except the broker-side
``stop_loss_pct``/``take_profit_pct``/``stake_fraction`` of ``StrategyParams``), so a grid of
16 threshold pairs x 64 stop/target pairs computes 16 signal series, not 1,024. The compiled
step loop of the broker (``tradeconsole.core.broker_step.simulate``, the loop ``run_backtest`` runs) then applies the broker's rules, and the metrics come from the
one ``tradeconsole.backtest.metrics.compute_metrics`` applied to a real ``BacktestResult``.

``reference`` is the one path: ``Backtest(candles, name, params=..., fill_model=..., settings=...,
warmup=...).run()`` (``tradeconsole.backtest.facade``), the object ``backtest/cli.py`` runs. ``verify``
compares the two and raises ``MismatchError`` on any difference; the optimiser calls it on its
top results and fails loudly.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tradeconsole.backtest.metrics import compute_metrics
from tradeconsole.backtest.runner import BacktestResult, result_from_simulation, run_backtest, simulate_signal
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, FillModel
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.domain import Candle, Side
from tradeconsole.core.indicators import IndicatorValues, compute_history
from tradeconsole.core.strategies import STRATEGIES, make_strategy
from tradeconsole.core.strategies.base import StrategyParams

__all__ = ["MismatchError", "Workspace", "comparable", "data_hash", "kernel_reason", "reference"]

#: broker-side parameters the kernel takes directly; every other parameter is an entry parameter
EXIT_PARAMS = frozenset(f.name for f in fields(StrategyParams))


def kernel_reason(strategy: str) -> str | None:
    """Why the compiled kernel cannot run ``strategy`` (None: it can).

    The kernel models exactly the built-ins' exits: a fixed stop-loss/take-profit from
    ``stop_loss_pct``/``take_profit_pct``, ``stake_fraction`` sizing and the base indicators. A
    strategy with anything else (a trailing stop, a time exit, an exit signal, ATR or level
    exits, other sizing, declared indicators) or any user strategy (whose rules the kernel was
    never checked against) runs through the plain path, the real engine, instead."""
    from tradeconsole.core.strategies import SOURCES, Strategy

    cls = STRATEGIES[strategy]
    strat = cls()
    if strat.trailing_stop is not None:
        return "trailing stop"
    if strat.max_bars_in_trade is not None:
        return "time exit"
    if type(strat).exit_signal is not Strategy.exit_signal:
        return "exit signal"
    if not strat.simple_exits:
        return "stop/target or sizing rules other than fixed percentages"
    if cls.indicators:
        return "declared indicators"
    if SOURCES.get(strategy) != "built-in":
        return "user strategy"
    return None


class MismatchError(RuntimeError):
    """The fast path disagreed with ``run_backtest``: its numbers must not be trusted."""


def data_hash(candles: CandleArrays) -> str:
    """A digest of every candle column, so results files are keyed by the data they came from."""
    h = hashlib.sha256()
    for a in (
        candles.open_time,
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        candles.volume,
        candles.close_time,
    ):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def reference(
    candles: CandleArrays,
    strategy: str,
    params: dict[str, float],
    *,
    fill_model: str,
    settings: BrokerSettings,
    warmup: int = 0,
    symbol: str = "ETHUSDT",
    interval: str = "5m",
) -> dict[str, Any]:
    """Metrics of one combination through the one backtest path, ``Backtest`` (as ``tradeconsole backtest``)."""
    from tradeconsole.backtest.facade import Backtest

    return (
        Backtest(
            candles,
            strategy,
            params=params,
            fill_model=fill_model,
            settings=settings,
            warmup=warmup,
            symbol=symbol,
            interval=interval,
        )
        .run()
        .metrics
    )


def comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics without the run id (random per run): what two paths must agree on exactly."""
    return {k: v for k, v in metrics.items() if k != "run_id"}


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            va, vb = a.get(k), b.get(k)
            if isinstance(va, list) and isinstance(vb, list):
                return f"{k}: {len(va)} vs {len(vb)} entries" + next(
                    (f", first difference at #{i}: {x} vs {y}" for i, (x, y) in enumerate(zip(va, vb)) if x != y), ""
                )
            return f"{k}: {va!r} vs {vb!r}"
    return "no difference"


@dataclass
class Workspace:
    """Everything one window's combinations share. Build it once per process (worker) and window."""

    candles: CandleArrays
    strategy: str
    fill_model: str
    settings: BrokerSettings
    warmup: int = 0
    symbol: str = "ETHUSDT"
    interval: str = "5m"
    vectorised: bool = True  # False: every signal series from entry_signal bar by bar
    _signals: dict[tuple[Any, ...], NDArray[Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; available: {', '.join(STRATEGIES)}")
        if self.warmup < 0 or (self.warmup and self.warmup >= len(self.candles)):
            raise ValueError(
                f"warmup must leave at least one candle to trade (got {self.warmup} of {len(self.candles)})"
            )
        fm: FillModel = FILL_MODELS[self.fill_model]
        self.fm = fm
        self.ind_settings = fm.indicator_settings()
        #: None: the compiled kernel runs this strategy; else why the plain path (run_backtest) does
        self.plain_reason = kernel_reason(self.strategy)
        if self.plain_reason is not None:
            return  # nothing to prepare: every combination is a run of the real engine
        c = self.candles
        ind = compute_history(c.open, c.high, c.low, c.close, self.ind_settings, compiled=True)  # = run_backtest's
        w = self.warmup
        self.ind = {k: v[w:] for k, v in ind.items()}
        self.traded = c.take(slice(w, None)) if w else c
        self._bars: list[tuple[Candle, IndicatorValues]] | None = None
        self._vector_checked = False

    def _bar_tuples(self) -> list[tuple[Candle, IndicatorValues]]:
        """The per-bar values ``run_backtest`` hands the session (built once, shared by all signals)."""
        if self._bars is None:
            t = self.traded
            cols = [a.tolist() for a in (t.open_time, t.open, t.high, t.low, t.close, t.volume, t.close_time)]
            icols = [self.ind[k].tolist() for k in IndicatorValues._fields]
            self._bars = [
                (Candle._make((*row, True)), IndicatorValues._make(irow)) for row, irow in zip(zip(*cols), zip(*icols))
            ]
        return self._bars

    def signals(self, params: dict[str, float]) -> NDArray[Any]:
        """+1/-1/0 per traded bar, cached by entry parameters: the strategy's own ``entry_signal``
        bar by bar, or its vectorised twin (``tradeconsole.backtest.optimize.vector``) once the twin has matched
        ``entry_signal`` on this workspace's first parameter set."""
        key = tuple(sorted((k, v) for k, v in params.items() if k not in EXIT_PARAMS))
        sig = self._signals.get(key)
        if sig is None:
            from tradeconsole.backtest.optimize.vector import VECTOR_SIGNALS

            strat = make_strategy(self.strategy, **params)
            vec = VECTOR_SIGNALS.get(type(strat)) if self.vectorised else None
            if vec is not None and self._vector_checked:
                sig = vec(self.ind, strat.params)
            else:
                sig = self._loop_signals(strat)
                if vec is not None:
                    fast = vec(self.ind, strat.params)
                    if not np.array_equal(fast, sig):
                        bad = int(np.flatnonzero(fast != sig)[0])
                        raise MismatchError(
                            f"vectorised signals of {self.strategy!r} differ from its entry_signal "
                            f"at bar {bad} ({fast[bad]} vs {sig[bad]}) for {params}"
                        )
                    self._vector_checked = True
                    self._bars = None  # the per-bar tuples were only needed for this check
            self._signals[key] = sig
        return sig

    def _loop_signals(self, strat: Any) -> NDArray[Any]:
        entry = strat.entry_signal
        long, short = Side.LONG, Side.SHORT
        out = np.zeros(len(self.traded), dtype=np.int8)
        for i, (candle, ind) in enumerate(self._bar_tuples()):
            s = entry(candle, ind)
            if s is not None:
                out[i] = 1 if s is long else -1 if s is short else 0
        return out

    def evaluate(self, params: dict[str, float], *, with_fills: bool = True) -> dict[str, Any]:
        """Metrics of one combination through the compiled kernel (validated by ``verify``)."""
        metrics = compute_metrics(self.run(params))
        if not with_fills:
            metrics.pop("fills", None)
        return metrics

    def scalar_metrics(self, params: dict[str, float]) -> tuple[dict[str, Any], BacktestResult]:
        """The scalar metrics of one combination (what the optimiser reports and stores), without
        building the per-fill objects: ``compute_metrics`` runs on the result with its round trips,
        and only the two fill counts (``buys``/``sells``) come from the kernel's fill sides.
        The CLI checks these rows against ``run_backtest`` for its top results."""
        from tradeconsole.backtest.optimize.store import scalar_row

        if self.plain_reason is not None:
            result = self._plain(params)
            return scalar_row(compute_metrics(result)), result
        result = self.run(params, lean=True)
        sides = result.extra.pop("fill_sides")
        m = compute_metrics(result)
        m["buys"], m["sells"] = int((sides > 0).sum()), int((sides < 0).sum())
        return scalar_row(m), result

    def run(self, params: dict[str, float], *, lean: bool = False) -> BacktestResult:
        """The ``BacktestResult`` of one combination through the broker's compiled step loop
        (``tradeconsole.backtest.runner.simulate_signal``, the loop ``run_backtest`` itself runs
        for these strategies; ``lean``: no fill objects, their sides in ``extra["fill_sides"]``);
        a strategy the loop does not model (``plain_reason``) runs through ``run_backtest``."""
        if self.plain_reason is not None:
            return self._plain(params)
        strat = make_strategy(self.strategy, **params)  # the declared ranges check every value
        out = simulate_signal(self.traded, strat, self.signals(params), self.fm, self.settings, compiled=True)
        result = result_from_simulation(
            out,
            self.traded,
            strat,
            fm=self.fm,
            settings=self.settings,
            ind_settings=self.ind_settings,
            symbol=self.symbol,
            interval=self.interval,
            lean=lean,
        )
        result.run_id, result.warmup_bars = f"opt-{uuid.uuid4().hex[:12]}", self.warmup
        return result

    def _plain(self, params: dict[str, float]) -> BacktestResult:
        """The plain path: the real engine, exactly as ``reference`` runs it."""
        return run_backtest(
            self.candles,
            make_strategy(self.strategy, **params),
            symbol=self.symbol,
            interval=self.interval,
            fill_model=self.fill_model,
            settings=self.settings,
            warmup=self.warmup,
        )

    def reference(self, params: dict[str, float]) -> dict[str, Any]:
        """The one path for this window (``run_backtest`` over the same candles and warm-up)."""
        return reference(
            self.candles,
            self.strategy,
            params,
            fill_model=self.fill_model,
            settings=self.settings,
            warmup=self.warmup,
            symbol=self.symbol,
            interval=self.interval,
        )

    def verify(self, params: dict[str, float]) -> dict[str, Any]:
        """Fast path == one path for ``params`` (every metric, every fill), else ``MismatchError``."""
        fast = comparable(self.evaluate(params))
        ref = comparable(self.reference(params))
        if fast != ref:
            raise MismatchError(
                f"optimiser result differs from `tradeconsole backtest` for {params} "
                f"({self.fill_model} fill model): {_diff(fast, ref)}"
            )
        return ref
