"""The engine thread: same fills as the backtest, commands, journal, restart without double entry."""

from __future__ import annotations

import threading

import pytest
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.domain import Candle, FillReason
from tradeconsole.core.engine import (
    Engine,
    Flatten,
    PauseEntries,
    SessionSpec,
    StartTrading,
    StopTrading,
    SwitchStrategy,
)
from tradeconsole.core.feed import CandleClosed, CandleUpdate, FeedStatus
from tradeconsole.core.strategies import make_strategy
from tradeconsole.infra.persistence.journal import Journal


def feed_all(engine: Engine, candles, symbol="ETHUSDT", interval="1h", start=0, stop=None, updates=True):
    for c in candles.candles()[start:stop]:
        if updates:
            engine.feed(CandleUpdate(symbol, interval, c._replace(closed=False, close=c.open, high=c.open, low=c.open)))
        engine.feed(CandleClosed(symbol, interval, c))


def fills_of(events):
    return [e.fill.to_dict() for e in events if e.type == "fill"]


@pytest.mark.parametrize("model", ["seed", "realistic"])
def test_engine_thread_gives_backtest_fills(model, candles_1h):
    bt = run_backtest(candles_1h, make_strategy("engulfing"), interval="1h", fill_model=model)
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing", fill_model=model)], mode="paper")
    seen = []
    engine.subscribe(seen.append)
    engine.start()
    feed_all(engine, candles_1h)
    assert engine.wait_idle(60)
    engine.stop()
    assert [f.to_dict() for f in bt.fills] == fills_of(seen)
    # paper entries are filled on the new candle's first update, at its open: same fill as the backtest
    assert engine.processed_closed == len(candles_1h)
    assert not engine.alive


