"""The live dashboard: header, candles, indicators, position, equity, orders, trades and log.

It never receives engine events directly. A timer (``TradeConsoleApp.refresh_hz``) takes a
snapshot of the collector and hands each widget its part; widgets skip work when their part has
not changed, and the plotext charts are redrawn at most ``CHART_HZ`` times a second because they
are the expensive part. The key bindings live here (so the key bar shows them on this screen)
but call the app's actions, which own the runtime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Static
from tradeconsole.tui.collector import CollectorSnapshot, EventCollector, SessionSnapshot
from tradeconsole.tui.widgets.candles import CandleChart
from tradeconsole.tui.widgets.chart import ChartBuilder
from tradeconsole.tui.widgets.header import HeaderState, KeyBar, StatusHeader
from tradeconsole.tui.widgets.indicators import IndicatorPanes, overlay_lines
from tradeconsole.tui.widgets.log import EventLog
from tradeconsole.tui.widgets.orders import OrdersTable, TradesTable
from tradeconsole.tui.widgets.positions import EquityPanel, PositionsPanel, PositionStrip

__all__ = ["DashboardHost", "DashboardScreen", "LayoutPlan", "plan_layout"]

CHART_HZ = 2.5

DASHBOARD_BINDINGS = [
    Binding(
        "s",
        "app.toggle_trading",
        "Start/Stop",
        tooltip="stop the strategy (no new entries; open positions keep their stop/target) / start again",
    ),
    Binding("p", "app.toggle_pause", "Pause", tooltip="pause / resume new entries (exits keep working)"),
    Binding("f", "app.flatten", "Flatten", tooltip="close every position now, after confirmation"),
    Binding("k", "app.kill_switch", "Kill", tooltip="kill switch: flatten everything and pause entries (confirmed)"),
    Binding("b", "app.backtest", "Backtest", tooltip="open the backtest screen"),
    Binding("question_mark,f1", "app.help", "Help", key_display="?"),
    Binding("q", "app.quit", "Quit", tooltip="stop the engine cleanly and exit (asks when a position is open)"),
    Binding("t", "app.switch_strategy", "Strategy", tooltip="switch the selected session's strategy"),
    Binding("y", "app.switch_symbol", "Symbol", tooltip="trade another symbol (restarts the engine)"),
    Binding("i", "app.switch_interval", "Interval", tooltip="another kline interval (restarts the engine)"),
    Binding(
        "space",
        "app.toggle_replay",
        "Replay pause",
        key_display="space",
        show=False,
        tooltip="pause / resume the replay (stops at once)",
    ),
    Binding(
        "full_stop",
        "app.replay_step",
        "Replay step",
        key_display=".",
        show=False,
        tooltip="play one more candle of the replay, then hold",
    ),
    Binding(
        "plus,equals_sign",
        "app.replay_speed(1)",
        "Replay faster",
        key_display="+",
        show=False,
        tooltip="replay speed up: x1 ... x10,000, max",
    ),
    Binding("minus", "app.replay_speed(-1)", "Replay slower", key_display="-", show=False, tooltip="replay speed down"),
    Binding(
        "n,right_square_bracket",
        "app.next_session(1)",
        "Next session",
        key_display="n/]",
        show=False,
        tooltip="show the next session (symbol x strategy) on the chart",
    ),
    Binding(
        "left_square_bracket",
        "app.next_session(-1)",
        "Previous session",
        key_display="[",
        show=False,
        tooltip="show the previous session on the chart",
    ),
    Binding("tab", "cycle_focus(1)", "Next pane", show=False, tooltip="focus the next pane (collapsed ones too)"),
    Binding("shift+tab", "cycle_focus(-1)", "Previous pane", show=False),
    Binding("1", "show_pane('indicators')", "Indicators", show=False, tooltip="show/focus the indicator panes"),
    Binding("2", "show_pane('log')", "Log", show=False, tooltip="show/focus the event log"),
    Binding("3", "show_pane('orders')", "Orders", show=False, tooltip="show/focus the orders table"),
    Binding("4", "show_pane('trades')", "Trades", show=False, tooltip="show/focus the trades table"),
    Binding(
        "o",
        "toggle_orders",
        "Orders open/history",
        show=False,
        tooltip="orders table: open orders <-> every order's final state",
    ),
]


#: keys the key bar never drops, however narrow the terminal
ESSENTIAL_KEYS = ("app.toggle_trading", "app.flatten", "app.kill_switch", "app.help", "app.quit")

#: panes that collapse into the switcher when there is no room, with their number key
SWITCHABLE = (("indicators", "Indicators"), ("log", "Log"), ("orders", "Orders"), ("trades", "Trades"))


@dataclass(frozen=True, slots=True)
class LayoutPlan:
    """Where every pane goes at one terminal size (rows are content rows, between the header
    and the key bar). ``tabbed`` panes share the switcher area; everything else is on screen."""

    tier: str  # full, mid, small
    narrow: bool  # below 80 columns: the position moves to a 2-line strip under the chart
    top: int
    indicators: int
    log: int
    book: int
    switcher: int
    tabbed: tuple[str, ...]
    side_width: int


def plan_layout(width: int, height: int) -> LayoutPlan:
    """The layout for a terminal of ``width`` x ``height``: nothing is ever hidden without a way
    to reach it; what does not fit collapses into the switcher (btop-style), largest first."""
    rows = max(1, height - 2)
    narrow = width < 80
    side = 0 if narrow else 30 if width < 120 else 44
    strip = 2 if narrow else 0
    if rows >= 40 and width >= 120:
        ind = max(9, rows * 22 // 100)
        log = max(6, rows * 14 // 100)
        book = max(8, rows * 22 // 100)
        return LayoutPlan("full", narrow, rows - ind - log - book, ind, log, book, 0, (), side)
    if rows >= 28:
        ind = 7 if rows < 34 else 8
        sw = max(7, rows * 30 // 100)
        return LayoutPlan("mid", narrow, rows - ind - 1 - sw - strip, ind, 0, 0, sw, ("log", "orders", "trades"), side)
    sw = max(5, rows * 42 // 100)
    top = rows - 1 - sw - strip
    return LayoutPlan("small", narrow, max(4, top), 0, 0, 0, sw, ("indicators", "log", "orders", "trades"), side)


class SwitcherBar(Static):
    """The switcher's tab line: each collapsed pane with its number key, the shown one
    highlighted."""

    def show_tabs(self, tabbed: tuple[str, ...], selected: str) -> None:
        t = Text(no_wrap=True, overflow="crop")
        for i, (name, label) in enumerate(SWITCHABLE, 1):
            if name not in tabbed:
                continue
            style = "bold reverse" if name == selected else ""
            t.append(f" {i} ", style="bold #ffaf00" + (" reverse" if name == selected else ""))
            t.append(f"{label} ", style=style)
        t.append(" tab: next pane", style="dim")
        self.update(t)


class DashboardHost(Protocol):
    """What the dashboard reads from its owner (``TradeConsoleApp``), handed to the screen
    instead of imported: the collector it draws, the header's state and the selected session."""

    collector: EventCollector
    selected_key: str | None
    deterministic: bool
    refresh_hz: float

    def header_state(self, snap: CollectorSnapshot) -> HeaderState: ...

    def account_equity(self, snap: CollectorSnapshot) -> float | None: ...

    def on_snapshot(self, snap: CollectorSnapshot) -> None: ...


