"""Runs a strategy over history with the live engine's rules.

The indicators are computed over the whole history once (``IndicatorPlan.compute_history``, the
bit-exact kernels of ``tradeconsole.core.base_indicators``). Then:

* a strategy with fixed percentage exits runs as the broker's array loop
  (``tradeconsole.core.broker_step.simulate``, compiled for long histories) on its vectorised
  entry signal; when somebody consumes the events (``publish``: ``--kafka``), the loop's record is
  played back through the very ``StrategySession`` the live engine uses
  (``tradeconsole.backtest.events_from_arrays``), which publishes them;
* any other strategy (exit plans, trailing stops, exit signals, time exits) feeds every closed
  candle, in order, to the ``StrategySession`` with the ``SimulatedFuturesBroker``.

Candles before the window (``warmup``) only warm the indicators up, so a window's indicator
values are exactly those of a run over the whole history, sliced. Nothing here decides a trade.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from tradeconsole.core.broker import (
    FILL_MODELS,
    BrokerSettings,
    DroppedEntry,
    FillModel,
    SimulatedFuturesBroker,
    client_order_id,
)
from tradeconsole.core.broker_step import R_ENTRY_LONG, R_ENTRY_SHORT, R_LIQ, R_STOP, R_TARGET
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.domain import Candle, Fill, FillReason, OrderSide, Side, Trade
from tradeconsole.core.indicators import IndicatorPlan, IndicatorSettings
from tradeconsole.core.strategies.base import Strategy

if TYPE_CHECKING:  # the session and its events load only for a run somebody watches bar by bar
    from tradeconsole.core.events import Event

__all__ = [
    "COMPILE_MIN_BARS",
    "BacktestResult",
    "SimulationArrays",
    "result_from_simulation",
    "run_backtest",
    "simulate_signal",
    "use_compiled",
]


@dataclass(slots=True)
class BacktestResult:
    symbol: str
    interval: str
    strategy: Strategy
    fill_model: FillModel
    settings: BrokerSettings
    run_id: str
    open_time: NDArray[np.int64]
    close: NDArray[np.float64]
    equity: NDArray[np.float64]
    in_position: NDArray[np.bool_]  # bool per bar: a position was open at that bar's close
    fills: list[Fill]
    trades: list[Trade]
    fees_paid: float
    funding_paid: float
    open_position: dict[str, Any] | None
    indicator_settings: IndicatorSettings
    elapsed_s: float = 0.0
    cancelled: bool = False
    warmup_bars: int = 0  # candles before the window used only to warm the indicators up
    dropped_entries: list[DroppedEntry] = field(default_factory=list)  # entries not filled: gap after the signal
    extra: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[int, int], bool | None]  # (done, total) -> False to cancel

#: bars from which the array loop runs compiled: numba's start-up (~0.45 s to import it and load
#: the cached machine code) is then cheaper than the interpreter's few microseconds per bar
COMPILE_MIN_BARS = 150_000


def use_compiled(bars: int) -> bool:
    """Whether a job over ``bars`` candles runs its kernels compiled (``tradeconsole.core.jit``).
    ``TRADECONSOLE_JIT=1`` always, ``0`` never (both give the same numbers: the tests run both),
    unset or ``auto`` by size."""
    from tradeconsole.core.jit import is_compiled_available

    mode = os.environ.get("TRADECONSOLE_JIT", "auto").strip().lower()
    if mode in ("1", "true", "yes", "always"):
        return True
    if mode in ("0", "false", "no", "never"):
        return False
    return bars >= COMPILE_MIN_BARS and is_compiled_available()


def run_backtest(
    candles: CandleArrays,
    strategy: Strategy,
    *,
    symbol: str = "ETHUSDT",
    interval: str = "5m",
    fill_model: FillModel | str = "realistic",
    settings: BrokerSettings = BrokerSettings(),
    indicator_settings: IndicatorSettings | None = None,
    publish: Callable[[Event], None] | None = None,
    progress: ProgressFn | None = None,
    run_id: str | None = None,
    warmup: int = 0,
    per_candle: bool = False,
) -> BacktestResult:
    """Replay ``candles`` through ``strategy`` with the simulated broker and the given fill model.

    ``indicator_settings`` defaults to the fill model's indicator definitions. ``publish`` receives every
    engine event (for Kafka or a UI); leave it None for the fastest run. ``progress`` is called
    every few thousand bars and may return False to cancel. The first ``warmup`` candles are
    history before the traded window: they feed the indicators but are never traded, and the
    result (equity, bars, metrics) covers the window only.

    Strategies with fixed percentage exits run as the broker's array loop; their events, when
    published, are played back from its record through the session (``events_from_arrays``).
    Others (exit plans, trailing stops, exit signals, time exits) run candle by candle through
    ``StrategySession`` and ``SimulatedFuturesBroker``; ``per_candle`` forces that path (the
    tests that hold both paths equal).
    """
    t0 = time.perf_counter()
    fm = FILL_MODELS[fill_model] if isinstance(fill_model, str) else fill_model
    ind_settings = indicator_settings or fm.indicator_settings()
    run_id = run_id or f"bt-{uuid.uuid4().hex[:12]}"
    if warmup < 0 or (warmup and warmup >= len(candles)):
        raise ValueError(f"warmup must leave at least one candle to trade (got {warmup} of {len(candles)})")
    plan = strategy.indicator_plan(ind_settings)  # the base values plus the strategy's declared ones
    jit = use_compiled(len(candles))  # one decision for the run: indicators and loop alike
    ind = plan.compute_history(candles.open, candles.high, candles.low, candles.close, candles.volume, compiled=jit)
    if warmup:
        ind = {k: v[warmup:] for k, v in ind.items()}
        candles = candles.take(slice(warmup, None))
    signal = None if per_candle else _vector_signal(strategy, ind)
    run = _Run(symbol, interval, fm, settings, ind_settings, progress, run_id, warmup, t0, jit)
    if signal is None:
        return _run_per_candle(candles, strategy, ind, plan, publish, run)
    if publish is None:
        del ind  # the signal is all the array loop needs: at millions of bars the columns are most of the memory
        return _run_arrays(candles, strategy, signal, run)
    return _run_arrays_published(candles, strategy, signal, ind, plan, publish, run)


@dataclass(frozen=True, slots=True)
class _Run:
    """What the paths of one ``run_backtest`` call share."""

    symbol: str
    interval: str
    fm: FillModel
    settings: BrokerSettings
    ind_settings: IndicatorSettings
    progress: ProgressFn | None
    run_id: str
    warmup: int
    t0: float
    compiled: bool  # the kernels (indicators and loop) run compiled


def _session(strategy: Strategy, broker: Any, run: _Run, publish: Callable[[Event], None] | None) -> Any:
    """The live engine's ``StrategySession`` for a backtest (mode ``backtest``, no risk guard)."""
    from tradeconsole.core.session import StrategySession

    return StrategySession(
        symbol=run.symbol,
        interval=run.interval,
        strategy=strategy,
        broker=broker,
        run_id=run.run_id,
        mode="backtest",
        initial_cash=run.settings.initial_cash,
        reenter_on_exit_candle=run.fm.reenter_on_exit_candle,
        publish=publish,
    )


