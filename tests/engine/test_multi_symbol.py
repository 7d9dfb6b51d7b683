"""Several symbols in one engine on one shared paper account (issue 14 item 7).

The second symbol's history is synthesised from the real ETHUSDT 1h data: ETH's market three
hours late (each row moved three candles on, so the history starts three candles later) at 13
times the price. Its signals are ETH's, three hours later, so the two sessions hold positions at
the same time for most of each round trip: an account limit has something to bind. With every session trading
its allocation, per-session fills must equal single-symbol backtests with that cash when no
account limit binds; when one binds, the refused entry is journalled with its reason and the
account never holds more than the limit allows.
"""

from __future__ import annotations

import numpy as np
import pytest
from tradeconsole.backtest.replay_multi import MultiReplaySource
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.account import ACCOUNT_STATE_KEY, SharedAccount
from tradeconsole.core.broker import BrokerSettings
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.engine import Engine, SessionSpec
from tradeconsole.core.risk import RiskLimits
from tradeconsole.core.strategies import make_strategy
from tradeconsole.infra.persistence.journal import Journal

pytestmark = pytest.mark.timeout(240)

CASH = 10_000.0
HALF = CASH / 2
ETH, BTC = "ETHUSDT:1h:engulfing", "BTCUSDT:1h:engulfing"


@pytest.fixture(scope="module")
def btc_1h(candles_1h: CandleArrays) -> CandleArrays:
    c, lag, k = candles_1h, 3, 13.0
    n = len(c) - lag
    return CandleArrays(
        c.open_time[lag:].copy(),
        c.open[:n] * k,
        c.high[:n] * k,
        c.low[:n] * k,
        c.close[:n] * k,
        c.volume[:n].copy(),
        c.close_time[lag:].copy(),
    )


def _specs() -> list[SessionSpec]:
    return [
        SessionSpec(sym, "1h", "engulfing", broker=BrokerSettings(initial_cash=HALF)) for sym in ("ETHUSDT", "BTCUSDT")
    ]


def _run(
    candles_1h,
    btc_1h,
    limits: RiskLimits,
    journal: Journal | None = None,
    stop: int | None = None,
    account: SharedAccount | None = None,
) -> tuple[Engine, list]:
    """Both symbols through one engine, in market order, as the headless replay plays them."""
    account = account or SharedAccount(CASH, limits)
    engine = Engine(_specs(), mode="paper", journal=journal, account=account)
    seen: list = []
    engine.subscribe(seen.append)
    engine.start()
    eth, btc = candles_1h, btc_1h
    if stop is not None:  # both markets up to that time (open time), as if the process died then
        eth, btc = eth.take(eth.open_time <= stop), btc.take(btc.open_time <= stop)
    src = MultiReplaySource([("ETHUSDT", eth), ("BTCUSDT", btc)], "1h", speed=None, updates_per_candle=1)
    src.start(engine.feed)
    assert src.join(120)
    assert engine.wait_idle(120)
    return engine, seen


def _fills(events, symbol: str) -> list[dict]:
    return [e.fill.to_dict() for e in events if e.type == "fill" and e.symbol == symbol]


def _open_intervals(events, symbol: str) -> list[tuple[int, int]]:
    """(entry fill time, exit fill time) of each round trip of ``symbol`` (open ones end at +inf)."""
    out, start = [], None
    for e in events:
        if e.type != "fill" or e.symbol != symbol:
            continue
        if e.fill.reason.value.startswith("entry"):
            start = e.fill.time
        else:
            out.append((start, e.fill.time))
            start = None
    if start is not None:
        out.append((start, 2**62))
    return out


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    return sum(1 for s1, e1 in a for s2, e2 in b if s1 < e2 and s2 < e1)


