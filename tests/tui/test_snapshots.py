"""Snapshot tests (pytest-textual-snapshot) of the dashboard at the size matrix 60x20 ... 200x50
(flat and with a position) and of the backtest screen at 80x24 and 200x60, from a fixed replay: January 2022 ETHUSDT 1h replayed to its end with ``engulfing``
(the month ends holding a short, so fills, markers, stop/target lines and working orders show).

``deterministic=True`` keeps wall clocks, run ids and cursor blinking off the screen, so the
pictures depend on the data only. Update them with ``pytest tests/tui --snapshot-update`` after
an intended change, and look at the report before committing.
"""

from __future__ import annotations

import pytest
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.screens.backtest import BacktestScreen

from tests.tui.conftest import wait_for

pytestmark = pytest.mark.timeout(90)

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((200, 60), id="200x60")]
MATRIX = [
    pytest.param(size, id=f"{size[0]}x{size[1]}")
    for size in ((60, 20), (80, 24), (100, 30), (120, 36), (120, 39), (160, 45), (200, 50))
]


async def replay_to_the_end(pilot) -> None:
    app = pilot.app
    await wait_for(
        pilot,
        lambda: app.runtime is not None and app.collector.snapshot().connection.state == "finished",
        what="the replay",
    )
    assert app.runtime.engine.wait_idle(10)
    app.screen.refresh_view(force=True)
    await wait_for(pilot, app.charts_settled, what="the charts")


@pytest.mark.parametrize("size", MATRIX)
def test_dashboard(snap_compare, replay_opts, size):
    """January ends holding a short: position, stop/target, working orders."""
    app = TradeConsoleApp(replay_opts(), deterministic=True)
    assert snap_compare(app, terminal_size=size, run_before=replay_to_the_end)
    assert app.runtime is None and not app.last_stopped.engine.alive  # shut down on exit


@pytest.mark.parametrize("size", MATRIX)
def test_dashboard_flat(snap_compare, replay_opts, size):
    """The same, flattened (f, y) at the end: no position, the flatten fill in the book."""

    async def flat(pilot) -> None:
        await replay_to_the_end(pilot)
        await pilot.press("f", "y")
        app = pilot.app
        await wait_for(pilot, lambda: app.collector.snapshot().sessions[0].position is None, what="flat")
        assert app.runtime.engine.wait_idle(10)
        app.screen.refresh_view(force=True)
        await wait_for(pilot, app.charts_settled, what="the charts")

    app = TradeConsoleApp(replay_opts(), deterministic=True)
    assert snap_compare(app, terminal_size=size, run_before=flat)


@pytest.mark.parametrize("size", SIZES)
def test_backtest_screen(snap_compare, replay_opts, data_1h, size):
    async def run_backtest(pilot) -> None:
        await replay_to_the_end(pilot)
        await pilot.press("b")
        screen = pilot.app.screen
        assert isinstance(screen, BacktestScreen)
        await pilot.press("tab", "tab", "tab", "ctrl+a", "ctrl+k", *str(data_1h))
        await pilot.press("tab", *"2022-01-01", "tab", *"2022-07-01")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not screen.running and screen.runs, timeout=60, what="the backtest")
        await pilot.press("ctrl+r")  # a second, identical run: the runs table compares them
        await wait_for(pilot, lambda: not screen.running and len(screen.runs) == 2, timeout=60, what="run 2")
        screen.query_one("#strategy").focus()
        await wait_for(pilot, pilot.app.charts_settled, what="the charts")

    app = TradeConsoleApp(replay_opts(), deterministic=True)
    assert snap_compare(app, terminal_size=size, run_before=run_backtest)


def test_help_screen(snap_compare, replay_opts):
    app = TradeConsoleApp(replay_opts(), deterministic=True)
    assert snap_compare(app, terminal_size=(80, 24), press=["question_mark"], run_before=replay_to_the_end)
