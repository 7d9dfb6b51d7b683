"""The dashboard charts a strategy from its declarations alone (issue 14 item 6), and the strategy
switcher offers every available strategy while a broken strategy file never takes the console
down.

``tests/strategies/bands_oscillator.py`` exists only under tests/: Bollinger Bands declared
``plot="overlay"``, an ADX pane with a reference line at 25, a Stochastic with 20/80 and, of the
base panes, MACD only. Nothing in ``tui/`` knows it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tradeconsole.backtest.strategy_loader import load_file
from tradeconsole.core.strategies import STRATEGIES, Side, Strategy, register_strategy
from tradeconsole.core.strategies.charts import BASE_CHARTS, Chart
from tradeconsole.tui.app import TradeConsoleApp
from tradeconsole.tui.widgets.candles import CandleChart
from tradeconsole.tui.widgets.chart import build_picture
from tradeconsole.tui.widgets.indicators import IndicatorChart, IndicatorPanes, charts_for

from tests.tui.conftest import screen_text, wait_for

pytestmark = pytest.mark.timeout(120)

STRATS = Path(__file__).resolve().parents[1] / "strategies"


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    f = STRATS / "bands_oscillator.py"
    for cls in load_file(f):
        register_strategy(cls, str(f))


@pytest.fixture
def short_replay(jan_1h: Path, tmp_path: Path, replay_opts):
    """The first 300 hours of January, closed candles only: three window-recomputed pandas-ta
    indicators cost tens of ms per candle on a loaded machine, and the panes need no more."""
    d = tmp_path / "replay"
    d.mkdir()
    lines = jan_1h.read_text().splitlines(keepends=True)
    (d / jan_1h.name).write_text("".join(lines[:300]))

    def make(**kw):
        return replay_opts(replay=str(d / jan_1h.name), updates_per_candle=0, **kw)

    return make


async def _replayed(pilot) -> None:
    app = pilot.app
    await wait_for(
        pilot,
        lambda: app.runtime is not None and app.collector.snapshot().connection.state == "finished",
        timeout=60,
        what="the replay",
    )
    assert app.runtime.engine.wait_idle(10)
    app.screen.refresh_view(force=True)
    await wait_for(pilot, app.charts_settled, what="the charts")


def _picture_text(pane: IndicatorChart) -> str:
    return "\n".join(strip.text for strip in pane._strips)


def test_layout_from_declarations() -> None:
    """What the file declares, and nothing else, decides the charts."""
    charts = STRATEGIES["bands_oscillator"].chart_layout()
    assert [c.key for c in charts] == ["macd", "bb", "adx", "stoch"]
    bb = charts[1]
    assert bb.overlay and bb.lines == ("bb_lower", "bb_mid", "bb_upper")
    adx = charts[2]
    assert not adx.overlay and adx.lines == ("adx_adx",) and adx.levels == (25.0,)
    assert charts[3].lines == ("stoch_k", "stoch_d") and charts[3].levels == (20.0, 80.0)
    # the built-ins keep their three panes, with the reference lines they always had
    for name in ("basic", "engulfing"):
        assert STRATEGIES[name].chart_layout() == tuple(BASE_CHARTS.values())


def test_auto_plot_puts_price_columns_over_the_chart() -> None:
    """``plot="auto"``: price-valued columns overlay (bands without bandwidth/%B, Supertrend
    without its direction), an oscillator gets a pane; ``plot="none"`` is not charted."""
    from tradeconsole.core.strategies import ta

    class Auto(Strategy):
        name = "t_auto_plot"
        default_interval = "5m"
        base_panes = ()
        indicators = {
            "bb": ta("bbands", length=20, std=2.0),
            "st": ta("supertrend", length=7, multiplier=3.0),
            "atr": ta("atr", length=14),
            "ema": ta("ema", length=50, plot="none"),
        }

        def entry_signal(self, candle, ind):
            return None

    charts = {c.key: c for c in Auto.chart_layout()}
    assert charts["bb"].overlay and charts["bb"].lines == ("bb_bbl", "bb_bbm", "bb_bbu")
    assert charts["st"].overlay and "st_supertd" not in charts["st"].lines and "st_supert" in charts["st"].lines
    assert not charts["atr"].overlay and charts["atr"].lines == ("atr",)
    assert "ema" not in charts


def test_bad_chart_declarations_are_refused() -> None:
    from tradeconsole.core.strategies import StrategyDefinitionError, ta

    with pytest.raises(StrategyDefinitionError, match="plot must be one of"):
        ta("bbands", plot="overlayy")
    with pytest.raises(StrategyDefinitionError, match="finite numbers"):
        ta("adx", levels=(float("nan"),))
    with pytest.raises(StrategyDefinitionError, match="base_panes"):
        type(
            "BadPanes",
            (Strategy,),
            {
                "name": "t_bad_panes",
                "default_interval": "5m",
                "base_panes": ("rsi", "adx"),
                "entry_signal": lambda self, c, i: None,
            },
        )


def test_a_layout_that_fails_falls_back_to_the_base_panes(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(Strategy):
        name = "t_broken_layout"
        default_interval = "5m"

        def entry_signal(self, candle, ind):
            return Side.LONG

    def boom(cls):
        raise RuntimeError("no layout")

    monkeypatch.setitem(STRATEGIES, Broken.name, Broken)
    monkeypatch.setattr(Broken, "chart_layout", classmethod(boom))
    charts, problem = charts_for(Broken.name)
    assert charts == tuple(BASE_CHARTS.values())
    assert "t_broken_layout" in problem and "no layout" in problem
    assert charts_for("no_such_strategy") == (tuple(BASE_CHARTS.values()), "")


def test_declared_pane_picture_has_its_reference_lines() -> None:
    """A declared pane draws its lines and labels its levels (drawn inline, no app needed)."""
    chart = Chart("adx", "adx", False, ("adx_adx",), (), (25.0,))
    pane = IndicatorChart(chart)
    rows = tuple({"adx_adx": 10.0 + 30.0 * abs(math.sin(i / 9))} for i in range(80))
    strips = build_picture(pane.plt, pane.draw, rows, 60, 10, "textual-dark")
    text = "\n".join(s.text for s in strips)
    assert "25" in text
    # the level is a line across the plot, not only a tick number: its row is mostly rule
    row = next(line for line in text.splitlines() if line.startswith("25"))
    assert row.count("─") >= 40, row
    assert sum(line.count("─") >= 40 for line in text.splitlines()[1:-1]) == 1  # and only that row
    assert pane.title_text(rows, width=60).startswith("adx ")
    assert IndicatorChart(Chart("adx", "adx", False, ("adx_adx",))).draw(pane.plt, (), 60, 10) == "warming up…"


@pytest.mark.asyncio
async def test_user_strategy_panes_appear(short_replay) -> None:
    """Pilot: the replay runs the tests-only strategy; its panes are on screen with values and
    reference lines, the bands are drawn over the candles."""
    app = TradeConsoleApp(short_replay(strategies=[("bands_oscillator", "1h")]), deterministic=True)
    async with app.run_test(size=(160, 45)) as pilot:
        await _replayed(pilot)
        panes = app.screen.query_one(IndicatorPanes)
        assert panes.pane_ids == ["macd", "pane-adx", "pane-stoch"]
        assert not app.screen.query("#rsi") and not app.screen.query("#cci")
        adx = app.screen.query_one("#pane-adx", IndicatorChart)
        assert adx.chart.levels == (25.0,)
        assert adx.border_title.startswith("adx ") and "-" not in adx.border_title.split()[1]
        assert "25" in _picture_text(adx)  # the reference line's label on the axis
        stoch = app.screen.query_one("#pane-stoch", IndicatorChart)
        assert "20" in _picture_text(stoch) and "80" in _picture_text(stoch)
        text = screen_text(app)
        assert "adx " in text and "stoch k " in text and "MACD " in text
        candles = app.screen.query_one(CandleChart)
        overlays = candles._data.overlays
        assert [name for name, _, _ in overlays] == ["bb_lower", "bb_mid", "bb_upper"]
        snap = app.collector.snapshot().sessions[0]
        assert all(len(vals) == len(snap.candles) for _, _, vals in overlays)
        lower, mid, upper = (vals[-1] for _, _, vals in overlays)
        assert lower < mid < upper and lower == snap.indicators[-1]["bb_lower"]
        # tab cycles through the declared panes like the built-in ones
        app.screen.query_one("#candles").focus()
        await pilot.press("tab")
        await pilot.pause(0.1)
        assert app.focused is not None and app.focused.id == "macd"
        await pilot.press("tab")
        await pilot.pause(0.1)
        assert app.focused.id == "pane-adx"


@pytest.mark.asyncio
async def test_switcher_lists_available_and_survives_broken_files(replay_opts, tmp_path, monkeypatch) -> None:
    """The switcher offers what ``available()`` finds, rescanning the user strategies directory:
    a file saved while the console runs is offered, a broken one (syntax error, ``SystemExit`` at
    import) is listed as not loaded with file and line; switching to a user strategy rebuilds the
    panes from its declarations."""
    d = tmp_path / "data"
    (d / "strategies").mkdir(parents=True)
    monkeypatch.setenv("TRADECONSOLE_DATA_DIR", str(d))
    app = TradeConsoleApp(replay_opts(), deterministic=True)
    async with app.run_test(size=(160, 45)) as pilot:
        await _replayed(pilot)
        await pilot.press("f", "y")  # January ends holding a short: a switch needs a flat session
        await wait_for(pilot, lambda: app.collector.snapshot().sessions[0].position is None, what="flat")
        assert app.screen.query_one(IndicatorPanes).pane_ids == ["rsi", "macd", "cci"]
        # saved while the console runs
        (d / "strategies" / "mine.py").write_text(
            (STRATS / "bands_oscillator.py").read_text().replace('"bands_oscillator"', '"mine_bands"')
        )
        (d / "strategies" / "broken.py").write_text("from tradeconsole.core.strategies import Strategy\n\ndef f(:\n")
        (d / "strategies" / "exits.py").write_text("raise SystemExit(3)\n")
        await pilot.press("t")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "StrategyDialog", what="the switcher")
        dialog = app.screen
        from textual.widgets import OptionList

        ol = dialog.query_one(OptionList)
        ids = [ol.get_option_at_index(i).id for i in range(ol.option_count)]
        assert {"basic", "engulfing", "bands_oscillator", "mine_bands"} <= set(ids)
        texts = [str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count)]
        assert any("broken.py:3" in t and "syntax error" in t for t in texts)
        assert any("exits.py" in t and "SystemExit" in t for t in texts)
        assert sum(ol.get_option_at_index(i).disabled for i in range(ol.option_count)) == 2
        ol.highlighted = ids.index("mine_bands")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.collector.snapshot().sessions[0].strategy == "mine_bands", what="the switch")
        app.screen.refresh_view(force=True)
        await wait_for(
            pilot,
            lambda: app.screen.query_one(IndicatorPanes).pane_ids == ["macd", "pane-adx", "pane-stoch"],
            what="the new panes",
        )
        assert app.is_running
