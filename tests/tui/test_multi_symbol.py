"""The console with two symbols on one shared paper account: the header says which session the
chart shows and how many run, ``]``/``n`` and ``[`` switch between them, the positions panel and
the orders table list every symbol, the equity panel shows the account. At 80x24 and at 200x60.

The second symbol is January 2022 of ETHUSDT 1h three hours late at 13x the price, written in
Binance's public-data layout next to the real ETH file, so the replay finds it by its symbol.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.runtime import RuntimeOptions
from tradeconsole.tui.widgets.orders import OrdersTable

from tests.tui.conftest import JAN, screen_text, wait_for
from tests.tui.test_app import assert_closed, quit_cleanly

pytestmark = [pytest.mark.timeout(90), pytest.mark.asyncio]

ETH, BTC = "ETHUSDT:1h:engulfing", "BTCUSDT:1h:engulfing"


@pytest.fixture
def two_markets(tmp_path: Path, jan_1h: Path) -> Path:
    eth, btc = tmp_path / "ETHUSDT" / "1h", tmp_path / "BTCUSDT" / "1h"
    eth.mkdir(parents=True)
    btc.mkdir(parents=True)
    text = jan_1h.read_text()
    (eth / JAN).write_text(text)
    rows = [line.split(",") for line in text.splitlines() if line and line[0].isdigit()]
    lag = 3
    lines = [
        ",".join(
            [
                rows[i][0],
                *(repr(float(x) * 13) for x in rows[i - lag][1:5]),
                rows[i - lag][5],
                rows[i][6],
                *rows[i - lag][7:],
            ]
        )
        for i in range(lag, len(rows))
    ]
    (btc / JAN.replace("ETHUSDT", "BTCUSDT")).write_text("\n".join(lines) + "\n")
    return eth


def _opts(path: Path) -> RuntimeOptions:
    return RuntimeOptions(
        strategies=[("engulfing", "1h")], symbol="ETHUSDT", symbols=["ETHUSDT", "BTCUSDT"], replay=str(path), speed=None
    )


def _finished(app: TradeConsoleApp) -> bool:
    return app.runtime is not None and app.collector.snapshot().connection.state == "finished"


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_switching_between_symbols(two_markets, size):
    app = TradeConsoleApp(_opts(two_markets))
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: _finished(app), what="the replay to finish")
        assert app.runtime.engine.wait_idle(10)
        await pilot.pause(0.3)
        rt = app.runtime
        assert [s.key for s in rt.specs] == [ETH, BTC]
        assert rt.account is not None and {s.broker.initial_cash for s in rt.specs} == {5_000.0}
        header = screen_text(app).splitlines()[0]
        assert "ETHUSDT" in header and "[1/2]" in header
        assert app.selected_key == ETH
        await pilot.press("right_square_bracket")
        await pilot.pause(0.3)
        assert app.selected_key == BTC
        header = screen_text(app).splitlines()[0]
        assert "BTCUSDT" in header and "[2/2]" in header
        await pilot.press("left_square_bracket")
        await pilot.pause(0.2)
        assert app.selected_key == ETH
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.selected_key == BTC
        snap = app.collector.snapshot()
        # both sessions traded January (fills of each symbol reached the console)
        assert all(s.fills for s in snap.sessions)
        if size[1] >= 40:  # everything is on screen at a large size
            text = screen_text(app)
            assert "ETHUSDT engulfing" in text  # the other symbol's position line
            account = app.account_equity(snap)
            assert account == pytest.approx(sum(s.equity.equity for s in snap.sessions))
            assert f"Equity · account {account:,.2f}" in text
            orders = app.screen.query_one(OrdersTable)
            assert orders.shown_columns[0] == "session"
            whose = {str(row[0]) for row in (orders.get_row_at(i) for i in range(orders.row_count))}
            assert whose == {s.symbol for s in snap.sessions if s.working}
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


async def test_session_keys_are_free_and_named_in_the_help():
    """``[``/``]`` are taken by nothing else on the dashboard, and the help shows them as typed."""
    from tradeconsole.tui.screens.dashboard import DASHBOARD_BINDINGS
    from tradeconsole.tui.screens.help import key_names

    keys = [k.strip() for b in DASHBOARD_BINDINGS for k in b.key.split(",")]
    assert len(keys) == len(set(keys)), "a key bound twice on the dashboard"
    assert {"left_square_bracket", "right_square_bracket", "n"} <= set(keys)
    assert key_names("n,right_square_bracket") == "n, ]" and key_names("left_square_bracket") == "["