def _feed(
    session: Any,
    candles: CandleArrays,
    ind: dict[str, NDArray[np.float64]],
    plan: IndicatorPlan,
    progress: ProgressFn | None,
    on_bar: Callable[[int], None] | None = None,
) -> tuple[int, bool]:
    """Every candle through ``session.on_closed_candle`` as the live engine's types (``Candle``
    and the plan's indicator tuple), ``on_bar(i)`` after each; ``progress`` every 0.5% may
    cancel. Returns (candles fed, cancelled)."""
    n = len(candles)
    cols = [
        a.tolist()
        for a in (
            candles.open_time,
            candles.open,
            candles.high,
            candles.low,
            candles.close,
            candles.volume,
            candles.close_time,
        )
    ]
    icols = [ind[k].tolist() for k in plan.fields]
    on_closed = session.on_closed_candle
    step = max(1, n // 200)
    make_candle, make_ind = Candle._make, plan.values_type._make  # the cheapest way to build per-bar tuples
    for i, (row, irow) in enumerate(zip(zip(*cols, repeat(True)), zip(*icols))):
        on_closed(make_candle(row), make_ind(irow))
        if on_bar is not None:
            on_bar(i)
        if progress is not None and i % step == 0 and progress(i, n) is False:
            return i + 1, True
    if progress is not None:
        progress(n, n)
    return n, False


def _run_per_candle(
    candles: CandleArrays,
    strategy: Strategy,
    ind: dict[str, NDArray[np.float64]],
    plan: IndicatorPlan,
    publish: Callable[[Event], None] | None,
    run: _Run,
) -> BacktestResult:
    """``run_backtest`` candle by candle: the session with the simulated broker in Python."""
    broker = SimulatedFuturesBroker(run.symbol, run.settings, run.fm)
    session = _session(strategy, broker, run, publish)
    # The equity curve only changes shape when the account does (a fill, funding): record the
    # account at those bars and expand it with numpy afterwards instead of per bar in Python.
    marks: list[tuple[int, float, float, float]] = [(0, broker.cash, 0.0, 0.0)]  # (bar, cash, signed qty, entry)
    last_pos, last_cash = broker.position, broker.cash

    def mark(i: int) -> None:
        nonlocal last_pos, last_cash
        pos = broker.position
        if pos is not last_pos or broker.cash != last_cash:
            last_pos, last_cash = pos, broker.cash
            if pos is None:
                marks.append((i, last_cash, 0.0, 0.0))
            else:
                marks.append((i, last_cash, pos.side.sign * pos.qty, pos.entry_price))

    m, cancelled = _feed(session, candles, ind, plan, run.progress, mark)
    equity, in_pos = _expand_equity(marks, candles.close[:m])
    pos = broker.position
    last = float(candles.close[m - 1])
    return _result(
        symbol=run.symbol,
        interval=run.interval,
        strategy=strategy,
        fm=run.fm,
        settings=run.settings,
        candles=candles,
        m=m,
        equity=equity,
        in_pos=in_pos,
        fills=broker.fills,
        trades=broker.trades,
        fees_paid=broker.fees_paid,
        funding_paid=broker.funding_paid,
        open_position=None if pos is None else _open_position(pos.side, pos.qty, pos.entry_price, pos.entry_time, last),
        ind_settings=run.ind_settings,
        dropped=list(broker.dropped_entries),
        run_id=run.run_id,
        elapsed_s=time.perf_counter() - run.t0,
        cancelled=cancelled,
        warmup=run.warmup,
    )


def _run_arrays_published(
    candles: CandleArrays,
    strategy: Strategy,
    signal: NDArray[np.int8],
    ind: dict[str, NDArray[np.float64]],
    plan: IndicatorPlan,
    publish: Callable[[Event], None],
    run: _Run,
) -> BacktestResult:
    """``run_backtest`` for a consumer of its events: the array loop, then its record played
    back through the session (``events_from_arrays.RecordedBroker``), which publishes. A
    cancel stops the events at that candle; the result then is the loop's over the candles
    published (the loop is causal: the same numbers as the full record up to there)."""
    from tradeconsole.backtest.events_from_arrays import RecordedBroker

    out = simulate_signal(candles, strategy, signal, run.fm, run.settings, compiled=run.compiled, record_cash=True)
    result = _from_simulation(out, candles, strategy, run)
    fills_a, totals = out[2], out[5]
    broker = RecordedBroker(
        symbol=run.symbol,
        settings=run.settings,
        fill_model=run.fm,
        fills=result.fills,
        levels=fills_a[:, 7:10].tolist(),
        signal_times=fills_a[:, 6].astype(np.int64).tolist(),
        trades=result.trades,
        dropped=result.dropped_entries,
        cash=out[6].tolist(),
        pending_at_end=(Side.LONG if totals[8] > 0 else Side.SHORT, int(totals[9])) if totals[8] else None,
    )
    m, cancelled = _feed(_session(strategy, broker, run, publish), candles, ind, plan, run.progress)
    if cancelled:
        head = candles.take(slice(0, m))
        out = simulate_signal(head, strategy, signal[:m], run.fm, run.settings, compiled=run.compiled)
        result = _from_simulation(out, head, strategy, run)
    else:
        broker.finish()
    return _stamped(result, run, cancelled)


def _vector_signal(strategy: Strategy, ind: dict[str, NDArray[np.float64]]) -> NDArray[np.int8] | None:
    """The strategy's entry signal for every bar from its indicator frame (+1 long, -1 short, 0),
    or None when the compiled loop cannot run it: a strategy with its own exit rules (exit plan,
    trailing stop, exit signal, time exit) or one without a vectorised signal (only the exact
    built-in classes have one; ``tests/backtest/test_compiled_step.py`` proves them equal to
    ``entry_signal`` bar by bar)."""
    if not getattr(strategy, "simple_exits", False) or getattr(strategy, "managed_exits", False):
        return None
    from tradeconsole.backtest.optimize.vector import VECTOR_SIGNALS

    fn = VECTOR_SIGNALS.get(type(strategy))
    return None if fn is None else fn(ind, strategy.params)


def _run_arrays(
    candles: CandleArrays,
    strategy: Strategy,
    signal: NDArray[np.int8],
    run: _Run,
) -> BacktestResult:
    """``run_backtest`` for nobody listening bar by bar: the broker's step loop
    (``simulate_signal``) over the arrays, then the few fills and round trips as the objects the
    per-candle path returns. The loop takes a fraction of the run, so ``progress`` is asked once
    before (False: cancelled after the first bar, as the per-bar loop would) and told once at
    the end."""
    n, progress = len(candles), run.progress
    cancelled = False
    if progress is not None and progress(0, n) is False:
        cancelled = True
        candles, signal = candles.take(slice(0, 1)), signal[:1]
    out = simulate_signal(candles, strategy, signal, run.fm, run.settings, compiled=run.compiled)
    if progress is not None and not cancelled:
        progress(n, n)
    return _stamped(_from_simulation(out, candles, strategy, run), run, cancelled)


def _from_simulation(out: SimulationArrays, candles: CandleArrays, strategy: Strategy, run: _Run) -> BacktestResult:
    return result_from_simulation(
        out,
        candles,
        strategy,
        fm=run.fm,
        settings=run.settings,
        ind_settings=run.ind_settings,
        symbol=run.symbol,
        interval=run.interval,
    )


def _stamped(result: BacktestResult, run: _Run, cancelled: bool) -> BacktestResult:
    """The run's id, warm-up, cancel flag and elapsed time on an array path's result."""
    result.run_id, result.warmup_bars, result.cancelled = run.run_id, run.warmup, cancelled
    result.elapsed_s = time.perf_counter() - run.t0
    return result


#: what ``tradeconsole.core.broker_step.simulate`` returns (see its docstring)
SimulationArrays = tuple[
    NDArray[np.float64],
    NDArray[np.bool_],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64],
    Any,
    NDArray[np.float64],
]


