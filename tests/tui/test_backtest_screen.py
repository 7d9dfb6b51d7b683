"""The backtest screen driven by keys: run, read the result, compare runs, sort, export, cancel."""

from __future__ import annotations

import csv
import threading

import pytest
from tradeconsole.backtest.data import load_candles, slice_by_time
from tradeconsole.backtest.metrics import compute_metrics
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.broker import BrokerSettings
from tradeconsole.core.strategies import make_strategy
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.screens.backtest import BacktestScreen, SortableTable, parse_request
from tradeconsole.tui.screens.dashboard import DashboardScreen
from tradeconsole.tui.screens.dialogs import QuitDialog, TextDialog

from tests.tui.conftest import screen_text, wait_for

pytestmark = pytest.mark.timeout(90)

H1_2022 = (1640995200000, 1656633600000)  # 2022-01-01 .. 2022-07-01 UTC


def expected_metrics(data_1h, strategy: str) -> dict:
    candles = slice_by_time(load_candles(data_1h, interval="1h")[0], *H1_2022)
    result = run_backtest(
        candles,
        make_strategy(strategy),
        symbol="ETHUSDT",
        interval="1h",
        fill_model="realistic",
        settings=BrokerSettings(initial_cash=10_000.0, fee_rate=0.0004),
    )
    return compute_metrics(result)


async def open_backtest(pilot) -> BacktestScreen:
    app = pilot.app
    await wait_for(pilot, lambda: app.runtime is not None, what="startup")
    await pilot.press("b")
    await wait_for(pilot, lambda: isinstance(app.screen, BacktestScreen), what="the backtest screen")
    return app.screen


async def run_and_wait(pilot, screen: BacktestScreen) -> None:
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: not screen.running, timeout=60, what="the backtest")
    await pilot.pause(0.2)


async def leave_and_quit(pilot) -> None:
    """Back to the dashboard and quit; a replay may end holding a position: leave it protected."""
    app = pilot.app
    await pilot.press("escape")
    await pilot.press("q")
    await pilot.pause(0.05)
    if isinstance(app.screen, QuitDialog):
        await pilot.press("l")
    await wait_for(pilot, lambda: not app.is_running, what="exit")


@pytest.mark.asyncio
async def test_backtest_by_keys_compare_sort_export(replay_opts, data_1h, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_backtest(pilot)
        # the form starts from the dashboard's session and replay file
        assert screen.form_values()["strategy"] == "engulfing" and screen.form_values()["interval"] == "1h"
        # strategy -> symbol -> interval -> data: replace the path, then the date range
        await pilot.press("tab", "tab", "tab", "ctrl+a", "ctrl+k", *str(data_1h))
        await pilot.press("tab", *"2022-01-01", "tab", *"2022-07-01")
        await run_and_wait(pilot, screen)

        want = expected_metrics(data_1h, "engulfing")
        assert len(screen.runs) == 1
        got = screen.runs[0].metrics
        assert (got["trades"], got["return_pct"], got["bars"]) == (want["trades"], want["return_pct"], want["bars"])
        text = screen_text(app)
        assert f"{want['return_pct']:+.2f}%" in text and f"{want['trades']} round trips" in text
        trades = screen.query_one("#trades", SortableTable)
        assert trades.row_count == want["trades"] > 3

        # trades view: move to the pnl column and sort by it, then reverse
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n")
        assert screen.view == "trades" and trades.has_focus
        await pilot.press(*["right"] * 6, "s")
        pnl = [float(str(trades.get_row_at(i)[6].plain).replace(",", "")) for i in range(trades.row_count)]
        assert pnl == sorted(pnl)
        await pilot.press("s")
        pnl = [float(str(trades.get_row_at(i)[6].plain).replace(",", "")) for i in range(trades.row_count)]
        assert pnl == sorted(pnl, reverse=True)

        # a second run with the other strategy, chosen with the keyboard; both stay for comparison
        await pilot.press("tab")  # wraps around to the strategy selector
        await pilot.press("enter", "up", "enter")
        assert screen.form_values()["strategy"] == "basic"
        await run_and_wait(pilot, screen)
        assert [r.metrics["strategy"] for r in screen.runs] == ["engulfing", "basic"]
        assert screen.query_one("#runs").row_count == 2
        assert screen.runs[1].metrics["trades"] == expected_metrics(data_1h, "basic")["trades"]

        # export the shown run's round trips
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, TextDialog)
        await pilot.press("enter")
        files = list(tmp_path.glob("trades-basic-ETHUSDT-1h-run2.csv"))
        assert len(files) == 1
        with files[0].open() as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == screen.runs[1].metrics["trades"]

        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("q")
        await pilot.pause(0.05)
        if isinstance(app.screen, QuitDialog):  # the replay ends holding a position: leave it
            await pilot.press("l")
        await wait_for(pilot, lambda: not app.is_running, what="exit")


