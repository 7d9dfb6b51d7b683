"""The buffer between the engine thread and the UI.

Why it exists: the engine delivers events synchronously on its own thread and must never wait
for the UI, and a replay at maximum speed produces thousands of events a second, far more than
a terminal can draw or Textual's message queue should carry. So the engine's subscriber is this
collector: ``__call__`` takes a lock for a few microseconds, folds the event into per-session
state (open-candle updates overwrite each other, closed candles go into a bounded deque) and
returns. The UI redraws from ``snapshot()`` on its own timer (a few times a second), skipping
anything whose version did not change.

Every collection here is bounded (``deque(maxlen=...)``), so memory stays flat however long a
replay or a live session runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tradeconsole.core.domain import Candle, Position
from tradeconsole.core.events import (
    CandleEvent,
    CandleUpdateEvent,
    ConnectionEvent,
    EngineStateEvent,
    EquityEvent,
    ErrorEvent,
    Event,
    FillEvent,
    OrderEvent,
    PositionEvent,
    SignalEvent,
)

__all__ = [
    "CollectorSnapshot",
    "ConnectionInfo",
    "EventCollector",
    "FillRow",
    "LogLine",
    "Marker",
    "OrderRow",
    "SessionSnapshot",
]

#: closed candles kept per session: more than the widest chart shows, small in memory
DEFAULT_HISTORY = 600
DEFAULT_LOG = 400
DEFAULT_ROWS = 100
#: connection events from these sources describe event delivery (Kafka, Elasticsearch sinks), not
#: market data: shown apart, logged only when their state changes (they report every second)
DELIVERY_SOURCES = frozenset({"kafka", "elasticsearch"})


@dataclass(frozen=True, slots=True)
class Marker:
    """An entry or exit on the price chart: ``kind`` is ``long``, ``short`` or ``exit``."""

    time: int
    price: float
    kind: str


@dataclass(frozen=True, slots=True)
class FillRow:
    time: int
    side: str
    reason: str
    price: float
    qty: float
    fee: float
    pnl: float | None


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One order event as the orders table shows it (``qty`` None while unknown: a market
    entry sized when it fills)."""

    time: int
    side: str
    kind: str
    qty: float | None
    price: float | None
    status: str
    note: str
    client_id: str = ""


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int
    time_ms: int
    wall: bool  # the time is the wall clock (engine/connection), not market time
    level: str  # info, warning, error, trade
    text: str


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    source: str = ""
    state: str = "connecting"
    lag_ms: float | None = None
    detail: str = ""
    last_market_mono: float | None = None  # monotonic time of the last candle event


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    key: str
    symbol: str
    interval: str
    strategy: str
    candles: tuple[Candle, ...]
    indicators: tuple[dict[str, float | int | None], ...]
    open_candle: Candle | None
    open_indicators: dict[str, float | int | None] | None
    mark: float | None
    position: Position | None
    equity: EquityEvent | None
    markers: tuple[Marker, ...]
    fills: tuple[FillRow, ...]
    orders: tuple[OrderRow, ...]
    working: tuple[OrderRow, ...]
    closed_total: int
    version: int
    book_version: int
    order_book: tuple[OrderRow, ...] = ()  # one row per order, its latest state, oldest update first

    @property
    def unrealized_pnl(self) -> float | None:
        if self.position is None or self.mark is None:
            return None
        return self.position.unrealized_pnl(self.mark)


@dataclass(frozen=True, slots=True)
class CollectorSnapshot:
    sessions: tuple[SessionSnapshot, ...]
    connection: ConnectionInfo
    delivery: tuple[ConnectionInfo, ...]
    engine_state: str
    engine_detail: str
    run_id: str
    mode: str
    events_total: int
    errors_total: int
    log_seq: int
    version: int

    def session(self, key: str | None) -> SessionSnapshot | None:
        for s in self.sessions:
            if s.key == key:
                return s
        return self.sessions[0] if self.sessions else None


