"""Typed events the engine publishes; everything a user sees or stores is one of these.

Every event carries the same envelope: a stable ``event_id`` (derived from what the event is
about, never random, so a replay or a redelivery produces the same id and every external write
can be idempotent), the event ``time`` in epoch ms UTC, the ``run_id``, the ``mode``
(``backtest``, ``paper``, ``testnet`` or ``live``), and the symbol/interval/strategy it concerns.

``to_dict()`` gives the JSON form documented in ``infra/sinks/schemas`` (schema version
``SCHEMA_VERSION``); timestamps become UTC ISO-8601 strings there. No event ever carries API keys
or other secrets: the types below simply have no field that could hold one.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from tradeconsole.core.domain import Candle, Fill, Order, Position, Side, Trade, iso_ms

__all__ = [
    "SCHEMA_VERSION",
    "BacktestRunEvent",
    "CandleEvent",
    "CandleUpdateEvent",
    "ConnectionEvent",
    "EngineStateEvent",
    "EquityEvent",
    "ErrorEvent",
    "Event",
    "FillEvent",
    "OptimizationRunEvent",
    "OptimizationTrialEvent",
    "OrderEvent",
    "PositionEvent",
    "SignalEvent",
]

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Envelope shared by all events."""

    type: ClassVar[str] = "event"
    #: Event family, used to route to a Kafka topic / Elasticsearch index.
    family: ClassVar[str] = "events"

    event_id: str
    time: int
    run_id: str
    mode: str
    symbol: str = ""
    interval: str = ""
    strategy: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: envelope fields, then the event's own fields."""
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "type": self.type,
            "event_id": self.event_id,
            "@timestamp": iso_ms(self.time),
            "run_id": self.run_id,
            "mode": self.mode,
            "symbol": self.symbol,
            "interval": self.interval,
            "strategy": self.strategy,
        }
        out.update(self._payload())
        return out

    def _payload(self) -> dict[str, Any]:
        # a class is hashable; mypy reads the dataclass instance's __hash__ = None onto type(self)
        return {name: _jsonable(getattr(self, name)) for name in _own_fields(type(self))}  # type: ignore[arg-type]


@functools.cache
def _own_fields(cls: type) -> tuple[str, ...]:
    """Field names of an event class beyond the envelope (computed once per class)."""
    base = {f.name for f in fields(Event)}
    return tuple(f.name for f in fields(cls) if f.name not in base)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        # JSON has no NaN/inf: unknown indicator values (warm-up) travel as null.
        return value if math.isfinite(value) else None
    if isinstance(value, Side):
        return value.name.lower()
    if hasattr(value, "value") and isinstance(value.value, str):  # StrEnum
        return value.value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _numbers(d: dict[str, Any]) -> dict[str, Any]:
    """Flat dict of numbers (indicator values) with NaN/inf as null: the hot path of
    ``_jsonable`` for candle events."""
    return {k: (None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v) for k, v in d.items()}


