"""The optimisation screen (issue 16, item 5) driven by keys: from the backtest form (ctrl+o) run
an optimisation off the UI thread, read the heatmap, the top trials and the walk-forward, sort,
apply a trial to the form, paper-trade it through SwitchStrategy, cancel with Escape, open a
stored results file; at 80x24 and large."""

from __future__ import annotations

import pytest
from tradeconsole.core.engine import SwitchStrategy
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.screens.backtest import BacktestScreen, SortableTable, parse_request
from tradeconsole.tui.screens.dialogs import ConfirmDialog
from tradeconsole.tui.screens.optimize import OptimizeScreen, optimize_argv, parse_optimize_args

from tests.tui.conftest import screen_text, wait_for
from tests.tui.test_backtest_screen import leave_and_quit, open_backtest

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("optimize")]

SPACE = "stop_loss_pct=0.01,0.02,0.03 take_profit_pct=0.02,0.04"


async def fill_form(pilot, data_1h) -> None:
    """Backtest form: the 1h data folder, 2022-01-01 .. 2022-07-01 (engulfing, from the session)."""
    await pilot.press("tab", "tab", "tab", "ctrl+a", "ctrl+k", *str(data_1h))
    await pilot.press("tab", *"2022-01-01", "tab", *"2022-07-01")


async def open_optimize(pilot, data_1h) -> OptimizeScreen:
    app = pilot.app
    await open_backtest(pilot)
    await fill_form(pilot, data_1h)
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(app.screen, OptimizeScreen), what="the optimise screen")
    return app.screen


async def set_input(pilot, screen: OptimizeScreen, field: str, text: str) -> None:
    screen.query_one(f"#{field}").focus()
    await pilot.press("ctrl+a", "ctrl+k", *text)


async def run_and_wait(pilot, screen: OptimizeScreen) -> None:
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: not screen.running, timeout=150, what="the optimisation")
    await pilot.pause(0.2)


def expected(screen: OptimizeScreen) -> dict:
    """The same optimisation through the CLI's function, outside the console."""
    from tradeconsole.backtest.optimize.cli import run_optimisation

    return run_optimisation(parse_optimize_args(optimize_argv(screen.request, screen.form_values())))


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])
@pytest.mark.asyncio
async def test_optimise_by_keys_results_apply_and_paper(replay_opts, data_1h, tmp_path, monkeypatch, size):
    monkeypatch.chdir(tmp_path)
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=size) as pilot:
        screen = await open_optimize(pilot, data_1h)
        assert screen.request.strategy == "engulfing" and screen.request.interval == "1h"
        await set_input(pilot, screen, "space", SPACE)
        await set_input(pilot, screen, "folds", "2")
        await set_input(pilot, screen, "workers", "1")
        await run_and_wait(pilot, screen)
        assert screen.report is not None, screen.status_message
        assert "done: 6 combinations" in screen.status_message and "kernel: compiled" in screen.status_message
        want = expected(screen)
        got = screen.report
        assert [t["params"] for t in got["top"]] == [t["params"] for t in want["top"]]
        assert [t["score"] for t in got["top"]] == [t["score"] for t in want["top"]]
        assert got["walk_forward"]["folds"] == want["walk_forward"]["folds"]
        table = screen.query_one("#op-trials", SortableTable)
        assert table.row_count == 6
        # the heatmap holds the best score of every (stop, target) cell
        heat = str(screen.query_one("#op-heatmap").render())
        best = max(t["score"] for t in want["top"])
        assert f"{best:.3g}" in heat and "take_profit_pct" in heat
        text = screen_text(app)
        assert "Top trials" in text and "Walk-forward" in text
        # sort by score, ascending: the worst trial first
        table.focus()
        await pilot.press("right", "right", "right", "s")
        first = table.get_row_at(0)
        assert str(first[3]) == f"{min(t['score'] for t in want['top']):.3g}"

        # select the worst trial (cursor row 0), apply it to the backtest form
        await pilot.press("ctrl+t")
        worst = min(want["top"], key=lambda t: t["score"])["params"]
        assert "applied" in screen.status_message, screen.status_message
        form = next(s for s in app.screen_stack if isinstance(s, BacktestScreen))
        values = form.form_values()
        assert float(values["param:stop_loss_pct"]) == worst["stop_loss_pct"]
        assert float(values["param:take_profit_pct"]) == worst["take_profit_pct"]
        req, errors = parse_request(values)
        assert req is not None and dict(req.params)["take_profit_pct"] == worst["take_profit_pct"], errors
        # paper trading with them: asks, then the engine gets SwitchStrategy with these parameters
        sent = []
        engine = app.runtime.engine
        real_send = engine.send
        monkeypatch.setattr(engine, "send", lambda cmd: (sent.append(cmd), real_send(cmd))[1])
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: sent, what="the switch command")
        cmd = sent[0]
        assert isinstance(cmd, SwitchStrategy) and cmd.strategy == "engulfing"
        assert cmd.params == worst and cmd.key == app.selected_key
        await pilot.press("escape")  # back to the form, then the dashboard
        await wait_for(pilot, lambda: isinstance(app.screen, BacktestScreen), what="the backtest form")
        await leave_and_quit(pilot)