def simulate_signal(
    candles: CandleArrays,
    strategy: Strategy,
    signal: NDArray[np.int8],
    fm: FillModel,
    settings: BrokerSettings,
    *,
    compiled: bool,
    record_cash: bool = False,
) -> SimulationArrays:
    """The broker's step loop (``tradeconsole.core.broker_step.simulate``) over ``candles`` for
    the entry ``signal`` (+1/-1/0 per bar) and the strategy's fixed stop/target/stake: compiled
    (long histories, the optimiser) or interpreted (short ones); the same function either way.
    ``record_cash`` keeps the cash at every close too (for the equity events of a published run)."""
    from tradeconsole.core.broker_step import simulate
    from tradeconsole.core.jit import compiled as jit

    s, p = settings, strategy.params
    cols = (candles.open, candles.high, candles.low, candles.close, candles.open_time, candles.close_time, signal)
    if compiled:
        sim: Callable[..., SimulationArrays] = jit(simulate)
        dtypes = (np.float64,) * 4 + (np.int64, np.int64, np.int8)
        args: list[Any] = [np.ascontiguousarray(a, dtype=d) for a, d in zip(cols, dtypes, strict=True)]
    else:  # the interpreter reads Python lists several times faster than numpy scalars
        sim = simulate
        args = [a.tolist() for a in cols]
    return sim(
        *args,
        float(p.stop_loss_pct),
        float(p.take_profit_pct),
        float(p.stake_fraction),
        float(s.initial_cash),
        float(s.leverage),
        float(s.fee_rate),
        float(s.slippage_bps),
        float(s.funding_rate_8h),
        float(s.maintenance_margin_rate),
        bool(fm.fill_at_next_open),
        bool(fm.intrabar_exits),
        bool(fm.reenter_on_exit_candle),
        bool(fm.fee_on_stake),
        bool(record_cash),
    )