@dataclass(slots=True)
class _Session:
    key: str
    symbol: str
    interval: str
    strategy: str
    history: int
    rows: int
    candles: deque[Candle] = field(init=False)
    indicators: deque[dict[str, float | int | None]] = field(init=False)
    markers: deque[Marker] = field(init=False)
    fills: deque[FillRow] = field(init=False)
    orders: deque[OrderRow] = field(init=False)
    working: dict[str, OrderRow] = field(init=False)
    latest: dict[str, OrderRow] = field(init=False)
    open_candle: Candle | None = None
    open_indicators: dict[str, float | int | None] | None = None
    mark: float | None = None
    position: Position | None = None
    equity: EquityEvent | None = None
    closed_total: int = 0
    version: int = 0
    book_version: int = 0

    def __post_init__(self) -> None:
        self.candles = deque(maxlen=self.history)
        self.indicators = deque(maxlen=self.history)
        self.markers = deque(maxlen=self.rows)
        self.fills = deque(maxlen=self.rows)
        self.orders = deque(maxlen=self.rows)
        self.working = {}
        self.latest = {}

    def freeze(self) -> SessionSnapshot:
        return SessionSnapshot(
            key=self.key,
            symbol=self.symbol,
            interval=self.interval,
            strategy=self.strategy,
            candles=tuple(self.candles),
            indicators=tuple(self.indicators),
            open_candle=self.open_candle,
            open_indicators=self.open_indicators,
            mark=self.mark,
            position=self.position,
            equity=self.equity,
            markers=tuple(self.markers),
            fills=tuple(self.fills),
            orders=tuple(self.orders),
            working=tuple(self.working.values()),
            closed_total=self.closed_total,
            version=self.version,
            book_version=self.book_version,
            order_book=tuple(self.latest.values()),
        )


