"""Regression tests for review findings on the live broker (each failed before its fix)."""

from __future__ import annotations

import pytest
from tradeconsole.core.domain import FillReason, Side
from tradeconsole.infra.binance.http.errors import ExchangeUnavailable

from tests.brokers.conftest import SYMBOL, LiveHarness, flat, make_live_broker, oid
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(60)

DAY = 24 * 3600 * 1000


def _position_risk_path(server: FuturesStandIn) -> str:
    return next(r.path for r in reversed(server.requests) if "positionRisk" in r.path)


# ------------------------------------------------------------------ 1: queued exits survive a failing event
def test_queued_exit_survives_a_rest_failure_while_a_stream_event_is_handled(server: FuturesStandIn) -> None:
    """reconcile() recorded an exit (closed on the web); a new position is opened; then an
    ACCOUNT_UPDATE arrives and the REST confirmation fails. The recorded exit must not be lost:
    the next call delivers it (and it is in the snapshot meanwhile)."""
    h = LiveHarness(server)
    b = h.broker
    h.feed(flat(0, 2000.0))
    assert h.enter(Side.LONG, flat(0, 2000.0), 0) is not None
    server.jump(2010.0)
    server.close_position_externally()
    findings = b.reconcile()
    assert [f.kind.value for f in findings][:1] == ["position_closed"]
    recorded = findings[0].fill
    assert recorded is not None and b.position is None
    assert h.enter(Side.SHORT, flat(1, 2010.0), 1) is not None
    path = _position_risk_path(server)
    for _ in range(b.max_retries + 1):
        server.http_error_next(path, method="GET")
    ev = {
        "e": "ACCOUNT_UPDATE",
        "E": server.now_ms(),
        "T": server.now_ms(),
        "a": {"m": "ORDER", "B": [], "P": [{"s": SYMBOL, "pa": "0", "ep": "0", "ps": "BOTH"}]},
    }
    with pytest.raises(ExchangeUnavailable):
        b.apply_stream_event(ev)
    assert [f for f, _ in b._queued] == [recorded]
    assert [q["fill"]["order_id"] for q in b.snapshot()["queued"]] == [recorded.order_id]
    out = b.apply_stream_event({"e": "ACCOUNT_UPDATE", "E": server.now_ms(), "T": server.now_ms(), "a": {}})
    assert [f for f, _ in out] == [recorded] and out[0][1] is not None
    assert b._queued == [] and b.position is not None  # the new short is untouched


# ------------------------------------------------------------------ 3: old balances are ignored
def test_an_account_update_older_than_the_last_balance_is_ignored(server: FuturesStandIn) -> None:
    b = make_live_broker(server)
    b.start()  # reads the wallet over REST: that balance is as of now
    fresh = b.cash
    t = server.now_ms()
    old = {
        "e": "ACCOUNT_UPDATE",
        "E": t - 5000,
        "T": t - 5000,
        "a": {"m": "ORDER", "B": [{"a": "USDT", "wb": "1234", "cw": "1234", "bc": "0"}], "P": []},
    }
    assert b.apply_stream_event(old) == []
    assert b.cash == fresh
    newer = dict(old, E=t + 10, T=t + 10, a={"m": "ORDER", "B": [{"a": "USDT", "wb": "9999", "cw": "9999"}]})
    b.apply_stream_event(newer)
    assert b.cash == 9999.0
    # an event older than the last *stream* balance is ignored too (out-of-order delivery)
    between = dict(old, E=t + 5, T=t + 5, a={"m": "ORDER", "B": [{"a": "USDT", "wb": "5555", "cw": "5555"}]})
    b.apply_stream_event(between)
    assert b.cash == 9999.0


# ------------------------------------------------------------------ 7: fromId paging runs
def test_more_than_a_page_of_trades_in_one_millisecond_is_read_by_from_id(server: FuturesStandIn) -> None:
    """2,500 trades share one millisecond (a page holds 1,000): startTime cannot move past them,
    so the rest is paged by fromId; every trade is read exactly once, in order."""
    b = make_live_broker(server)
    b.start()
    now = server.now_ms()
    t1 = now - 2 * DAY
    ids = [server.add_past_trade(side="BUY", qty=0.01, price=1999, time_ms=t1 - 1000 + i)["id"] for i in range(10)]
    ids += [server.add_past_trade(side="SELL", qty=0.001, price=2000, time_ms=t1)["id"] for _ in range(2500)]
    ids += [server.add_past_trade(side="BUY", qty=0.01, price=2001, time_ms=t1 + 5000 + i)["id"] for i in range(10)]
    got = b._trades_between(now - 3 * DAY, now)
    assert [t["id"] for t in got] == ids
    paged = [r for r in server.requests if r.path == "/fapi/v1/userTrades" and "fromId" in r.params]
    assert len(paged) >= 2
    assert all("startTime" not in r.params and "endTime" not in r.params for r in paged)


