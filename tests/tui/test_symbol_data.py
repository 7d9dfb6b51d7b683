"""Symbol and data agree (issue 11, item 2): the symbol of a history file or directory is known
from Binance public-data file names (``ETHUSDT-5m-2022-08.csv``) or the cache layout
(``.../ETHUSDT/5m/``), and one symbol's prices are never labelled as another's."""

from __future__ import annotations

import pytest
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.runtime import Runtime
from tradeconsole.tui.screens.backtest import parse_request
from tradeconsole.tui.screens.dialogs import ReplayOfferDialog, TextDialog
from tradeconsole.tui.startup import data_symbol, data_symbol_problem

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_app import assert_closed, quit_cleanly


def test_symbol_from_file_names_and_layout(tmp_path, jan_1h, data_1h):
    assert data_symbol(jan_1h)[0] == "ETHUSDT"
    assert data_symbol(data_1h)[0] == "ETHUSDT"
    daily = tmp_path / "BTCUSDT-1m-2024-03-05.csv"
    daily.write_text("")
    assert data_symbol(daily)[0] == "BTCUSDT"
    cache = tmp_path / "binance" / "futures" / "SOLUSDT" / "1h"
    cache.mkdir(parents=True)
    assert data_symbol(cache) == ("SOLUSDT", "directory SOLUSDT/1h")
    (cache / "export.csv").write_text("")
    assert data_symbol(cache / "export.csv")[0] == "SOLUSDT"  # a file named anyhow, in the layout
    plain = tmp_path / "prices.csv"
    plain.write_text("")
    assert data_symbol(plain)[0] is None and data_symbol_problem(plain, "BTCUSDT") is None  # cannot tell
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "ETHUSDT-1h-2022-01.csv").write_text("")
    (mixed / "BTCUSDT-1h-2022-01.csv").write_text("")
    assert "mixes data of several symbols" in data_symbol_problem(mixed, "ETHUSDT")
    problem = data_symbol_problem(jan_1h, "btcusdt")
    assert problem is not None and "holds ETHUSDT data" in problem and "not BTCUSDT" in problem
    assert data_symbol_problem(jan_1h, "ethusdt") is None


def test_backtest_form_refuses_another_symbols_data(jan_1h):
    values = {
        "strategy": "engulfing",
        "symbol": "BTCUSDT",
        "interval": "1h",
        "data": str(jan_1h),
        "from": "",
        "to": "",
        "fee": "0.0004",
        "cash": "10000",
        "fill_model": "realistic",
    }
    req, errors = parse_request(values)
    assert req is None and any("holds ETHUSDT data" in e for e in errors)
    req, errors = parse_request({**values, "symbol": "ETHUSDT"})
    assert req is not None and not errors


def test_runtime_refuses_a_replay_of_another_symbol(replay_opts):
    with pytest.raises(ValueError, match="holds ETHUSDT data"):
        Runtime(replay_opts(symbol="BTCUSDT"))


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_symbol_switch_during_a_replay_refuses_when_no_data_follows(replay_opts):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.runtime is not None, what="startup")
        first = app.runtime
        await pilot.press("y")
        assert isinstance(app.screen, TextDialog)
        await pilot.press("ctrl+a", "ctrl+k", *"BTCUSDT", "enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, TextDialog), "refused: the dialog stays"
        flat = " ".join(screen_text(app).replace("█", " ").split())
        assert "holds ETHUSDT data" in flat and "BTCUSDT" in flat
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.runtime is first and app.options.symbol == "ETHUSDT"
        rt = await quit_cleanly(pilot, app)
    assert_closed(rt)


@pytest.mark.timeout(60)
@pytest.mark.asyncio
async def test_replay_of_another_symbols_data_is_refused_with_the_reason(replay_opts):
    app = TradeConsoleApp(replay_opts(symbol="BTCUSDT"))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayOfferDialog), what="the refusal")
        flat = " ".join(screen_text(app).replace("█", " ").split())
        assert "holds ETHUSDT data" in flat and "not BTCUSDT" in flat
        assert app.runtime is None
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
