"""What only the live Binance broker does: exchange set-up, filter rounding, protective orders on the
exchange, idempotent retries, clock drift, rate limits and error mapping. All through python-binance's
real client against the local stand-in."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from tradeconsole.core.config import DEFAULT_ENDPOINTS, TESTNET_ENDPOINTS
from tradeconsole.core.domain import FillReason, Side
from tradeconsole.infra.binance.execution.broker import BinanceFuturesBroker
from tradeconsole.infra.binance.http.errors import (
    AuthenticationFailed,
    BinanceError,
    ExchangeUnavailable,
    FilterRejected,
    InsufficientMargin,
    OrderRejected,
    ProtectionFailed,
    RateLimited,
    TimestampOutOfSync,
)

from tests.brokers.conftest import (
    API_KEY,
    API_SECRET,
    FEE,
    LEVERAGE,
    SYMBOL,
    LiveHarness,
    SleepRecorder,
    candle,
    flat,
    make_live_broker,
    oid,
    posts,
)
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(30)

ORDER = "/fapi/v1/order"
ALGO = "/fapi/v1/algoOrder"


# ------------------------------------------------------------------ construction and start
def test_testnet_flag_selects_testnet_endpoints() -> None:
    b = BinanceFuturesBroker(API_KEY, API_SECRET, SYMBOL, testnet=True)
    assert b.base_url == TESTNET_ENDPOINTS.futures_rest and b.testnet
    assert b._client.FUTURES_URL == TESTNET_ENDPOINTS.futures_rest
    live = BinanceFuturesBroker(API_KEY, API_SECRET, SYMBOL)
    assert live.base_url == DEFAULT_ENDPOINTS.futures_rest and not live.testnet


def test_constructor_refuses_missing_keys_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="API key"):
        BinanceFuturesBroker("", API_SECRET, SYMBOL)
    with pytest.raises(ValueError, match="leverage"):
        BinanceFuturesBroker(API_KEY, API_SECRET, SYMBOL, leverage=200)
    with pytest.raises(ValueError, match="working_type"):
        BinanceFuturesBroker(API_KEY, API_SECRET, SYMBOL, working_type="LAST")


def test_start_sets_leverage_isolated_margin_and_reads_filters(server: FuturesStandIn) -> None:
    b = make_live_broker(server)
    b.start()
    st = server.state[SYMBOL]
    assert (st.leverage, st.margin_type) == (LEVERAGE, "ISOLATED")
    assert b.rules is not None
    assert (b.rules.step, b.rules.tick, b.rules.min_qty, b.rules.min_notional) == (
        Decimal("0.001"),
        Decimal("0.01"),
        Decimal("0.001"),
        Decimal("20"),
    )
    assert b.cash == pytest.approx(10_000.0)
    # a second start (restart) meets -4046 "No need to change margin type" and carries on
    b2 = make_live_broker(server)
    b2.start()
    assert [r.code for r in server.requests if r.path == "/fapi/v1/marginType"] == [None, -4046]


def test_unknown_symbol_fails_clearly(server: FuturesStandIn) -> None:
    b = BinanceFuturesBroker(API_KEY, API_SECRET, "DOGEUSDT", endpoints=make_live_broker(server).endpoints)
    with pytest.raises(BinanceError, match="DOGEUSDT is not listed"):
        b.start()


# ------------------------------------------------------------------ rounding and filters
def test_quantity_rounds_down_to_step_and_triggers_to_tick(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    price = 2000.37
    server.jump(price)
    c = flat(0, price)
    stake = 0.137 * h.broker.cash
    fill = h.enter(Side.LONG, c, 0, sl=0.02, tp=0.03, stake=0.137)
    raw = stake * (1 - 0.002) / (price * (1 / LEVERAGE + FEE))
    want = math.floor(raw * 1000) / 1000
    assert raw != want  # the raw size really had more decimals
    [order] = [r for r in posts(server, ORDER) if r.status == 200]
    assert order.params["quantity"] == f"{want:.3f}".rstrip("0").rstrip(".")
    assert fill is not None and fill.qty == pytest.approx(want)
    levels = {o["orderType"]: o["triggerPrice"] for o in server.open_algo_orders()}
    # 2000.37 * 0.98 = 1960.3626 -> 1960.36 ; 2000.37 * 1.03 = 2060.3811 -> 2060.38
    assert levels == {"STOP_MARKET": "1960.36", "TAKE_PROFIT_MARKET": "2060.38"}
    p = h.broker.position
    assert p is not None and (p.stop_price, p.target_price) == (1960.36, 2060.38)


@pytest.mark.parametrize(
    ("fraction", "match"),
    [
        (0.00001, "below the minimum quantity"),
        (0.0003, "below the minimum notional"),
    ],
)
def test_entry_below_minimums_is_rejected_before_sending(server: FuturesStandIn, fraction: float, match: str) -> None:
    h = LiveHarness(server)
    with pytest.raises(FilterRejected, match=match):
        h.enter(Side.LONG, flat(0, 2000), 0, stake=fraction)
    assert posts(server, ORDER) == []
    assert h.broker.is_flat


@pytest.mark.parametrize(
    ("code", "msg", "words"),
    [
        (-1111, "Precision is over the maximum defined for this asset.", "precision"),
        (-4164, "Order's notional must be no smaller than 20 (unless you choose reduce only).", "minimum notional"),
        (-1013, "Filter failure: LOT_SIZE", "filter"),
    ],
)
def test_exchange_filter_rejects_surface_with_code_and_meaning(
    server: FuturesStandIn, code: int, msg: str, words: str
) -> None:
    h = LiveHarness(server)
    server.reject_next(ORDER, code, msg)
    with pytest.raises(FilterRejected) as info:
        h.enter(Side.LONG, flat(0, 2000), 0)
    err = info.value
    assert err.code == code and str(code) in str(err) and words in str(err).lower()
    assert h.broker.is_flat and server.position_amt() == 0 and server.open_algo_orders() == []


def test_insufficient_margin_is_a_clear_error(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    server.wallet = Decimal(50)  # the money went elsewhere since the broker last looked
    with pytest.raises(InsufficientMargin) as info:
        h.enter(Side.LONG, flat(0, 2000), 0, stake=1.0)
    assert info.value.code == -2019 and "insufficient margin" in str(info.value).lower()
    assert h.broker.is_flat and server.position_amt() == 0


# ------------------------------------------------------------------ protection
@pytest.mark.parametrize("working_type", ["MARK_PRICE", "CONTRACT_PRICE"])
def test_protective_orders_are_placed_on_the_exchange_right_after_entry(
    server: FuturesStandIn, working_type: str
) -> None:
    h = LiveHarness(server, working_type=working_type)
    fill = h.enter(Side.SHORT, flat(0, 2000), 0, sl=0.02, tp=0.04)
    assert fill is not None
    entry_id = oid(0, Side.SHORT)
    algos = sorted(server.open_algo_orders(), key=lambda o: o["clientAlgoId"])
    assert [(o["clientAlgoId"], o["orderType"], o["side"], o["triggerPrice"]) for o in algos] == [
        (entry_id + "sl", "STOP_MARKET", "BUY", "2040"),
        (entry_id + "tp", "TAKE_PROFIT_MARKET", "BUY", "1920"),
    ]
    assert all(o["closePosition"] is True and o["workingType"] == working_type for o in algos)
    paths = [r.path for r in server.requests if r.method == "POST" and r.path in (ORDER, ALGO)]
    assert paths == [ORDER, ALGO, ALGO]  # entry first, then both protective orders


def test_sibling_is_canceled_after_the_stop_fills(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.feed(flat(0, 2000))
    h.enter(Side.LONG, flat(0, 2000), 0)
    h.feed(candle(1, 2000, 2005, 1950, 1955))
    assert h.fills[-1].reason is FillReason.STOP_LOSS
    tp = [o for o in server.algo_orders if o["clientAlgoId"] == oid(0, Side.LONG) + "tp"]
    assert [o["algoStatus"] for o in tp] == ["CANCELED"]
    assert server.open_algo_orders() == []


def test_failed_protection_flattens_immediately_and_alerts(server: FuturesStandIn) -> None:
    alerts: list[str] = []
    h = LiveHarness(server, on_alert=alerts.append)
    h.feed(flat(0, 2000))
    server.reject_next(ALGO, -2021, "Order would immediately trigger.")
    fill = h.enter(Side.LONG, flat(0, 2000), 0)
    assert fill is not None and fill.reason is FillReason.ENTRY_LONG
    assert server.position_amt() == 0 and server.open_algo_orders() == []
    assert h.broker.is_flat
    assert alerts and "could not be placed" in alerts[0] and "-2021" in alerts[0]
    closing = [r for r in posts(server, ORDER) if r.params.get("reduceOnly") == "true"]
    assert len(closing) == 1
    # the forced exit reaches the session through the next on_candle, once
    [(exit_fill, trade)] = h.feed(flat(1, 2000))
    assert exit_fill.reason is FillReason.FLATTEN and trade is not None
    assert h.feed(flat(2, 2000)) == []


def test_unprotected_and_unclosable_position_raises_protection_failed(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    server.reject_next(ALGO, -1111, "Precision is over the maximum defined for this asset.")
    server.http_error_next(ORDER, 503, skip=1)  # the entry goes through; the emergency close never
    for _ in range(2):  # does (every attempt verified absent, then re-sent)
        server.http_error_next(ORDER, 503)
    with pytest.raises(ProtectionFailed, match="UNPROTECTED") as info:
        h.enter(Side.LONG, flat(0, 2000), 0)
    assert info.value.fill is not None  # type: ignore[attr-defined]
    assert server.position_amt() > 0 and h.broker.position is not None
    # once the exchange is reachable, reconcile re-places the protection
    findings = h.broker.reconcile()
    assert [f.kind.value for f in findings] == ["protection_missing"]
    assert len(server.open_algo_orders()) == 2


def test_on_candle_replaces_a_protective_order_that_disappeared(server: FuturesStandIn) -> None:
    alerts: list[str] = []
    h = LiveHarness(server, on_alert=alerts.append)
    h.enter(Side.LONG, flat(0, 2000), 0)
    server.cancel_algo_externally(oid(0, Side.LONG) + "sl")
    assert h.feed(flat(1, 2000)) == []
    assert sorted(o["clientAlgoId"][-2:] for o in server.open_algo_orders()) == ["sl", "tp"]
    assert any("disappeared" in a for a in alerts)


def test_flatten_is_reduce_only_and_cancels_everything(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.enter(Side.SHORT, flat(0, 2000), 0)
    res = h.flatten(flat(0, 2000))
    assert res is not None and res[0].reason is FillReason.FLATTEN
    last = posts(server, ORDER)[-1]
    assert last.params["reduceOnly"] == "true" and last.params["side"] == "BUY"
    assert last.params["newClientOrderId"] == oid(0, Side.SHORT) + "fx"
    assert server.open_algo_orders() == [] and server.position_amt() == 0


def test_flatten_after_the_stop_already_fired_reports_the_stop(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.enter(Side.LONG, flat(0, 2000), 0)
    server.walk(1950)  # the stop fires before the console notices
    res = h.flatten(flat(1, 1950))
    assert res is not None
    fill, trade = res
    assert fill.reason is FillReason.STOP_LOSS and fill.price == 1960.0 and trade.exit_reason is FillReason.STOP_LOSS
    assert [r for r in posts(server, ORDER) if r.params.get("reduceOnly") == "true"] == []


# ------------------------------------------------------------------ idempotency
def test_timeout_after_execution_never_doubles_the_entry(server: FuturesStandIn) -> None:
    h = LiveHarness(server, request_timeout=0.4)
    server.delay_next(ORDER, 1.5)  # executes, then answers too late
    fill = h.enter(Side.LONG, flat(0, 2000), 0)
    assert fill is not None and fill.reason is FillReason.ENTRY_LONG
    assert len(server.orders_with_client_id(oid(0, Side.LONG))) == 1
    assert len(posts(server, ORDER)) == 1
    assert len(server.open_algo_orders()) == 2


def test_5xx_after_execution_never_doubles_the_entry(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    server.http_error_next(ORDER, 503, after_execute=True)
    fill = h.enter(Side.SHORT, flat(0, 2000), 0)
    assert fill is not None
    assert len(server.orders_with_client_id(oid(0, Side.SHORT))) == 1 and len(posts(server, ORDER)) == 1


def test_5xx_before_execution_is_sent_again_once(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    server.http_error_next(ORDER, 502, code=None)  # plain-text gateway error, nothing executed
    fill = h.enter(Side.LONG, flat(0, 2000), 0)
    assert fill is not None
    assert [r.status for r in posts(server, ORDER)] == [502, 200]
    assert len(server.orders_with_client_id(oid(0, Side.LONG))) == 1


def test_timeout_on_a_protective_order_does_not_double_it(server: FuturesStandIn) -> None:
    h = LiveHarness(server, request_timeout=0.4)
    server.delay_next(ALGO, 1.5)
    h.enter(Side.LONG, flat(0, 2000), 0)
    assert len(posts(server, ALGO)) == 2  # stop (timed out, found) + target
    assert sorted(o["clientAlgoId"][-2:] for o in server.open_algo_orders()) == ["sl", "tp"]


def test_outcome_unknown_and_lookup_impossible_is_not_resent_blind(server: FuturesStandIn) -> None:
    h = LiveHarness(server, max_retries=0)
    server.http_error_next(ORDER, 503)
    server.http_error_next(ORDER, 503, method="GET", skip=1)  # the pre-send lookup answers, the next fails
    with pytest.raises(ExchangeUnavailable):
        h.enter(Side.LONG, flat(0, 2000), 0)
    assert len(posts(server, ORDER)) == 1


def test_restart_with_the_same_signal_adopts_the_existing_entry(server: FuturesStandIn) -> None:
    first = LiveHarness(server)
    f1 = first.enter(Side.LONG, flat(0, 2000), 0)
    # the console restarts without its journal and sees the same signal again
    second = LiveHarness(server)
    f2 = second.enter(Side.LONG, flat(0, 2000), 0)
    assert f1 is not None and f2 is not None
    assert (f2.price, f2.qty, f2.order_id) == (f1.price, f1.qty, f1.order_id)
    assert len(posts(server, ORDER)) == 1
    assert len(posts(server, ALGO)) == 2 and len(server.open_algo_orders()) == 2
    assert second.broker.position == first.broker.position


def test_duplicate_id_reject_adopts_the_order_that_exists(server: FuturesStandIn) -> None:
    first = LiveHarness(server)
    f1 = first.enter(Side.LONG, flat(0, 2000), 0)
    second = LiveHarness(server)
    server.reject_next(ORDER, -2013, "Order does not exist.", method="GET")  # lagging lookup
    server.reject_next(ORDER, -4116, "ClientOrderId is duplicated.")
    f2 = second.enter(Side.LONG, flat(0, 2000), 0)
    assert f2 is not None and f1 is not None and f2.qty == f1.qty
    assert len(server.orders_with_client_id(oid(0, Side.LONG))) == 1


def test_duplicate_id_reject_without_an_order_is_an_error(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    server.reject_next(ORDER, -4116, "ClientOrderId is duplicated.")
    with pytest.raises(OrderRejected, match="-4116"):
        h.enter(Side.LONG, flat(0, 2000), 0)
    assert server.position_amt() == 0


def test_an_executed_entry_whose_position_is_gone_is_not_repeated(server: FuturesStandIn) -> None:
    first = LiveHarness(server)
    first.enter(Side.LONG, flat(0, 2000), 0)
    server.walk(2100)  # target hit while nobody watched
    second = LiveHarness(server)
    assert second.enter(Side.LONG, flat(0, 2000), 0) is None
    assert second.broker.is_flat and len(posts(server, ORDER)) == 1
    assert any("already closed" in a for a in second.broker.alerts)


# ------------------------------------------------------------------ clock, limits, outages
def test_clock_drift_is_fixed_by_syncing_server_time(server: FuturesStandIn) -> None:
    server.clock_skew_ms = 30_000  # exchange clock 30 s ahead of ours
    h = LiveHarness(server)
    assert h.enter(Side.LONG, flat(0, 2000), 0) is not None
    server.clock_skew_ms = -40_000  # and now 40 s behind: our timestamps are "ahead"
    h.feed(flat(1, 2000))
    codes = [r.code for r in server.requests]
    assert -1021 in codes
    assert server.requests[-1].status == 200
    assert [r.path for r in server.requests].count("/fapi/v1/time") >= 2


def test_persistent_timestamp_errors_raise_a_clear_error(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    server.reject_next(
        "/fapi/v3/balance", -1021, "Timestamp for this request is outside of the recvWindow.", method="GET"
    )
    server.reject_next(
        "/fapi/v3/balance", -1021, "Timestamp for this request is outside of the recvWindow.", method="GET"
    )
    with pytest.raises(TimestampOutOfSync, match="clock"):
        h.feed(flat(0, 2000))


def test_rate_limit_waits_retry_after_then_retries(server: FuturesStandIn) -> None:
    sleeper = SleepRecorder()
    h = LiveHarness(server, sleep=sleeper)
    h.enter(Side.LONG, flat(0, 2000), 0)
    server.rate_limit_next("/fapi/v1/openAlgoOrders", retry_after=2)
    assert h.feed(flat(1, 2000)) == []
    assert sleeper.calls == [2.0]
    assert [r.status for r in server.requests if r.path == "/fapi/v1/openAlgoOrders"][-2:] == [429, 200]


def test_long_rate_limit_and_ip_ban_raise(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    server.rate_limit_next("/fapi/v3/balance", retry_after=120)
    with pytest.raises(RateLimited) as info:
        h.feed(flat(0, 2000))
    assert info.value.retry_after == 120 and "rate limit" in str(info.value)
    server.rate_limit_next("/fapi/v3/balance", status=418, retry_after=1)
    with pytest.raises(RateLimited) as info:
        h.feed(flat(1, 2000))
    assert info.value.http_status == 418 and "banned" in str(info.value)


def test_reads_are_retried_after_5xx(server: FuturesStandIn) -> None:
    sleeper = SleepRecorder()
    h = LiveHarness(server, sleep=sleeper)
    server.http_error_next("/fapi/v3/balance", 503, method="GET")
    server.http_error_next("/fapi/v3/balance", 500, method="GET", code=None)
    assert h.feed(flat(0, 2000)) == []
    assert len(sleeper.calls) == 2
    server.http_error_next("/fapi/v3/balance", 503, method="GET")
    server.http_error_next("/fapi/v3/balance", 503, method="GET")
    server.http_error_next("/fapi/v3/balance", 503, method="GET")
    with pytest.raises(ExchangeUnavailable):
        h.feed(flat(1, 2000))


def test_wrong_secret_is_an_authentication_error(server: FuturesStandIn) -> None:
    b = make_live_broker(server, api_secret="not-the-secret")
    with pytest.raises(AuthenticationFailed, match="-1022"):
        b.start()
    b2 = make_live_broker(server, api_key="not-the-key")
    with pytest.raises(AuthenticationFailed, match="-2015"):
        b2.start()


# ------------------------------------------------------------------ failures after an exit
def test_an_exit_is_not_lost_when_a_later_request_fails(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.enter(Side.LONG, flat(0, 2000), 0)
    server.walk(2100)  # target fills
    for i in range(3):  # ...and the wallet refresh after it (not the one inside the exit) keeps failing
        server.http_error_next("/fapi/v3/balance", 503, method="GET", skip=1 if i == 0 else 0)
    with pytest.raises(ExchangeUnavailable):
        h.broker.on_candle(flat(1, 2100))
    [(fill, trade)] = h.broker.on_candle(flat(2, 2100))
    assert fill.reason is FillReason.TAKE_PROFIT and trade is not None
    assert h.broker.on_candle(flat(3, 2100)) == []


def test_a_sibling_left_open_is_canceled_before_the_next_entry(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.feed(flat(0, 2000))
    h.enter(Side.LONG, flat(0, 2000), 0)
    for _ in range(3):  # the stop fills but canceling its sibling target fails
        server.http_error_next(ALGO, 503, method="DELETE")
    h.feed(candle(1, 2000, 2000, 1950, 1955))
    assert h.fills[-1].reason is FillReason.STOP_LOSS
    old_tp = oid(0, Side.LONG) + "tp"
    assert [o["clientAlgoId"] for o in server.open_algo_orders()] == [old_tp]
    h.enter(Side.LONG, flat(1, 1955), 1, sl=0.05, tp=0.10)
    assert sorted(o["clientAlgoId"] for o in server.open_algo_orders()) == [
        oid(1, Side.LONG) + "sl",
        oid(1, Side.LONG) + "tp",
    ]
    h.feed(candle(2, 1955, 2090, 1950, 2085))  # through the old 2080 target: must not close the new position
    assert h.broker.position is not None and server.position_amt() > 0


def test_funding_paid_during_the_position_is_in_the_round_trip(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    cash0 = h.broker.cash
    h.feed(flat(0, 2000))
    fill = h.enter(Side.LONG, flat(0, 2000), 0)
    assert fill is not None
    paid = -server.charge_funding(0.0001) - server.charge_funding(0.0002)  # a long pays positive rates
    assert paid == pytest.approx(fill.qty * 2000 * 0.0003)
    h.feed(candle(1, 2000, 2090, 1995, 2085))
    [trade] = h.trades
    assert trade.funding == pytest.approx(paid)
    assert trade.pnl == pytest.approx(fill.qty * 80 - trade.fees - paid)
    assert h.broker.cash - cash0 == pytest.approx(trade.pnl, abs=1e-6)
    assert h.broker.funding_paid == pytest.approx(paid)
