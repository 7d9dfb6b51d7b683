"""End to end, testnet mode, against the stand-ins with the 2026 routes (user data stream under
``/private/``): the real ``tradeconsole run --headless --testnet`` process

1. enters on the signal and protects the position on the exchange;
2. survives a stop whose triggered market order is canceled by the matching engine (algo status
   FINISHED, no trade): the position is re-protected at once, never left bare;
3. sees the next stop fill through the user data stream: the exit is in the journal within one
   second of the stand-in's event time (``E``), without waiting for a candle;

and, in a second test, a position entered 10 days ago (the exchange clock set back) and closed
on the exchange while the console was down is journalled after the restart with the true
price, fee and reason, read through 7-day ``userTrades`` windows.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tradeconsole.core.domain import Side

from tests.e2e.conftest import (
    INTERVAL,
    STRATEGY,
    SYMBOL,
    HeadlessProcess,
    JournalReader,
    Servers,
    SignalPlan,
    wait_until,
)
from tests.e2e.test_testnet_headless import ARGS, Driver, leaks, start_event

pytestmark = pytest.mark.timeout(180)

KEY = f"{SYMBOL}:{INTERVAL}:{STRATEGY}"
DAY = 24 * 3600 * 1000


def _enter(plan: SignalPlan, servers: Servers, drive: Driver, proc: HeadlessProcess) -> tuple[float, float]:
    """Stream up to the signal candle and let it enter; returns (stop, target) as journalled."""
    drive.wait_streaming(proc, 0, plan.first_live - 1)
    wait_until(lambda: servers.trading.user_connections() >= 1, 30, "the user data stream connected", proc)
    for i in range(plan.first_live, plan.signal + 1):
        drive.close_candle(i, proc)
    wait_until(lambda: len(servers.trading.open_algo_orders()) == 2, 30, "the protective orders", proc)
    _, snap = drive.journal.session(KEY)
    assert snap["position"] is not None
    return snap["position"]["stop_price"], snap["position"]["target_price"]


def _stop_algos(servers: Servers, cid: str) -> list[dict]:
    return [o for o in servers.trading.algo_orders if o["clientAlgoId"] == cid]


def test_dead_stop_is_reprotected_and_the_next_stop_is_seen_within_a_second(
    plan: SignalPlan, servers: Servers, launch, tmp_path: Path
) -> None:
    journal_path = tmp_path / "journal-testnet.sqlite"
    journal = JournalReader(journal_path)
    drive = Driver(plan, servers, journal)
    proc = launch("run", [*ARGS, "--testnet", "--journal", str(journal_path)], servers.env(tmp_path / "data"))
    start_event(proc)
    stop, _target = _enter(plan, servers, drive, proc)
    sl = plan.entry_id + "sl"
    long = plan.side is Side.LONG
    beyond = stop * (0.997 if long else 1.003)
    back = plan.close(plan.signal)

    # ---- 2. the stop triggers, the matching engine cancels its market order: FINISHED, no trade
    seq = journal.max_seq()
    servers.trading.cancel_next_trigger()
    servers.trading.walk(beyond, back)  # through the stop and back inside the candle
    dead = _stop_algos(servers, sl)[0]
    assert dead["algoStatus"] == "FINISHED" and dead["actualOrderId"]
    assert not [t for t in servers.trading.trades if str(t["orderId"]) == dead["actualOrderId"]]
    assert servers.trading.position_amt() != 0, "the position is still open on the exchange"
    # re-protected at the recorded level, from the stream's events (no candle closed meanwhile)
    wait_until(
        lambda: [o["algoStatus"] for o in _stop_algos(servers, sl)] == ["FINISHED", "NEW"],
        10,
        "the stop re-placed",
        proc,
    )
    assert float(_stop_algos(servers, sl)[1]["triggerPrice"]) == pytest.approx(stop)
    assert {o["clientAlgoId"] for o in servers.trading.open_algo_orders()} == {sl, plan.entry_id + "tp"}
    alerts = wait_until(
        lambda: [e for e in journal.events("error", after_seq=seq) if e["source"] == "broker"],
        10,
        "the alert in the journal",
        proc,
    )
    assert "did not close the position" in alerts[0]["message"]
    assert journal.session(KEY)[1]["position"] is not None

    # ---- 3. the new stop fills: seen through the user data stream within one second
    seq = journal.max_seq()
    servers.trading.walk(beyond)
    assert servers.trading.position_amt() == 0
    # the stop's market order is linked to it by id (actualOrderId), not by client id
    actual = str(_stop_algos(servers, sl)[1]["actualOrderId"])
    emitted = next(
        ev["E"]
        for ev in reversed(servers.trading.user_events)
        if ev["e"] == "ORDER_TRADE_UPDATE" and str(ev["o"]["i"]) == actual and ev["o"]["X"] == "FILLED"
    )
    exits = wait_until(
        lambda: [f for f in journal.events("fill", after_seq=seq) if f.get("trade")],
        10,
        "the stop fill in the journal",
        proc,
    )
    latency_ms = time.time() * 1000 - emitted
    print(f"stop fill journalled {latency_ms:.0f} ms after the stand-in's event time")
    assert latency_ms < 1000, f"the exit reached the journal {latency_ms:.0f} ms after the exchange's event"
    x = exits[0]
    assert x["reason"] == "stop_loss" and x["order_id"] == sl and x["price"] == pytest.approx(stop)
    fill_trade = next(
        t for t in servers.trading.trades if t["orderId"] == int(_stop_algos(servers, sl)[1]["actualOrderId"])
    )
    assert x["fee"] == pytest.approx(float(fill_trade["commission"]))
    assert servers.trading.open_algo_orders() == [], "the target is canceled"
    assert journal.session(KEY)[1]["position"] is None
    assert proc.terminate() == 0, proc.tail()
    assert servers.trading.issued_listen_keys
    assert not leaks(proc.stderr() + proc.stdout(), servers) and not leaks(journal.file_bytes(), servers)


def test_ten_day_old_position_closed_while_down_is_recorded_truly(
    plan: SignalPlan, servers: Servers, launch, tmp_path: Path
) -> None:
    journal_path = tmp_path / "journal-testnet.sqlite"
    journal = JournalReader(journal_path)
    drive = Driver(plan, servers, journal)
    env = servers.env(tmp_path / "data")
    args = [*ARGS, "--testnet", "--journal", str(journal_path)]
    p1 = launch("run1", args, env)
    start_event(p1)
    drive.wait_streaming(p1, 0, plan.first_live - 1)
    for i in range(plan.first_live, plan.signal):
        drive.close_candle(i, p1)
    servers.trading.clock_skew_ms = -10 * DAY  # the entry happens "10 days ago" on the exchange's clock
    drive.close_candle(plan.signal, p1)
    wait_until(lambda: len(servers.trading.open_algo_orders()) == 2, 30, "the protective orders", p1)
    servers.trading.clock_skew_ms = 0  # back to today (the broker re-syncs on -1021)
    drive.close_candle(plan.signal + 1, p1)
    entry_time = journal.session(KEY)[1]["position"]["entry_time"]
    assert time.time() * 1000 - entry_time > 9.9 * DAY
    assert p1.terminate() == 0, p1.tail()

    # closed on the exchange (web UI) while the console is down, at a price no candle had
    for k in range(40):  # other executions on the account over those ten days
        servers.trading.add_past_trade(
            side="BUY", qty=0.001, price=1000.0, time_ms=entry_time + (k + 1) * 5 * 3600_000, symbol="BTCUSDT"
        )
    px = round(plan.close(plan.signal + 1) * 1.001, 2)
    servers.trading.jump(px)
    close = servers.trading.close_position_externally()
    assert close is not None
    close_trade = servers.trading.trades[-1]
    drive.close_candle(plan.signal + 2, None)
    seq = journal.max_seq()
    n_req = len(servers.trading.requests)

    p2 = launch("run2", args, env)
    start_event(p2)
    exits = wait_until(
        lambda: [f for f in journal.events("fill", after_seq=seq) if f.get("trade")],
        45,
        "the outside close in the journal",
        p2,
    )
    x = exits[0]
    assert x["reason"] == "flatten" and x["price"] == pytest.approx(px)
    assert x["fee"] == pytest.approx(float(close_trade["commission"])) and x["fee"] > 0
    assert x["qty"] == pytest.approx(float(close_trade["qty"]))
    assert journal.session(KEY)[1]["position"] is None
    found = [e for e in journal.events("error", after_seq=seq) if e["source"] == "reconcile"]
    assert found and "position_closed" in found[0]["message"]
    windows = [
        r for r in servers.trading.requests[n_req:] if r.path == "/fapi/v1/userTrades" and "startTime" in r.params
    ]
    assert len(windows) >= 2, "ten days are read in (at least) two 7-day windows"
    assert all(int(r.params["endTime"]) - int(r.params["startTime"]) <= 7 * DAY and r.status == 200 for r in windows)
    assert p2.terminate() == 0, p2.tail()


def test_hedge_mode_account_is_refused_at_start(plan: SignalPlan, servers: Servers, launch, tmp_path: Path) -> None:
    """A hedge-mode account would answer -4061 to every order: the process refuses to start,
    with the reason on one line, before sending anything that changes the account."""
    servers.trading.dual_side = True
    proc = launch(
        "hedge", [*ARGS, "--testnet", "--journal", str(tmp_path / "j.sqlite")], servers.env(tmp_path / "data")
    )
    assert proc.wait(60) == 2, proc.tail()
    line = [x for x in proc.stderr().splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "hedge mode" in line[0] and "one-way mode" in line[0], proc.tail()
    assert "Traceback" not in proc.stderr()
    assert not [r for r in servers.trading.requests if r.method in ("POST", "PUT", "DELETE")]
