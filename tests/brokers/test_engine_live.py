"""The live broker inside the real ``Engine``: user data stream events go through the engine's
input queue and are journalled the moment they are applied; candles that are not from the
exchange (a replay) never reach the live broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tradeconsole.core.broker import BrokerSettings
from tradeconsole.core.domain import FillReason, Side
from tradeconsole.core.engine import Engine, SessionSpec
from tradeconsole.core.feed import CANDLE_SOURCE_EXCHANGE, CANDLE_SOURCE_REPLAY, AccountStreamEvent, CandleClosed
from tradeconsole.infra.binance.execution.user_stream import UserDataStream
from tradeconsole.infra.binance.http.endpoints import make_client
from tradeconsole.infra.persistence.journal import Journal

from tests.brokers.conftest import API_KEY, API_SECRET, CASH, FEE, LEVERAGE, SYMBOL, flat, make_live_broker
from tests.brokers.test_user_stream import endpoints, wait
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(60)


def _engine(server: FuturesStandIn, tmp_path: Path) -> tuple[Engine, Journal]:
    journal = Journal(tmp_path / "j.sqlite")
    spec = SessionSpec(SYMBOL, "5m", "basic", broker=BrokerSettings(initial_cash=CASH, leverage=LEVERAGE, fee_rate=FEE))
    engine = Engine([spec], mode="testnet", journal=journal, broker_factory=lambda s: make_live_broker(server))
    return engine, journal


def test_replay_candles_never_reach_the_live_broker(server: FuturesStandIn, tmp_path: Path) -> None:
    engine, journal = _engine(server, tmp_path)
    engine.start()
    try:
        assert engine.wait_idle(10)  # the start-up reconcile (and broker start) are done
        before = len(server.requests)
        engine.feed(CandleClosed(SYMBOL, "5m", flat(0, 2000.0), source=CANDLE_SOURCE_REPLAY))
        assert engine.wait_idle(10)
        errors = [e for _, e in journal.events(types=["error"]) if "refuses a candle from replay" in e["message"]]
        assert len(errors) == 1 and engine.refused_candles == 1
        assert engine.processed_closed == 0
        assert server.requests[before:] == []  # the refused candle reached nothing on the exchange
        engine.feed(CandleClosed(SYMBOL, "5m", flat(1, 2000.0), source=CANDLE_SOURCE_EXCHANGE))
        assert engine.wait_idle(10) and engine.processed_closed == 1
    finally:
        engine.stop()
        journal.close()


def test_stream_exit_is_journalled_within_a_second(server: FuturesStandIn, tmp_path: Path) -> None:
    engine, journal = _engine(server, tmp_path)
    broker = engine.sessions[f"{SYMBOL}:5m:basic"].broker
    engine.start()
    e = endpoints(server)
    stream = UserDataStream(make_client(e, API_KEY, API_SECRET), e, backoff_s=0.05)
    try:
        engine.feed(CandleClosed(SYMBOL, "5m", flat(0, 2000.0), source=CANDLE_SOURCE_EXCHANGE))
        assert engine.wait_idle(10)
        # enter on the engine thread's behalf while it is idle (the strategy's signal is not under test)
        fill = broker.submit_entry(Side.LONG, flat(0, 2000.0), "tc" + "0" * 22 + "ab", 0.02, 0.04, 0.2)
        assert fill is not None
        stream.start(engine.feed)
        wait(lambda: server.user_connections() == 1, what="the stream to connect")
        server.walk(1950.0)
        emitted = next(ev for ev in reversed(server.user_events) if ev["e"] == "ORDER_TRADE_UPDATE")["E"]
        fills = wait(
            lambda: [x for x in journal_fills(tmp_path) if x["reason"] == "stop_loss"],
            what="the stop fill in the journal",
        )
        seen_ms = time.time() * 1000
        assert seen_ms - emitted < 1000, f"stop fill journalled {seen_ms - emitted:.0f} ms after the event"
        assert fills[0]["trade"]["exit_price"] == pytest.approx(1960.0)
        assert broker.position is None
        # a gap in the stream asks for the REST reconcile (nothing to find now)
        engine.feed(AccountStreamEvent("", {}, gap=True))
        assert engine.wait_idle(10)
    finally:
        stream.stop()
        engine.stop()
        journal.close()


def journal_fills(tmp_path: Path) -> list[dict]:
    import json
    import sqlite3

    db = sqlite3.connect(f"file:{tmp_path / 'j.sqlite'}?mode=ro", uri=True)
    try:
        return [json.loads(p) for (p,) in db.execute("SELECT payload FROM events WHERE type='fill' ORDER BY seq")]
    except sqlite3.Error:
        return []
    finally:
        db.close()


def test_stale_account_update_does_not_close_a_new_position(server: FuturesStandIn) -> None:
    b = make_live_broker(server)
    b.start()
    old = {
        "e": "ACCOUNT_UPDATE",
        "E": server.now_ms() - 5000,
        "T": server.now_ms() - 5000,
        "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": "9999", "cw": "9999", "bc": "0"}],
            "P": [{"s": SYMBOL, "pa": "0", "ep": "0", "ps": "BOTH"}],
        },
    }
    b.submit_entry(Side.LONG, flat(0, 2000.0), "tc" + "1" * 22 + "ab", 0.02, 0.04, 0.2)
    cash = b.cash
    assert b.apply_stream_event(old) == [] and b.position is not None
    assert b.cash == cash  # older than the balance read at start: not taken
    now = dict(old, E=server.now_ms() + 1, T=server.now_ms() + 1)
    assert b.apply_stream_event(now) == [] and b.position is not None  # REST says it is open
    assert b.cash == 9999.0  # a newer balance is taken


def test_reason_of_a_manual_close_on_the_stream(server: FuturesStandIn) -> None:
    b = make_live_broker(server)
    b.start()
    b.submit_entry(Side.SHORT, flat(0, 2000.0), "tc" + "2" * 22 + "ab", 0.02, 0.04, 0.2)
    n = len(server.user_events)
    server.jump(1990.0)
    server.close_position_externally()
    upd = [ev for ev in server.user_events[n:] if ev["e"] == "ORDER_TRADE_UPDATE"]
    out = b.apply_stream_event(upd[-1])
    assert [f.reason for f, _ in out] == [FillReason.FLATTEN] and out[0][0].price == 1990.0
    assert out[0][0].fee == pytest.approx(float(server.trades[-1]["commission"]))