def test_two_symbols_equal_two_single_symbol_backtests_when_no_limit_binds(candles_1h, btc_1h):
    engine, seen = _run(candles_1h, btc_1h, RiskLimits())
    engine.stop()
    settings = BrokerSettings(initial_cash=HALF)
    bt_eth = run_backtest(candles_1h, make_strategy("engulfing"), symbol="ETHUSDT", interval="1h", settings=settings)
    bt_btc = run_backtest(btc_1h, make_strategy("engulfing"), symbol="BTCUSDT", interval="1h", settings=settings)
    assert _fills(seen, "ETHUSDT") == [f.to_dict() for f in bt_eth.fills] and len(bt_eth.fills) > 20
    assert _fills(seen, "BTCUSDT") == [f.to_dict() for f in bt_btc.fills] and len(bt_btc.fills) > 20
    assert bt_eth.fills != bt_btc.fills  # two different markets, not one twice
    # the sessions were really in the market together, so "no limit binds" is not vacuous
    assert _overlap(_open_intervals(seen, "ETHUSDT"), _open_intervals(seen, "BTCUSDT")) > 5
    assert not [e for e in seen if e.type == "error" and e.source == "risk"]
    # the account is the sum of its sessions: initial cash plus both sessions' PnL
    acct = engine.account
    assert acct is not None
    expected = CASH + (bt_eth.equity[-1] - HALF) + (bt_btc.equity[-1] - HALF)
    assert acct.equity() == pytest.approx(expected, abs=1e-6)


def test_account_position_limit_refuses_the_second_symbol_with_a_journalled_reason(tmp_path, candles_1h, btc_1h):
    journal = Journal(tmp_path / "j.sqlite", sync="normal")
    engine, seen = _run(candles_1h, btc_1h, RiskLimits(max_positions=1), journal=journal)
    run_id = engine.run_id
    engine.stop()
    eth, btc = _open_intervals(seen, "ETHUSDT"), _open_intervals(seen, "BTCUSDT")
    assert eth and btc  # both symbols traded, one at a time
    assert _overlap(eth, btc) == 0
    refusals = [e for e in seen if e.type == "error" and e.source == "risk"]
    assert refusals and all("account position limit: 1 of 1 open" in e.message for e in refusals)
    # the refused session's signal says why, and both are in the journal
    refused_signals = [e for e in seen if e.type == "signal" and not e.acted and "position limit" in e.note]
    assert len(refused_signals) == len(refusals)
    stored = [p for _, p in journal.events(run_id=run_id, types=["error"]) if p["source"] == "risk"]
    assert [p["message"] for p in stored] == [e.message for e in refusals]
    assert {p["symbol"] for p in stored} <= {"ETHUSDT", "BTCUSDT"}
    journal.close()


def test_account_notional_limit_caps_the_sum_of_open_positions(candles_1h, btc_1h):
    cap = 7_000.0  # one session alone uses ~5,000 of notional: two together must share the cap
    engine, seen = _run(candles_1h, btc_1h, RiskLimits(max_notional=cap))
    engine.stop()
    fills = [e for e in seen if e.type == "fill"]
    open_notional: dict[str, float] = {}
    reduced = 0
    for e in fills:
        f = e.fill
        if f.reason.value.startswith("entry"):
            other = sum(v for k, v in open_notional.items() if k != e.symbol)
            # decided at the previous close, filled at this open: allow the candle-to-candle move
            assert f.qty * f.price + other <= cap * 1.03, (e.symbol, f.time)
            reduced += f.qty * f.price < 4_500
            open_notional[e.symbol] = f.qty * f.price
        else:
            open_notional.pop(e.symbol, None)
    assert reduced > 0  # the cap did bind: some entries were cut down to what was left
    refused = [e for e in seen if e.type == "error" and e.source == "risk"]
    assert all("notional limit" in e.message for e in refused)


def test_account_daily_loss_is_measured_on_the_whole_account():
    """Two sessions each losing 60 USDT stay under a 100 USDT limit one by one, not together."""
    from tradeconsole.core.broker import SimulatedFuturesBroker

    acct = SharedAccount(CASH, RiskLimits(max_daily_loss=100.0))
    a = acct.join("A:1h:x", SimulatedFuturesBroker("A", BrokerSettings(initial_cash=HALF)), HALF)
    b = acct.join("B:1h:x", SimulatedFuturesBroker("B", BrokerSettings(initial_cash=HALF)), HALF)
    day = 86_400_000 * 19_000
    assert a.observe_equity(day + 1, HALF) is None and b.observe_equity(day + 2, HALF) is None
    assert a.observe_equity(day + 3, HALF - 60) is None
    assert a.allow_entry(day + 3) == (True, "")
    alert = b.observe_equity(day + 4, HALF - 60)
    assert alert and "account daily loss limit reached (120.00 >= 100.00" in alert
    for guard in (a, b):
        ok, why = guard.allow_entry(day + 5)
        assert not ok and "daily loss" in why
    assert a.observe_equity(day + 86_400_000, HALF - 60) is None  # a new UTC day: trading again
    assert a.allow_entry(day + 86_400_000)[0]


