"""ReplaySource: history through the MarketDataSource interface, deterministic, paced, pausable."""

from __future__ import annotations

import threading
import time

import pytest
from tradeconsole.backtest.data import load_candles
from tradeconsole.backtest.replay import ReplaySource, partial_candle, synthetic_updates
from tradeconsole.core.domain import Candle
from tradeconsole.core.feed import CandleClosed, CandleUpdate, FeedStatus

pytestmark = pytest.mark.timeout(30)


class Recorder:
    def __init__(self, on_event=None) -> None:
        self.events: list = []
        self.done = threading.Event()
        self.on_event = on_event

    def __call__(self, event) -> None:
        self.events.append(event)
        if self.on_event:
            self.on_event(event)
        if isinstance(event, FeedStatus) and event.state in ("finished", "stopped"):
            self.done.set()

    def closed(self) -> list[Candle]:
        return [e.candle for e in self.events if isinstance(e, CandleClosed)]

    def comparable(self) -> list:
        """Events with the statuses' wall-clock stamps left out."""
        return [(e.state, e.detail) if isinstance(e, FeedStatus) else e for e in self.events]


@pytest.fixture(scope="module")
def history(candles_5m):
    return candles_5m.take(slice(1000, 1300))


def _run(source: ReplaySource, rec: Recorder | None = None) -> Recorder:
    rec = rec or Recorder()
    source.start(rec)
    assert rec.done.wait(20), "replay did not end"
    assert source.join(5)
    return rec


def test_replay_delivers_history_with_synthetic_updates(history):
    rec = _run(ReplaySource(history, "ethusdt", "5m", updates_per_candle=4))
    assert rec.events[0].state == "connected" and rec.events[-1].state == "finished"
    assert rec.closed() == history.candles()
    body = rec.events[1:-1]
    assert len(body) == 5 * len(history)
    for i, candle in enumerate(history.candles()):
        updates, close = body[5 * i : 5 * i + 4], body[5 * i + 4]
        assert all(isinstance(u, CandleUpdate) and u.symbol == "ETHUSDT" and u.interval == "5m" for u in updates)
        assert isinstance(close, CandleClosed) and close.candle == candle and not close.backfill
        vols = [u.candle.volume for u in updates]
        assert vols == sorted(vols) and all(v <= candle.volume for v in vols)
        for u in updates:
            c = u.candle
            assert not c.closed and c.open_time == candle.open_time and c.open == candle.open
            assert candle.low <= c.low <= min(c.open, c.close) and max(c.open, c.close) <= c.high <= candle.high


def test_replay_is_deterministic(history):
    a = _run(ReplaySource(history, "ETHUSDT", "5m", updates_per_candle=3))
    b = _run(ReplaySource(history, "ETHUSDT", "5m", updates_per_candle=3))
    assert a.comparable() == b.comparable()


def test_partial_path_respects_the_candle():
    up = Candle(0, 10.0, 14.0, 8.0, 12.0, 100.0, 299_999)
    down = Candle(0, 10.0, 11.0, 5.0, 6.0, 50.0, 299_999)
    assert partial_candle(up, 0.0) == Candle(0, 10.0, 10.0, 10.0, 10.0, 0.0, 299_999, False)
    assert partial_candle(up, 1 / 3)[1:5] == (10.0, 10.0, 8.0, 8.0)  # rising candle visits the low first
    assert partial_candle(down, 1 / 3)[1:5] == (10.0, 11.0, 10.0, 11.0)  # falling one the high first
    assert partial_candle(up, 1.0) == up._replace(closed=False)
    ups = synthetic_updates(up, 5)
    assert [round(u.volume, 9) for u in ups] == [round(100 * k / 6, 9) for k in range(1, 6)]
    assert all(8.0 <= u.low <= u.high <= 14.0 for u in ups)


def test_speed_paces_on_an_absolute_schedule(history):
    clock = [1000.0]
    stamps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        clock[0] += seconds

    rec = Recorder(on_event=lambda e: stamps.append(clock[0]))
    source = ReplaySource(
        history.take(slice(0, 10)),
        "ETHUSDT",
        "5m",
        speed=60,
        updates_per_candle=4,
        clock=lambda: clock[0],
        sleep=fake_sleep,
    )
    _run(source, rec)
    # 5 m at 60x = 5 s per candle, 5 ticks per candle (4 updates + close) = 1 s per tick
    ticks = [t for e, t in zip(rec.events, stamps, strict=True) if not isinstance(e, FeedStatus)]
    assert ticks == pytest.approx([1000.0 + k for k in range(1, 51)])


def test_pause_and_resume(history):
    source = ReplaySource(history.take(slice(0, 20)), "ETHUSDT", "5m", updates_per_candle=2)
    paused_at: list[int] = []

    def pause_on_third_close(event) -> None:
        if isinstance(event, CandleClosed) and event.candle.open_time == int(history.open_time[2]):
            source.pause()
            paused_at.append(len(rec.events))

    rec = Recorder(on_event=pause_on_third_close)
    source.start(rec)
    deadline = time.monotonic() + 10
    while not paused_at and time.monotonic() < deadline:
        time.sleep(0.005)
    assert source.paused
    time.sleep(0.1)  # give a broken pause the chance to leak events
    assert len(rec.events) == paused_at[0] and source.position == 3
    source.resume()
    assert rec.done.wait(10)
    assert rec.closed() == history.take(slice(0, 20)).candles()
    assert rec.events[-1].state == "finished"


def test_stop_midway(history):
    gate = threading.Event()
    rec = Recorder(on_event=lambda e: gate.wait(5) if isinstance(e, CandleClosed) else None)
    source = ReplaySource(history, "ETHUSDT", "5m")
    source.start(rec)
    stopper = threading.Thread(target=source.stop)
    stopper.start()
    deadline = time.monotonic() + 10
    while not source._stop.is_set() and time.monotonic() < deadline:  # stop requested while the sink is busy
        time.sleep(0.001)
    gate.set()
    stopper.join(10)
    assert rec.done.wait(10) and source.join(5)
    assert rec.events[-1].state == "stopped" and not source.finished
    assert len(rec.closed()) < len(history)
    source.stop()  # idempotent


def test_warmup_is_delivered_as_backfill(history):
    rec = _run(ReplaySource(history.take(slice(0, 30)), "ETHUSDT", "5m", updates_per_candle=2, warmup=20))
    closed = [e for e in rec.events if isinstance(e, CandleClosed)]
    assert [e.backfill for e in closed] == [True] * 20 + [False] * 10
    assert sum(isinstance(e, CandleUpdate) for e in rec.events) == 2 * 10
    assert all(isinstance(e, CandleClosed) for e in rec.events[1:21])  # after the "connected" status


def test_from_path_and_validation(data_1h, tmp_path):
    arrays, _ = load_candles(data_1h, interval="1h")
    source = ReplaySource.from_path(data_1h, "ETHUSDT", "1h", updates_per_candle=0)
    rec = _run(source)
    assert rec.closed() == arrays.candles()
    with pytest.raises(ValueError):
        ReplaySource(arrays, "ETHUSDT", "1h", speed=0)
    with pytest.raises(ValueError):
        ReplaySource(arrays, "ETHUSDT", "7m")


def test_a_failing_sink_ends_the_replay_with_a_status(history):
    def boom(event) -> None:
        if isinstance(event, CandleClosed):
            raise RuntimeError("sink bug")

    rec = _run(ReplaySource(history, "ETHUSDT", "5m"), Recorder(on_event=boom))
    assert rec.events[-1].state == "stopped" and rec.events[-1].detail == "sink error"
