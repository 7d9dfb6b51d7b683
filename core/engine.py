"""The engine: its own thread, market events and commands in, published events out.

Flow of one input (a closed candle, an open-candle update, a feed status or a command):

1. the engine thread takes it from its input queue (commands first, they are never starved by a
   fast replay),
2. every session concerned handles it (indicators -> strategy -> broker), producing events into
   a per-input buffer,
3. the buffer and the sessions' broker snapshots are committed to the journal in one
   transaction (if a journal is attached),
4. only then the events go to the subscribers, in order.

Subscribers are plain callables and must not block (the Kafka sink queues, the UI buffers and
redraws on its own timer); an exception in one is counted and reported, never propagated.

Restart: with a journal, each session restores its broker snapshot and the open time of the last
candle it processed. Candles up to that time only warm up the indicators (no trading, no events),
so re-fed history can never open a position twice. Candles that arrive as REST backfill after an
outage still run exits, but their entry signals are not acted on when they are older than one
interval: they are too old to trade.

Several sessions may share one paper account (``account``, a ``SharedAccount``): each session
then trades its allocation of the account's cash, and the risk limits apply to the account as a
whole (``tradeconsole.core.account``); an entry the account refuses is journalled as a ``risk``
error event, and the account's own state is journalled with the sessions' in every commit.

Failure: a bad input is reported and the engine goes on, but when the engine itself cannot go on
(the journal cannot write: disk full; a bug outside an input's handler) the thread ends, records
the root cause in ``failure`` (one line), tries to journal it as a fatal error event and marks
the run ``failed``. Runners turn ``failure`` into a non-zero exit so a supervisor restarts the
process, which resumes from the journal.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tradeconsole.core.account import ACCOUNT_STATE_KEY, AccountRisk, SharedAccount
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, SimulatedFuturesBroker
from tradeconsole.core.domain import FillReason, Order, OrderType, Side, interval_ms, iso_ms
from tradeconsole.core.events import ConnectionEvent, EngineStateEvent, ErrorEvent, Event
from tradeconsole.core.feed import AccountStreamEvent, CandleClosed, CandleUpdate, FeedAlarm, FeedStatus, MarketEvent
from tradeconsole.core.indicators import LiveIndicators
from tradeconsole.core.risk import RiskGuard, RiskLimits
from tradeconsole.core.session import Broker, StrategySession
from tradeconsole.core.store import EventStore, SessionState, StoreError
from tradeconsole.core.strategies import make_strategy

__all__ = [
    "Engine",
    "Flatten",
    "PauseEntries",
    "SessionSpec",
    "Shutdown",
    "StartTrading",
    "StopTrading",
    "SwitchStrategy",
]

log = logging.getLogger("tradeconsole.engine")

_BATCH = 256  # inputs handled per journal transaction when a backlog is queued


# ---------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class StartTrading:
    """Resume processing candles through the strategies (after StopTrading)."""


@dataclass(frozen=True, slots=True)
class StopTrading:
    """Stop the strategy: no new entries (a pending entry is cancelled), but open positions stay
    managed until they close or are flattened: candles, marks, protective stop/target and paper
    fills keep running (hummingbot's ``stop`` / freqtrade's stop-entry semantics). Leaving a
    position unmanaged because the operator pressed Stop would disarm its stop-loss."""


@dataclass(frozen=True, slots=True)
class PauseEntries:
    """Pause (or resume) new entries of one session or all; exits keep working."""

    paused: bool = True
    key: str | None = None  # None = all sessions


@dataclass(frozen=True, slots=True)
class Flatten:
    """Close positions now at the last price (``key`` None = all; the kill switch)."""

    key: str | None = None
    pause: bool = False  # also pause new entries (kill switch)


@dataclass(frozen=True, slots=True)
class SwitchStrategy:
    """Replace a session's strategy and/or its parameters; refused while a position is open."""

    key: str
    strategy: str
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


Command = StartTrading | StopTrading | PauseEntries | Flatten | SwitchStrategy | Shutdown


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class SessionSpec:
    symbol: str
    interval: str
    strategy: str
    params: dict[str, float] = field(default_factory=dict)
    fill_model: str = "realistic"
    broker: BrokerSettings = BrokerSettings()
    risk: RiskLimits = RiskLimits()

    @property
    def key(self) -> str:
        return f"{self.symbol}:{self.interval}:{self.strategy}"


