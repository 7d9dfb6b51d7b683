"""The console driven by keys (Textual pilot) against a replay of real ETHUSDT data.

Each test runs the real runtime: the replay source, the engine thread and a journal; the keys go
through the same bindings a user presses.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.runtime import Runtime
from tradeconsole.tui.screens.dashboard import DashboardScreen
from tradeconsole.tui.screens.dialogs import (
    ChoiceDialog,
    ConfirmDialog,
    LiveConfirmDialog,
    QuitDialog,
    ReplayOfferDialog,
    TextDialog,
)
from tradeconsole.tui.screens.help import HelpScreen
from tradeconsole.tui.widgets.candles import CandleChart

from tests.tui.conftest import screen_text, unreachable, wait_for

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

KEY = "ETHUSDT:1h:engulfing"
SIZE = (100, 30)


def finished(app: TradeConsoleApp) -> bool:
    return app.runtime is not None and app.collector.snapshot().connection.state == "finished"


def session(app: TradeConsoleApp):
    return app.collector.snapshot().session(KEY)


async def start(pilot) -> TradeConsoleApp:
    app = pilot.app
    await wait_for(pilot, lambda: finished(app), what="the replay to finish")
    assert app.runtime.engine.wait_idle(10)
    await pilot.pause(0.3)  # a few redraw ticks
    return app


async def quit_cleanly(pilot, app: TradeConsoleApp) -> Runtime:
    rt = app.runtime
    await pilot.press("q")
    await pilot.pause(0.05)
    if isinstance(app.screen, QuitDialog):  # a position is open: leave it protected
        await pilot.press("l")
    await wait_for(pilot, lambda: not app.is_running, what="the app to exit")
    return rt


def assert_closed(rt: Runtime) -> None:
    assert not rt.engine.alive, "engine thread still running"
    with pytest.raises(sqlite3.ProgrammingError):
        rt.journal._db.execute("SELECT 1")  # the journal was closed


async def test_start_stop_and_pause_entries(replay_opts):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        engine = app.runtime.engine
        assert isinstance(app.screen, DashboardScreen)
        assert "▶ trading" in screen_text(app)

        await pilot.press("s")
        await wait_for(pilot, lambda: engine.trading is False, what="StopTrading")
        await pilot.pause(0.3)
        assert "■ stopped" in screen_text(app)
        await pilot.press("s")
        await wait_for(pilot, lambda: engine.trading is True, what="StartTrading")

        await pilot.press("p")
        await wait_for(pilot, lambda: engine.sessions[KEY].entries_paused, what="PauseEntries")
        await wait_for(
            pilot,
            lambda: any("new entries paused" in line.text for line in app.collector.log_since(0)),
            what="the engine's acknowledgement in the log",
        )
        await pilot.pause(0.3)
        assert "entries paused" in screen_text(app)
        await pilot.press("p")
        await wait_for(pilot, lambda: not engine.sessions[KEY].entries_paused, what="entries resumed")
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)
    assert app.return_code == 0


async def test_flatten_asks_first_then_closes_the_position(replay_opts):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        assert session(app).position is not None  # January ends holding a short
        broker = app.runtime.engine.sessions[KEY].broker

        await pilot.press("f")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")  # declined: nothing happens
        assert isinstance(app.screen, DashboardScreen)
        await pilot.pause(0.2)
        assert app.runtime.engine.wait_idle(5) and broker.position is not None

        await pilot.press("f")
        await pilot.press("y")
        await wait_for(pilot, lambda: session(app).position is None, what="the position to close")
        s = session(app)
        assert s.fills[-1].reason == "flatten" and s.fills[-1].pnl is not None
        assert broker.is_flat
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "FLAT" in text and "flatten" in text
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


async def test_strategy_switch_refused_while_open_then_done_when_flat(replay_opts):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        engine = app.runtime.engine

        await pilot.press("t")
        assert isinstance(app.screen, ChoiceDialog)
        await pilot.press("up", "enter")  # "basic" is above the current "engulfing"
        await wait_for(pilot, lambda: app.collector.snapshot().errors_total > 0, what="the refusal")
        assert engine.sessions[KEY].strategy.name == "engulfing"
        assert any("cannot switch" in line.text for line in app.collector.log_since(0))

        await pilot.press("f", "y")
        await wait_for(pilot, lambda: session(app).position is None, what="flat")
        await pilot.press("t", "up", "enter")
        await wait_for(pilot, lambda: engine.sessions[KEY].strategy.name == "basic", what="the switch")
        await wait_for(pilot, lambda: session(app).strategy == "basic", what="the acknowledgement")
        await pilot.pause(0.3)
        assert " basic " in screen_text(app).splitlines()[0]  # the header names the new strategy
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


async def test_interval_switch_builds_a_new_runtime(replay_opts, data_1h):
    app = TradeConsoleApp(replay_opts(replay=str(data_1h), strategies=[("basic", "1h")]))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runtime is not None, what="startup")
        first = app.runtime
        await pilot.press("i")
        assert isinstance(app.screen, ChoiceDialog)
        await pilot.press("up", "up", "up", "enter")  # 1h -> 5m
        await wait_for(pilot, lambda: app.runtime is not None and app.runtime is not first, what="the new runtime")
        assert_closed(first)
        rt = app.runtime
        assert [s.key for s in rt.specs] == ["ETHUSDT:5m:basic"]
        assert rt.opts.replay.endswith("5m")
        await wait_for(
            pilot,
            lambda: (s := app.collector.snapshot().session("ETHUSDT:5m:basic")) is not None and s.closed_total > 0,
            what="5m candles",
        )
        await pilot.pause(0.3)
        assert "ETHUSDT 5m basic" in screen_text(app).splitlines()[0]
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


async def test_symbol_switch_follows_the_data_layout(replay_opts, jan_1h, tmp_path):
    # a second symbol's history in the same layout (written to tmp, from the real file's first 300 rows)
    other = tmp_path / "BTCUSDT" / "1h"
    other.mkdir(parents=True)
    (other / "BTCUSDT-1h-2022-01.csv").write_text("".join(jan_1h.read_text().splitlines(True)[:300]))
    eth = tmp_path / "ETHUSDT" / "1h"
    eth.mkdir(parents=True)
    (eth / "ETHUSDT-1h-2022-01.csv").write_text(jan_1h.read_text())
    app = TradeConsoleApp(replay_opts(replay=str(eth)))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.runtime is not None, what="startup")
        first = app.runtime
        await pilot.press("y")
        assert isinstance(app.screen, TextDialog)
        await pilot.press("ctrl+a", "ctrl+k", *"btc", "enter")
        assert isinstance(app.screen, TextDialog)  # "BTC" is not a symbol: the dialog says so and stays
        await pilot.press(*"usdt", "enter")
        await wait_for(pilot, lambda: app.runtime is not None and app.runtime is not first, what="the new runtime")
        assert app.runtime.opts.symbol == "BTCUSDT" and app.runtime.opts.replay == str(other)
        assert [s.key for s in app.runtime.specs] == ["BTCUSDT:1h:engulfing"]
        await wait_for(pilot, lambda: finished(app), what="the BTC replay")
        assert app.collector.snapshot().session("BTCUSDT:1h:engulfing").closed_total == 300
        rt = await quit_cleanly(pilot, app)
    assert_closed(first)
    assert_closed(rt)


async def test_no_network_offers_replay_instead_of_failing(replay_opts, jan_1h):
    app = TradeConsoleApp(replay_opts(replay=None), network_probe=unreachable)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayOfferDialog), what="the replay offer")
        assert "cannot reach" in screen_text(app)
        await pilot.press(*str(jan_1h), "enter")
        await start(pilot)
        assert app.runtime.opts.replay == str(jan_1h)
        assert "replay finished" in screen_text(app)
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


async def test_failing_live_feed_offers_replay(replay_opts, jan_1h):
    def factory(opts, confirm, subscribers):
        if not opts.replay:
            raise OSError("websocket handshake failed")
        return Runtime(opts, confirm=confirm, extra_subscribers=subscribers)

    app = TradeConsoleApp(replay_opts(replay=None), network_probe=lambda o: None, runtime_factory=factory)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayOfferDialog), what="the replay offer")
        assert "websocket handshake failed" in screen_text(app)
        await pilot.press("escape")  # declining quits cleanly
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    assert app.return_code == 0 and app.runtime is None


async def test_live_without_keys_is_refused_with_the_gate_message(replay_opts):
    app = TradeConsoleApp(replay_opts(live=True))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.is_running, what="refusal")
    assert app.return_code == 2 and app.runtime is None
    assert "API keys missing" in app.exit_message


async def test_live_asks_for_the_symbol_and_refuses_a_mismatch(replay_opts, monkeypatch):
    secret = "s3cr3t-key-never-shown"
    monkeypatch.setenv("BINANCE_API_KEY", secret)
    monkeypatch.setenv("BINANCE_API_SECRET", secret + "-secret")
    app = TradeConsoleApp(replay_opts(live=True))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LiveConfirmDialog), what="the live confirmation")
        text = screen_text(app)
        assert "LIVE" in text and "ETHUSDT" in text and secret not in text
        await pilot.press(*"BTCUSDT", "enter")
        await wait_for(pilot, lambda: not app.is_running, what="refusal")
    assert app.return_code == 2 and app.runtime is None
    assert "confirmation did not match" in app.exit_message and secret not in app.exit_message


async def test_help_and_command_palette(replay_opts):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for words in ("Start/Stop", "Flatten", "Kill", "Symbol", "Backtest"):
            assert words in text
        await pilot.press("end")  # the help scrolls at 80x24
        await pilot.pause(0.1)
        assert "Command palette" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)

        await pilot.press("ctrl+p")
        await pilot.press(*"flatten all")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the flatten dialog")
        await pilot.press("n")
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


async def test_footer_shows_the_keys_at_80x24(replay_opts):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(80, 24)) as pilot:
        await start(pilot)
        footer = screen_text(app).splitlines()[-1]
        for words in ("Start/Stop", "Pause", "Flatten", "Kill", "Backtest", "Help", "Quit", "palette"):
            assert words in footer
        await quit_cleanly(pilot, app)


async def test_two_sessions_side_by_side(replay_opts):
    """Two strategies on one feed: the header says which one is shown, ``n`` switches, and the
    position panel always lists the other session."""
    app = TradeConsoleApp(replay_opts(strategies=[("engulfing", "1h"), ("basic", "1h")]))
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        header = screen_text(app).splitlines()[0]
        assert "engulfing [1/2]" in header
        await pilot.press("n")
        await pilot.pause(0.3)
        assert app.selected_key == "ETHUSDT:1h:basic"
        text = screen_text(app)
        assert "basic [2/2]" in text.splitlines()[0]
        # the other session's short, one panel line; the two sessions share one paper account, so
        # each trades half of its 10,000 (the short's -29.37 with all of it is -14.68 with half)
        assert re.search(r"engulfing +SHORT -14\.68", text)
        assert "FLAT" in text  # basic holds nothing at the end of January
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


async def test_charts_show_the_last_candle_once_the_data_stops(replay_opts):
    """A replay at full speed ends between two chart redraws: the last candles must still reach
    the chart (the throttle delays drawing, it never drops the final state)."""
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        chart = app.screen.query_one(CandleChart)
        last = session(app).candles[-1]
        await wait_for(
            pilot,
            lambda: (
                chart._data is not None
                and chart._data.candles[-1] == last
                and chart._data.position == session(app).position
                and app.charts_settled()
            ),
            what="the final candle and position on the chart",
        )
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


async def test_live_paper_session_on_the_binance_stand_in(monkeypatch):
    """No replay: the console probes the (local stand-in) Binance host, starts the real kline
    stream, warms up over REST, then draws candles as the stand-in's clock moves."""
    from tradeconsole.tui.runtime import RuntimeOptions

    from tests.servers.binance_market import BinanceMarketServer, shared_series

    with BinanceMarketServer({("ETHUSDT", "1h"): shared_series("ETHUSDT", "1h")}) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        app = TradeConsoleApp(RuntimeOptions(strategies=[("engulfing", "1h")], symbol="ETHUSDT"))
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.runtime is not None, what="startup")
            assert app.runtime.replay_candles is None and app.runtime.trading_mode == "paper"
            await wait_for(
                pilot, lambda: (s := session(app)) is not None and s.closed_total >= 900, what="the REST warm-up"
            )
            before = session(app).closed_total
            server.advance(2)
            await wait_for(pilot, lambda: session(app).closed_total >= before + 2, what="live candles")
            await pilot.pause(0.3)
            header = screen_text(app).splitlines()[0]
            assert header.startswith(" PAPER ") and "binance-futures connected" in header
            assert session(app).candles[-1].close_time < server.now_ms
            rt = await quit_cleanly(pilot, app)
        assert_closed(rt)
