"""Drives the live engine's code path over history.

The runner computes the indicators over the whole history once (vectorised, pandas-ta) and then
feeds every closed candle of the traded window, in order, to the very ``StrategySession`` the live
engine uses, with the simulated broker. Candles before the window (``warmup``) only warm the
indicators up, so a window's indicator values are exactly those of a run over the whole history,
sliced. Nothing here decides a trade: it only loops and records the equity curve.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

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
from tradeconsole.core.events import Event
from tradeconsole.core.indicators import IndicatorSettings
from tradeconsole.core.session import StrategySession
from tradeconsole.core.strategies.base import Strategy

__all__ = ["BacktestResult", "run_backtest"]


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
) -> BacktestResult:
    """Replay ``candles`` through ``strategy`` with the simulated broker and the given fill model.

    ``indicator_settings`` defaults to the fill model's indicator definitions. ``publish`` receives every
    engine event (for Kafka or a UI); leave it None for the fastest run. ``progress`` is called
    every few thousand bars and may return False to cancel. The first ``warmup`` candles are
    history before the traded window: they feed the indicators but are never traded, and the
    result (equity, bars, metrics) covers the window only.
    """
    t0 = time.perf_counter()
    fm = FILL_MODELS[fill_model] if isinstance(fill_model, str) else fill_model
    ind_settings = indicator_settings or fm.indicator_settings()
    run_id = run_id or f"bt-{uuid.uuid4().hex[:12]}"
    if warmup < 0 or (warmup and warmup >= len(candles)):
        raise ValueError(f"warmup must leave at least one candle to trade (got {warmup} of {len(candles)})")
    plan = strategy.indicator_plan(ind_settings)  # the base values plus the strategy's declared ones
    ind = plan.compute_history(candles.open, candles.high, candles.low, candles.close, candles.volume)
    if warmup:
        ind = {k: v[warmup:] for k, v in ind.items()}
        candles = candles.take(slice(warmup, None))
    n = len(candles)
    signal = _vector_signal(strategy, ind) if publish is None else None
    if signal is not None:
        return _run_compiled(
            candles,
            strategy,
            signal,
            symbol=symbol,
            interval=interval,
            fm=fm,
            settings=settings,
            ind_settings=ind_settings,
            progress=progress,
            run_id=run_id,
            warmup=warmup,
            t0=t0,
        )
    broker = SimulatedFuturesBroker(symbol, settings, fm)
    session = StrategySession(
        symbol=symbol,
        interval=interval,
        strategy=strategy,
        broker=broker,
        run_id=run_id,
        mode="backtest",
        initial_cash=settings.initial_cash,
        reenter_on_exit_candle=fm.reenter_on_exit_candle,
        publish=publish,
    )
    # The equity curve only changes shape when the account does (a fill, funding): record the
    # account at those bars and expand it with numpy afterwards instead of per bar in Python.
    marks: list[tuple[int, float, float, float]] = [(0, broker.cash, 0.0, 0.0)]  # (bar, cash, signed qty, entry)
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
    cancelled = False
    last_pos, last_cash = broker.position, broker.cash
    m = n
    make_candle, make_ind = Candle._make, plan.values_type._make  # the cheapest way to build per-bar tuples
    for i, (row, irow) in enumerate(zip(zip(*cols, repeat(True)), zip(*icols))):
        on_closed(make_candle(row), make_ind(irow))
        pos = broker.position
        if pos is not last_pos or broker.cash != last_cash:
            last_pos, last_cash = pos, broker.cash
            if pos is None:
                marks.append((i, last_cash, 0.0, 0.0))
            else:
                marks.append((i, last_cash, pos.side.sign * pos.qty, pos.entry_price))
        if progress is not None and i % step == 0 and progress(i, n) is False:
            cancelled = True
            m = i + 1
            break
    if progress is not None and not cancelled:
        progress(n, n)
    equity, in_pos = _expand_equity(marks, candles.close[:m])
    pos = broker.position
    open_position = None
    if pos is not None:
        open_position = {
            "side": pos.side.name.lower(),
            "qty": pos.qty,
            "entry_price": pos.entry_price,
            "entry_time": pos.entry_time,
            "unrealized_pnl": pos.unrealized_pnl(float(candles.close[m - 1])),
        }
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
        fills=broker.fills,
        trades=broker.trades,
        fees_paid=broker.fees_paid,
        funding_paid=broker.funding_paid,
        open_position=open_position,
        indicator_settings=ind_settings,
        elapsed_s=time.perf_counter() - t0,
        cancelled=cancelled,
        warmup_bars=warmup,
        dropped_entries=list(broker.dropped_entries),
    )


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


def _run_compiled(
    candles: CandleArrays,
    strategy: Strategy,
    signal: NDArray[np.int8],
    *,
    symbol: str,
    interval: str,
    fm: FillModel,
    settings: BrokerSettings,
    ind_settings: IndicatorSettings,
    progress: ProgressFn | None,
    run_id: str,
    warmup: int,
    t0: float,
) -> BacktestResult:
    """``run_backtest`` for nobody listening bar by bar: the broker's compiled step
    (``tradeconsole.core.broker_step.simulate``) over the arrays, then the few fills and round
    trips as the objects the per-candle path returns. A run of millions of bars takes
    milliseconds, so ``progress`` is asked once before (False: cancelled after the first bar, as
    the per-bar loop would) and told once at the end."""
    from tradeconsole.core.broker_step import simulate

    n = len(candles)
    cancelled = False
    if progress is not None and progress(0, n) is False:
        cancelled = True
        candles, signal = candles.take(slice(0, 1)), signal[:1]
    s = settings
    f64 = np.float64
    equity, in_pos, fills_a, trades_a, dropped_a, totals = simulate(
        np.ascontiguousarray(candles.open, dtype=f64),
        np.ascontiguousarray(candles.high, dtype=f64),
        np.ascontiguousarray(candles.low, dtype=f64),
        np.ascontiguousarray(candles.close, dtype=f64),
        np.ascontiguousarray(candles.open_time, dtype=np.int64),
        np.ascontiguousarray(candles.close_time, dtype=np.int64),
        np.ascontiguousarray(signal, dtype=np.int8),
        float(strategy.params.stop_loss_pct),
        float(strategy.params.take_profit_pct),
        float(strategy.params.stake_fraction),
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
    )
    if progress is not None and not cancelled:
        progress(n, n)
    m = len(candles)
    fills, trades = _fill_objects(fills_a, trades_a, strategy.name, symbol, interval)
    dropped = [
        DroppedEntry(
            Side.LONG if row[0] > 0 else Side.SHORT,
            client_order_id(strategy.name, symbol, interval, int(row[1]), Side.LONG if row[0] > 0 else Side.SHORT),
            int(row[1]),
            int(row[2]),
        )
        for row in dropped_a
    ]
    open_position = None
    if totals[3]:
        side = Side.LONG if totals[4] > 0 else Side.SHORT
        qty, entry = float(totals[5]), float(totals[6])
        open_position = {
            "side": side.name.lower(),
            "qty": qty,
            "entry_price": entry,
            "entry_time": int(totals[7]),
            "unrealized_pnl": side.sign * qty * (float(candles.close[m - 1]) - entry),
        }
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
        fees_paid=float(totals[0]),
        funding_paid=float(totals[1]),
        open_position=open_position,
        indicator_settings=ind_settings,
        elapsed_s=time.perf_counter() - t0,
        cancelled=cancelled,
        warmup_bars=warmup,
        dropped_entries=dropped,
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
    fills_a: NDArray[np.float64], trades_a: NDArray[np.float64], name: str, symbol: str, interval: str
) -> tuple[list[Fill], list[Trade]]:
    """The compiled loop's fill and round-trip rows as ``Fill``/``Trade`` objects, with the order
    ids the broker gives them (the entry's id derives from its signal candle and side)."""
    fills: list[Fill] = []
    for t, side, px, qty, fee, code, sig in fills_a.tolist():
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