@pytest.mark.asyncio
async def test_escape_cancels_and_a_results_file_resumes_and_opens(replay_opts, data_1h, tmp_path):
    results = tmp_path / "r.csv"
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_optimize(pilot, data_1h)
        # 451 x 91 combinations: far more than can finish before the Escape below, even idle
        await set_input(pilot, screen, "space", "stop_loss_pct=0.005:0.05:0.0001 take_profit_pct=0.01:0.1:0.001")
        await set_input(pilot, screen, "folds", "0")
        await set_input(pilot, screen, "workers", "1")
        await set_input(pilot, screen, "results", str(results))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: screen._progress[1] >= 5, timeout=120, what="some finished combinations")
        await pilot.press("escape")  # cancels; the screen stays
        await wait_for(pilot, lambda: not screen.running, timeout=60, what="the cancel")
        assert isinstance(app.screen, OptimizeScreen)
        assert screen.status_message.startswith("cancelled:") and str(results) in screen.status_message
        kept = results.read_text().count("\n") - 1
        assert 5 <= kept < 451 * 91
        # a small space over a file that has rows: open shows them without running
        await set_input(pilot, screen, "space", "stop_loss_pct=0.005,0.006 take_profit_pct=0.01")
        await pilot.press("ctrl+l")
        assert screen.status_message.startswith("opened"), screen.status_message
        assert screen.query_one("#op-trials", SortableTable).row_count == min(10, kept)
        await run_and_wait(pilot, screen)  # resumes: the two combinations were in the file already
        assert screen.report is not None and screen.report["resumed"] >= 1, screen.status_message
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BacktestScreen), what="the backtest form")
        await leave_and_quit(pilot)


@pytest.mark.asyncio
async def test_bad_space_is_a_status_line_not_a_crash(replay_opts, data_1h):
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_optimize(pilot, data_1h)
        await set_input(pilot, screen, "space", "nonsense=1,2")
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        assert not screen.running and "unknown parameter" in screen.status_message
        await set_input(pilot, screen, "space", "stop_loss_pct=2")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: not screen.running, timeout=60, what="the refusal")
        assert "stop_loss_pct" in screen.status_message and screen.report is None
        await pilot.press("ctrl+g")  # nothing to paper-trade yet
        assert "no trial yet" in screen.status_message
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BacktestScreen), what="the backtest form")
        await leave_and_quit(pilot)


def _journal_events(path) -> list[dict]:
    import json
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [json.loads(p) for (p,) in db.execute("SELECT payload FROM events ORDER BY seq")]
    finally:
        db.close()


async def _small_run(pilot, data_1h) -> OptimizeScreen:
    screen = await open_optimize(pilot, data_1h)
    await set_input(pilot, screen, "space", SPACE)
    await set_input(pilot, screen, "folds", "2")
    await set_input(pilot, screen, "workers", "1")
    await set_input(pilot, screen, "top", "3")
    await run_and_wait(pilot, screen)
    assert screen.report is not None, screen.status_message
    return screen


