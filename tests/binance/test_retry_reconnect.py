"""The Binance adapter's one retry policy, one error map and one reconnect loop.

The kline client and the live broker retry through ``tradeconsole.infra.retry`` and type every
python-binance/requests failure through ``errors.error_from_exception``; both websocket streams
run ``reconnect.ReconnectLoop``. These tests pin what the shared pieces promise: the back-off
grows and starts over after a healthy connection, a scheduled reconnect does not wait, a stop ends
every wait at once, and the error map gives the same types to both clients.
"""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
import requests
from binance.exceptions import BinanceAPIException, BinanceRequestException
from tradeconsole.infra.binance.http.endpoints import make_client
from tradeconsole.infra.binance.http.errors import (
    BinanceError,
    ExchangeUnavailable,
    RateLimited,
    RestError,
    error_from_exception,
)
from tradeconsole.infra.binance.http.rest import KlineRestClient
from tradeconsole.infra.binance.market.download import parse_date
from tradeconsole.infra.binance.reconnect import ReconnectLoop, SessionOutcome
from tradeconsole.infra.retry import Backoff, RetryPolicy, Stopped

from tests.servers.binance_market import BinanceMarketServer

pytestmark = pytest.mark.timeout(30)

SECRET = "tcSECRETdoNotLeakMe0123456789"


def _api_error(status: int, body: str, headers: dict[str, str] | None = None) -> BinanceAPIException:
    response = SimpleNamespace(text=body, headers=headers or {}, request=None)
    return BinanceAPIException(response, status, body)


# ------------------------------------------------------------------ the error map
def test_one_error_map_for_every_binance_failure() -> None:
    limited = error_from_exception(
        _api_error(429, '{"code": -1003, "msg": "Too many requests."}', {"Retry-After": "3"}), "reading klines"
    )
    assert isinstance(limited, RateLimited) and limited.retry_after == 3.0 and limited.http_status == 429
    down = error_from_exception(_api_error(503, '{"code": -1001, "msg": "Internal error."}'), "reading klines")
    assert isinstance(down, ExchangeUnavailable) and down.code == -1001
    bad = error_from_exception(_api_error(400, '{"code": -1121, "msg": "Invalid symbol."}'), "reading klines")
    assert type(bad) is BinanceError and "Invalid symbol" in str(bad) and "reading klines" in str(bad)
    assert RestError is BinanceError  # the market-data client raises the same hierarchy as the broker
    timeout = error_from_exception(requests.exceptions.ReadTimeout("slow"), "placing entry tc1")
    assert isinstance(timeout, ExchangeUnavailable) and "outcome unknown" in str(timeout)
    unreachable = error_from_exception(BinanceRequestException("boom"), "reading the position")
    assert isinstance(unreachable, ExchangeUnavailable)
    assert error_from_exception(ValueError("a bug"), "anything") is None  # not ours to type: propagates
    echoed = error_from_exception(
        _api_error(400, f'{{"code": -2015, "msg": "key {SECRET} refused"}}'), "reading the wallet", (SECRET,)
    )
    assert echoed is not None and SECRET not in str(echoed) and "***" in str(echoed)


# ------------------------------------------------------------------ the retry policy
def test_an_injected_sleep_still_honours_the_stop() -> None:
    slept: list[float] = []
    stop = threading.Event()
    b = Backoff("x", RetryPolicy(initial_s=1.0, max_s=1.0, jitter=0.0), stop=stop, sleep=slept.append)
    assert b.wait(b.failed("first")) and slept == [1.0]
    stop.set()
    assert not b.wait(b.failed("second")) and slept == [1.0]  # stopped: not even asked to sleep


@pytest.fixture
def server():
    with BinanceMarketServer(start_time_ms=parse_date("2022-10-03T10:00")) as s:
        yield s


def test_the_kline_client_stops_instead_of_backing_off(server) -> None:
    slept: list[float] = []
    stop = threading.Event()
    rest = KlineRestClient(make_client(server.endpoints()), "spot", sleep=slept.append, stop=stop, seed=1)
    server.fail_rest(503, count=1)
    assert len(rest.klines_page("ETHUSDT", "5m", parse_date("2022-09-01"), limit=5)) == 5
    assert len(slept) == 1 and rest.stats.retries == 1  # backed off once, by the shared policy
    server.fail_rest(503, count=5)
    stop.set()
    with pytest.raises(Stopped):
        rest.klines_page("ETHUSDT", "5m", parse_date("2022-09-01"), limit=5)
    assert len(slept) == 1 and rest.stats.retries == 1  # no wait and no retry once stopped


def test_a_retry_after_beyond_the_policy_raises_at_once(server) -> None:
    slept: list[float] = []
    policy = RetryPolicy(initial_s=0.01, max_s=0.02, max_retry_after_s=60.0, max_attempts=4)
    rest = KlineRestClient(make_client(server.endpoints()), "spot", sleep=slept.append, retry=policy, seed=1)
    server.fail_rest(429, count=1, retry_after=61)
    with pytest.raises(RateLimited) as info:
        rest.klines_page("ETHUSDT", "5m", parse_date("2022-09-01"), limit=5)
    assert info.value.retry_after == 61 and slept == [] and rest.stats.requests == 1


def test_a_kline_policy_must_end() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        KlineRestClient(SimpleNamespace(), "spot", retry=RetryPolicy())


# ------------------------------------------------------------------ the reconnect loop
def _run_loop(outcomes: list[SessionOutcome], policy: RetryPolicy) -> tuple[list[float], int]:
    stop = threading.Event()
    delays: list[float] = []
    sessions = 0

    async def session() -> SessionOutcome:
        nonlocal sessions
        sessions += 1
        if sessions > len(outcomes):
            stop.set()
            return SessionOutcome(False, False, "stopping")
        return outcomes[sessions - 1]

    loop = ReconnectLoop("test", stop, policy, on_reconnect=lambda o, d: delays.append(d))
    asyncio.run(loop.run(session))
    return delays, sessions


def test_reconnect_back_off_grows_starts_over_after_a_healthy_session_and_skips_scheduled_ones() -> None:
    bad, good, planned = (
        SessionOutcome(False, False, "connect failed"),
        SessionOutcome(True, False, "closed"),
        SessionOutcome(True, True, "24 h renewal"),
    )
    delays, sessions = _run_loop(
        [bad, bad, bad, good, planned, bad, bad], RetryPolicy(initial_s=0.01, max_s=0.03, jitter=0.0)
    )
    assert sessions == 8  # ended by the stop, not by giving up
    # capped at max_s; a healthy session starts over; a scheduled one reconnects at once and
    # does not count as a failure (the next failure waits the initial delay)
    assert delays == pytest.approx([0.01, 0.02, 0.03, 0.01, 0.0, 0.01, 0.02])


def test_a_stop_ends_the_reconnect_wait_at_once() -> None:
    stop = threading.Event()

    async def session() -> SessionOutcome:
        threading.Timer(0.1, stop.set).start()
        return SessionOutcome(False, False, "refused")

    loop = ReconnectLoop("test", stop, RetryPolicy(initial_s=30.0, max_s=30.0))
    t0 = time.monotonic()
    asyncio.run(loop.run(session))
    assert time.monotonic() - t0 < 2.0  # not the 30 s back-off


def test_a_reconnect_loop_never_gives_up() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ReconnectLoop("test", threading.Event(), RetryPolicy(max_attempts=3))
