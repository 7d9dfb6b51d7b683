"""Operator controls with exchange semantics (issue 11, item 1).

Stop ends new entries and the strategy but keeps managing an open position: its protective stop
and target still fire on later candles, at exactly the backtest's price. The kill switch
(``Flatten(pause=True)``) closes everything and pauses entries; flattening while flat says so.
"""

from __future__ import annotations

from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.domain import FillReason
from tradeconsole.core.engine import Engine, Flatten, PauseEntries, SessionSpec, StartTrading, StopTrading
from tradeconsole.core.feed import CandleClosed, CandleUpdate
from tradeconsole.core.strategies import make_strategy

KEY = "ETHUSDT:1h:engulfing"


def feed(engine: Engine, candles, start: int = 0, stop: int | None = None) -> None:
    for c in candles.candles()[start:stop]:
        engine.feed(CandleUpdate("ETHUSDT", "1h", c._replace(closed=False, close=c.open, high=c.open, low=c.open)))
        engine.feed(CandleClosed("ETHUSDT", "1h", c))


def index_of(candles, t: int) -> int:
    return int((t - int(candles.open_time[0])) // 3_600_000)


def test_stop_keeps_managing_the_open_position_until_its_stop_fires(candles_1h):
    bt = run_backtest(candles_1h, make_strategy("engulfing"), interval="1h", fill_model="realistic")
    trade = next(t for t in bt.trades if t.exit_reason is FillReason.STOP_LOSS)
    exit_fill = next(f for f in bt.fills if f.reason is FillReason.STOP_LOSS and f.time == trade.exit_time)
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing")])
    seen: list = []
    engine.subscribe(seen.append)
    engine.start()
    cut = index_of(candles_1h, trade.entry_time) + 1  # the entry candle has closed, the stop has not fired
    feed(engine, candles_1h, stop=cut)
    assert engine.wait_idle(30)
    sess = engine.sessions[KEY]
    assert sess.broker.position is not None and sess.broker.position.entry_time == trade.entry_time
    engine.send(StopTrading())
    feed(engine, candles_1h, start=cut)
    assert engine.wait_idle(60)
    engine.stop()
    after = seen[[i for i, e in enumerate(seen) if e.type == "engine_state" and e.state == "stopped"][0] :]
    fills = [e.fill for e in after if e.type == "fill"]
    # the protective stop fired while stopped, at the backtest's price and time; nothing re-entered
    assert [(f.reason, f.time, f.price, f.qty) for f in fills] == [
        (FillReason.STOP_LOSS, exit_fill.time, exit_fill.price, exit_fill.qty)
    ]
    assert sess.broker.position is None and engine.processed_closed == len(candles_1h)
    signals = [e for e in after if e.type == "signal"]
    assert signals and not any(s.acted for s in signals)  # the strategy's signals are not acted on
    # marks kept moving: equity events for every candle after the stop
    assert len([e for e in after if e.type == "equity"]) == len(candles_1h) - cut
    stopped = next(e for e in after if e.type == "engine_state" and e.state == "stopped")
    assert "keep their stop/target" in stopped.detail and KEY in stopped.detail


def test_stop_cancels_a_pending_entry_and_start_restores_the_operator_pause(candles_1h):
    bt = run_backtest(candles_1h, make_strategy("engulfing"), interval="1h", fill_model="realistic")
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing")])
    seen: list = []
    engine.subscribe(seen.append)
    engine.start()
    signal_candle = index_of(candles_1h, bt.trades[0].entry_time) - 1
    for c in candles_1h.candles()[: signal_candle + 1]:  # closed candles only: the entry stays pending
        engine.feed(CandleClosed("ETHUSDT", "1h", c))
    assert engine.wait_idle(30)
    sess = engine.sessions[KEY]
    assert sess.broker.pending is not None
    engine.send(StopTrading())
    assert engine.wait_idle(10)
    assert sess.broker.pending is None and sess.entries_paused
    cancelled = [e for e in seen if e.type == "order" and e.status == "canceled"]
    entry_orders = [e for e in seen if e.type == "order" and e.status == "new"]
    assert len(cancelled) == 1 and cancelled[0].order.client_id == entry_orders[-1].order.client_id
    engine.send(PauseEntries(True))
    engine.send(StartTrading())
    assert engine.wait_idle(10)
    assert sess.entries_paused, "Start must not undo the operator's own entry pause"
    engine.send(PauseEntries(False))
    assert engine.wait_idle(10)
    assert not sess.entries_paused
    engine.stop()


def test_kill_switch_flattens_and_pauses_and_flat_flatten_says_nothing_to_close(candles_1h):
    bt = run_backtest(candles_1h, make_strategy("engulfing"), interval="1h", fill_model="realistic")
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing")])
    seen: list = []
    engine.subscribe(seen.append)
    engine.start()
    feed(engine, candles_1h, stop=5)
    engine.send(Flatten())
    assert engine.wait_idle(10)
    state = [e for e in seen if e.type == "engine_state"][-1]
    assert "nothing to flatten" in state.detail and not [e for e in seen if e.type == "fill"]
    cut = index_of(candles_1h, bt.trades[0].entry_time) + 1
    feed(engine, candles_1h, start=5, stop=cut)
    assert engine.wait_idle(30)
    sess = engine.sessions[KEY]
    assert sess.broker.position is not None
    engine.send(Flatten(pause=True))
    assert engine.wait_idle(10)
    assert sess.broker.position is None and sess.entries_paused
    state = [e for e in seen if e.type == "engine_state"][-1]
    assert state.state == "paused" and "kill switch" in state.detail and KEY in state.detail
    feed(engine, candles_1h, start=cut)
    assert engine.wait_idle(60)
    engine.stop()
    later = [e.fill for e in seen if e.type == "fill"]
    assert later[-1].reason is FillReason.FLATTEN  # nothing entered after the kill switch
    assert any(e.type == "signal" and not e.acted for e in seen)
