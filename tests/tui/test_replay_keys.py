"""Driving a replay from the keyboard (issue 11, item 6): speed up/down, one candle at a time,
a pause that holds at once even at full speed, the market's date-time in the header, and log
lines on the market's clock."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from tradeconsole.tui.app import SPEEDS, TradeConsoleApp

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_app import assert_closed, quit_cleanly, session
from tests.tui.test_operator_controls import held_at

pytestmark = [pytest.mark.timeout(60)]

SIZE = (100, 30)


def closed(app) -> int:
    s = session(app)
    return s.closed_total if s is not None else 0


async def held(pilot, app, n: int) -> None:
    await wait_for(
        pilot,
        lambda: (
            app.runtime is not None
            and app.runtime.source.paused
            and app.runtime.engine.wait_idle(0.1)
            and closed(app) == n
        ),
        what=f"the replay to hold at {n}",
    )


@pytest.mark.asyncio
async def test_step_plays_exactly_one_candle_and_the_header_shows_market_time(replay_opts, jan_1h):
    app = TradeConsoleApp(replay_opts(), runtime_factory=held_at(300))
    async with app.run_test(size=SIZE) as pilot:
        await held(pilot, app, 300)
        for n in (301, 302, 303):
            await pilot.press("full_stop")
            await held(pilot, app, n)
        last = session(app).candles[-1]
        await pilot.pause(0.3)
        header = screen_text(app).splitlines()[0]
        stamp = datetime.fromtimestamp((last.close_time + 1) / 1000, tz=UTC).strftime("%m-%d %H:%M")
        assert stamp in header and "replay paused" in header, header
        assert last.open_time == app.runtime.replay_candles.candle(302).open_time
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


@pytest.mark.asyncio
async def test_speed_keys_walk_the_speed_steps(replay_opts):
    app = TradeConsoleApp(replay_opts(), runtime_factory=held_at(100))
    async with app.run_test(size=SIZE) as pilot:
        await held(pilot, app, 100)
        source = app.runtime.source
        assert source.speed is None
        await pilot.press("minus")
        assert source.speed == 10_000
        await pilot.pause(0.2)
        assert "×10,000" in screen_text(app).splitlines()[0]
        for _ in range(len(SPEEDS) + 2):
            await pilot.press("minus")
        assert source.speed == 1  # the slowest step holds
        await pilot.press("plus", "plus")
        assert source.speed == 5
        for _ in range(len(SPEEDS) + 2):
            await pilot.press("plus")
        assert source.speed is None
        await pilot.pause(0.2)
        assert " max" in screen_text(app).splitlines()[0]
        # log lines of a replay carry the replay's market time, not the wall clock
        note = [line for line in app.collector.log_since(0) if "replay speed" in line.text][-1]
        assert not note.wall and note.time_ms == session(app).candles[-1].close_time + 1
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


@pytest.mark.asyncio
async def test_pause_at_full_speed_holds_at_once(replay_opts, data_1h):
    app = TradeConsoleApp(replay_opts(replay=str(data_1h)), runtime_factory=held_at(300))
    async with app.run_test(size=SIZE) as pilot:
        await held(pilot, app, 300)
        await pilot.press("space")  # resume at max speed
        await wait_for(pilot, lambda: closed(app) > 1_500, what="the replay to run")
        await pilot.press("space")
        # the key has been handled (under load that can take a while at ~1,000 candles/s); from
        # here only what was already queued for the engine may still be processed
        at_press = app.runtime.engine.processed_closed
        assert app.runtime.source.paused
        assert app.runtime.engine.wait_idle(5)
        await wait_for(pilot, lambda: closed(app) == app.runtime.engine.processed_closed, what="delivery")
        after = closed(app)
        await asyncio.sleep(0.3)  # not time.sleep: a blocked loop could not deliver a moving replay
        assert closed(app) == after, "the replay moved while paused"
        # what was already queued when the key was handled: at most a few candles (the console's
        # replay runs at most REPLAY_MAX_BACKLOG = 16 inputs, ~3 candles, ahead of the engine)
        assert after - at_press <= 5, (at_press, after)
        assert after < len(app.runtime.replay_candles)
        await pilot.press("space")
        await wait_for(pilot, lambda: closed(app) > after, what="the replay to resume")
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


def test_source_speed_change_restarts_the_schedule_and_backlog_holds_the_source(candles_1h):
    """ReplaySource level: a new speed applies from the next tick on an absolute schedule; with
    ``backlog`` the source never runs more than ``max_backlog`` inputs ahead of its consumer."""
    from tradeconsole.backtest.replay import ReplaySource
    from tradeconsole.core.feed import CandleClosed

    clock = [0.0]
    stamps: list[float] = []
    source = ReplaySource(
        candles_1h.take(slice(0, 6)),
        "ETHUSDT",
        "1h",
        speed=3600,
        updates_per_candle=0,
        clock=lambda: clock[0],
        sleep=lambda s: clock.__setitem__(0, clock[0] + s),
    )

    def sink(ev) -> None:
        if isinstance(ev, CandleClosed):
            stamps.append(clock[0])
            if len(stamps) == 2:
                source.set_speed(7200)  # from the third candle on: half a second per candle

    source.start(sink)
    assert source.join(10)
    assert stamps == pytest.approx([1.0, 2.0, 2.5, 3.0, 3.5, 4.0])

    import queue
    import threading

    q: queue.Queue = queue.Queue()
    worst = [0]

    def feed(ev) -> None:  # the engine's feed: enqueue only
        q.put(ev)
        worst[0] = max(worst[0], q.qsize())

    done = threading.Event()

    def consumer() -> None:  # a slow engine
        while not done.is_set() or not q.empty():
            try:
                q.get(timeout=0.01)
            except queue.Empty:
                continue
            time.sleep(0.0005)

    t = threading.Thread(target=consumer, daemon=True)
    t.start()
    held = ReplaySource(candles_1h.take(slice(0, 200)), "ETHUSDT", "1h", backlog=q.qsize, max_backlog=4)
    held.start(feed)
    assert held.join(20)
    done.set()
    t.join(5)
    assert held.finished and worst[0] <= 6, worst  # max_backlog, + the one being put, + the final status