@pytest.mark.asyncio
async def test_a_console_optimisation_is_journalled_like_the_cli(replay_opts, data_1h):
    """The screen's run goes through the CLI's composition: journal-optimize.sqlite in the data
    directory gets the optimization_run start and finish and one optimization_trial per top
    trial, all with the run id the screen shows, and the run is registered as finished."""
    import sqlite3

    from tradeconsole.core.paths import journal_path

    app = TradeConsoleApp(replay_opts())  # no sinks: journalled, nothing shipped
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await _small_run(pilot, data_1h)
        run_id = screen.run_id
        assert run_id and run_id == screen.report["_run_id"]
        assert f"run {run_id} journalled" in screen_text(app)
        assert "shipp" not in screen_text(app)  # no sinks configured: nothing claims to ship
        path = journal_path("journal-optimize.sqlite")
        assert screen.journal_path == str(path)
        evs = _journal_events(path)
        assert [e["type"] for e in evs] == ["optimization_run"] + ["optimization_trial"] * 3 + ["optimization_run"]
        assert [e.get("phase") for e in (evs[0], evs[-1])] == ["start", "finish"]
        assert {e["run_id"] for e in evs} == {run_id}
        assert [t["params"] for t in evs[1:-1]] == [t["params"] for t in screen.report["top"]]
        assert evs[-1]["trials"] == screen.report["evaluated"] == 6
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        assert db.execute("SELECT run_id, status FROM runs").fetchall() == [(run_id, "finished")]
        db.close()
        # a second run appends its own run to the same journal
        await run_and_wait(pilot, screen)
        assert screen.run_id != run_id
        assert {e["run_id"] for e in _journal_events(path)} == {run_id, screen.run_id}
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BacktestScreen), what="the backtest form")
        await leave_and_quit(pilot)


@pytest.mark.asyncio
async def test_a_journal_that_cannot_be_opened_is_a_status_line(replay_opts, data_1h):
    from tradeconsole.core.paths import journal_path

    path = journal_path("journal-optimize.sqlite")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a journal at all\n" * 100)
    app = TradeConsoleApp(replay_opts())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_optimize(pilot, data_1h)
        await set_input(pilot, screen, "space", SPACE)
        await run_and_wait(pilot, screen)
        assert screen.report is None and screen.run_id is None
        msg = screen.status_message
        assert msg.startswith("cannot open the optimisation journal: journal ") and str(path) in msg, msg
        assert "Traceback" not in msg and "Error:" not in msg, msg
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, BacktestScreen), what="the backtest form")
        await leave_and_quit(pilot)


@pytest.mark.asyncio
async def test_with_kafka_the_console_ships_the_optimisation(replay_opts, data_1h, tmp_path):
    """The console runs with --kafka (a Tansu broker of this test's own): after the run the
    optimisation journal is shipped there too, every event once, by the journal shipper."""
    import json

    from tradeconsole.core.paths import journal_path

    from tests.pipeline.helpers import TansuBroker, read_topics

    (tmp_path / "tansu").mkdir()
    broker = TansuBroker(tmp_path / "tansu")
    broker.start()
    try:
        app = TradeConsoleApp(replay_opts(kafka=broker.bootstrap))
        async with app.run_test(size=(120, 36)) as pilot:
            screen = await _small_run(pilot, data_1h)
            await wait_for(
                pilot, lambda: screen.shipping_note.startswith(("shipped", "not")), timeout=60, what="shipping"
            )
            assert screen.shipping_note == "shipped to kafka", screen.status_message
            assert f"run {screen.run_id} journalled · shipped to kafka" in screen_text(app)
            want = [e["event_id"] for e in _journal_events(journal_path("journal-optimize.sqlite"))]
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, BacktestScreen), what="the backtest form")
            await leave_and_quit(pilot)
        msgs = read_topics(broker.bootstrap, ["tradeconsole.backtests"], len(want))
        got = [json.loads(m.value)["event_id"] for m in msgs]
        assert sorted(got) == sorted(want) and len(want) == 5
    finally:
        broker.stop()


def test_short_names_are_unique():
    from tradeconsole.tui.screens.optimize import short_names

    assert short_names(["stop_loss_pct", "take_profit_pct"]) == {"stop_loss_pct": "sl%", "take_profit_pct": "tp%"}
    got = short_names(["rsi_oversold", "rsi_overbought", "atr", "period"])
    assert got == {"rsi_oversold": "rovers", "rsi_overbought": "roverb", "atr": "atr", "period": "peri"}
    # an abbreviation equal to a name kept whole keeps more letters of its last word
    assert short_names(["sl", "stop_long"]) == {"sl": "sl", "stop_long": "slo"}


def test_sink_targets_name_what_they_build(tmp_path):
    from tradeconsole.tui.runtime import SinkTargets

    assert not SinkTargets().configured and SinkTargets().build(tmp_path / "j.sqlite") == []
    assert SinkTargets(kafka="127.0.0.1:1").names() == ["kafka"]
    cloud = SinkTargets(elasticsearch_settings={"cloud_id": "x:eA=="})
    assert cloud.configured and cloud.names() == ["elasticsearch"]