BrokerFactory = Callable[[SessionSpec], Broker]


def paper_broker(spec: SessionSpec) -> Broker:
    return SimulatedFuturesBroker(spec.symbol, spec.broker, FILL_MODELS[spec.fill_model])


@dataclass(slots=True)
class _Slot:
    """A session plus the bookkeeping the engine needs around it."""

    spec: SessionSpec
    session: StrategySession
    indicators: LiveIndicators
    last_open_time: int = -1  # last closed candle processed (restored from the journal)
    updates: int = 0
    last_price: float | None = None  # latest price seen (open-candle update or close)
    last_ms: int = 0
    operator_paused: bool = False  # PauseEntries/kill switch; entries are also off while stopped


# ---------------------------------------------------------------------------- engine


class Engine:
    """Runs sessions in one thread. Thread-safe entry points: ``feed``, ``send``, ``subscribe``,
    ``start``, ``stop``, ``join``."""

    def __init__(
        self,
        specs: list[SessionSpec],
        *,
        mode: str = "paper",
        journal: EventStore | None = None,
        broker_factory: BrokerFactory = paper_broker,
        run_id: str | None = None,
        config: dict[str, Any] | None = None,
        queue_size: int = 10_000,
        clock: Callable[[], float] = time.time,
        account: SharedAccount | None = None,
    ) -> None:
        if not specs:
            raise ValueError("the engine needs at least one session")
        keys = [s.key for s in specs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate sessions: {keys}")
        self.mode = mode
        self.journal = journal
        self._clock = clock
        self._inputs: queue.Queue[MarketEvent] = queue.Queue(maxsize=queue_size)
        self._commands: queue.Queue[Command] = queue.Queue()
        self._subscribers: list[Callable[[Event], None]] = []
        self._sub_lock = threading.Lock()
        self._buffer: list[Event] = []
        self._dirty: dict[str, _Slot] = {}
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self.trading = True
        self._started_ms = int(clock() * 1000)  # makes open-candle update ids unique across restarts
        self.subscriber_errors = 0
        self.duplicates_skipped = 0
        self.invalid_skipped = 0
        self.refused_candles = 0  # candles a live broker refused (not from the exchange's feed)
        self.processed_closed = 0
        self.finished_sources: set[str] = set()
        #: why the engine thread ended on its own (one line), None while it runs or after a clean stop
        self.failure: str | None = None
        self._broker_factory = broker_factory
        #: the paper account the sessions share (None: each session is its own account)
        self.account = account
        self.reconcile_every_s = 60.0
        self._next_reconcile = 0.0
        restored = self._restored_run_id(specs) if journal is not None else None
        self.run_id = run_id or restored or f"{mode}-{uuid.uuid4().hex[:12]}"
        self.resumed = restored is not None and (run_id is None or run_id == restored)
        self._slots: dict[str, _Slot] = {s.key: self._make_slot(s) for s in specs}
        if account is not None and journal is not None:
            st = journal.session_state(ACCOUNT_STATE_KEY)
            if st is not None:
                account.restore(st.snapshot)
        if journal is not None:
            journal.begin_run(self.run_id, mode, config or {})

    # ------------------------------------------------------------------ public API
    @property
    def sessions(self) -> dict[str, StrategySession]:
        return {k: s.session for k, s in self._slots.items()}

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        with self._sub_lock:
            self._subscribers = [*self._subscribers, fn]

        def unsubscribe() -> None:
            with self._sub_lock:
                self._subscribers = [f for f in self._subscribers if f is not fn]

        return unsubscribe

    def feed(self, event: MarketEvent) -> None:
        """MarketSink for sources. Blocks only when the input queue is full (backpressure on the
        source's thread), never drops a closed candle while the engine runs. After the engine
        failed nothing will process the input: it returns instead of blocking the source forever."""
        self._idle.clear()
        while self.failure is None:
            try:
                self._inputs.put(event, timeout=0.5)
                return
            except queue.Full:
                continue

    def send(self, command: Command) -> None:
        self._idle.clear()
        self._commands.put(command)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("engine already started")
        self._emit_state("running", f"run {self.run_id}" + (" (resumed from journal)" if self.resumed else ""))
        self._thread = threading.Thread(target=self._run, name="tradeconsole-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Process what is queued, then stop the thread (a clean shutdown)."""
        if self._thread is None:
            return
        self.send(Shutdown())
        self._thread.join(timeout)
        if self.journal is not None and self.failure is None:
            try:
                self.journal.end_run(self.run_id, "stopped")
            except StoreError as exc:  # the last write of a clean stop failed: still a failure
                self.failure = str(exc)
                log.error("%s", exc)

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued input and command has been processed, journalled and
        delivered (tests and headless summaries). Counted with the queues' own task tracking: a
        command taken off its queue but still being handled is not idle (the queues look empty
        then), and a dead engine thread is idle (nothing more will be handled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle.wait(0.05) and (
                (self._inputs.unfinished_tasks == 0 and self._commands.unfinished_tasks == 0)
                or (self._thread is not None and not self._thread.is_alive())
            ):
                return True
        return False

    def backlog(self) -> int:
        """Market inputs queued and not yet handled (a replay paces itself on it)."""
        return self._inputs.qsize()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ setup
    def _restored_run_id(self, specs: list[SessionSpec]) -> str | None:
        assert self.journal is not None
        for s in specs:
            st = self.journal.session_state(s.key)
            if st is not None:
                return str(st.run_id)
        return None

    def _make_slot(self, spec: SessionSpec) -> _Slot:
        strategy = make_strategy(spec.strategy, **spec.params)
        broker = self._broker_factory(spec)
        fm = FILL_MODELS[spec.fill_model]
        risk: RiskGuard | AccountRisk = RiskGuard(spec.risk)
        if self.account is not None:  # the account's limits, for all sessions together
            risk = self.account.join(spec.key, broker, spec.broker.initial_cash, spec.broker.leverage)
        session = StrategySession(
            symbol=spec.symbol,
            interval=spec.interval,
            strategy=strategy,
            broker=broker,
            run_id=self.run_id,
            mode=self.mode,
            initial_cash=spec.broker.initial_cash,
            reenter_on_exit_candle=fm.reenter_on_exit_candle,
            publish=self._buffer.append,
            risk=risk,  # type: ignore[arg-type]  # AccountRisk: the same duck-typed surface, shared by sessions
            leverage=spec.broker.leverage,
        )
        slot = _Slot(spec, session, LiveIndicators(strategy.indicator_plan(fm.indicator_settings())))
        if self.journal is not None:
            st = self.journal.session_state(spec.key)
            if st is not None:
                broker.restore(st.snapshot)
                slot.last_open_time = self._believable_last_open_time(spec, st.last_open_time)
        return slot

    def _believable_last_open_time(self, spec: SessionSpec, journalled: int) -> int:
        """A journalled ``last_open_time`` in the future (a bad feed frame got journalled before
        the feed guard existed) would make every candle until then warm-up only: a day of no
        trading. Clamp it to the last candle that can have closed by now, and say so."""
        step = interval_ms(spec.interval)
        now_ms = int(self._clock() * 1000)
        latest = now_ms - now_ms % step - step  # open time of the newest closed candle
        if journalled <= latest + step:  # the open candle at most (clock skew), believable
            return journalled
        message = (
            f"journalled last candle {journalled} for {spec.key} lies in the future (now {now_ms}); "
            f"resuming from {iso_ms(latest)} instead"
        )
        log.error(message)
        self._buffer.append(
            ErrorEvent(
                **self._env("restart", f"{spec.key}:{journalled}"),
                symbol=spec.symbol,
                interval=spec.interval,
                strategy=spec.strategy,
                source="journal",
                message=message,
            )
        )
        return latest

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        try:
            self._flush()
            self._reconcile()
            while True:
                if self._clock() >= self._next_reconcile:
                    self._reconcile()
                while True:  # commands first
                    try:
                        cmd = self._commands.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(cmd, Shutdown):
                        self._drain_inputs()
                        self._emit_state("stopped", "engine shut down")
                        self._flush()
                        self._commands.task_done()
                        return
                    self._guard(self._handle_command, cmd)
                    self._commands.task_done()  # handled, journalled and delivered (wait_idle)
                try:
                    ev = self._inputs.get(timeout=0.05)
                except queue.Empty:
                    self._idle.set()
                    continue
                # Group commit: while inputs are waiting (a replay, a backfill) handle up to
                # _BATCH of them, then journal and deliver once. Nothing is delivered before it is
                # committed, and a live feed (one input at a time) is still committed per input.
                self._guard(self._handle_market, ev, flush=False)
                handled = 1
                for _ in range(_BATCH - 1):
                    if not self._commands.empty():
                        break
                    try:
                        ev = self._inputs.get_nowait()
                    except queue.Empty:
                        break
                    self._guard(self._handle_market, ev, flush=False)
                    handled += 1
                self._flush()
                for _ in range(handled):  # done only once committed and delivered
                    self._inputs.task_done()
        except BaseException as exc:  # noqa: BLE001 - the thread ends here; say why, once, loudly
            self._fail(exc)
        finally:
            self._idle.set()

    def _fail(self, exc: BaseException) -> None:
        """Record why the engine stopped: ``failure`` (the root cause, one line), a log line, and
        where the journal still accepts a write, a fatal error event and the run marked failed."""
        if isinstance(exc, StoreError):
            cause = str(exc)  # already "journal write failed: <sqlite's reason> (<path>)"
            log.error("engine stopped: %s", cause)
        else:
            cause = f"engine failed: {type(exc).__name__}: {exc}"
            log.error("engine stopped: %s", cause[:2000], exc_info=exc)
        cause = " ".join(cause.split())
        self.failure = cause if len(cause) <= 500 else cause[:497] + "..."
        self._buffer.clear()
        self._dirty.clear()
        if self.journal is None:
            return
        ev = ErrorEvent(**self._env("fatal", uuid.uuid4().hex), source="engine", message=self.failure, fatal=True)
        try:
            self.journal.commit([ev])
            self.journal.end_run(self.run_id, "failed")
        except Exception as again:  # noqa: BLE001 - e.g. still full: the cause is already known
            log.warning("could not record the engine failure in the journal: %s", again)
            return
        self._deliver([ev])

    def _drain_inputs(self) -> None:
        while True:
            try:
                ev = self._inputs.get_nowait()
            except queue.Empty:
                return
            self._guard(self._handle_market, ev)
            self._inputs.task_done()

    def _guard(self, fn: Callable[[Any], None], arg: Any, flush: bool = True) -> None:
        """Run one input; an unexpected error becomes an error event, the engine keeps going."""
        try:
            fn(arg)
        except Exception as exc:  # the engine must outlive a bad input
            log.exception("engine error while handling %r", type(arg).__name__)
            self._buffer.append(
                ErrorEvent(
                    **self._env("error", str(uuid.uuid4())), source="engine", message=f"{type(exc).__name__}: {exc}"
                )
            )
        if flush:
            self._flush()

    def _flush(self) -> None:
        """Journal the input's events and account states, then hand them to subscribers."""
        events = self._buffer[:]
        self._buffer.clear()
        dirty = list(self._dirty.values())
        self._dirty.clear()
        if self.journal is not None and (events or dirty):
            states = [
                SessionState(s.spec.key, self.run_id, s.session.broker.snapshot(), s.last_open_time) for s in dirty
            ]
            if self.account is not None and dirty:  # the account moves with its sessions, atomically
                states.append(SessionState(ACCOUNT_STATE_KEY, self.run_id, self.account.snapshot(), -1))
            dup = self.journal.commit(events, states)
            if dup:
                events = [e for e in events if e.event_id not in dup]
        if events:
            self._deliver(events)

    def _deliver(self, events: list[Event]) -> None:
        with self._sub_lock:
            subs = self._subscribers
        for e in events:
            for fn in subs:
                try:
                    fn(e)
                except Exception:
                    self.subscriber_errors += 1
                    log.exception("subscriber %r failed on %s", fn, e.type)

    def _reconcile(self) -> None:
        """Compare exchange state with the broker's (live brokers only), at start and every
        ``reconcile_every_s``; every finding is published as an error event (source
        ``reconcile``) after the broker resolved it by its documented rule."""
        self._next_reconcile = self._clock() + self.reconcile_every_s
        for slot in self._slots.values():
            try:
                findings = list(slot.session.broker.reconcile())
            except Exception as exc:  # noqa: BLE001 - exchange down: report, retry next period
                findings = [f"reconcile failed: {type(exc).__name__}: {exc}"]
            for f in findings:
                self._buffer.append(
                    ErrorEvent(
                        **self._env("reconcile", uuid.uuid4().hex),
                        symbol=slot.spec.symbol,
                        interval=slot.spec.interval,
                        strategy=slot.spec.strategy,
                        source="reconcile",
                        message=str(f),
                    )
                )
            self._collect_alerts(slot)
            if findings:
                self._dirty[slot.spec.key] = slot
        self._flush()

    def _collect_refusals(self, slot: _Slot, candle_time: int) -> None:
        """Entries the shared account refused on this candle: one journalled ``risk`` error event
        each, naming the session, so the operator sees why a second symbol did not enter."""
        risk: object = slot.session.risk  # an AccountRisk only in a shared-account run
        if not isinstance(risk, AccountRisk):
            return
        for i, why in enumerate(risk.take_refusals()):
            self._buffer.append(
                ErrorEvent(
                    **self._env("refused-entry", f"{slot.spec.key}:{candle_time}:{i}", candle_time),
                    symbol=slot.spec.symbol,
                    interval=slot.spec.interval,
                    strategy=slot.spec.strategy,
                    source="risk",
                    message=why,
                )
            )

    def _collect_alerts(self, slot: _Slot) -> None:
        """Live brokers queue alerts (e.g. protection could not be placed); publish them."""
        for alert in slot.session.broker.take_alerts():
            self._buffer.append(
                ErrorEvent(
                    **self._env("alert", uuid.uuid4().hex),
                    symbol=slot.spec.symbol,
                    interval=slot.spec.interval,
                    strategy=slot.spec.strategy,
                    source="broker",
                    message=str(alert),
                )
            )

    # ------------------------------------------------------------------ handlers
    def _handle_market(self, ev: MarketEvent) -> None:
        if isinstance(ev, CandleClosed):
            self._on_closed(ev)
        elif isinstance(ev, CandleUpdate):
            self._on_update(ev)
        elif isinstance(ev, FeedAlarm):  # a source refused data (tradeconsole.core.feed_guard): journalled, shown
            self._buffer.append(
                ErrorEvent(
                    **self._env("feed", uuid.uuid4().hex, ev.time_ms or None),
                    symbol=ev.symbol,
                    interval=ev.interval,
                    source="feed",
                    message=f"{ev.source}: {ev.detail}",
                )
            )
        elif isinstance(ev, AccountStreamEvent):
            self._on_account(ev)
        elif isinstance(ev, FeedStatus):
            if ev.state == "finished":
                self.finished_sources.add(ev.source)
            self._buffer.append(
                ConnectionEvent(
                    **self._env("connection", uuid.uuid4().hex, time_ms=ev.time_ms or int(self._clock() * 1000)),
                    source=ev.source,
                    state=ev.state,
                    lag_ms=ev.lag_ms,
                    detail=ev.detail,
                )
            )

    def _on_account(self, ev: AccountStreamEvent) -> None:
        """A user data stream message: each live session on the symbol applies it now and
        journals what it completed (a stop fill seen the moment the exchange reports it)."""
        for slot in self._slots.values():
            if ev.symbol and slot.spec.symbol != ev.symbol:
                continue
            try:
                if slot.session.on_account_event(ev.payload, ev.gap, slot.last_price, slot.last_ms):
                    self._dirty[slot.spec.key] = slot
            finally:
                self._collect_alerts(slot)

    def _feed_refused(self, slot: _Slot, ev: CandleClosed | CandleUpdate) -> bool:
        """Live brokers refuse candles that are not from the exchange (``check_feed`` raises):
        the candle is skipped for that session, counted, and reported on one line."""
        try:
            slot.session.broker.check_feed(ev.source)
        except Exception as exc:  # noqa: BLE001 - the broker's refusal, reported as an error event
            self.refused_candles += 1
            if self.refused_candles <= 3 or self.refused_candles % 1000 == 0:  # visible, not a flood
                log.error("%s (%d refused)", exc, self.refused_candles)
                self._buffer.append(
                    ErrorEvent(
                        **self._env("refused", uuid.uuid4().hex),
                        symbol=ev.symbol,
                        interval=ev.interval,
                        strategy=slot.spec.strategy,
                        source="broker",
                        message=f"{exc} ({self.refused_candles} refused so far)",
                    )
                )
            return True
        return False

    def _slots_for(self, symbol: str, interval: str) -> list[_Slot]:
        return [s for s in self._slots.values() if s.spec.symbol == symbol and s.spec.interval == interval]

    def _invalid(self, ev: CandleClosed | CandleUpdate) -> bool:
        """NaN/inf/non-positive/inconsistent prices: counted, reported, never traded on."""
        if ev.candle.is_valid():
            return False
        self.invalid_skipped += 1
        self._buffer.append(
            ErrorEvent(
                **self._env("invalid", uuid.uuid4().hex),
                symbol=ev.symbol,
                interval=ev.interval,
                source="feed",
                message=f"invalid candle skipped: {ev.candle}",
            )
        )
        return True

    def _on_closed(self, ev: CandleClosed) -> None:
        c = ev.candle
        if self._invalid(ev):
            return
        for slot in self._slots_for(ev.symbol, ev.interval):
            if self._feed_refused(slot, ev):
                continue
            last = slot.indicators.last_candle
            if last is not None and c.open_time <= last.open_time:
                self.duplicates_skipped += 1  # sources promise order; never process a candle twice
                continue
            ind = slot.indicators.update(c)
            slot.last_price, slot.last_ms = c.close, c.close_time
            if self.account is not None:
                self.account.mark(slot.spec.key, c.close)
            if c.open_time <= slot.last_open_time:
                continue  # already traded before a restart: warm-up only
            step = interval_ms(slot.spec.interval)
            if slot.last_open_time >= 0 and c.open_time > slot.last_open_time + step:
                missing = (c.open_time - slot.last_open_time) // step - 1
                self._buffer.append(
                    ErrorEvent(
                        **self._env("gap", f"{slot.spec.key}:{c.open_time}", c.open_time),
                        source="feed",
                        message=f"{missing} candle(s) missing before {iso_ms(c.open_time)} for {slot.spec.key}",
                    )
                )
            fresh = not ev.backfill or (ev.received_ms or int(self._clock() * 1000)) - c.close_time <= step
            try:
                # also while stopped: exits, marks and equity must keep running (entries are off)
                slot.session.on_closed_candle(c, ind, allow_entry=fresh)
            finally:
                # even if the broker failed (exchange down), this candle is done: it is never
                # re-processed, and the failure was reported as an error event by _guard
                self._collect_alerts(slot)
                self._collect_refusals(slot, c.open_time)
                slot.last_open_time = c.open_time
                self._dirty[slot.spec.key] = slot
                self.processed_closed += 1

    def _on_update(self, ev: CandleUpdate) -> None:
        if self._invalid(ev):
            return
        for slot in self._slots_for(ev.symbol, ev.interval):
            if self._feed_refused(slot, ev):
                continue
            last = slot.indicators.last_candle
            if (
                last is not None and ev.candle.open_time <= last.open_time
            ) or ev.candle.open_time <= slot.last_open_time:
                continue  # an update of a candle already closed (or traded before a restart)
            slot.updates += 1
            slot.last_price, slot.last_ms = ev.candle.close, max(ev.candle.open_time, ev.received_ms)
            if self.account is not None:
                self.account.mark(slot.spec.key, ev.candle.close)
            ind = slot.indicators.preview(ev.candle)
            if slot.session.on_open_candle(ev.candle, ind, f"{self._started_ms}.{slot.updates}") is not None:
                self._dirty[slot.spec.key] = slot

    def _handle_command(self, cmd: Command) -> None:
        now = int(self._clock() * 1000)
        if isinstance(cmd, StartTrading):
            self.trading = True
            for slot in self._slots.values():
                slot.session.entries_paused = slot.operator_paused
            self._emit_state("running", "trading started")
        elif isinstance(cmd, StopTrading):
            self.trading = False
            open_keys = []
            for slot in self._slots.values():
                slot.session.entries_paused = True
                self._cancel_pending(slot, now)
                if slot.session.broker.position is not None:
                    open_keys.append(slot.spec.key)
            self._emit_state(
                "stopped",
                "trading stopped: no new entries; "
                + (
                    f"open position(s) keep their stop/target until closed or flattened: {', '.join(open_keys)}"
                    if open_keys
                    else "no open position"
                ),
            )
        elif isinstance(cmd, PauseEntries):
            for slot in self._targets(cmd.key):
                slot.operator_paused = cmd.paused
                slot.session.entries_paused = cmd.paused or not self.trading
            self._emit_state(
                "paused" if cmd.paused else "running",
                ("new entries paused" if cmd.paused else "new entries resumed") + f" ({cmd.key or 'all'})",
                session=cmd.key or "",
            )
        elif isinstance(cmd, Flatten):
            closed: list[str] = []
            for slot in self._targets(cmd.key):
                if cmd.pause:
                    slot.operator_paused = True
                    slot.session.entries_paused = True
                cancelled = self._cancel_pending(slot, now)
                if cancelled:
                    closed.append(f"{slot.spec.key} pending entry")
                if slot.last_price is None:
                    continue  # no price seen yet: nothing can be open
                # at the latest market price and market time (a replay's clock, not the wall's)
                if slot.session.flatten(slot.last_price, slot.last_ms or now) is not None:
                    closed.append(slot.spec.key)
                if self.account is not None:
                    self.account.mark(slot.spec.key, slot.last_price)
                self._collect_alerts(slot)
                self._dirty[slot.spec.key] = slot
            what = f"flattened {', '.join(closed)}" if closed else "nothing to flatten: no open position"
            self._emit_state(
                "paused" if cmd.pause else ("running" if self.trading else "stopped"),
                what + (" and paused entries (kill switch)" if cmd.pause else ""),
                session=cmd.key or "",
            )
        elif isinstance(cmd, SwitchStrategy):
            if cmd.key not in self._slots:
                raise ValueError(f"no session {cmd.key!r}")
            slot = self._slots[cmd.key]
            if not slot.session.broker.is_flat:
                self._buffer.append(
                    ErrorEvent(
                        **self._env("switch", str(now)),
                        source="engine",
                        message=f"cannot switch {cmd.key} while a position is open: flatten first",
                    )
                )
                return
            strategy = make_strategy(cmd.strategy, **cmd.params)
            slot.indicators = slot.indicators.switched(strategy.indicator_plan(slot.indicators.plan.settings))
            slot.session.strategy = strategy
            self._emit_state(
                "running",
                f"{cmd.key} now runs {cmd.strategy} {cmd.params or ''}".strip(),
                session=cmd.key,
                switched_to=cmd.strategy,
            )

    def _cancel_pending(self, slot: _Slot, now: int) -> bool:
        """Drop a decided-but-unfilled entry (realistic paper model: it would fill at the next
        open) and publish its cancellation, so the orders panel never shows a dead order."""
        pending = slot.session.broker.pending  # read before the cancel clears it
        if not slot.session.broker.cancel_pending():
            return False
        if pending is not None and slot.session.publish is not None:
            side = pending.side
            order = Order(
                pending.order_id,
                slot.spec.symbol,
                side.entry_order_side,
                OrderType.MARKET,
                0.0,
                slot.last_ms or now,
                reason=FillReason.ENTRY_LONG if side is Side.LONG else FillReason.ENTRY_SHORT,
            )
            slot.session._order(order, "canceled", slot.last_ms or now, "cancelled by the operator")
        self._dirty[slot.spec.key] = slot
        return True

    def _targets(self, key: str | None) -> list[_Slot]:
        if key is None:
            return list(self._slots.values())
        if key not in self._slots:
            raise ValueError(f"no session {key!r}")
        return [self._slots[key]]

    # ------------------------------------------------------------------ events
    def _env(self, kind: str, ident: str, time_ms: int | None = None) -> dict[str, Any]:
        t = time_ms if time_ms is not None else int(self._clock() * 1000)
        return {"event_id": f"{self.run_id}:{kind}:{ident}", "time": t, "run_id": self.run_id, "mode": self.mode}

    def _emit_state(self, state: str, detail: str, session: str = "", switched_to: str = "") -> None:
        """Queue an engine-state event (called before the thread starts or on the thread)."""
        self._buffer.append(
            EngineStateEvent(
                **self._env("engine", uuid.uuid4().hex),
                state=state,
                detail=detail,
                session=session,
                switched_to=switched_to,
            )
        )