# ------------------------------------------------------------------ 4: protective orders are named by algoId
def _algo_gets(server: FuturesStandIn, since: int) -> list[dict[str, str]]:
    return [r.params for r in server.requests[since:] if r.method == "GET" and r.path == "/fapi/v1/algoOrder"]


def test_a_replaced_stop_is_queried_by_its_algo_id_also_after_a_restart(server: FuturesStandIn) -> None:
    """A stop that died is re-placed under the same clientAlgoId; Binance documents no rule for
    which of the two a query by clientAlgoId returns (the stand-in answers the oldest once none
    is open). The broker keeps the algoId of each placement (in the snapshot too) and asks by it,
    so the fired replacement is recorded as the stop exit it is."""
    h = LiveHarness(server)
    b = h.broker
    h.feed(flat(0, 2000.0))
    assert h.enter(Side.LONG, flat(0, 2000.0), 0, sl=0.02, tp=0.04) is not None  # stop 1960
    sl = oid(0, Side.LONG) + "sl"
    first = next(o for o in server.algo_orders if o["clientAlgoId"] == sl)
    assert b.snapshot()["algo_ids"][sl] == first["algoId"]
    server.expire_algo_externally(sl)
    h.feed(flat(1, 2000.0))  # the poll re-places it
    same = [o for o in server.algo_orders if o["clientAlgoId"] == sl]
    assert [o["algoStatus"] for o in same] == ["EXPIRED", "NEW"]
    assert b.snapshot()["algo_ids"][sl] == same[1]["algoId"] != first["algoId"]
    h2 = h.reborn()  # a restart: the snapshot carries the algoIds
    since = len(server.requests)
    server.walk(1950.0)  # the replacement fires and fills at 1960
    out = h2.broker.on_candle(flat(2, 1950.0))
    assert [(f.reason, f.price) for f, _ in out] == [(FillReason.STOP_LOSS, 1960.0)]
    gets = _algo_gets(server, since)
    assert gets and all("algoId" in g and "clientAlgoId" not in g for g in gets)
    assert str(same[1]["algoId"]) in {g["algoId"] for g in gets}


def test_standin_models_query_algo_order_by_either_id(server: FuturesStandIn) -> None:
    """Documented (USD-M "Query Algo Order"): either algoId or clientAlgoId must be sent; the
    clientAlgoId is unique among open orders only ("New Algo Order"): a second open order with
    it is refused, a dead one's id can be used again."""
    h = LiveHarness(server)
    b = h.broker
    h.feed(flat(0, 2000.0))
    h.enter(Side.LONG, flat(0, 2000.0), 0)
    sl = oid(0, Side.LONG) + "sl"
    client = b._client
    params = {
        "symbol": SYMBOL,
        "side": "SELL",
        "type": "STOP_MARKET",
        "algoType": "CONDITIONAL",
        "triggerPrice": "1900",
        "closePosition": "true",
        "clientAlgoId": sl,
    }
    with pytest.raises(Exception, match="-4116"):
        client.futures_create_algo_order(**params)
    with pytest.raises(Exception, match="-1102"):
        client.futures_get_algo_order()
    server.expire_algo_externally(sl)
    again = client.futures_create_algo_order(**params)
    dead = next(o for o in server.algo_orders if o["clientAlgoId"] == sl and o["algoStatus"] == "EXPIRED")
    assert client.futures_get_algo_order(algoId=dead["algoId"])["algoStatus"] == "EXPIRED"
    assert client.futures_get_algo_order(algoId=again["algoId"])["algoStatus"] == "NEW"
    assert client.futures_get_algo_order(clientAlgoId=sl)["algoId"] == again["algoId"]  # the open one


# ------------------------------------------------------------------ 5: the documented link to a triggered order
def test_a_stop_exit_is_traced_by_actual_order_id_not_by_client_id(server: FuturesStandIn) -> None:
    """The stop fired while only its ALGO_UPDATE (``ai``: the market order's id) reached us, and
    the algo order can no longer be queried (-2013). Its market order has a client id of its own
    (nothing documents that it inherits the clientAlgoId): the exit is still a stop loss, traced
    by the documented link ``ai``/``actualOrderId``."""
    h = LiveHarness(server)
    b = h.broker
    h.feed(flat(0, 2000.0))
    assert h.enter(Side.LONG, flat(0, 2000.0), 0, sl=0.02, tp=0.04) is not None
    sl = oid(0, Side.LONG) + "sl"
    n = len(server.user_events)
    server.walk(1950.0)
    trig = [
        e
        for e in server.user_events[n:]
        if e["e"] == "ALGO_UPDATE" and e["o"]["caid"] == sl and e["o"]["X"] == "TRIGGERED"
    ]
    assert trig and trig[0]["o"]["ai"]
    market = next(o for o in server.orders if str(o["orderId"]) == str(trig[0]["o"]["ai"]))
    assert market["clientOrderId"] != sl
    assert b.apply_stream_event(trig[0]) == []  # triggered: the fill follows
    for _ in range(2):  # the stop and the target: "Order does not exist."
        server.reject_next("/fapi/v1/algoOrder", -2013, "Order does not exist.", method="GET")
    findings = b.reconcile()
    assert findings[0].kind.value == "position_closed"
    assert findings[0].fill is not None and findings[0].fill.reason is FillReason.STOP_LOSS
    assert findings[0].fill.price == 1960.0


