"""Snapshot of the optimisation screen (pytest-textual-snapshot): the January 2022 replay, then
the backtest form's engulfing on 2022 H1 1h, a 3x2 stop/target grid walked forward over 2 folds,
the top trials focused. At 80x24 one pane shows at a time (the trials with short labels, then the
heatmap after ctrl+f); from 120x36 every pane is on the screen. ``deterministic=True`` keeps wall
clocks, run ids and cursor blinking off the screen. Update with ``pytest
tests/tui/test_optimize_snapshot.py --snapshot-update`` after an intended change."""

from __future__ import annotations

import pytest
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.screens.optimize import OptimizeScreen

from tests.tui.conftest import wait_for
from tests.tui.test_optimize_screen import SPACE, fill_form, set_input
from tests.tui.test_snapshots import replay_to_the_end

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("optimize")]


@pytest.mark.parametrize(
    ("size", "keys"),
    [((80, 24), ()), ((80, 24), ("ctrl+f",)), ((120, 36), ()), ((200, 60), ())],
    ids=["80x24", "80x24-heatmap", "120x36", "200x60"],
)
def test_optimize_screen(snap_compare, replay_opts, data_1h, size, keys):
    async def optimise(pilot) -> None:
        await replay_to_the_end(pilot)
        await pilot.press("b")
        await fill_form(pilot, data_1h)
        await pilot.press("ctrl+o")
        app = pilot.app
        await wait_for(pilot, lambda: isinstance(app.screen, OptimizeScreen), what="the optimise screen")
        screen = app.screen
        await set_input(pilot, screen, "space", SPACE)
        await set_input(pilot, screen, "folds", "2")
        await set_input(pilot, screen, "workers", "1")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not screen.running, timeout=150, what="the optimisation")
        assert screen.report is not None, screen.status_message
        screen.query_one("#op-trials").focus()
        await pilot.press(*keys)
        await pilot.pause(0.3)

    app = TradeConsoleApp(replay_opts(), deterministic=True)
    assert snap_compare(app, terminal_size=size, run_before=optimise)
