"""Fixtures for the broker behaviour suite: the same scenarios drive the paper broker
(``SimulatedFuturesBroker``, realistic fill model) and the live ``BinanceFuturesBroker`` talking
through python-binance's real ``Client`` to the local futures stand-in on 127.0.0.1.

A harness hides the one difference that is not behaviour: how the market moves. For the paper
broker a candle *is* the market; for the live broker the harness walks the stand-in's price along
the candle (open, then the extreme adverse to the open position, then the other extreme, then the
close: the same worst-case order the simulation assumes) before calling ``on_candle``. Everything
the tests look at comes out of the broker's public surface.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, SimulatedFuturesBroker, client_order_id
from tradeconsole.core.config import BinanceEndpoints
from tradeconsole.core.domain import Candle, Fill, Side, Trade
from tradeconsole.infra.binance.execution.broker import BinanceFuturesBroker

from tests.servers.binance_futures import FuturesStandIn

# Distinctive so a leak anywhere is unmistakable.
API_KEY = "tcKEYvmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "tcSECRETNhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"

SYMBOL = "ETHUSDT"
T0 = 1_700_000_100_000  # a 5m boundary
IV = 300_000
LEVERAGE = 5
FEE = 0.0004
CASH = 10_000.0


def candle(i: int, o: float, h: float, low: float, c: float) -> Candle:
    return Candle(T0 + i * IV, o, h, low, c, 10.0, T0 + (i + 1) * IV - 1)


def flat(i: int, price: float) -> Candle:
    return candle(i, price, price, price, price)


def oid(i: int, side: Side, strategy: str = "basic") -> str:
    return client_order_id(strategy, SYMBOL, "5m", T0 + i * IV, side)


class Harness:
    """Drive a broker through candles; collect every (fill, trade) it reports."""

    kind = ""
    broker: Any

    def __init__(self) -> None:
        self.results: list[tuple[Fill, Trade | None]] = []

    def move_market(self, c: Candle) -> None:
        """Make the market trade through candle ``c`` (nothing to do for the simulation)."""

    def feed(self, c: Candle) -> list[tuple[Fill, Trade | None]]:
        self.move_market(c)
        res = self.broker.on_candle(c)
        self.results.extend(res)
        return res

    def enter(
        self, side: Side, c: Candle, i: int, sl: float = 0.02, tp: float = 0.04, stake: float = 0.1
    ) -> Fill | None:
        fill = self.broker.submit_entry(side, c, oid(i, side), sl, tp, stake)
        if fill is not None:
            self.results.append((fill, None))
        return fill

    def flatten(self, c: Candle) -> tuple[Fill, Trade] | None:
        res = self.broker.flatten(c.close, c.close_time)
        if res is not None:
            self.results.append(res)
        return res

    @property
    def fills(self) -> list[Fill]:
        return [f for f, _ in self.results]

    @property
    def trades(self) -> list[Trade]:
        return [t for _, t in self.results if t is not None]

    def reborn(self) -> Harness:
        """A fresh broker restored from this one's snapshot (a restart)."""
        raise NotImplementedError


class PaperHarness(Harness):
    kind = "paper"

    def __init__(self, cash: float = CASH) -> None:
        super().__init__()
        self.broker = SimulatedFuturesBroker(
            SYMBOL, BrokerSettings(initial_cash=cash, leverage=LEVERAGE, fee_rate=FEE), FILL_MODELS["realistic"]
        )

    def reborn(self) -> PaperHarness:
        import json

        h = PaperHarness()
        h.broker.restore(json.loads(json.dumps(self.broker.snapshot())))
        return h


class LiveHarness(Harness):
    kind = "live"

    def __init__(self, server: FuturesStandIn, **broker_kw: Any) -> None:
        super().__init__()
        self.server = server
        self.broker_kw = broker_kw
        self.broker = make_live_broker(server, **broker_kw)
        self.broker.start()

    def move_market(self, c: Candle) -> None:
        self.server.jump(c.open)
        p = self.broker.position
        first, second = (c.low, c.high) if p is None or p.side is Side.LONG else (c.high, c.low)
        self.server.walk(first, second, c.close)

    def reborn(self) -> LiveHarness:
        import json

        h = LiveHarness(self.server, **self.broker_kw)
        h.broker.restore(json.loads(json.dumps(self.broker.snapshot())))
        return h


class SleepRecorder:
    """Stands in for time.sleep: records the back-off the broker asked for, waits for nothing."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_live_broker(server: FuturesStandIn, **kw: Any) -> BinanceFuturesBroker:
    kw.setdefault("leverage", LEVERAGE)
    kw.setdefault("settings", BrokerSettings(initial_cash=CASH, leverage=LEVERAGE, fee_rate=FEE))
    kw.setdefault("request_timeout", 5.0)
    kw.setdefault("sleep", SleepRecorder())
    return BinanceFuturesBroker(
        kw.pop("api_key", API_KEY),
        kw.pop("api_secret", API_SECRET),
        SYMBOL,
        endpoints=BinanceEndpoints(futures_rest=server.base_url),
        **kw,
    )


@pytest.fixture
def server() -> Iterator[FuturesStandIn]:
    with FuturesStandIn(API_KEY, API_SECRET, balance=CASH, price=2000.0, taker_fee=FEE) as s:
        yield s


@pytest.fixture(params=["paper", "live"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "paper":
        yield PaperHarness()
    else:
        with FuturesStandIn(API_KEY, API_SECRET, balance=CASH, price=2000.0, taker_fee=FEE) as s:
            yield LiveHarness(s)


def posts(server: FuturesStandIn, path: str) -> list[Any]:
    """Requests the stand-in received for ``POST path`` (successful or not)."""
    return [r for r in server.requests if r.method == "POST" and r.path == path]
