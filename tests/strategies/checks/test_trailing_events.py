"""A trailing stop's moves are published as the stop order's ``amended`` events (same client id,
the new trigger price), through the session's one event path: journalled, valid against the
order schema (whose mapping is unchanged: ``status`` is a keyword), and shown by the console's
order book where the broker holds the stop."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, SimulatedFuturesBroker
from tradeconsole.core.domain import Candle, Side
from tradeconsole.core.events import OrderEvent, PositionEvent
from tradeconsole.core.indicators import IncrementalIndicators
from tradeconsole.core.session import StrategySession
from tradeconsole.core.strategies import Strategy, trailing
from tradeconsole.infra.sinks.schemas import load_schema, validate
from tradeconsole.tui.collector import EventCollector

H = 3_600_000
STRATS = Path(__file__).resolve().parents[1]


class _Trail(Strategy):
    """Long on the first candle, a 10% trailing stop, no target."""

    name = "t_trail_events"
    default_interval = "1h"
    take_profit = None
    stop_loss = None
    trailing_stop = trailing(0.10)

    def entry_signal(self, candle, ind):
        return Side.LONG if candle.open_time == 0 else None


def _run(model: str, ohlc):
    fm = FILL_MODELS[model]
    broker = SimulatedFuturesBroker("ETHUSDT", BrokerSettings(fee_rate=0.0), fm)
    events = []
    session = StrategySession(
        symbol="ETHUSDT",
        interval="1h",
        strategy=_Trail(),
        broker=broker,
        run_id="r1",
        mode="paper",
        initial_cash=10_000,
        reenter_on_exit_candle=False,
        publish=events.append,
    )
    ind = IncrementalIndicators(fm.indicator_settings())
    stops = []
    for i, (o, h, lo, c) in enumerate(ohlc):
        candle = Candle(i * H, o, h, lo, c, 1.0, (i + 1) * H - 1)
        session.on_closed_candle(candle, ind.update(candle))
        stops.append(None if broker.position is None else broker.position.stop_price)
    return events, stops


def test_each_move_is_an_amended_stop_order():
    # realistic: entry at bar 1's open 100, stop 90; bar 1's high 120 -> 108 (the stop order is
    # published after that candle, at 108); bar 2's high 125 -> 112.5; bar 3 (high 121) moves
    # nothing; bar 4's low 110 hits 112.5
    events, stops = _run(
        "realistic",
        [(100, 100, 100, 100), (100, 120, 99, 118), (118, 125, 117, 121), (121, 121, 115, 116), (116, 117, 110, 111)],
    )
    amended = [e for e in events if isinstance(e, OrderEvent) and e.status == "amended"]
    assert [e.order.stop_price for e in amended] == [pytest.approx(112.5)]
    assert [s for s in stops[1:3]] == [pytest.approx(108.0), pytest.approx(112.5)]
    placed = next(
        e for e in events if isinstance(e, OrderEvent) and e.status == "new" and e.order.client_id.endswith("sl")
    )
    assert {e.order.client_id for e in amended} == {placed.order.client_id}
    assert placed.order.stop_price == pytest.approx(108.0)
    assert "108.00 -> 112.50" in amended[0].message
    assert len({e.event_id for e in events}) == len(events)  # ids stay unique (one move per candle)
    # valid against the published schema, as the sinks and the journal carry it
    for e in amended:
        assert validate(e.to_dict(), load_schema("order")) == []
    # the stop fills at its moved level; the position events carried the same stop
    fill_order = [e for e in events if isinstance(e, OrderEvent) and e.status == "filled"][-1]
    assert fill_order.order.client_id == placed.order.client_id
    pos_stops = [e.position.stop_price for e in events if isinstance(e, PositionEvent) and e.position is not None]
    assert pos_stops[-1] == pytest.approx(112.5)


def test_the_console_shows_the_stop_where_it_is():
    events, _ = _run("realistic", [(100, 100, 100, 100), (100, 120, 99, 118), (118, 125, 117, 121)])
    c = EventCollector()
    for e in events:
        c(e)
    s = c.snapshot().sessions[0]
    (stop,) = [w for w in s.working if w.client_id.endswith("sl")]
    assert stop.price == pytest.approx(112.5) and stop.status == "amended"
    assert [r.price for r in s.order_book if r.client_id.endswith("sl")] == [pytest.approx(112.5)]


def test_no_move_no_event_and_seed_moves_on_closes():
    events, _ = _run("seed", [(100, 100, 100, 100), (100, 100, 95, 96), (96, 130, 95, 100)])
    # seed trails the close: 96 and 100 stay below 90/0.9=100 -> no move; nothing amended
    assert not [e for e in events if isinstance(e, OrderEvent) and e.status == "amended"]
    events, _ = _run("seed", [(100, 100, 100, 100), (100, 120, 99, 118)])
    (a,) = [e for e in events if isinstance(e, OrderEvent) and e.status == "amended"]
    assert a.order.stop_price == pytest.approx(118 * 0.9) and "90.00 -> 106.20" in a.message


def test_moves_are_journalled_by_a_headless_run(tmp_path, data_1h):
    """The normal path end to end: a headless paper replay of a tests-only trailing strategy
    writes the amended stop orders to its journal, each valid against the schema, each stop
    price the level the next position event carries."""
    src = data_1h / "ETHUSDT-1h-2022-01.csv"
    d = tmp_path / "replay"
    d.mkdir()
    (d / src.name).write_text("".join(src.read_text().splitlines(keepends=True)[:400]))
    journal = tmp_path / "j.sqlite"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradeconsole.tui.cli",
            "run",
            "--headless",
            "--strategy-path",
            str(STRATS / "bollinger_trail.py"),
            "--strategy",
            "bollinger_trail",
            "--interval",
            "1h",
            "--replay",
            str(d),
            "--speed",
            "max",
            "--journal",
            str(journal),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr[-1500:]
    db = sqlite3.connect(journal)
    orders = [json.loads(r[0]) for r in db.execute("SELECT payload FROM events WHERE type='order' ORDER BY rowid")]
    amended = [o for o in orders if o["status"] == "amended"]
    assert amended, "no trailing move in the replay"
    schema = load_schema("order")
    for o in amended:
        assert validate(o, schema) == []
        assert o["order_type"] == "STOP_MARKET" and o["client_order_id"].endswith("sl")
    placed = {o["client_order_id"] for o in orders if o["status"] == "new"}
    assert {o["client_order_id"] for o in amended} <= placed
