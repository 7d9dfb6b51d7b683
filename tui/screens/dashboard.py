"""The live dashboard: header, candles, indicators, position, equity, orders, trades and log.

It never receives engine events directly. A timer (``TradeConsoleApp.refresh_hz``) takes a
snapshot of the collector and hands each widget its part; widgets skip work when their part has
not changed, and the plotext charts are redrawn at most ``CHART_HZ`` times a second because they
are the expensive part. The key bindings live here (so the key bar shows them on this screen)
but call the app's actions, which own the runtime.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen

from tui.collector import CollectorSnapshot, SessionSnapshot
from tui.widgets.candles import CandleChart
from tui.widgets.header import KeyBar, StatusHeader
from tui.widgets.indicators import IndicatorChart
from tui.widgets.log import EventLog
from tui.widgets.orders import OrdersTable, TradesTable
from tui.widgets.positions import EquityPanel, PositionsPanel

if TYPE_CHECKING:
    from tui.app import TradeConsoleApp

__all__ = ["DashboardScreen"]

CHART_HZ = 2.5

_SWITCH = Binding.Group("Switch", compact=True)

DASHBOARD_BINDINGS = [
    Binding("s", "app.toggle_trading", "Start/Stop",
            tooltip="stop the strategy (no new entries; open positions keep their stop/target) / start again"),
    Binding("p", "app.toggle_pause", "Pause", tooltip="pause / resume new entries (exits keep working)"),
    Binding("f", "app.flatten", "Flatten", tooltip="close every position now, after confirmation"),
    Binding("k", "app.kill_switch", "Kill", tooltip="kill switch: flatten everything and pause entries (confirmed)"),
    Binding("t", "app.switch_strategy", "Switch strategy", group=_SWITCH,
            tooltip="switch the selected session's strategy"),
    Binding("y", "app.switch_symbol", "Switch symbol", group=_SWITCH, tooltip="trade another symbol (restarts the engine)"),
    Binding("i", "app.switch_interval", "Switch interval", group=_SWITCH,
            tooltip="another kline interval (restarts the engine)"),
    Binding("b", "app.backtest", "Backtest", tooltip="open the backtest screen"),
    Binding("space", "app.toggle_replay", "Replay pause", key_display="space", show=False, tooltip="pause / resume the replay feed"),
    Binding("n", "app.next_session", "Next session", show=False, tooltip="select the next running session"),
    Binding("question_mark,f1", "app.help", "Help", key_display="?"),
    Binding("q", "app.quit", "Quit", tooltip="stop the engine cleanly and exit"),
]


class DashboardScreen(Screen):
    BINDINGS = DASHBOARD_BINDINGS

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        with Vertical(id="body"):
            with Horizontal(id="top"):
                yield CandleChart(id="candles")
                with Vertical(id="side"):
                    yield PositionsPanel(id="position")
                    yield EquityPanel(id="equity")
            with Horizontal(id="indicators"):
                yield IndicatorChart("rsi", id="rsi")
                yield IndicatorChart("macd", id="macd")
                yield IndicatorChart("cci", id="cci")
            yield EventLog(id="log")
            with Horizontal(id="book"):
                yield OrdersTable(id="orders")
                yield TradesTable(id="trades")
        yield KeyBar(DASHBOARD_BINDINGS)

    @property
    def tc_app(self) -> TradeConsoleApp:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.query_one(EventLog).hide_wall_clock = self.tc_app.deterministic
        self._chart_seen: tuple[str, int] | None = None
        self._chart_time = 0.0
        self._version = -1
        self._snap: CollectorSnapshot | None = None
        self.refresh_view(force=True)
        self.set_interval(1.0 / self.tc_app.refresh_hz, self.refresh_view)

    # ------------------------------------------------------------------ drawing
    def refresh_header(self) -> None:
        """Only the status line (an operator action's immediate answer; the rest follows on the
        next tick)."""
        if self._snap is not None:
            self.query_one(StatusHeader).show(self.tc_app.header_state(self._snap))

    def refresh_view(self, force: bool = False) -> None:
        """Pull a snapshot from the collector and update what changed (timer callback)."""
        if not force and not self.is_current:
            return  # hidden behind the backtest screen: nothing to draw
        app = self.tc_app
        changed = force or app.collector.version != self._version
        if changed or self._snap is None:
            self._snap = app.collector.snapshot()
        snap = self._snap
        self.query_one(StatusHeader).show(app.header_state(snap))
        selected = snap.session(app.selected_key)
        if changed:
            self._version = snap.version
            app.on_snapshot(snap)
            self._draw_book(snap, selected)
            log = self.query_one(EventLog)
            log.append(app.collector.log_since(log.last_seq))
        if selected is None:
            return
        # checked on every tick, not only when something arrived: data that came in while the
        # charts were throttled is drawn as soon as the throttle allows, even if nothing follows
        seen = (selected.key, selected.version)
        now = time.monotonic()
        if seen != self._chart_seen and (force or now - self._chart_time >= 1.0 / CHART_HZ):
            self._chart_seen, self._chart_time = seen, now
            self._draw_charts(selected)

    def _draw_book(self, snap: CollectorSnapshot, selected: SessionSnapshot | None) -> None:
        others = [s for s in snap.sessions if selected is None or s.key != selected.key]
        self.query_one(PositionsPanel).show(selected, others)
        self.query_one(EquityPanel).show(selected)
        self.query_one(OrdersTable).show(selected)
        self.query_one(TradesTable).show(selected)

    def _draw_charts(self, s: SessionSnapshot) -> None:
        chart = self.query_one(CandleChart)
        chart.border_title = f"{s.symbol} {s.interval}" + (
            f"  C {s.candles[-1].close:,.2f}" if s.candles and s.open_candle is None else
            f"  open {s.open_candle.close:,.2f}" if s.open_candle is not None else "")
        chart.set_data(s.candles, s.open_candle, s.markers, s.position, s.interval)
        for pane in self.query(IndicatorChart):
            pane.set_data(s.indicators, s.open_indicators)