def result_from_simulation(
    out: SimulationArrays,
    candles: CandleArrays,
    strategy: Strategy,
    *,
    fm: FillModel,
    settings: BrokerSettings,
    ind_settings: IndicatorSettings,
    symbol: str,
    interval: str,
    lean: bool = False,
) -> BacktestResult:
    """The ``BacktestResult`` of a ``simulate_signal`` run over ``candles`` (the traded window):
    fills and round trips as the objects the broker makes, with the order ids it gives them.
    ``lean`` skips the fill objects (the optimiser's scalar rows need only their sides, kept in
    ``extra["fill_sides"]``). Run id, warm-up and timing are the caller's to set."""
    equity, in_pos, fills_a, trades_a, dropped_a, totals, _ = out
    m = len(candles)
    name = strategy.name
    fills, trades = _fill_objects(fills_a, trades_a, name, symbol, interval, with_fills=not lean)
    dropped = []
    for sign, sig_time, seen in dropped_a.tolist():
        side = Side.LONG if sign > 0 else Side.SHORT
        dropped.append(
            DroppedEntry(side, client_order_id(name, symbol, interval, int(sig_time), side), int(sig_time), int(seen))
        )
    open_position = None
    if totals[3]:
        side = Side.LONG if totals[4] > 0 else Side.SHORT
        last = float(candles.close[m - 1])
        open_position = _open_position(side, float(totals[5]), float(totals[6]), int(totals[7]), last)
    return _result(
        symbol=symbol,
        interval=interval,
        strategy=strategy,
        fm=fm,
        settings=settings,
        candles=candles,
        m=m,
        equity=equity,
        in_pos=in_pos,
        fills=fills,
        trades=trades,
        fees_paid=float(totals[0]),
        funding_paid=float(totals[1]),
        open_position=open_position,
        ind_settings=ind_settings,
        dropped=dropped,
        extra={"fill_sides": fills_a[:, 1]} if lean else {},
    )