@pytest.mark.asyncio
async def test_cancel_and_errors_are_reported(replay_opts, data_1h):
    entered, release = threading.Event(), threading.Event()

    def slow_loader(path: str, interval: str):
        entered.set()
        release.wait(30)
        candles, report = load_candles(path, interval=interval)
        return candles, report.summary()

    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.runtime is not None, what="startup")
        screen = BacktestScreen(strategy="engulfing", interval="1h", data=str(data_1h), loader=slow_loader)
        await app.push_screen(screen)
        await pilot.press("ctrl+r")
        await wait_for(pilot, entered.is_set, what="the worker")
        assert screen.running
        await pilot.press("escape")  # cancels the run, does not leave the screen
        assert isinstance(app.screen, BacktestScreen)
        release.set()
        await wait_for(pilot, lambda: not screen.running, what="the cancelled run")
        assert screen.runs == [] and "cancelled" in screen.status_message
        assert "cancelled" in screen_text(app)

        # bad form values never start a run; bad data is reported, not fatal
        await pilot.press("tab", "tab", "tab", "ctrl+a", "ctrl+k", *"/nonexistent/data", "tab", *"2022-13-01")
        await pilot.press("ctrl+r")
        assert not screen.running and "not a date" in screen.status_message
        await pilot.pause(0.1)
        assert "is not a" in screen_text(app)
        await pilot.press("ctrl+a", "ctrl+k")
        await run_and_wait(pilot, screen)
        assert screen.runs == [] and "nonexistent" in screen.status_message
        assert "DataError" in screen_text(app) or "Error" in screen_text(app)

        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("q")
        await pilot.pause(0.05)
        if isinstance(app.screen, QuitDialog):  # the replay ends holding a position: leave it
            await pilot.press("l")
        await wait_for(pilot, lambda: not app.is_running, what="exit")


def test_form_parsing():
    # the CLI's units: fractions (fee 0.0004 = 0.04%), bps; strategy parameters by their names
    base = {
        "strategy": "basic",
        "symbol": "ethusdt",
        "interval": "5m",
        "data": "",
        "from": "2022-09-01",
        "to": "2022-10-01",
        "fill_model": "seed",
        "fee": "0.0004",
        "param:stop_loss_pct": "0.015",
        "param:take_profit_pct": "0.03",
        "cash": "10,000",
        "leverage": "2",
        "slippage_bps": "1.5",
        "funding_rate": "0.0001",
        "param:rsi_oversold": "35",
    }
    req, errors = parse_request(base)
    assert errors == [] and req is not None
    assert (req.symbol, req.fee_rate, req.stop_loss_pct, req.take_profit_pct, req.cash) == (
        "ETHUSDT",
        0.0004,
        0.015,
        0.03,
        10_000,
    )
    assert (req.leverage, req.slippage_bps, req.funding_rate_8h) == (2.0, 1.5, 0.0001)
    assert dict(req.params)["rsi_oversold"] == 35.0 and dict(req.params)["rsi_overbought"] == 70.0  # default kept
    assert req.start_ms == 1661990400000 and req.source().endswith("binance/spot/ETHUSDT/5m")
    req, errors = parse_request({**base, "from": "2022-10-01", "to": "2022-09-01", "fee": "x"})
    assert req is None and len(errors) == 2
    req, errors = parse_request({**base, "param:stop_loss_pct": "1.5"})  # a percent typed as a fraction: refused
    assert req is None and "stop_loss_pct" in errors[0] and "1.5" in errors[0]


