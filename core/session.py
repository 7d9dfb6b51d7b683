"""One strategy trading one symbol/interval: the single code path shared by backtest, paper and live.

``StrategySession.on_closed_candle`` is the heart of the product. For every closed candle it
lets the broker fill a pending entry and check protective exits, then asks the strategy for an
entry, then publishes what happened. Backtests call it with indicator values computed over the
whole history; the live engine calls it with values from ``IncrementalIndicators``. The two are
proven equal, so a replay of the same candles gives the same fills everywhere.

Exit signals and time exits (``Strategy.exit_signal``, ``max_bars_in_trade``) are decided here,
on the closed candle, after the broker's protective orders had their chance on it, and handed to
the broker as a market exit (``submit_exit``). Time is counted in candles of the session's
interval from the entry fill, so a restart (which restores the position) counts on correctly.

The broker is a ``tradeconsole.core.broker_protocol.Broker``: the simulated broker and the live
Binance broker in ``infra`` both implement that Protocol explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tradeconsole.core.broker import client_order_id
from tradeconsole.core.broker_protocol import Broker
from tradeconsole.core.domain import Candle, Fill, FillReason, Order, OrderType, Position, Side, Trade
from tradeconsole.core.events import (
    CandleEvent,
    CandleUpdateEvent,
    EquityEvent,
    ErrorEvent,
    Event,
    FillEvent,
    OrderEvent,
    PositionEvent,
    SignalEvent,
)
from tradeconsole.core.indicators import IndicatorValues
from tradeconsole.core.risk import RiskGuard
from tradeconsole.core.strategies.base import Strategy

__all__ = ["Broker", "StrategySession"]


Publish = Callable[[Event], None]

_ENTRY_REASON = {Side.LONG: FillReason.ENTRY_LONG, Side.SHORT: FillReason.ENTRY_SHORT}
_EXIT_ORDER = {FillReason.STOP_LOSS: OrderType.STOP_MARKET, FillReason.TAKE_PROFIT: OrderType.TAKE_PROFIT_MARKET}


class StrategySession:
    """Candles in, orders and events out, for one (symbol, interval, strategy)."""

    def __init__(
        self,
        *,
        symbol: str,
        interval: str,
        strategy: Strategy,
        broker: Broker,
        run_id: str,
        mode: str,
        initial_cash: float,
        reenter_on_exit_candle: bool,
        publish: Publish | None = None,
        risk: RiskGuard | None = None,
        leverage: float = 1.0,
    ) -> None:
        self.symbol = symbol
        self.interval = interval
        self.strategy = strategy  # a property: also refreshes what the strategy's exits need
        self.broker = broker
        self.run_id = run_id
        self.mode = mode
        self.initial_cash = initial_cash
        self.reenter_on_exit_candle = reenter_on_exit_candle
        self.publish = publish
        self.risk = risk
        self.leverage = leverage
        self.entries_paused = False
        self.last_closed: Candle | None = None
        self._unplaced: set[str] = set()  # protective order ids never placed (no stop / no target)

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @strategy.setter
    def strategy(self, strategy: Strategy) -> None:
        self._strategy = strategy
        self._managed = bool(getattr(strategy, "managed_exits", False))
        self._max_hold = strategy.max_hold() if self._managed else None

    @property
    def key(self) -> str:
        return f"{self.symbol}:{self.interval}:{self.strategy.name}"

    # ------------------------------------------------------------------ the one code path
    def on_closed_candle(self, candle: Candle, ind: IndicatorValues, allow_entry: bool = True) -> list[Fill]:
        """Process one closed candle. ``allow_entry=False`` still runs exits (used for candles
        backfilled after an outage, whose signals are too old to act on)."""
        fills: list[Fill] = []
        pub = self.publish
        broker = self.broker
        position_before = broker.position
        exited = False
        for fill, trade in broker.on_candle(candle):
            fills.append(fill)
            exited = exited or trade is not None
            if pub:
                self._publish_fill(fill, trade)
        move = broker.take_stop_move()
        # a stop placed on this very candle (realistic entry at its open) is published at its moved level already
        if pub and move is not None and broker.position is not None and broker.position.entry_time < candle.open_time:
            self._publish_stop_move(broker.position, move, candle.close_time)
        if self._managed and broker.position is not None and not exited:
            res = self._managed_exit(candle, ind)
            if res is not None:
                fills.append(res[0])
                exited = True
                if pub:
                    self._publish_fill(*res)
        if pub:
            self._publish_dropped()
        if pub:
            pub(CandleEvent(**self._env("candle", candle.open_time), candle=candle, indicators=ind.as_dict()))
        if broker.is_flat and (self.reenter_on_exit_candle or not exited):
            side = self.strategy.entry_signal(candle, ind)
            if side is not None:
                entry = self._enter(side, candle, allow_entry, ind)
                if entry is not None:
                    fills.append(entry)
        risk = self.risk
        if pub or risk:
            equity = broker.equity(candle.close)
            if risk:
                alert = risk.observe_equity(candle.close_time, equity)
                if alert and pub:
                    pub(ErrorEvent(**self._env("risk", candle.close_time), source="risk", message=alert))
            if pub:
                if broker.position is not position_before:
                    pub(
                        PositionEvent(
                            **self._env("position", candle.close_time),
                            position=broker.position,
                            mark_price=candle.close,
                        )
                    )
                pub(self._equity_event(candle.close, candle.close_time))
        self.last_closed = candle
        return fills

    def _managed_exit(self, candle: Candle, ind: IndicatorValues) -> tuple[Fill, Trade] | None:
        """A time exit or the strategy's exit signal on this closed candle."""
        pos = self.broker.position
        assert pos is not None
        if self.broker.pending_exit is not None:
            return None  # already decided, fills at the next open
        reason = None
        span = candle.close_time + 1 - candle.open_time  # the candle's length in ms
        if self._max_hold is not None and candle.close_time + 1 - pos.entry_time >= self._max_hold * span:
            reason = FillReason.TIME_EXIT
        elif self.strategy.exit_signal(candle, ind, pos):
            reason = FillReason.EXIT_SIGNAL
        if reason is None:
            return None
        res = self.broker.submit_exit(candle, reason)
        if res is None and self.publish:  # realistic: a market order for the next open
            oid = f"{self.broker.entry_order_id}{'xt' if reason is FillReason.TIME_EXIT else 'xs'}"
            self._order(
                Order(
                    oid,
                    self.symbol,
                    pos.side.exit_order_side,
                    OrderType.MARKET,
                    pos.qty,
                    candle.close_time,
                    reduce_only=True,
                    reason=reason,
                ),
                "new",
                candle.close_time,
                "fills at the next candle's open",
            )
        return res

    def _enter(self, side: Side, candle: Candle, allow_entry: bool, ind: IndicatorValues) -> Fill | None:
        p = self.strategy.params
        note = ""
        if self.entries_paused:
            note = "entries paused"
        elif not allow_entry:
            note = "signal on a backfilled candle: too old to act on"
        elif self.risk is not None:
            ok, why = self.risk.allow_entry(candle.close_time)
            note = "" if ok else why
        stake = p.stake_fraction
        if not note and self.risk is not None:
            stake = self.risk.stake_fraction(stake, self.broker.equity(candle.close), self.leverage)
        if self.publish:
            self.publish(
                SignalEvent(
                    **self._env("signal", candle.open_time),
                    side=side,
                    price=candle.close,
                    candle_time=candle.open_time,
                    acted=not note,
                    note=note,
                )
            )
        if note:
            return None
        oid = client_order_id(self.strategy.name, self.symbol, self.interval, candle.open_time, side)
        if self.risk is not None:
            self.risk.record_order(candle.close_time)
        try:
            if self.strategy.simple_exits:
                fill = self.broker.submit_entry(side, candle, oid, p.stop_loss_pct, p.take_profit_pct, stake)
            else:
                plan = self.strategy.exit_plan(side, ind)
                if self.risk is not None:  # max notional for every sizing rule (risk per trade too)
                    plan = self.risk.limit_plan(plan, self.broker.equity(candle.close), self.leverage)
                fill = self.broker.submit_entry(side, candle, oid, 0.0, 0.0, 1.0, plan=plan)
        except Exception as exc:
            # A live broker may fail *after* the entry filled (e.g. protective orders rejected):
            # the fill is real and must be journalled before the error propagates.
            filled = getattr(exc, "fill", None)
            if filled is not None and self.publish:
                self._publish_fill(filled, None)
            raise
        if self.publish:
            if fill is not None:
                self._publish_fill(fill, None)
            else:  # realistic fill model: the market order executes at the next candle's open
                self._order(
                    Order(
                        oid,
                        self.symbol,
                        side.entry_order_side,
                        OrderType.MARKET,
                        0.0,
                        candle.close_time,
                        reason=_ENTRY_REASON[side],
                    ),
                    "new",
                    candle.close_time,
                    "fills at the next candle's open",
                )
        return fill

    def on_open_candle(self, candle: Candle, ind: IndicatorValues, seq: str) -> Fill | None:
        """Live only: fill a pending entry at the new candle's open (paper), then publish the open
        candle with its preview indicators."""
        res = self.broker.fill_pending_exit(candle)
        if res is not None and self.publish:
            self._publish_fill(*res)
            self.publish(PositionEvent(**self._env("position", res[0].time), position=None, mark_price=candle.close))
        fill = self.broker.on_candle_open(candle)
        if self.publish:
            self._publish_dropped()
        if fill is not None and self.publish:
            self._publish_fill(fill, None)
            self.publish(
                PositionEvent(
                    **self._env("position", fill.time), position=self.broker.position, mark_price=candle.close
                )
            )
        if self.publish:
            self.publish(
                CandleUpdateEvent(**self._env("tick", candle.open_time, seq), candle=candle, indicators=ind.as_dict())
            )
        return fill

    def on_account_event(self, payload: dict[str, Any], gap: bool, mark: float | None, time: int) -> bool:
        """Live only: apply a user data stream message (or, with ``gap``, the REST reconcile that
        follows a stream interruption) and publish the exits it completed, like a closed candle
        would. Returns whether the broker's state may have changed (to be journalled)."""
        before = self.broker.position
        results = self.broker.on_stream_gap() if gap else self.broker.apply_stream_event(payload)
        for fill, trade in results:
            if self.publish:
                self._publish_fill(fill, trade)
        if self.publish and (results or self.broker.position is not before):
            t = max([f.time for f, _ in results] or [time])
            pos = self.broker.position
            px = results[-1][0].price if results else (mark or (pos.entry_price if pos is not None else 0.0))
            self.publish(PositionEvent(**self._env("position", t), position=pos, mark_price=px))
            if px > 0:
                self.publish(self._equity_event(px, t))
        return True

    def flatten(self, price: float, time: int) -> Fill | None:
        res = self.broker.flatten(price, time, FillReason.FLATTEN)
        if res is None:
            return None
        fill, trade = res
        if self.publish:
            self._publish_fill(fill, trade)
            self.publish(PositionEvent(**self._env("position", time), position=None, mark_price=price))
            self.publish(self._equity_event(price, time))
        return fill

    # ------------------------------------------------------------------ events
    def _env(self, kind: str, time: int, extra: str = "") -> dict[str, Any]:
        eid = f"{self.run_id}:{kind}:{self.symbol}:{self.interval}:{self.strategy.name}:{time}"
        return {
            "event_id": eid + (f":{extra}" if extra else ""),
            "time": time,
            "run_id": self.run_id,
            "mode": self.mode,
            "symbol": self.symbol,
            "interval": self.interval,
            "strategy": self.strategy.name,
        }

    def _order(self, order: Order, status: str, time: int, message: str = "") -> None:
        assert self.publish is not None
        self.publish(
            OrderEvent(
                **self._env("order", time, f"{order.client_id}:{status}"), order=order, status=status, message=message
            )
        )

    def _publish_stop_move(self, pos: Position, move: tuple[float, float], time: int) -> None:
        """A trailing stop moved on this closed candle: its stop order, same client id, at the new
        trigger price, status ``amended`` (the exchange's word for a changed working order)."""
        oid = self.broker.entry_order_id + "sl"
        self._order(
            Order(
                oid,
                self.symbol,
                pos.side.exit_order_side,
                OrderType.STOP_MARKET,
                pos.qty,
                time,
                stop_price=move[1],
                reduce_only=True,
                reason=FillReason.STOP_LOSS,
            ),
            "amended",
            time,
            f"trailing stop moved {move[0]:,.2f} -> {move[1]:,.2f}",
        )

    def _publish_dropped(self) -> None:
        """An entry the broker dropped (the next candle came after a gap) ends its order as
        ``expired``, so the journal never holds an order that stays "new" forever."""
        for d in self.broker.take_dropped():
            self._order(
                Order(
                    d.order_id,
                    self.symbol,
                    d.side.entry_order_side,
                    OrderType.MARKET,
                    0.0,
                    d.next_open_time,
                    reason=_ENTRY_REASON[d.side],
                ),
                "expired",
                d.next_open_time,
                d.note,
            )

    def _publish_fill(self, fill: Fill, trade: Trade | None) -> None:
        """Publish a fill with the order events it implies, the same for every broker: an entry
        fills its market order and places the protective stop and target; an exit fills one of
        them (or a market/liquidation order) and cancels the rest."""
        t, qty = fill.time, fill.qty
        if fill.reason in (FillReason.ENTRY_LONG, FillReason.ENTRY_SHORT):
            self._order(
                Order(fill.order_id, self.symbol, fill.side, OrderType.MARKET, qty, t, reason=fill.reason), "filled", t
            )
            # called only while publishing (self.publish is set); mypy sees the Optional attribute
            self.publish(self._fill_event(fill, trade))  # type: ignore[misc]
            pos = self.broker.position
            if pos is not None:
                exit_side = pos.side.exit_order_side
                # a strategy without a stop or a target (None: an infinite level) places no such order
                if math.isfinite(pos.stop_price):
                    self._order(
                        Order(
                            fill.order_id + "sl",
                            self.symbol,
                            exit_side,
                            OrderType.STOP_MARKET,
                            qty,
                            t,
                            stop_price=pos.stop_price,
                            reduce_only=True,
                            reason=FillReason.STOP_LOSS,
                        ),
                        "new",
                        t,
                    )
                else:
                    self._unplaced.add(fill.order_id + "sl")
                if math.isfinite(pos.target_price):
                    self._order(
                        Order(
                            fill.order_id + "tp",
                            self.symbol,
                            exit_side,
                            OrderType.TAKE_PROFIT_MARKET,
                            qty,
                            t,
                            stop_price=pos.target_price,
                            reduce_only=True,
                            reason=FillReason.TAKE_PROFIT,
                        ),
                        "new",
                        t,
                    )
                else:
                    self._unplaced.add(fill.order_id + "tp")
            return
        entry_id = fill.order_id[:-2]
        kind = _EXIT_ORDER.get(fill.reason, OrderType.MARKET)
        self._order(
            Order(fill.order_id, self.symbol, fill.side, kind, qty, t, reduce_only=True, reason=fill.reason),
            "filled",
            t,
        )
        # called only while publishing (self.publish is set); mypy sees the Optional attribute
        self.publish(self._fill_event(fill, trade))  # type: ignore[misc]
        for suffix, typ, reason in (
            ("sl", OrderType.STOP_MARKET, FillReason.STOP_LOSS),
            ("tp", OrderType.TAKE_PROFIT_MARKET, FillReason.TAKE_PROFIT),
        ):
            if entry_id + suffix in self._unplaced:
                self._unplaced.discard(entry_id + suffix)
            elif fill.order_id != entry_id + suffix:
                self._order(
                    Order(entry_id + suffix, self.symbol, fill.side, typ, qty, t, reduce_only=True, reason=reason),
                    "canceled",
                    t,
                )

    def _fill_event(self, fill: Fill, trade: Trade | None) -> FillEvent:
        env = self._env("fill", fill.time, fill.order_id)
        return FillEvent(**env, fill=fill, trade=trade)

    def _equity_event(self, mark: float, time: int) -> EquityEvent:
        eq = self.broker.equity(mark)
        return EquityEvent(
            **self._env("equity", time),
            equity=eq,
            cash=self.broker.cash,
            unrealized_pnl=eq - self.broker.cash,
            return_pct=100.0 * (eq / self.initial_cash - 1.0),
            initial_cash=self.initial_cash,
            in_position=self.broker.position is not None,
        )