# ------------------------------------------------------------------ 2: a partial close is recorded
def test_a_partial_close_is_recorded_and_the_round_trips_add_up(server: FuturesStandIn) -> None:
    """Half the position is closed on the web (a reduce-only market order), then the rest: the
    first close is its own round trip (its price, fee and share of the entry fee), the position
    keeps the rest, protected, and the two round trips add up to the whole position's result."""
    h = LiveHarness(server)
    b = h.broker
    h.feed(flat(0, 2000.0))
    entry = h.enter(Side.LONG, flat(0, 2000.0), 0, sl=0.02, tp=0.04, stake=0.2)
    assert entry is not None and b.position is not None
    qty, entry_fee, stake = b.position.qty, b.position.entry_fee, b.snapshot()["entry_stake"]
    half = round(qty / 2, 3)
    server.charge_funding(0.001)  # paid on the whole position before the partial close
    funding = b._funding_paid(b.position.entry_time, server.now_ms() + 1)
    assert funding > 0
    server.jump(2010.0)
    n = len(server.user_events)
    b._client.futures_create_order(
        symbol=SYMBOL,
        side="SELL",
        type="MARKET",
        quantity=str(half),
        reduceOnly="true",
        newClientOrderId="web_partial_1",
    )
    upd = [e for e in server.user_events[n:] if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["X"] == "FILLED"]
    first_trade = server.trades[-1]
    out = b.apply_stream_event(upd[-1])
    assert len(out) == 1
    fill, trade = out[0]
    assert trade is not None and fill.reason is FillReason.FLATTEN and fill.order_id.endswith("px")
    assert fill.qty == pytest.approx(half) and fill.price == 2010.0
    assert fill.fee == pytest.approx(float(first_trade["commission"]))
    assert trade.qty == pytest.approx(half)
    assert trade.fees == pytest.approx(entry_fee * half / qty + fill.fee)
    assert trade.funding == pytest.approx(funding * half / qty)
    assert trade.pnl == pytest.approx(half * 10.0 - entry_fee * half / qty - fill.fee - trade.funding)
    assert b.position is not None and b.position.qty == pytest.approx(qty - half)
    assert b.position.entry_fee == pytest.approx(entry_fee * (qty - half) / qty)
    assert {o["clientAlgoId"][-2:] for o in server.open_algo_orders()} == {"sl", "tp"}  # the rest is protected
    assert b.apply_stream_event(upd[-1]) == []  # delivered again (reconnect): not recorded twice
    assert b.position.qty == pytest.approx(qty - half)
    # the rest is closed on the web too
    server.jump(2020.0)
    n = len(server.user_events)
    server.close_position_externally()
    last_trade = server.trades[-1]
    upd = [e for e in server.user_events[n:] if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["X"] == "FILLED"]
    out2 = b.apply_stream_event(upd[-1])
    assert len(out2) == 1 and b.position is None
    fill2, trade2 = out2[0]
    assert trade2 is not None and fill2.qty == pytest.approx(qty - half)
    total_fees = entry_fee + fill.fee + fill2.fee
    assert fill2.fee == pytest.approx(float(last_trade["commission"]))
    assert trade.fees + trade2.fees == pytest.approx(total_fees)
    assert trade.funding + trade2.funding == pytest.approx(funding)  # carried once, split by size
    assert trade.pnl + trade2.pnl == pytest.approx(half * 10.0 + (qty - half) * 20.0 - total_fees - funding)
    assert trade.stake + trade2.stake == pytest.approx(stake)
    assert b.fees_paid == pytest.approx(total_fees)


# ------------------------------------------------------------------ 6: one table-driven route check
@pytest.mark.parametrize(
    ("field", "bad", "route"),
    [
        ("futures_ws", "wss://fstream.binance.com/ws/", "/market/"),
        ("futures_user_ws", "wss://fstream.binance.com/ws/", "/private/"),
        ("futures_user_ws", "wss://fstream.binancefuture.com/market/", "/private/"),
    ],
)
def test_futures_ws_routes_are_checked_from_one_table(field: str, bad: str, route: str) -> None:
    from tradeconsole.infra.binance.http.endpoints import ENV_VARS, resolve_endpoints

    with pytest.raises(ValueError, match=rf"{field} .*retired or wrong route.*{route}"):
        resolve_endpoints(env={ENV_VARS[field]: bad})
    ok = bad.split("/", 3)
    good = f"{ok[0]}//{ok[2]}{route}"
    assert getattr(resolve_endpoints(env={ENV_VARS[field]: good}), field) == good