def _open_position(side: Side, qty: float, entry_price: float, entry_time: int, last_close: float) -> dict[str, Any]:
    """The report's open position at the end of a run, marked to the last close (the unrealised
    PnL as ``Position.unrealized_pnl`` computes it)."""
    return {
        "side": side.name.lower(),
        "qty": qty,
        "entry_price": entry_price,
        "entry_time": entry_time,
        "unrealized_pnl": side.sign * qty * (last_close - entry_price),
    }


def _result(
    *,
    symbol: str,
    interval: str,
    strategy: Strategy,
    fm: FillModel,
    settings: BrokerSettings,
    candles: CandleArrays,
    m: int,
    equity: NDArray[np.float64],
    in_pos: NDArray[np.bool_],
    fills: list[Fill],
    trades: list[Trade],
    fees_paid: float,
    funding_paid: float,
    open_position: dict[str, Any] | None,
    ind_settings: IndicatorSettings,
    dropped: list[DroppedEntry],
    run_id: str = "",
    elapsed_s: float = 0.0,
    cancelled: bool = False,
    warmup: int = 0,
    extra: dict[str, Any] | None = None,
) -> BacktestResult:
    """One place that assembles a ``BacktestResult`` (the per-candle and the array path) over
    the first ``m`` traded candles."""
    return BacktestResult(
        symbol=symbol,
        interval=interval,
        strategy=strategy,
        fill_model=fm,
        settings=settings,
        run_id=run_id,
        open_time=candles.open_time[:m],
        close=candles.close[:m],
        equity=equity,
        in_position=in_pos,
        fills=fills,
        trades=trades,
        fees_paid=fees_paid,
        funding_paid=funding_paid,
        open_position=open_position,
        indicator_settings=ind_settings,
        elapsed_s=elapsed_s,
        cancelled=cancelled,
        warmup_bars=warmup,
        dropped_entries=dropped,
        extra=extra or {},
    )


