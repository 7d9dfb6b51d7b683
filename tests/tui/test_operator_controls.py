"""Operator controls in the console, pressed as a user would (issue 11, item 1).

Stop keeps managing an open position (its stop fires at the backtest's price), the kill switch
flattens and pauses, flatten with nothing open says so, and quitting with a position open asks
whether to leave it protected or flatten it.
"""

from __future__ import annotations

import pytest
from tradeconsole.backtest.data import load_candles
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.domain import FillReason
from tradeconsole.core.strategies import make_strategy
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.runtime import Runtime
from tradeconsole.tui.screens.dashboard import DashboardScreen
from tradeconsole.tui.screens.dialogs import ConfirmDialog, QuitDialog

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_app import KEY, assert_closed, finished, quit_cleanly, session, start

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

SIZE = (100, 30)


def held_at(index: int):
    """A runtime factory whose replay pauses before candle ``index`` (as the step key would)."""

    def factory(opts, confirm, subscribers):
        rt = Runtime(opts, confirm=confirm, extra_subscribers=subscribers)
        rt.source.run_to(index)
        return rt

    return factory


async def test_stop_with_an_open_position_still_fills_the_stop_at_the_backtest_price(replay_opts, jan_1h):
    candles, _ = load_candles(jan_1h, interval="1h")
    bt = run_backtest(candles, make_strategy("engulfing"), interval="1h", fill_model="realistic")
    trade = bt.trades[0]
    assert trade.exit_reason is FillReason.STOP_LOSS  # January's first round trip ends on its stop
    entry_index = int((trade.entry_time - int(candles.open_time[0])) // 3_600_000)
    app = TradeConsoleApp(replay_opts(), runtime_factory=held_at(entry_index + 1))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(
            pilot,
            lambda: (
                app.runtime is not None
                and app.runtime.source.paused
                and app.runtime.engine.wait_idle(0.1)
                and session(app) is not None
                and session(app).position is not None
            ),
            what="the replay to hold with a long open",
        )
        assert session(app).position.entry_time == trade.entry_time
        await pilot.press("s")
        await wait_for(pilot, lambda: app.runtime.engine.trading is False, what="StopTrading")
        await pilot.pause(0.3)
        assert "■ stopped" in screen_text(app)
        await pilot.press("space")  # the replay runs on, through the stop
        await wait_for(pilot, lambda: finished(app), what="the replay to finish")
        assert app.runtime.engine.wait_idle(10)
        await pilot.pause(0.3)
        fills = session(app).fills
        exits = [f for f in fills if f.reason == "stop_loss"]
        assert len(exits) == 1 and exits[0].price == trade.exit_price and exits[0].time == trade.exit_time
        assert fills[-1] == exits[0], "nothing was entered after Stop"
        assert session(app).position is None
        assert session(app).mark == candles.candles()[-1].close  # the mark followed the market to the end
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


async def test_kill_switch_flattens_and_pauses_entries(replay_opts):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        assert session(app).position is not None
        engine = app.runtime.engine
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmDialog)
        assert "PAUSE all new entries" in screen_text(app) and "SHORT" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: session(app).position is None, what="the kill switch to flatten")
        assert engine.wait_idle(5) and engine.sessions[KEY].entries_paused
        assert session(app).fills[-1].reason == "flatten"
        await pilot.pause(0.3)
        assert "entries paused" in screen_text(app).splitlines()[0]

        # flat now: flatten has nothing to close and says so instead of asking
        await pilot.press("f")
        await pilot.pause(0.2)
        assert isinstance(app.screen, DashboardScreen)
        assert any("Nothing to close" in n.message for n in app._notifications)
        assert any(line.text == "flatten: nothing to close" for line in app.collector.log_since(0))
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


async def test_quit_with_an_open_position_asks_leave_or_flatten(replay_opts, tmp_path):
    journal = tmp_path / "j.sqlite"
    app = TradeConsoleApp(replay_opts(journal=str(journal)))
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        assert session(app).position is not None
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitDialog), what="the quit question")
        text = screen_text(app)
        assert "leave it protected" in text and "flatten" in text and "restores it" in text
        await pilot.press("escape")  # stay
        await pilot.pause(0.2)
        assert app.is_running and isinstance(app.screen, DashboardScreen) and app.runtime is not None
        rt = app.runtime
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitDialog), what="the quit question again")
        await pilot.press("f")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    assert_closed(rt)
    assert rt.engine.sessions[KEY].broker.position is None
    assert rt.engine.sessions[KEY].broker.fills[-1].reason is FillReason.FLATTEN


async def test_quit_leaving_the_position_keeps_it_for_the_next_start(replay_opts, tmp_path):
    journal = tmp_path / "j.sqlite"
    app = TradeConsoleApp(replay_opts(journal=str(journal)))
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        held = session(app).position
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitDialog), what="the quit question")
        rt = app.runtime
        await pilot.press("l")
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    assert_closed(rt)
    again = Runtime(replay_opts(journal=str(journal)))
    try:
        restored = again.engine.sessions[KEY].broker.position
        assert restored is not None and restored.entry_time == held.entry_time
    finally:
        again.journal.close()


async def test_quit_with_an_unreachable_kafka_is_quick_and_keys_during_shutdown_are_harmless(
    replay_opts, tmp_path, monkeypatch
):
    """Kafka at a port nothing listens on: the sink cannot deliver, quitting must not wait for it
    (the journal keeps every event; the next start resends). Keys pressed while shutting down
    (the palette, quit again) must not crash the app."""
    import time

    monkeypatch.setenv("TRADECONSOLE_DATA_DIR", str(tmp_path / "data"))
    app = TradeConsoleApp(replay_opts(kafka="127.0.0.1:1", journal=str(tmp_path / "j.sqlite")))
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        rt = app.runtime
        assert rt.sinks, "the Kafka sink was built"
        await pilot.press("f", "y")  # flat, so quit does not ask
        await wait_for(pilot, lambda: session(app).position is None, what="flat")
        t0 = time.monotonic()
        await pilot.press("q")
        await pilot.press("ctrl+p", "ctrl+p", "escape", "s", "f", "k")
        await wait_for(pilot, lambda: not app.is_running, timeout=10, what="the app to exit")
        took = time.monotonic() - t0
    print(f"quit took {took:.2f} s")
    assert took < 2.0, f"quit took {took:.1f} s with Kafka unreachable"
    assert_closed(rt)
    assert app.return_code == 0
