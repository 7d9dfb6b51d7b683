"""The simulated USD-M futures broker used by backtests and by paper trading.

One position at a time per broker, isolated margin, leverage, taker fees, optional slippage and
funding. How and when orders fill is a ``FillModel``:

``seed``
    Decide and fill at the signal candle's close; stop-loss and take-profit are checked on closes
    only (and fill at that close); no new entry on the candle that closed a position; the
    research code's indicator definitions (simple-mean RSI from bar 13, pandas ``ewm(adjust=True)``
    MACD; see ``tradeconsole.core.indicators``). The entry fee is charged on the whole stake and the position is sized
    from what remains, as the original research code did. This reproduces its backtests.
``realistic`` (default)
    Decide on a closed candle, fill at the next candle's open plus slippage, but only if that
    candle is the signal candle's immediate successor: after a gap in the data (or an outage) the
    price has moved on without the strategy seeing it, so the entry is dropped and recorded in
    ``dropped_entries``. Stops and targets are protective orders hit intrabar from the candle's
    high/low. A candle that opens beyond a level fills that order at the open (the stop or the
    target, whichever the open crossed: the open is the first price of the candle, so nothing
    later in it can pre-empt that order); otherwise, when both could have been hit inside one
    candle, the worse (the stop) is assumed. The position is sized so margin plus entry fee equals the stake; fees are charged on
    notional. Wilder RSI.

Beyond the fixed percentages, an entry may carry an ``ExitPlan`` (from a strategy's declared
exits): a stop/target as a fraction, a price distance (ATR-based) or an absolute price
(indicator-based), a trailing stop, and a sizing rule. A trailing stop is the stop order moved
once per closed candle, after that candle's exits were checked, to the trail behind the best price
the candle reached (realistic: its high for a long, its low for a short; seed: its close), never
backwards; a fill of it is a ``stop_loss``. Exit signals and time exits (``submit_exit``) are
market orders decided on a closed candle: seed fills them at that close, realistic at the next
candle's open (before any protective order can act on that candle).

Exits are evaluated when a candle closes, from that candle's open/high/low/close, in every mode
(backtest, paper, replay), so the same candles always give the same fills.

Accounting: ``cash`` is the wallet balance. Opening charges the entry fee; closing adds the
realised PnL and subtracts the exit fee; funding is paid/received at 00:00, 08:00 and 16:00 UTC
while a position is open. Equity = cash + unrealised PnL at the mark price.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from tradeconsole.core import broker_step as step
from tradeconsole.core.broker_protocol import Broker
from tradeconsole.core.domain import Candle, Fill, FillReason, OrderSide, Position, Side, Trade, iso_ms
from tradeconsole.core.indicators import IndicatorSettings

__all__ = [
    "FILL_MODELS",
    "BrokerSettings",
    "DroppedEntry",
    "ExitPlan",
    "FillModel",
    "SimulatedFuturesBroker",
    "client_order_id",
]

FUNDING_PERIOD_MS = step.FUNDING_PERIOD_MS


@dataclass(frozen=True, slots=True)
class FillModel:
    name: str
    fill_at_next_open: bool
    intrabar_exits: bool
    reenter_on_exit_candle: bool
    rsi_smoothing: str
    fee_on_stake: bool
    indicator_style: str = "standard"

    def indicator_settings(self) -> IndicatorSettings:
        """The indicator definitions this model trades on (backtest, paper and replay alike)."""
        return IndicatorSettings(rsi_smoothing=self.rsi_smoothing, style=self.indicator_style)


FILL_MODELS: dict[str, FillModel] = {
    "seed": FillModel(
        "seed",
        fill_at_next_open=False,
        intrabar_exits=False,
        reenter_on_exit_candle=False,
        rsi_smoothing="sma",
        fee_on_stake=True,
        indicator_style="research",
    ),
    "realistic": FillModel(
        "realistic",
        fill_at_next_open=True,
        intrabar_exits=True,
        reenter_on_exit_candle=True,
        rsi_smoothing="wilder",
        fee_on_stake=False,
    ),
}


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    initial_cash: float = 10_000.0
    leverage: float = 1.0
    fee_rate: float = 0.0004  # taker fee, fraction of notional
    slippage_bps: float = 0.0  # adverse, on every market fill (entries, stops, targets)
    funding_rate_8h: float = 0.0  # constant funding rate per 8h; longs pay when positive
    maintenance_margin_rate: float = 0.004

    def __post_init__(self) -> None:
        if self.initial_cash <= 0:
            raise ValueError("initial cash must be positive")
        if not 1 <= self.leverage <= 125:
            raise ValueError("leverage must be between 1 and 125")
        if not 0 <= self.fee_rate < 0.01:
            raise ValueError("fee_rate must be a fraction below 1% (0.0004 = 0.04%)")
        if self.slippage_bps < 0:
            raise ValueError("slippage_bps cannot be negative")


def client_order_id(strategy: str, symbol: str, interval: str, candle_open_time: int, side: Side) -> str:
    """Stable client order id for the entry triggered by one signal candle.

    Derived only from what the signal is (never from a run id or a clock), so a retry after a
    timeout or a restart after a crash produces the same id and the exchange rejects a duplicate.
    Binance allows at most 36 characters from ``[.A-Z:/a-z0-9_-]``.
    """
    key = f"{strategy}|{symbol}|{interval}|{candle_open_time}|{side.name}"
    return "tc" + hashlib.sha1(key.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """Protective orders and size of one entry, resolved on the signal candle.

    ``stop``/``target``: ``("pct", fraction of the fill price)``, ``("distance", price units)`` or
    ``("price", absolute)``; None for none. ``trail``: ``("pct", f)`` or ``("distance", d)`` behind
    the best price, or None. ``sizing``: ``"fraction"`` of equity as margin (``size``), a
    ``"notional"`` in USDT, or ``"risk"``: the fraction of equity lost at the stop.
    ``max_notional``: the risk limit's cap on the position's notional (USDT), applied at the fill
    price whatever the sizing rule (``tradeconsole.core.risk.RiskGuard.limit_plan``)."""

    stop: tuple[str, float] | None
    target: tuple[str, float] | None
    trail: tuple[str, float] | None = None
    sizing: str = "fraction"
    size: float = 1.0
    max_notional: float | None = None

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ExitPlan:
        def t(x: Any) -> tuple[str, float] | None:
            return None if x is None else (str(x[0]), float(x[1]))

        cap = d.get("max_notional")
        return ExitPlan(
            t(d.get("stop")),
            t(d.get("target")),
            t(d.get("trail")),
            str(d.get("sizing", "fraction")),
            float(d.get("size", 1.0)),
            None if cap is None else float(cap),
        )


def _level(px: float, rule: tuple[str, float] | None, sign: int, adverse: bool) -> float:
    """The price of a stop (``adverse``) or target for a fill at ``px``; +-inf for none."""
    if rule is None:
        return -sign * math.inf if adverse else sign * math.inf
    kind, v = rule
    direction = -sign if adverse else sign
    if kind == "pct":
        return px * (1 + direction * v)
    if kind == "distance":
        return px + direction * v
    return v


@dataclass(frozen=True, slots=True)
class _Pending:
    side: Side
    order_id: str
    signal_time: int
    stop_loss_pct: float
    take_profit_pct: float
    stake_fraction: float
    signal_close_time: int | None = None  # None in snapshots written before it existed: no check
    plan: ExitPlan | None = None  # None: fixed percentages above, equity-fraction sizing


@dataclass(frozen=True, slots=True)
class DroppedEntry:
    """A pending entry that was not filled because the next candle was not the signal candle's
    successor (``next_open_time`` is where the data resumed)."""

    side: Side
    order_id: str
    signal_time: int
    next_open_time: int
    why: str = ""  # set when the entry was dropped for another reason than a gap

    @property
    def note(self) -> str:
        if self.why:
            return f"entry dropped: {self.why}"
        return (
            f"entry dropped: the next candle ({iso_ms(self.next_open_time)}) is not the immediate successor "
            f"of the signal candle ({iso_ms(self.signal_time)}); the price moved on unseen"
        )


class SimulatedFuturesBroker(Broker):
    """Simulated isolated-margin futures account for one symbol (the ``Broker`` Protocol; the
    exchange-only members are documented no-ops)."""

    def __init__(
        self, symbol: str, settings: BrokerSettings = BrokerSettings(), fill_model: FillModel = FILL_MODELS["realistic"]
    ) -> None:
        self.symbol = symbol
        self.settings = settings
        self.fill_model = fill_model
        self.cash = settings.initial_cash
        self.position: Position | None = None
        self.pending: _Pending | None = None
        self.fills: list[Fill] = []
        self.trades: list[Trade] = []
        self.dropped_entries: list[DroppedEntry] = []
        self._dropped_taken = 0
        self.fees_paid = 0.0
        self.funding_paid = 0.0
        self._entry_order_id = ""
        self._entry_stake = 0.0
        self._position_funding = 0.0
        self.trail: tuple[str, float] | None = None  # the open position's trailing stop
        self._stop_move: tuple[float, float] | None = None  # (from, to) of the last trailing move not yet taken
        self.pending_exit: str | None = None  # FillReason value of an exit to fill at the next open

    # ------------------------------------------------------------------ queries
    @property
    def is_flat(self) -> bool:
        return self.position is None and self.pending is None

    def equity(self, mark: float) -> float:
        p = self.position
        return self.cash if p is None else self.cash + p.side.sign * p.qty * (mark - p.entry_price)

    # ------------------------------------------------------------------ per-candle flow
    def on_candle_open(self, candle: Candle) -> Fill | None:
        """A new candle has opened (live: its first update). A pending entry fills at its open
        now, so paper positions appear immediately; the price and time are exactly those the
        closed candle would give in ``on_candle``, so backtests and paper trading still agree.
        A candle that is not the signal candle's successor drops the entry instead (see
        ``DroppedEntry``)."""
        p = self.pending
        if p is None or candle.open_time <= p.signal_time:
            return None
        # the successor opens right after the signal candle closes: Binance klines carry a close
        # time of open time + interval - 1 ms (REST "Kline/Candlestick Data", field 6)
        if p.signal_close_time is not None and candle.open_time > p.signal_close_time + 1:
            self.pending = None
            self.dropped_entries.append(DroppedEntry(p.side, p.order_id, p.signal_time, candle.open_time))
            return None
        return self._fill_pending(candle)

    def take_dropped(self) -> list[DroppedEntry]:
        """Entries dropped since the last call (for the session to publish once each)."""
        new = self.dropped_entries[self._dropped_taken :]
        self._dropped_taken = len(self.dropped_entries)
        return new

    def on_candle(self, candle: Candle) -> list[tuple[Fill, Trade | None]]:
        """Process one closed candle: fill a pending entry at its open, charge funding, then
        check protective exits. Returns the fills (with the round trip each one closed)."""
        out: list[tuple[Fill, Trade | None]] = []
        ex = self.fill_pending_exit(candle)
        if ex is not None:
            out.append(ex)
        entry = self.on_candle_open(candle)
        if entry is not None:
            out.append((entry, None))
        if self.position is not None and step.funding_due(
            candle.open_time, self.position.entry_time, float(self.settings.funding_rate_8h)
        ):
            self._charge_funding(candle.open)
        if self.position is not None:
            exit_ = self._check_exits(candle)
            if exit_ is not None:
                out.append(exit_)
            elif self.trail is not None:
                self._move_trail(candle)
        return out

    def submit_exit(self, candle: Candle, reason: FillReason) -> tuple[Fill, Trade] | None:
        """Close the position on a decision taken at ``candle``'s close (an exit signal or a time
        exit): seed fills at that close, realistic at the next candle's open (``on_candle``)."""
        if self.position is None or self.pending_exit is not None:
            return None
        if self.fill_model.fill_at_next_open:
            self.pending_exit = reason.value
            return None
        return self._close(self._slipped(candle.close, self.position.side.exit_order_side), candle.close_time, reason)

    def fill_pending_exit(self, candle: Candle) -> tuple[Fill, Trade] | None:
        """Fill an exit decided on the previous closed candle at this candle's open (market
        order: slippage applies; after a gap too: an exit must not wait)."""
        if self.pending_exit is None or self.position is None or candle.open_time <= self.position.entry_time:
            return None
        reason = FillReason(self.pending_exit)
        return self._close(self._slipped(candle.open, self.position.side.exit_order_side), candle.open_time, reason)

    def _move_trail(self, c: Candle) -> None:
        p = self.position
        assert p is not None and self.trail is not None
        long = p.side is Side.LONG
        if self.fill_model.intrabar_exits:
            ref = c.high if long else c.low
        else:
            ref = c.close
        kind, v = self.trail
        if long:
            new = ref * (1 - v) if kind == "pct" else ref - v
            moved = new > p.stop_price
        else:
            new = ref * (1 + v) if kind == "pct" else ref + v
            moved = new < p.stop_price
        if moved:
            self.position = replace(p, stop_price=new)
            before = self._stop_move[0] if self._stop_move is not None else p.stop_price
            self._stop_move = (before, new)

    @property
    def entry_order_id(self) -> str:
        """The open position's entry client order id ("" when flat)."""
        return self._entry_order_id

    def take_stop_move(self) -> tuple[float, float] | None:
        """The trailing stop's move since the last call, as (from, to) prices, or None: the
        session publishes it as the stop order's ``amended`` event, so the console, the journal
        and Kibana show the stop where the broker holds it."""
        move, self._stop_move = self._stop_move, None
        return move

    def submit_entry(
        self,
        side: Side,
        candle: Candle,
        order_id: str,
        stop_loss_pct: float,
        take_profit_pct: float,
        stake_fraction: float = 1.0,
        plan: ExitPlan | None = None,
    ) -> Fill | None:
        """Enter on a signal at ``candle``'s close (seed: filled now; realistic: at the next
        candle's open, returned by the next ``on_candle``). Ignored if not flat. ``plan``
        replaces the percentages and the stake fraction when given."""
        if not self.is_flat:
            return None
        pending = _Pending(
            side, order_id, candle.open_time, stop_loss_pct, take_profit_pct, stake_fraction, candle.close_time, plan
        )
        if self.fill_model.fill_at_next_open:
            self.pending = pending
            return None
        self.pending = pending
        return self._fill_pending(candle, price=candle.close, time=candle.close_time)

    def cancel_pending(self) -> bool:
        had = self.pending is not None
        self.pending = None
        return had

    def flatten(self, price: float, time: int, reason: FillReason = FillReason.FLATTEN) -> tuple[Fill, Trade] | None:
        """Close the open position at ``price`` (market, slippage applies) and drop any pending
        entry. Returns the exit fill and round trip, or None if already flat."""
        self.pending = None
        if self.position is None:
            return None
        self.pending_exit = None
        return self._close(self._slipped(price, self.position.side.exit_order_side), time, reason)

    # ------------------------------------------------------------------ internals
    def _slipped(self, price: float, side: OrderSide) -> float:
        return float(step.slipped(float(price), side is OrderSide.BUY, float(self.settings.slippage_bps)))

    def _fill_pending(self, candle: Candle, price: float | None = None, time: int | None = None) -> Fill | None:
        p = self.pending
        if p is not None and p.plan is not None:
            return self._fill_planned(candle, price, time)
        p = self.pending
        assert p is not None
        self.pending = None
        s = self.settings
        t = candle.open_time if time is None else time
        sign = p.side.sign
        px, qty, fee, stake, stop, target, liq = step.open_position(
            float(candle.open if price is None else price),
            float(sign),
            float(self.cash),
            float(p.stake_fraction),
            float(s.leverage),
            float(s.fee_rate),
            float(s.slippage_bps),
            float(p.stop_loss_pct),
            float(p.take_profit_pct),
            float(s.maintenance_margin_rate),
            bool(self.fill_model.fee_on_stake),
        )
        self.cash -= fee
        self.fees_paid += fee
        self.position = Position(self.symbol, p.side, qty, px, t, fee, s.leverage, stop, target, liq)
        self._entry_order_id = p.order_id
        self._entry_stake = stake
        self._position_funding = 0.0
        reason = FillReason.ENTRY_LONG if sign > 0 else FillReason.ENTRY_SHORT
        fill = Fill(t, self.symbol, p.side.entry_order_side, px, qty, fee, reason, p.order_id)
        self.fills.append(fill)
        return fill

    def _fill_planned(self, candle: Candle, price: float | None, time: int | None) -> Fill | None:
        """``_fill_pending`` for an entry with an ``ExitPlan``: levels from the fill price, size
        from the plan's rule, capped by what the wallet can margin (margin + entry fee <= cash)."""
        p = self.pending
        assert p is not None and p.plan is not None
        self.pending = None
        s, plan, sign = self.settings, p.plan, p.side.sign
        px = self._slipped(candle.open if price is None else price, p.side.entry_order_side)
        t = candle.open_time if time is None else time
        stop = _level(px, plan.stop, sign, adverse=True)
        target = _level(px, plan.target, sign, adverse=False)
        if plan.trail is not None:
            kind, v = plan.trail
            trail0 = (px * (1 - sign * v)) if kind == "pct" else px - sign * v
            stop = max(stop, trail0) if sign > 0 else min(stop, trail0)
        why = ""
        if math.isnan(stop) or math.isnan(target):
            why = "a protective level is undefined on the signal candle (indicator warm-up)"
        elif (stop >= px or target <= px) if sign > 0 else (stop <= px or target >= px):
            why = f"protective levels on the wrong side of the fill price {px:g} (stop {stop:g}, target {target:g})"
        per_unit = px * (1.0 / s.leverage + s.fee_rate)
        qty_max = self.cash / per_unit  # the leverage cap: margin + entry fee never exceed the wallet
        if plan.max_notional is not None:  # the risk limit, at the fill price, for every sizing rule
            qty_max = min(qty_max, plan.max_notional / px)
        if plan.sizing == "fraction":
            qty = min(self.cash * plan.size / per_unit, qty_max)
        elif plan.sizing == "notional":
            qty = min(plan.size / px, qty_max)
        else:  # risk: a stop hit loses plan.size of equity
            dist = abs(px - stop)
            qty = min(self.cash * plan.size / dist, qty_max) if dist > 0 and math.isfinite(dist) else 0.0
        if not why and not qty > 0:
            why = "the sizing rule gives no quantity"
        if why:
            self.dropped_entries.append(DroppedEntry(p.side, p.order_id, p.signal_time, t, why))
            return None
        fee = qty * px * s.fee_rate
        mmr = s.maintenance_margin_rate
        liq = px * (1 - 1 / s.leverage + mmr) if sign > 0 else px * (1 + 1 / s.leverage - mmr)
        self.cash -= fee
        self.fees_paid += fee
        self.position = Position(self.symbol, p.side, qty, px, t, fee, s.leverage, stop, target, liq)
        self._entry_order_id = p.order_id
        self._entry_stake = qty * per_unit
        self._position_funding = 0.0
        self.trail = plan.trail
        self.pending_exit = None
        reason = FillReason.ENTRY_LONG if sign > 0 else FillReason.ENTRY_SHORT
        fill = Fill(t, self.symbol, p.side.entry_order_side, px, qty, fee, reason, p.order_id)
        self.fills.append(fill)
        return fill

    def _charge_funding(self, mark: float) -> None:
        p = self.position
        assert p is not None
        payment = p.side.sign * p.qty * mark * self.settings.funding_rate_8h
        self.cash -= payment
        self.funding_paid += payment
        self._position_funding += payment

    def _check_exits(self, c: Candle) -> tuple[Fill, Trade] | None:
        """The protective orders against this closed candle (the rules: ``broker_step.protective_exit``)."""
        p = self.position
        assert p is not None
        code, price, at_open, slip = step.protective_exit(
            float(p.side.sign),
            float(c.open),
            float(c.high),
            float(c.low),
            float(c.close),
            float(p.stop_price),
            float(p.target_price),
            float(p.liquidation_price),
            bool(self.fill_model.intrabar_exits),
        )
        if code == step.R_NONE:
            return None
        return self._close(price, c.open_time if at_open else c.close_time, _STEP_REASON[code], slip=slip)

    def _close(self, price: float, time: int, reason: FillReason, slip: bool = True) -> tuple[Fill, Trade]:
        p = self.position
        assert p is not None
        side = p.side.exit_order_side
        # isolated margin: a liquidation's loss stops at the margin (``broker_step.close_amounts``)
        px, gross, fee = step.close_amounts(
            float(p.side.sign),
            float(p.qty),
            float(p.entry_price),
            float(p.leverage),
            float(price),
            slip,
            reason is FillReason.LIQUIDATION,
            float(self.settings.fee_rate),
            float(self.settings.slippage_bps),
        )
        self.cash += gross - fee
        self.fees_paid += fee
        fill = Fill(time, self.symbol, side, px, p.qty, fee, reason, self._entry_order_id + _EXIT_SUFFIX[reason])
        trade = Trade(
            symbol=self.symbol,
            side=p.side,
            qty=p.qty,
            entry_time=p.entry_time,
            entry_price=p.entry_price,
            exit_time=time,
            exit_price=px,
            pnl=gross - p.entry_fee - fee - self._position_funding,
            fees=p.entry_fee + fee,
            funding=self._position_funding,
            exit_reason=reason,
            stake=self._entry_stake,
        )
        self.position = None
        self.trail = None
        self._stop_move = None
        self.pending_exit = None
        self.fills.append(fill)
        self.trades.append(trade)
        return fill, trade

    # ------------------------------------------------------------------ exchange-only members (no-ops)
    def start(self) -> None:
        """Nothing to prepare: the simulated account exists from ``__init__``."""

    def check_feed(self, source: str) -> None:
        """Every candle source may drive a simulation (backtests replay history on purpose)."""

    def apply_stream_event(self, event: dict[str, Any]) -> list[tuple[Fill, Trade | None]]:
        """There is no account stream for a simulated account: nothing changes."""
        return []

    def on_stream_gap(self) -> list[tuple[Fill, Trade | None]]:
        """No account stream, so nothing can have been missed."""
        return []

    def reconcile(self) -> list[Any]:
        """No exchange to compare with: the simulation is its own truth."""
        return []

    def take_alerts(self) -> list[str]:
        """The simulation never raises operator alerts (fills and drops are published as events)."""
        return []

    # ------------------------------------------------------------------ persistence (paper)
    def snapshot(self) -> dict[str, Any]:
        """State needed to resume paper trading after a restart (JSON-ready)."""
        return {
            "cash": self.cash,
            "fees_paid": self.fees_paid,
            "funding_paid": self.funding_paid,
            "position": None if self.position is None else {**asdict(self.position), "side": self.position.side.name},
            "pending": None if self.pending is None else {**asdict(self.pending), "side": self.pending.side.name},
            "entry_order_id": self._entry_order_id,
            "entry_stake": self._entry_stake,
            "position_funding": self._position_funding,
            "trail": None if self.trail is None else list(self.trail),
            "pending_exit": self.pending_exit,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.cash = float(state["cash"])
        self.fees_paid = float(state.get("fees_paid", 0.0))
        self.funding_paid = float(state.get("funding_paid", 0.0))
        pos = state.get("position")
        self.position = None if pos is None else Position(**{**pos, "side": Side[pos["side"]]})
        pend = state.get("pending")
        if pend is not None and pend.get("plan") is not None:
            pend = {**pend, "plan": ExitPlan.from_dict(pend["plan"])}
        self.pending = None if pend is None else _Pending(**{**pend, "side": Side[pend["side"]]})
        self._entry_order_id = state.get("entry_order_id", "")
        self._entry_stake = float(state.get("entry_stake", 0.0))
        self._position_funding = float(state.get("position_funding", 0.0))
        trail = state.get("trail")
        self.trail = None if trail is None else (str(trail[0]), float(trail[1]))
        self.pending_exit = state.get("pending_exit")


_STEP_REASON = {
    step.R_STOP: FillReason.STOP_LOSS,
    step.R_TARGET: FillReason.TAKE_PROFIT,
    step.R_LIQ: FillReason.LIQUIDATION,
}

_EXIT_SUFFIX = {
    FillReason.STOP_LOSS: "sl",
    FillReason.TAKE_PROFIT: "tp",
    FillReason.LIQUIDATION: "lq",
    FillReason.FLATTEN: "fx",
    FillReason.EXIT_SIGNAL: "xs",
    FillReason.TIME_EXIT: "xt",
}