def _num(v: float | None, spec: str = ",.2f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


class EventCollector:
    """Engine subscriber that never blocks; the UI reads consistent copies with ``snapshot``.

    ``mask_run_ids`` replaces run ids in log text (snapshot tests need screens without random
    ids). ``clock`` is the monotonic clock used for data staleness.
    """

    def __init__(
        self,
        *,
        history: int = DEFAULT_HISTORY,
        log_size: int = DEFAULT_LOG,
        rows: int = DEFAULT_ROWS,
        mask_run_ids: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._history = history
        self._rows = rows
        self._mask = mask_run_ids
        self._clock = clock
        self._log: deque[LogLine] = deque(maxlen=log_size)
        self._reset_state()

    def _reset_state(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._routes: dict[tuple[str, str, str], str] = {}
        self._conn = ConnectionInfo()
        self._delivery: dict[str, ConnectionInfo] = {}
        self._engine_state = "starting"
        self._engine_detail = ""
        self._run_id = ""
        self._mode = ""
        self._events = 0
        self._errors = 0
        self._version = 0
        self._seq = getattr(self, "_seq", 0)
        self._market_ms = 0
        self._replay = getattr(self, "_replay", False)

    # ------------------------------------------------------------------ setup (UI thread)
    def register(self, key: str, symbol: str, interval: str, strategy: str) -> None:
        """Declare an engine session (``SessionSpec.key``) so its events land under that key."""
        with self._lock:
            self._session(key, symbol, interval, strategy)

    def alias(self, key: str, strategy: str) -> None:
        """After ``SwitchStrategy`` the session's events carry the new strategy name but belong
        to the same engine slot: route them to ``key``."""
        with self._lock:
            s = self._sessions.get(key)
            if s is not None:
                self._routes[(s.symbol, s.interval, strategy)] = key

    def reset(self) -> None:
        """Forget everything but the log (a new runtime after a symbol/interval switch)."""
        with self._lock:
            self._reset_state()

    def set_replay(self, replay: bool) -> None:
        """On a replay, engine, connection and operator lines are stamped with the replay's
        market time (when they happened in the replayed market), so the log has one clock."""
        with self._lock:
            self._replay = replay

    def note(self, text: str, level: str = "info") -> None:
        """Add a UI-side line to the log (operator actions, startup problems)."""
        with self._lock:
            self._add_log(0, True, level, text)

    # ------------------------------------------------------------------ engine thread
    def __call__(self, event: Event) -> None:
        with self._lock:
            self._events += 1
            self._version += 1
            if not self._run_id and event.run_id:
                self._run_id, self._mode = event.run_id, event.mode
            if isinstance(event, CandleUpdateEvent):
                s = self._route(event)
                s.open_candle, s.open_indicators = event.candle, event.indicators
                s.mark = event.candle.close
                self._market_ms = event.candle.open_time
                s.version += 1
                self._touch_market()
            elif isinstance(event, CandleEvent):
                s = self._route(event)
                s.candles.append(event.candle)
                s.indicators.append(event.indicators)
                s.closed_total += 1
                s.mark = event.candle.close
                self._market_ms = event.candle.close_time + 1
                if s.open_candle is not None and s.open_candle.open_time <= event.candle.open_time:
                    s.open_candle = s.open_indicators = None
                s.version += 1
                self._touch_market()
            elif isinstance(event, EquityEvent):
                s = self._route(event)
                s.equity = event
                s.version += 1
            else:
                self._rare(event)

    def _touch_market(self) -> None:
        c = self._conn
        self._conn = ConnectionInfo(c.source, c.state, c.lag_ms, c.detail, self._clock())

    def _rare(self, event: Event) -> None:
        """Everything except the per-candle flood: book-keeping plus a log line."""
        if isinstance(event, FillEvent):
            s = self._route(event)
            f, t = event.fill, event.trade
            pnl = t.pnl if t is not None else None
            s.fills.append(FillRow(f.time, f.side.value, f.reason.value, f.price, f.qty, f.fee, pnl))
            reason = f.reason.value
            kind = "long" if reason == "entry_long" else "short" if reason == "entry_short" else "exit"
            s.markers.append(Marker(f.time, f.price, kind))
            s.version += 1
            s.book_version += 1
            text = f"{s.key} fill {f.side.value} {f.qty:.4f} @ {f.price:,.2f} ({reason})"
            if pnl is not None:
                text += f" pnl {pnl:+,.2f}"
            self._add_log(event.time, False, "trade", text)
        elif isinstance(event, PositionEvent):
            s = self._route(event)
            before = s.position
            s.position, s.mark = event.position, event.mark_price
            s.version += 1
            s.book_version += 1
            p = event.position
            if p is None:
                if before is not None:
                    self._add_log(event.time, False, "trade", f"{s.key} position closed")
            elif before is None or before.entry_time != p.entry_time:
                self._add_log(
                    event.time,
                    False,
                    "trade",
                    f"{s.key} {p.side.name} {p.qty:.4f} @ {p.entry_price:,.2f} "
                    f"stop {p.stop_price:,.2f} target {p.target_price:,.2f}",
                )
        elif isinstance(event, SignalEvent):
            s = self._route(event)
            text = f"{s.key} signal {event.side.name} @ {event.price:,.2f}" + (
                "" if event.acted else f" skipped: {event.note}"
            )
            self._add_log(event.time, False, "info" if event.acted else "warning", text)
        elif isinstance(event, OrderEvent):
            s = self._route(event)
            o = event.order
            row = OrderRow(
                event.time,
                o.side.value,
                o.type.value,
                o.qty or None,
                o.stop_price,
                event.status,
                event.message or (o.reason.value if o.reason else ""),
                o.client_id,
            )
            s.orders.append(row)
            before = s.latest.pop(o.client_id, None)
            if before is not None:  # a cancel/fill event may not repeat the order's price or size
                row = OrderRow(
                    row.time,
                    row.side,
                    row.kind,
                    row.qty or before.qty,
                    row.price if row.price is not None else before.price,
                    row.status,
                    row.note or before.note,
                    row.client_id,
                )
            s.latest[o.client_id] = row
            while len(s.latest) > self._rows:
                s.latest.pop(next(iter(s.latest)))
            if event.status in ("new", "amended"):  # amended: a working order's trigger moved (trailing stop)
                s.working[o.client_id] = row
                while len(s.working) > self._rows:
                    s.working.pop(next(iter(s.working)))
            else:
                s.working.pop(o.client_id, None)
            s.book_version += 1
            s.version += 1
            if event.status == "rejected":
                self._add_log(
                    event.time, False, "error", f"{s.key} order {o.type.value} {o.side.value} rejected: {event.message}"
                )
        elif isinstance(event, ConnectionEvent) and event.source in DELIVERY_SOURCES:
            before = self._delivery.get(event.source)
            self._delivery[event.source] = ConnectionInfo(event.source, event.state, event.lag_ms, event.detail)
            if before is None or before.state != event.state:
                level = "info" if event.state == "connected" else "warning"
                self._add_log(event.time, True, level, f"{event.source} {event.state} {event.detail}".rstrip())
        elif isinstance(event, ConnectionEvent):
            last = self._conn.last_market_mono
            self._conn = ConnectionInfo(event.source, event.state, event.lag_ms, event.detail, last)
            level = "info" if event.state in ("connected", "finished", "connecting", "backfilling") else "warning"
            self._add_log(event.time, True, level, f"{event.source} {event.state} {event.detail}".rstrip())
        elif isinstance(event, EngineStateEvent):
            self._engine_state, self._engine_detail = event.state, event.detail
            if event.switched_to and event.session in self._sessions:
                s = self._sessions[event.session]
                self._routes[(s.symbol, s.interval, event.switched_to)] = s.key
                s.strategy = event.switched_to
                s.version += 1
            self._add_log(event.time, True, "info", f"engine {event.state}: {event.detail}")
        elif isinstance(event, ErrorEvent):
            self._errors += 1
            where = f"{event.symbol} {event.interval} ".lstrip() if event.symbol else ""
            self._add_log(event.time, True, "error", f"{event.source} error: {where}{event.message}")

    def _route(self, event: Event) -> _Session:
        triple = (event.symbol, event.interval, event.strategy)
        key = self._routes.get(triple)
        if key is not None:
            s = self._sessions[key]
        else:
            same = [x for x in self._sessions.values() if x.symbol == event.symbol and x.interval == event.interval]
            s = same[0] if len(same) == 1 else self._session(":".join(triple), *triple)
            self._routes[triple] = s.key
        if event.strategy and s.strategy != event.strategy:
            s.strategy = event.strategy
        return s

    def _session(self, key: str, symbol: str, interval: str, strategy: str) -> _Session:
        s = self._sessions.get(key)
        if s is None:
            s = self._sessions[key] = _Session(key, symbol, interval, strategy, self._history, self._rows)
            self._routes[(symbol, interval, strategy)] = key
        return s

    def _add_log(self, time_ms: int, wall: bool, level: str, text: str) -> None:
        if wall and self._replay and self._market_ms:
            time_ms, wall = self._market_ms, False
        if self._mask and self._run_id:
            text = text.replace(self._run_id, "<run>")
        self._seq += 1
        self._log.append(LogLine(self._seq, time_ms, wall, level, text))

    # ------------------------------------------------------------------ UI thread
    @property
    def version(self) -> int:
        return self._version  # an int read is atomic: a cheap "anything new?" check

    def snapshot(self) -> CollectorSnapshot:
        with self._lock:
            return CollectorSnapshot(
                sessions=tuple(s.freeze() for s in self._sessions.values()),
                connection=self._conn,
                delivery=tuple(self._delivery.values()),
                engine_state=self._engine_state,
                engine_detail=self._engine_detail,
                run_id=self._run_id,
                mode=self._mode,
                events_total=self._events,
                errors_total=self._errors,
                log_seq=self._seq,
                version=self._version,
            )

    def log_since(self, seq: int) -> list[LogLine]:
        """Log lines newer than ``seq`` (those still in the bounded buffer)."""
        with self._lock:
            if not self._log or self._log[-1].seq <= seq:
                return []
            return [line for line in self._log if line.seq > seq]

    def sizes(self) -> dict[str, int]:
        """Lengths of every buffer (tests and the benchmark check they stay bounded)."""
        with self._lock:
            out = {"log": len(self._log), "sessions": len(self._sessions)}
            for s in self._sessions.values():
                for name in ("candles", "indicators", "markers", "fills", "orders", "working", "latest"):
                    out[f"{s.key}.{name}"] = len(getattr(s, name))
            return out


def fmt_num(v: float | None, spec: str = ",.2f") -> str:
    """Numbers for tables and panels: ``-`` for missing or NaN (indicator warm-up)."""
    return _num(v, spec)
