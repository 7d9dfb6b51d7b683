"""The responsive dashboard layout (issue 11, item 3): from 60x20 to 250x70 no pane is lost.
What does not fit collapses into the switcher, reachable with number keys and Tab."""

from __future__ import annotations

import pytest
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.screens.dashboard import SWITCHABLE, plan_layout

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_app import quit_cleanly, start

SIZES = [(w, h) for w in (60, 70, 80, 100, 120, 160, 200, 250) for h in (20, 24, 30, 36, 39, 45, 50, 70)]


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_pane_is_on_screen_or_in_the_switcher(size):
    w, h = size
    plan = plan_layout(w, h)
    rows = h - 2
    used = (
        plan.top
        + plan.indicators
        + plan.log
        + plan.book
        + (1 + plan.switcher if plan.tabbed else 0)
        + (2 if plan.narrow else 0)
    )
    assert used == rows, f"{plan} uses {used} of {rows} rows"
    assert plan.top >= 6, "the chart keeps room for candles"
    for name, _ in SWITCHABLE:
        on_screen = {"indicators": plan.indicators, "log": plan.log, "orders": plan.book, "trades": plan.book}[name]
        assert on_screen > 0 or name in plan.tabbed, f"{name} lost at {w}x{h}"
    if plan.tabbed:
        assert plan.switcher >= 5
    assert plan.narrow == (w < 80) and (plan.side_width > 0) != plan.narrow


@pytest.mark.timeout(60)
@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(80, 24), (60, 20)], ids=["80x24", "60x20"])
async def test_tab_and_number_keys_reach_every_table(replay_opts, size):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=size) as pilot:
        await start(pilot)
        screen = app.screen
        reached = []
        for _ in range(8):
            await pilot.press("tab")
            await pilot.pause(0.1)
            f = app.focused
            assert f is not None and f.display and f.region.area > 0, f"focus on a hidden widget: {f}"
            reached.append(f.id)
        assert {"candles", "rsi", "macd", "cci", "log", "orders", "trades"} <= set(reached)
        await pilot.press("shift+tab")
        await pilot.pause(0.1)
        assert app.focused.id == reached[-2]
        await pilot.press("4")
        await pilot.pause(0.1)
        assert screen.pane == "trades" and app.focused.id == "trades"
        assert "entry_short" in screen_text(app)  # the trades table is drawn
        await pilot.press("3")
        await pilot.pause(0.1)
        assert screen.pane == "orders" and ("STOP_MARKET" in screen_text(app) or " STOP " in screen_text(app))
        await quit_cleanly(pilot, app)


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_resize_moves_panes_between_screen_and_switcher(replay_opts):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(200, 50)) as pilot:
        await start(pilot)
        screen = app.screen
        assert screen.plan.tier == "full" and not screen.query_one("#tabs").display
        assert all(screen.query_one(f"#{n}").display for n in ("indicators", "log", "orders", "trades"))
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: screen.plan.tier == "small", what="the small layout")
        assert screen.query_one("#tabs").display
        assert sum(screen.query_one(f"#{n}").display for n in ("indicators", "log", "book")) == 1
        await quit_cleanly(pilot, app)


# ---------------------------------------------------------------- item 4: never cut what matters


@pytest.mark.timeout(60)
@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(60, 20), (80, 24), (100, 30)], ids=["60x20", "80x24", "100x30"])
async def test_numbers_and_log_lines_are_never_cut(replay_opts, size):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=size) as pilot:
        await start(pilot)
        app.screen.refresh_view(force=True)
        await wait_for(pilot, app.charts_settled, what="the charts")
        text = screen_text(app)
        assert "…" not in text, text  # no title or cell ends in an ellipsis
        await pilot.press("3")  # orders: the protective orders' prices whole
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "2,719.36" in text and "2,598.79" in text
        await pilot.press("4")
        await pilot.pause(0.2)
        assert "-157.88" in screen_text(app) and "+287.39" in screen_text(app)  # both round trips' PnL
        await pilot.press("2")
        await pilot.pause(0.2)
        flat = " ".join(screen_text(app).split())  # wrapped lines joined
        assert "target 2,598.79" in flat or "target\n2,598.79" in flat
        assert "(entry_short)" in flat
        await quit_cleanly(pilot, app)


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_dialog_text_wraps_instead_of_being_cut(replay_opts, monkeypatch):
    from tradeconsole.tui.screens.dialogs import ReplayOfferDialog

    from tests.tui.conftest import unreachable

    monkeypatch.setattr("tradeconsole.tui.app.replay_candidates", lambda *a: [])
    app = TradeConsoleApp(replay_opts(replay=None), network_probe=unreachable)
    async with app.run_test(size=(60, 20)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayOfferDialog), what="the replay offer")
        flat = " ".join(screen_text(app).replace("█", " ").split())
        assert "tradeconsole data download" in flat and "cannot reach fapi.binance.com:443 (test)" in flat
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.is_running, what="exit")


# ---------------------------------------------------------------- item 5: orders = open orders


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_orders_panel_shows_open_orders_once_and_toggles_to_history(replay_opts):
    from tradeconsole.tui.widgets.orders import OrdersTable

    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(120, 36)) as pilot:
        await start(pilot)
        await pilot.press("3")
        await pilot.pause(0.2)
        table = app.screen.query_one(OrdersTable)
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        col = table.shown_columns
        kinds = sorted(r[col.index("type")] for r in rows)
        assert kinds == ["STOP_MARKET", "TAKE_PROFIT_MARKET"], rows  # the open short's protection, once each
        assert all(str(r[col.index("status")]) == "working" for r in rows)
        assert "Orders: open (2)" in screen_text(app)

        await pilot.press("o")
        await pilot.pause(0.2)
        assert table.history
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        statuses = [str(r[col.index("status")]) for r in rows]
        assert "working" not in statuses and "filled" in statuses and "canceled" in statuses
        s = app.collector.snapshot().sessions[0]
        closed = [o for o in s.order_book if o.status not in ("new", "working")]
        assert len(rows) == len(closed) == len({o.client_id for o in closed})  # one row per order
        # the first round trip's stop fired: its STOP_MARKET is filled, its target cancelled with its price
        assert any(r[col.index("type")] == "STOP_MARKET" and str(r[col.index("status")]) == "filled" for r in rows)
        assert all(r[col.index("price")] != "-" for r in rows if r[col.index("type")] != "MARKET")
        assert "Orders: history" in screen_text(app)
        await pilot.press("o")
        await pilot.pause(0.1)
        assert not table.history
        await quit_cleanly(pilot, app)