def _candle_dict(c: Candle) -> dict[str, Any]:
    return {
        "open_time": iso_ms(c.open_time),
        "close_time": iso_ms(c.close_time),
        "open": c.open,
        "high": c.high,
        "low": c.low,
        "close": c.close,
        "volume": c.volume,
        "closed": c.closed,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class CandleEvent(Event):
    """A closed candle with the indicator values computed on it."""

    type: ClassVar[str] = "candle"
    family: ClassVar[str] = "candles"
    candle: Candle
    indicators: dict[str, float | int | None]

    def _payload(self) -> dict[str, Any]:
        return {**_candle_dict(self.candle), **_numbers(self.indicators)}


@dataclass(frozen=True, slots=True, kw_only=True)
class CandleUpdateEvent(Event):
    """The still-open candle changed; indicators are what they would be if it closed now."""

    type: ClassVar[str] = "candle_update"
    family: ClassVar[str] = "ticks"
    candle: Candle
    indicators: dict[str, float | int | None]

    def _payload(self) -> dict[str, Any]:
        return {**_candle_dict(self.candle), **_numbers(self.indicators)}


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalEvent(Event):
    """The strategy wants to open a position (``side``) at the close of ``candle_time``."""

    type: ClassVar[str] = "signal"
    family: ClassVar[str] = "signals"
    side: Side
    price: float
    candle_time: int
    acted: bool
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderEvent(Event):
    """An order changed state: ``new``, ``filled``, ``canceled`` or ``rejected``."""

    type: ClassVar[str] = "order"
    family: ClassVar[str] = "orders"
    order: Order
    status: str
    message: str = ""

    def _payload(self) -> dict[str, Any]:
        o = self.order
        return {
            "client_order_id": o.client_id,
            "side": o.side.value,
            "order_type": o.type.value,
            "qty": o.qty,
            "stop_price": o.stop_price,
            "reduce_only": o.reduce_only,
            "reason": o.reason.value if o.reason else None,
            "status": self.status,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FillEvent(Event):
    type: ClassVar[str] = "fill"
    family: ClassVar[str] = "trades"
    fill: Fill
    trade: Trade | None = None  # set on the fill that closes a round trip

    def _payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.fill.to_dict(), "order_id": self.fill.order_id}
        out["fill_time"] = out.pop("time")
        if self.trade is not None:
            t = self.trade.to_dict()
            out.update(
                {
                    "position_side": t["side"],
                    "entry_price": t["entry_price"],
                    "entry_time": t["entry_time"],
                    "pnl": t["pnl"],
                    "return_pct": t["return_pct"],
                    "trade": t,
                }
            )
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionEvent(Event):
    """The position after a change; ``position`` is None when flat."""

    type: ClassVar[str] = "position"
    family: ClassVar[str] = "positions"
    position: Position | None
    mark_price: float

    def _payload(self) -> dict[str, Any]:
        p = self.position
        if p is None:
            return {"side": "flat", "qty": 0.0, "mark_price": self.mark_price}
        return {
            "side": p.side.name.lower(),
            "qty": p.qty,
            "entry_price": p.entry_price,
            "entry_time": iso_ms(p.entry_time),
            "leverage": p.leverage,
            "stop_price": p.stop_price,
            "target_price": p.target_price,
            "liquidation_price": p.liquidation_price,
            "mark_price": self.mark_price,
            "unrealized_pnl": p.unrealized_pnl(self.mark_price),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EquityEvent(Event):
    type: ClassVar[str] = "equity"
    family: ClassVar[str] = "equity"
    equity: float
    cash: float
    unrealized_pnl: float
    return_pct: float
    initial_cash: float
    in_position: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEvent(Event):
    """Market-data, broker or pipeline connection state: connected, reconnecting, stale,
    disconnected; a sink also reports degraded (delivering, but its spool disk is full) and
    refused (the destination refuses this client for good; the reason is in ``detail``)."""

    type: ClassVar[str] = "connection"
    family: ClassVar[str] = "status"
    source: str
    state: str
    lag_ms: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineStateEvent(Event):
    """Engine lifecycle and operator actions: running, stopped, paused, flattened, switched."""

    type: ClassVar[str] = "engine_state"
    family: ClassVar[str] = "status"
    state: str
    detail: str = ""
    session: str = ""  # the session key concerned; "" = all sessions
    switched_to: str = ""  # after SwitchStrategy: the strategy the session now runs


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(Event):
    type: ClassVar[str] = "error"
    family: ClassVar[str] = "status"
    source: str
    message: str
    fatal: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestRunEvent(Event):
    """Summary of a finished backtest run (the metrics of ``tradeconsole.backtest.metrics``)."""

    type: ClassVar[str] = "backtest_run"
    family: ClassVar[str] = "backtests"
    metrics: dict[str, Any] = field(default_factory=dict)

    def _payload(self) -> dict[str, Any]:
        # the envelope already says run, symbol, interval, strategy and mode ("backtest")
        envelope = {"mode", "run_id", "symbol", "interval", "strategy", "fills"}
        return {k: _jsonable(v) for k, v in self.metrics.items() if k not in envelope}


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizationRunEvent(Event):
    """An optimisation run (``tradeconsole optimize``) starting (``phase`` "start": what is
    searched on which data) and ending ("finish": trials count, the best parameters and their
    honest numbers; "interrupted": what was computed before Ctrl-C). In the ``backtests`` family
    so Kibana charts optimisations next to the backtests they consist of."""

    type: ClassVar[str] = "optimization_run"
    family: ClassVar[str] = "backtests"
    phase: str
    fill_model: str
    search: str
    objective: str
    kernel: str = ""
    space: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, Any] = field(default_factory=dict)
    start: str | None = None  # the traded data window, UTC ISO-8601
    end: str | None = None
    bars: int = 0
    trials: int = 0
    computed: int = 0
    resumed: int = 0
    best_params: dict[str, float] | None = None
    best_score: float | None = None
    in_sample: dict[str, Any] | None = None
    out_of_sample: dict[str, Any] | None = None
    pbo: float | None = None
    deflated_sharpe: float | None = None
    elapsed_s: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizationTrialEvent(Event):
    """One reported trial of an optimisation run (the top ``--top`` of the full window, bounded):
    its parameters, score, full-window (in-sample) metrics and its results on the walk-forward
    test windows."""

    type: ClassVar[str] = "optimization_trial"
    family: ClassVar[str] = "backtests"
    rank: int
    objective: str
    params: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    in_sample: dict[str, Any] = field(default_factory=dict)
    test_windows: dict[str, Any] | None = None