def test_restart_restores_every_session_and_the_shared_account_exactly(tmp_path, candles_1h, btc_1h):
    limits = RiskLimits(max_positions=1, max_notional=7_000.0)
    reference, ref_seen = _run(candles_1h, btc_1h, limits)
    reference.stop()
    # the run is cut where a position is open, the process "crashes" (the engine is abandoned)
    path = tmp_path / "j.sqlite"
    j1 = Journal(path, sync="normal")
    cut = next(
        i
        for i in range(3000, len(candles_1h))
        if any(s <= int(candles_1h.close_time[i]) < e for s, e in _open_intervals(ref_seen, "BTCUSDT"))
    )
    e1, _ = _run(candles_1h, btc_1h, limits, journal=j1, stop=int(candles_1h.open_time[cut]))
    brokers = {k: s.broker.snapshot() for k, s in e1.sessions.items()}
    assert brokers[BTC]["position"] is not None or brokers[BTC]["pending"] is not None
    account = e1.account.snapshot()
    assert j1.session_state(ACCOUNT_STATE_KEY).snapshot == account
    # a new process on the same journal: every session's ledger and the account come back as they were
    j2 = Journal(path, sync="normal")
    acct2 = SharedAccount(CASH, limits)
    e2 = Engine(_specs(), mode="paper", journal=j2, account=acct2)
    assert e2.resumed and e2.run_id == e1.run_id
    assert {k: s.broker.snapshot() for k, s in e2.sessions.items()} == brokers
    assert acct2.snapshot() == account
    assert acct2.equity() == pytest.approx(e1.account.equity(), abs=1e-9)
    # and the resumed run (the source re-sends everything) ends exactly as the uninterrupted one
    seen: list = []
    e2.subscribe(seen.append)
    e2.start()
    src = MultiReplaySource([("ETHUSDT", candles_1h), ("BTCUSDT", btc_1h)], "1h", speed=None, updates_per_candle=1)
    src.start(e2.feed)
    assert src.join(120) and e2.wait_idle(120)
    e2.stop()
    fills = [
        (p["symbol"], p["fill_time"], p["price"], p["qty"]) for _, p in j2.events(run_id=e1.run_id, types=["fill"])
    ]
    ref = [(e.symbol, e.fill.to_dict()["time"], e.fill.price, e.fill.qty) for e in ref_seen if e.type == "fill"]
    assert fills == ref
    assert acct2.equity() == pytest.approx(reference.account.equity(), abs=1e-6)
    j2.close()


def test_multi_replay_plays_symbols_in_market_order(candles_1h, btc_1h):
    later = btc_1h.take(slice(100, 200))  # starts later and ends earlier than ETH
    src = MultiReplaySource(
        [("ETHUSDT", candles_1h.take(slice(0, 300))), ("BTCUSDT", later)],
        "1h",
        speed=None,
        updates_per_candle=2,
        warmup=10,
    )
    got: list = []
    src.start(got.append)
    assert src.join(30)
    closes = [(e.symbol, e.candle.open_time, e.backfill) for e in got if type(e).__name__ == "CandleClosed"]
    assert len(closes) == 400
    times = [t for _, t, _ in closes]
    assert times == sorted(times)  # one market clock across symbols
    assert [c for c in closes if c[2]] == [("ETHUSDT", int(t), True) for t in candles_1h.open_time[:10]]
    at = int(later.open_time[0])
    group = [e for e in got if getattr(e, "candle", None) is not None and e.candle.open_time == at]
    # updates of both symbols first (interleaved per step), then both closes
    assert [(type(e).__name__, e.symbol) for e in group] == [
        ("CandleUpdate", "ETHUSDT"),
        ("CandleUpdate", "BTCUSDT"),
        ("CandleUpdate", "ETHUSDT"),
        ("CandleUpdate", "BTCUSDT"),
        ("CandleClosed", "ETHUSDT"),
        ("CandleClosed", "BTCUSDT"),
    ]
    assert src.finished and got[-1].state == "finished"
    assert np.array_equal(src.times, candles_1h.open_time[:300])
