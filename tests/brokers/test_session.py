"""``StrategySession`` (the one code path of backtest, paper and live) drives the live Binance broker
exactly like the paper one: same fills from the same candles and signals, and the events it
publishes carry no credentials."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
from tradeconsole.core.domain import Candle, FillReason, Side
from tradeconsole.core.events import Event, FillEvent
from tradeconsole.core.indicators import IndicatorValues
from tradeconsole.core.session import StrategySession
from tradeconsole.core.strategies.base import Strategy, StrategyParams

from tests.brokers.conftest import API_KEY, API_SECRET, CASH, SYMBOL, Harness, LiveHarness, PaperHarness, candle
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(30)

NAN_IND = IndicatorValues(math.nan, math.nan, math.nan, math.nan, math.nan, 0, 0)


class Scripted(Strategy):
    """Signals on chosen candle indices (the session and brokers are under test, not a strategy)."""

    name: ClassVar[str] = "scripted"
    default_interval: ClassVar[str] = "5m"

    def __init__(self, signals: dict[int, Side]) -> None:
        super().__init__(StrategyParams(stop_loss_pct=0.02, take_profit_pct=0.04, stake_fraction=0.3))
        self.signals = signals
        self.i = -1

    def entry_signal(self, candle: Candle, ind: IndicatorValues) -> Side | None:
        self.i += 1
        return self.signals.get(self.i)


CANDLES = [
    candle(0, 2000, 2000, 2000, 2000),  # long signal
    candle(1, 2000, 2030, 1990, 2020),
    candle(2, 2020, 2095, 2010, 2090),  # target 2080; short signal on the exit candle
    candle(3, 2090, 2100, 2060, 2070),
    candle(4, 2070, 2140, 2065, 2135),  # stop 2131.80
    candle(5, 2135, 2140, 2130, 2138),
]
SIGNALS = {0: Side.LONG, 2: Side.SHORT}


def run(h: Harness) -> tuple[StrategySession, list[Event]]:
    events: list[Event] = []
    session = StrategySession(
        symbol=SYMBOL,
        interval="5m",
        strategy=Scripted(SIGNALS),
        broker=h.broker,
        run_id="r1",
        mode=h.kind,
        initial_cash=CASH,
        reenter_on_exit_candle=True,
        publish=events.append,
    )
    for c in CANDLES:
        h.move_market(c)
        session.on_closed_candle(c, NAN_IND)
    return session, events


def test_session_gives_the_same_fills_with_paper_and_live(server: FuturesStandIn) -> None:
    _, paper_events = run(PaperHarness())
    live = LiveHarness(server)
    session, live_events = run(live)
    paper_fills = [e.fill for e in paper_events if isinstance(e, FillEvent)]
    live_fills = [e.fill for e in live_events if isinstance(e, FillEvent)]
    assert (
        [f.reason for f in live_fills]
        == [f.reason for f in paper_fills]
        == [FillReason.ENTRY_LONG, FillReason.TAKE_PROFIT, FillReason.ENTRY_SHORT, FillReason.STOP_LOSS]
    )
    for p, lv in zip(paper_fills, live_fills, strict=True):
        assert lv.price == pytest.approx(p.price, abs=0.01) and lv.qty == pytest.approx(p.qty, rel=0.005)
        assert lv.order_id == p.order_id  # same signal-derived ids: journal keys line up
    # the session's flatten goes through the live broker too
    live.server.jump(2138)
    assert session.flatten(2138, CANDLES[-1].close_time) is None  # flat: nothing to close
    assert all(API_KEY not in repr(e) and API_SECRET not in repr(e) for e in live_events)