_CODE_REASON = {
    R_ENTRY_LONG: FillReason.ENTRY_LONG,
    R_ENTRY_SHORT: FillReason.ENTRY_SHORT,
    R_STOP: FillReason.STOP_LOSS,
    R_TARGET: FillReason.TAKE_PROFIT,
    R_LIQ: FillReason.LIQUIDATION,
}
_CODE_SUFFIX = {R_STOP: "sl", R_TARGET: "tp", R_LIQ: "lq"}


def _fill_objects(
    fills_a: NDArray[np.float64],
    trades_a: NDArray[np.float64],
    name: str,
    symbol: str,
    interval: str,
    *,
    with_fills: bool = True,
) -> tuple[list[Fill], list[Trade]]:
    """The array loop's fill and round-trip rows as ``Fill``/``Trade`` objects, with the order
    ids the broker gives them (the entry's id derives from its signal candle and side)."""
    fills: list[Fill] = []
    for t, side, px, qty, fee, code, sig, *_ in fills_a.tolist() if with_fills else ():
        code = int(code)
        buy = side > 0
        if code in (R_ENTRY_LONG, R_ENTRY_SHORT):
            entry_side = Side.LONG if code == R_ENTRY_LONG else Side.SHORT
            oid = client_order_id(name, symbol, interval, int(sig), entry_side)
        else:
            entry_side = Side.SHORT if buy else Side.LONG
            oid = client_order_id(name, symbol, interval, int(sig), entry_side) + _CODE_SUFFIX[code]
        fills.append(
            Fill(int(t), symbol, OrderSide.BUY if buy else OrderSide.SELL, px, qty, fee, _CODE_REASON[code], oid)
        )
    trades = [
        Trade(
            symbol=symbol,
            side=Side.LONG if sg > 0 else Side.SHORT,
            qty=qty,
            entry_time=int(et),
            entry_price=ep,
            exit_time=int(xt),
            exit_price=xp,
            pnl=pnl,
            fees=fees,
            funding=funding,
            exit_reason=_CODE_REASON[int(code)],
            stake=stake,
        )
        for sg, qty, et, ep, xt, xp, pnl, fees, funding, code, stake in trades_a.tolist()
    ]
    return fills, trades


def _expand_equity(
    marks: list[tuple[int, float, float, float]], close: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Per-bar equity at the close and in-position flags from the account's change points."""
    m = len(close)
    bars = np.array([b for b, *_ in marks], dtype=np.int64)
    # several changes on one bar: the last one is the state at that bar's close
    keep = np.append(bars[1:] != bars[:-1], True)
    arr = np.array([row[1:] for row in marks], dtype=np.float64)[keep]
    bars = bars[keep]
    lengths = np.diff(np.append(bars, m))
    cash, qty, entry = (np.repeat(arr[:, j], lengths) for j in range(3))
    return cash + qty * (close - entry), qty != 0


def tty_progress(label: str = "backtest") -> ProgressFn | None:
    """A one-line progress bar on stderr, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    start = time.perf_counter()

    def show(done: int, total: int) -> None:
        frac = done / total if total else 1.0
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = time.perf_counter() - start
        sys.stderr.write(f"\r{label} [{bar}] {frac:6.1%} {done}/{total} bars {elapsed:5.1f}s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