def test_journal_restart_never_enters_twice(tmp_path, candles_1h):
    bt = run_backtest(candles_1h, make_strategy("engulfing"), interval="1h", fill_model="realistic")
    path = tmp_path / "j.sqlite"
    spec = [SessionSpec("ETHUSDT", "1h", "engulfing")]
    # first run: stop feeding while a position is open (find such a candle from the backtest)
    t = bt.trades[3]
    cut = int((t.entry_time - int(candles_1h.open_time[0])) // 3_600_000) + 2
    j1 = Journal(path, sync="normal")
    e1 = Engine(spec, journal=j1)
    e1.start()
    feed_all(e1, candles_1h, stop=cut)
    assert e1.wait_idle(30)
    assert e1.sessions["ETHUSDT:1h:engulfing"].broker.position is not None
    run_id = e1.run_id
    # "crash": no clean stop, the thread is simply abandoned; a new process opens the journal
    j2 = Journal(path, sync="normal")
    e2 = Engine(spec, journal=j2)
    assert e2.run_id == run_id and e2.resumed
    pos = e2.sessions["ETHUSDT:1h:engulfing"].broker.position
    assert pos is not None and pos.entry_time == t.entry_time
    seen = []
    e2.subscribe(seen.append)
    e2.start()
    feed_all(e2, candles_1h)  # the source re-sends everything from the start
    assert e2.wait_idle(60)
    e2.stop()
    fills = [p for _, p in j2.events(run_id=run_id, types=["fill"])]
    assert [(f["fill_time"], f["side"], f["price"], f["reason"]) for f in fills] == [
        (f.to_dict()["time"], f.side.value, f.price, f.reason.value) for f in bt.fills
    ]
    seqs = [s for s, _ in j2.events()]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap
    candles = [p["open_time"] for _, p in j2.events(run_id=run_id, types=["candle"])]
    assert len(candles) == len(set(candles)) == len(candles_1h)  # each candle once, none lost


def test_commands_pause_flatten_switch_stop(candles_1h):
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing", fill_model="seed")])
    seen = []
    engine.subscribe(seen.append)
    engine.start()
    bt = run_backtest(candles_1h, make_strategy("engulfing"), interval="1h", fill_model="seed")
    entry = bt.fills[0]
    upto = int((entry.time - int(candles_1h.open_time[0])) // 3_600_000) + 1
    feed_all(engine, candles_1h, stop=upto)
    assert engine.wait_idle(30)
    sess = engine.sessions["ETHUSDT:1h:engulfing"]
    assert sess.broker.position is not None
    engine.send(SwitchStrategy("ETHUSDT:1h:engulfing", "basic"))
    engine.send(Flatten())
    engine.send(PauseEntries(True))
    assert engine.wait_idle(10)
    assert sess.broker.position is None and sess.entries_paused
    assert any(e.type == "error" and "flatten first" in e.message for e in seen)
    flat = [e for e in seen if e.type == "fill" and e.fill.reason is FillReason.FLATTEN]
    assert len(flat) == 1 and flat[0].fill.time == int(candles_1h.close_time[upto - 1])
    # paused: signals are published but not acted on
    feed_all(engine, candles_1h, start=upto, stop=upto + 2000)
    assert engine.wait_idle(30)
    sigs = [e for e in seen if e.type == "signal"]
    assert sigs and not any(s.acted for s in sigs[1:]) and sess.broker.position is None
    engine.send(SwitchStrategy("ETHUSDT:1h:engulfing", "basic", {"rsi_oversold": 40}))
    engine.send(StopTrading())
    engine.send(StartTrading())
    engine.send(PauseEntries(False))
    assert engine.wait_idle(10)
    assert sess.strategy.name == "basic" and sess.strategy.params.rsi_oversold == 40
    engine.stop()
    states = [e.state for e in seen if e.type == "engine_state"]
    assert states[0] == "running" and states[-1] == "stopped" and "paused" in states


def test_bad_subscriber_and_bad_input_do_not_kill_the_engine(candles_1h):
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing")])
    got = []

    def broken(e):
        raise RuntimeError("boom")

    engine.subscribe(broken)
    engine.subscribe(got.append)
    engine.start()
    engine.feed(CandleClosed("ETHUSDT", "1h", Candle(0, float("nan"), 1, 1, 1, 1, 1)))  # garbage
    feed_all(engine, candles_1h, stop=50)
    feed_all(engine, candles_1h, stop=50)  # duplicates: skipped and counted
    engine.feed(FeedStatus("replay", "finished"))
    assert engine.wait_idle(10)
    engine.stop()
    assert engine.subscriber_errors > 0 and engine.duplicates_skipped == 50 and engine.invalid_skipped == 1
    assert any(e.type == "error" and "invalid candle" in e.message for e in got)
    assert len([e for e in got if e.type == "candle"]) == 50
    assert "replay" in engine.finished_sources


def test_backfilled_stale_signals_are_not_traded(candles_1h):
    bt = run_backtest(candles_1h, make_strategy("engulfing"), interval="1h", fill_model="seed")
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing", fill_model="seed")])
    seen = []
    engine.subscribe(seen.append)
    engine.start()
    now_ms = int(candles_1h.close_time[-1]) + 10 * 3_600_000
    for c in candles_1h.candles():
        engine.feed(CandleClosed("ETHUSDT", "1h", c, received_ms=now_ms, backfill=True))
    assert engine.wait_idle(30)
    engine.stop()
    assert len(bt.fills) > 0 and not fills_of(seen)
    assert all(not s.acted and "too old" in s.note for s in seen if s.type == "signal")


def test_feed_is_thread_safe_from_several_sources(candles_1h):
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing"), SessionSpec("ETHUSDT", "1h", "basic")])
    engine.start()
    threads = [threading.Thread(target=feed_all, args=(engine, candles_1h), kwargs={"stop": 500, "updates": False})]
    threads[0].start()
    threads[0].join()
    assert engine.wait_idle(30)
    engine.stop()
    assert engine.processed_closed == 1000  # 500 candles x 2 sessions


def test_reconcile_findings_are_published_at_start_and_periodically(candles_1h):
    from tradeconsole.core.broker import FILL_MODELS, SimulatedFuturesBroker

    calls = []

    class ReconcilingBroker(SimulatedFuturesBroker):
        def reconcile(self):
            calls.append(1)
            if len(calls) == 1:
                return ["exchange has protective orders we do not know: cancelled"]
            raise ConnectionError("exchange down")

    clock = [1000.0]
    engine = Engine(
        [SessionSpec("ETHUSDT", "1h", "engulfing")],
        clock=lambda: clock[0],
        broker_factory=lambda spec: ReconcilingBroker(spec.symbol, spec.broker, FILL_MODELS[spec.fill_model]),
    )
    seen = []
    engine.subscribe(seen.append)
    engine.start()
    feed_all(engine, candles_1h, stop=10)
    assert engine.wait_idle(10)
    clock[0] += 61
    feed_all(engine, candles_1h, start=10, stop=20)
    assert engine.wait_idle(10)
    engine.stop()
    msgs = [e.message for e in seen if e.type == "error" and e.source == "reconcile"]
    assert msgs[0].startswith("exchange has protective orders")
    assert any("reconcile failed: ConnectionError" in m for m in msgs)
    assert engine.processed_closed == 20


def test_order_events_follow_the_order_lifecycle(candles_1h):
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing")])
    seen = []
    engine.subscribe(seen.append)
    engine.start()
    feed_all(engine, candles_1h, stop=3000)
    assert engine.wait_idle(30)
    engine.stop()
    orders = [e for e in seen if e.type == "order"]
    first_entry = next(e for e in seen if e.type == "fill").fill
    eid = first_entry.order_id
    life = [(o.order.client_id, o.order.type.value, o.status) for o in orders if o.order.client_id.startswith(eid)]
    assert life[:4] == [
        (eid, "MARKET", "new"),
        (eid, "MARKET", "filled"),
        (eid + "sl", "STOP_MARKET", "new"),
        (eid + "tp", "TAKE_PROFIT_MARKET", "new"),
    ]
    exit_status = {cid: st for cid, _, st in life[4:]}
    assert sorted(exit_status.values()) == ["canceled", "filled"]
    sl_new = next(o for o in orders if o.order.client_id == eid + "sl")
    assert sl_new.order.reduce_only and sl_new.order.stop_price is not None
    assert len({o.event_id for o in orders}) == len(orders)