class DashboardScreen(Screen):
    BINDINGS = DASHBOARD_BINDINGS

    def __init__(self, host: DashboardHost, *, chart_builder: ChartBuilder | None = None) -> None:
        super().__init__()
        self.host = host
        self.chart_builder = chart_builder
        self.plan: LayoutPlan | None = None
        self.pane = "indicators"  # shown in the switcher when collapsed

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="status")
        with Vertical(id="body"):
            with Horizontal(id="top"):
                yield CandleChart(id="candles", builder=self.chart_builder)
                with Vertical(id="side"):
                    yield PositionsPanel(id="position")
                    yield EquityPanel(id="equity")
            yield PositionStrip(id="strip")
            yield SwitcherBar(id="tabs")
            yield IndicatorPanes(id="indicators", builder=self.chart_builder)  # the shown strategy's panes
            yield EventLog(id="log")
            with Horizontal(id="book"):
                yield OrdersTable(id="orders")
                yield TradesTable(id="trades")
        yield KeyBar(DASHBOARD_BINDINGS, essential=ESSENTIAL_KEYS)

    # ------------------------------------------------------------------ layout
    def on_resize(self) -> None:
        self.apply_layout()

    def apply_layout(self) -> None:
        """Size and show the panes for the current terminal size (see ``plan_layout``)."""
        w, h = self.app.size
        plan = plan_layout(w, h)
        self.plan = plan
        if plan.tabbed and self.pane not in plan.tabbed:
            self.pane = plan.tabbed[0]
        shown = {name: name not in plan.tabbed or name == self.pane for name, _ in SWITCHABLE}
        q = self.query_one
        self.set_class(plan.tier == "full", "-full")
        q("#top").styles.height = plan.top
        q("#side").display = not plan.narrow
        q("#side").styles.width = plan.side_width or 30
        q("#strip").display = plan.narrow
        tabs = q("#tabs", SwitcherBar)
        tabs.display = bool(plan.tabbed)
        if plan.tabbed:
            tabs.show_tabs(plan.tabbed, self.pane)
        sw = plan.switcher
        ind = q("#indicators")
        ind.display = shown["indicators"]
        ind.styles.height = plan.indicators if "indicators" not in plan.tabbed else sw
        log = q("#log")
        log.display = shown["log"]
        log.styles.height = plan.log if "log" not in plan.tabbed else sw
        book = q("#book")
        book.display = shown["orders"] or shown["trades"]
        book.styles.height = plan.book if "orders" not in plan.tabbed else sw
        q("#orders").display = shown["orders"]
        q("#trades").display = shown["trades"]

    def action_show_pane(self, name: str) -> None:
        """Number keys: bring a collapsed pane into the switcher (and focus what can be)."""
        if self.plan is not None and name in self.plan.tabbed:
            self.pane = name
            self.apply_layout()
        panes = self.query_one(IndicatorPanes).pane_ids
        target = {
            "indicators": f"#{panes[0]}" if panes else "#indicators",
            "log": "#log",
            "orders": "#orders",
            "trades": "#trades",
        }[name]
        self.call_after_refresh(self.query_one(target).focus)

    def action_toggle_orders(self) -> None:
        self.query_one(OrdersTable).toggle_history()
        self.action_show_pane("orders")

    def action_cycle_focus(self, step: int) -> None:
        """Tab / shift+Tab: every pane in turn, collapsed ones included (the switcher follows)."""
        panes = self.query_one(IndicatorPanes).pane_ids
        order = ["candles", *panes, "log", "orders", "trades"]
        group = {**{p: "indicators" for p in panes}, "log": "log", "orders": "orders", "trades": "trades"}
        focused = self.focused.id if self.focused is not None else None
        i = order.index(focused) if focused in order else -1
        nxt = order[(i + step) % len(order)]
        g = group.get(nxt)
        if g is not None and self.plan is not None and g in self.plan.tabbed and g != self.pane:
            self.pane = g
            self.apply_layout()
        widget = self.query_one(f"#{nxt}")
        self.call_after_refresh(widget.focus)

    def on_mount(self) -> None:
        self.query_one(EventLog).hide_wall_clock = self.host.deterministic
        self.apply_layout()
        self._chart_seen: tuple[str, int] | None = None
        self._chart_time = 0.0
        self._version = -1
        self._snap: CollectorSnapshot | None = None
        self._noted: set[str] = set()
        self.refresh_view(force=True)
        self.set_interval(1.0 / self.host.refresh_hz, self.refresh_view)

    # ------------------------------------------------------------------ drawing
    def refresh_header(self) -> None:
        """Only the status line (an operator action's immediate answer; the rest follows on the
        next tick)."""
        if self._snap is not None:
            self.query_one(StatusHeader).show(self.host.header_state(self._snap))

    def refresh_view(self, force: bool = False) -> None:
        """Pull a snapshot from the collector and update what changed (timer callback)."""
        if not force and not self.is_current:
            return  # hidden behind the backtest screen: nothing to draw
        app = self.host
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
        self.query_one(EquityPanel).show(selected, self.host.account_equity(snap))
        self.query_one(PositionStrip).show(selected)
        self.query_one(OrdersTable).show(selected, others)
        self.query_one(TradesTable).show(selected)

    def _draw_charts(self, s: SessionSnapshot) -> None:
        chart = self.query_one(CandleChart)
        chart.border_title = f"{s.symbol} {s.interval}" + (
            f"  C {s.candles[-1].close:,.2f}"
            if s.candles and s.open_candle is None
            else f"  open {s.open_candle.close:,.2f}"
            if s.open_candle is not None
            else ""
        )
        panes = self.query_one(IndicatorPanes)
        charts = panes.show(s.strategy, s.indicators, s.open_indicators)
        if panes.problem and panes.problem not in self._noted:  # a strategy's bad declaration: said once
            self._noted.add(panes.problem)
            self.host.collector.note(panes.problem, "warning")
        chart.set_data(
            s.candles,
            s.open_candle,
            s.markers,
            s.position,
            s.interval,
            overlay_lines(charts, s.indicators, s.open_indicators),
        )
