"""The collector between the engine thread and the UI: faithful, bounded, never blocking."""

from __future__ import annotations

import threading

import pytest
from tradeconsole.backtest.replay import ReplaySource
from tradeconsole.core.engine import Engine, SessionSpec, SwitchStrategy
from tradeconsole.core.events import CandleEvent, CandleUpdateEvent, ConnectionEvent, EngineStateEvent
from tradeconsole.tui.collector import EventCollector

pytestmark = pytest.mark.timeout(60)

KEY = "ETHUSDT:1h:engulfing"


def run_engine(candles, collector: EventCollector, updates: int = 4) -> Engine:
    """The real engine fed by the real replay source, the collector subscribed."""
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing")], mode="paper")
    engine.subscribe(collector)
    collector.register(KEY, "ETHUSDT", "1h", "engulfing")
    engine.start()
    source = ReplaySource(candles, "ETHUSDT", "1h", speed=None, updates_per_candle=updates)
    source.start(engine.feed)
    assert source.join(60)
    assert engine.wait_idle(60)
    return engine


def test_collector_mirrors_the_engine(candles_1h):
    candles = candles_1h.take(slice(0, 744))
    c = EventCollector()
    engine = run_engine(candles, c)
    try:
        snap = c.snapshot()
        s = snap.session(KEY)
        broker = engine.sessions[KEY].broker
        assert s is not None and s.closed_total == 744
        # every fill the broker made is in the trades list, in order, and marked on the chart
        assert [(f.time, f.price, f.reason) for f in s.fills] == [
            (f.time, f.price, f.reason.value) for f in broker.fills
        ]
        assert len(s.markers) == len(broker.fills) > 0
        assert s.position == broker.position and s.position is not None  # January ends holding a short
        assert s.equity is not None and s.equity.cash == pytest.approx(broker.cash)
        # the orders protecting the open short are the working ones
        assert sorted((o.kind, o.side, o.price) for o in s.working) == [
            ("STOP_MARKET", "BUY", s.position.stop_price),
            ("TAKE_PROFIT_MARKET", "BUY", s.position.target_price),
        ]
        assert {o.status for o in s.orders} >= {"new", "filled", "canceled"}
        # the last closed candle is the replay's last; no open candle is left after it closed
        assert s.candles[-1] == candles.candle(743)
        assert s.open_candle is None
        assert snap.connection.source == "replay" and snap.connection.state == "finished"
        assert any("entry_short" in line.text for line in c.log_since(0))
    finally:
        engine.stop()


def test_open_candle_updates_are_coalesced_and_memory_is_bounded(candles_1h):
    c = EventCollector(history=50, log_size=30, rows=5)
    engine = run_engine(candles_1h.take(slice(0, 2000)), c, updates=8)
    try:
        sizes = c.sizes()
        assert sizes[f"{KEY}.candles"] == sizes[f"{KEY}.indicators"] == 50
        assert sizes["log"] <= 30
        assert all(sizes[f"{KEY}.{n}"] <= 5 for n in ("markers", "fills", "orders"))
        snap = c.snapshot()
        # 2000 closed candles and 16000 open-candle updates arrived; one open candle is kept at most
        assert snap.events_total > 18_000
        assert snap.session(KEY).closed_total == 2000
    finally:
        engine.stop()


def test_open_candle_shown_until_its_close(candles_1h):
    c = EventCollector()
    candle = candles_1h.candle(5)
    env = dict(run_id="r", mode="paper", symbol="ETHUSDT", interval="1h", strategy="basic")
    for k in range(1, 4):
        part = candle._replace(close=candle.open + k, closed=False)
        c(CandleUpdateEvent(event_id=f"u{k}", time=candle.open_time, candle=part, indicators={"rsi": 50.0 + k}, **env))
    s = c.snapshot().sessions[0]
    assert s.open_candle.close == candle.open + 3 and s.open_indicators == {"rsi": 53.0}
    assert s.candles == () and s.mark == candle.open + 3
    c(CandleEvent(event_id="c", time=candle.open_time, candle=candle, indicators={"rsi": 60.0}, **env))
    s = c.snapshot().sessions[0]
    assert s.open_candle is None and s.candles == (candle,) and s.mark == candle.close


def test_strategy_switch_keeps_the_session(candles_1h):
    """After SwitchStrategy the events carry the new strategy name; they stay in the same pane."""
    c = EventCollector()
    engine = Engine([SessionSpec("ETHUSDT", "1h", "engulfing")], mode="paper")
    engine.subscribe(c)
    c.register(KEY, "ETHUSDT", "1h", "engulfing")
    engine.start()
    try:
        engine.send(SwitchStrategy(KEY, "basic", {}))
        assert engine.wait_idle(10)
        source = ReplaySource(candles_1h.take(slice(0, 100)), "ETHUSDT", "1h", speed=None)
        source.start(engine.feed)
        assert source.join(30) and engine.wait_idle(30)
        snap = c.snapshot()
        assert [s.key for s in snap.sessions] == [KEY]
        assert snap.session(KEY).strategy == "basic" and snap.session(KEY).closed_total == 100
    finally:
        engine.stop()


def test_delivery_status_is_kept_apart_from_market_data():
    """Kafka/Elasticsearch sinks report every second: they must not replace the feed's state in
    the header, nor flood the log."""
    c = EventCollector()
    env = dict(run_id="r", mode="paper")
    c(ConnectionEvent(event_id="f", time=1, source="replay", state="connected", **env))
    for k in range(10):
        c(
            ConnectionEvent(
                event_id=f"k{k}",
                time=k,
                source="kafka",
                state="connected",
                lag_ms=12.0 + k,
                detail=f"sent {k} acked",
                **env,
            )
        )
    c(ConnectionEvent(event_id="k-down", time=20, source="kafka", state="reconnecting", **env))
    snap = c.snapshot()
    assert (snap.connection.source, snap.connection.state) == ("replay", "connected")
    assert [(d.source, d.state) for d in snap.delivery] == [("kafka", "reconnecting")]
    assert [line.text.split()[:2] for line in c.log_since(0)] == [
        ["replay", "connected"],
        ["kafka", "connected"],
        ["kafka", "reconnecting"],
    ]


def test_run_ids_masked_for_snapshots():
    c = EventCollector(mask_run_ids=True)
    c(
        EngineStateEvent(
            event_id="e", time=1, run_id="paper-123abc", mode="paper", state="running", detail="run paper-123abc"
        )
    )
    assert [line.text for line in c.log_since(0)] == ["engine running: run <run>"]


def test_snapshots_are_consistent_while_the_engine_writes(candles_1h):
    """The UI thread reading while the engine thread writes never sees candles without their
    indicators (both deques change under one lock)."""
    c = EventCollector(history=100)
    bad: list[tuple[int, int]] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            for s in c.snapshot().sessions:
                if len(s.candles) != len(s.indicators):
                    bad.append((len(s.candles), len(s.indicators)))

    t = threading.Thread(target=reader)
    t.start()
    try:
        engine = run_engine(candles_1h.take(slice(0, 1500)), c)
        engine.stop()
    finally:
        done.set()
        t.join()
    assert bad == []