@pytest.mark.asyncio
async def test_runs_differing_only_in_a_parameter_are_told_apart(replay_opts, jan_1h):
    from dataclasses import fields as dc_fields

    from tradeconsole.core.strategies import STRATEGIES

    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await open_backtest(pilot)
        # every field of the strategy's parameter declaration is in the form, at its default
        inputs = {str(i.id).removeprefix("param-"): i.value for i in screen.query("#bt-params Input")}
        assert list(inputs) == [f.name for f in dc_fields(STRATEGIES["engulfing"].Params)]
        assert inputs["stop_loss_pct"] == "0.015" and inputs["rsi_oversold"] == "25"
        await run_and_wait(pilot, screen)
        stop = screen.query_one("#param-stop_loss_pct")
        stop.focus()
        await pilot.press("ctrl+a", "ctrl+k", *"0.03")
        await run_and_wait(pilot, screen)
        assert len(screen.runs) == 2 and screen.runs[1].request.stop_loss_pct == 0.03
        assert "vs #1: stop_loss_pct 0.015→0.03" in screen.status_message
        runs = screen.query_one("#runs", SortableTable)
        labels = [str(c.label).strip() for c in runs.columns.values()]
        assert "stop_loss_pct" in labels, labels  # the one setting that differs has its column
        assert "fee" not in labels and "symbol" not in labels  # the same in both: in the title
        for metric in ("return", "maxDD", "win", "PF", "sharpe", "trades", "final", "B&H"):
            assert metric in labels
        i = labels.index("stop_loss_pct")
        assert [str(runs.get_row_at(r)[i]) for r in range(2)] == ["0.015", "0.03"]
        assert "fee=0.0004" in str(runs.border_title)
        # sort by return with an indicator on that column
        screen._show_view("runs")
        runs.focus()
        runs.cursor_coordinate = (0, labels.index("return"))
        await pilot.press("s")
        assert str(list(runs.columns.values())[labels.index("return")].label).endswith("▲")
        await pilot.press("s")
        assert str(list(runs.columns.values())[labels.index("return")].label).endswith("▼")
        # exits are shown at their fill time on the same clock as entries (never hh:59)
        trades = screen.query_one("#trades", SortableTable)
        times = [str(trades.get_row_at(r)[4]) for r in range(trades.row_count)]
        assert times and not any(t.endswith(":59") for t in times)
        await leave_and_quit(pilot)


@pytest.mark.asyncio
async def test_typing_right_after_tab_goes_to_the_next_field(replay_opts):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_backtest(pilot)
        screen.query_one("#from").focus()
        await pilot.pause(0.05)
        await pilot.press("tab", *"2022-01-20")  # no pause between Tab and the typing
        assert screen.query_one("#from").value == ""
        assert screen.query_one("#to").value == "2022-01-20"
        await leave_and_quit(pilot)


@pytest.mark.asyncio
async def test_a_window_warms_up_on_earlier_candles_like_the_cli(replay_opts, data_1h):
    """The form's dates select the traded window; the candles before it warm the indicators up,
    exactly as `tradeconsole backtest --from/--to` does (one definition of a windowed run)."""
    from tradeconsole.backtest.data import window_with_warmup
    from tradeconsole.core.domain import parse_utc_ms

    start, end = parse_utc_ms("2022-03-01"), parse_utc_ms("2022-07-01")
    candles, warmup = window_with_warmup(load_candles(data_1h, interval="1h")[0], start, end)
    assert warmup > 1000
    want = compute_metrics(
        run_backtest(
            candles,
            make_strategy("engulfing"),
            symbol="ETHUSDT",
            interval="1h",
            fill_model="realistic",
            settings=BrokerSettings(initial_cash=10_000.0, fee_rate=0.0004),
            warmup=warmup,
        )
    )
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_backtest(pilot)
        await pilot.press("tab", "tab", "tab", "ctrl+a", "ctrl+k", *str(data_1h))
        await pilot.press("tab", *"2022-03-01", "tab", *"2022-07-01")
        await run_and_wait(pilot, screen)
        got = screen.runs[0].metrics
        assert (got["trades"], got["return_pct"], got["bars"]) == (want["trades"], want["return_pct"], want["bars"])
        assert screen.runs[0].result.warmup_bars == warmup  # the earlier candles were used, not cut off
        await leave_and_quit(pilot)
