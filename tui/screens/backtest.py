"""The backtest screen: try a strategy on history without leaving the console.

A form on the left (strategy, symbol, interval, data, date range, fill model, cash, leverage, fee,
slippage, funding, and every parameter the strategy declares, in the CLI's units: fractions and
bps); results on the right: the metrics of ``tradeconsole.backtest.metrics``, a comparison table of every
run kept this session, the equity curve, the price with the fills, and a sortable trades table.

The run itself is ``tradeconsole.backtest.facade.Backtest`` (as ``tradeconsole backtest``) in a
thread worker. Its progress callback only stores two integers and reads the cancel flag; a timer
copies the numbers into the progress bar, so a fast run is never slowed by the UI and the UI
never waits for the run. What the screen needs from the app (the chart builder, the intervals
offered) is handed to its constructor: screens never import the app.

Layout: on a wide terminal every result view is visible at once; on a narrow one a single view
is shown and ``ctrl+n`` (or focusing a view with Tab) switches between them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Select, Static
from textual_plotext import Plot
from tradeconsole.backtest.report import fmt_metric as _fmt
from tradeconsole.core.strategies import STRATEGIES, make_strategy
from tradeconsole.tui.screens import INTERVALS
from tradeconsole.tui.screens.panes import PaneScreen
from tradeconsole.tui.widgets.candles import spaced_ticks
from tradeconsole.tui.widgets.chart import ChartBuilder, ThreadedPlot
from tradeconsole.tui.widgets.form import choice_field, form_row, run_bindings, run_button, set_cursor_blink, text_field
from tradeconsole.tui.widgets.header import KeyBar

__all__ = ["BACKTEST_BINDINGS", "BacktestRequest", "BacktestRun", "BacktestScreen", "parse_request"]

BACKTEST_BINDINGS = [
    *run_bindings("backtest", "the dashboard"),
    Binding("ctrl+n", "next_view", "Next view", key_display="^n", tooltip="show the next result view"),
    Binding("ctrl+s", "export", "Export CSV", key_display="^s", tooltip="write the shown run's trades to CSV"),
    Binding(
        "ctrl+o",
        "optimise",
        "Optimise",
        key_display="^o",
        tooltip="search this form's strategy parameters (heatmap, top trials, walk-forward)",
    ),
]

VIEWS = ("metrics", "runs", "equity", "price", "trades")
VIEW_TITLES = {"metrics": "Metrics", "runs": "Runs", "equity": "Equity", "price": "Price & fills", "trades": "Trades"}
MAX_RUNS = 10  # results hold whole equity curves: keep memory bounded

Loader = Callable[[str, str], tuple[Any, str]]


def default_loader(path: str, interval: str) -> tuple[Any, str]:
    """Candles and a one-line data summary (gaps, duplicates) for ``path``."""
    from tradeconsole.backtest.data import load_candles

    candles, report = load_candles(path, interval=interval)
    return candles, report.summary()


# ---------------------------------------------------------------------------- the form


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    """One run, in the units the CLI and the config use: fractions (fee 0.0004 = 0.04%,
    stop_loss_pct 0.015 = 1.5%), slippage in basis points, funding as a fraction per 8 h."""

    strategy: str
    symbol: str
    interval: str
    data: str  # path, or "" for the history cache
    start_ms: int | None
    end_ms: int | None
    fill_model: str
    fee_rate: float
    cash: float
    leverage: float = 1.0
    slippage_bps: float = 0.0
    funding_rate_8h: float = 0.0
    params: tuple[tuple[str, float], ...] = ()  # the strategy's parameters (its Params fields)

    @property
    def stop_loss_pct(self) -> float:
        return dict(self.params).get("stop_loss_pct", STRATEGIES[self.strategy].Params().stop_loss_pct)

    @property
    def take_profit_pct(self) -> float:
        return dict(self.params).get("take_profit_pct", STRATEGIES[self.strategy].Params().take_profit_pct)

    def source(self) -> str:
        if self.data:
            return self.data
        from tradeconsole.core.paths import history_cache_dir

        return str(history_cache_dir(self.symbol, self.interval, "spot"))

    def settings_dict(self) -> dict[str, object]:
        """Everything that defines the run, for the Runs table's "what differs" columns."""
        return {
            "symbol": self.symbol,
            "iv": self.interval,
            "fills": self.fill_model,
            "data": Path(self.data).name or "cache",
            "from": _day(self.start_ms),
            "to": _day(self.end_ms),
            "cash": self.cash,
            "lev": self.leverage,
            "fee": self.fee_rate,
            "slip_bps": self.slippage_bps,
            "funding": self.funding_rate_8h,
            "strategy": self.strategy,
            **dict(self.params),
        }


def _day(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def param_fields(strategy: str) -> list[tuple[str, float]]:
    """The strategy's own parameter declaration (its ``Params`` dataclass): name and default."""
    cls = STRATEGIES[strategy]
    return [(f.name, float(getattr(cls.Params(), f.name))) for f in fields(cls.Params)]


def _date_ms(text: str, name: str, errors: list[str]) -> int | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        errors.append(f"{name}: {text!r} is not a date like 2022-09-01")
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _number(text: str, name: str, errors: list[str], lo: float, hi: float) -> float:
    try:
        v = float(text.replace(",", "").replace("_", ""))
    except ValueError:
        errors.append(f"{name}: {text!r} is not a number")
        return math.nan
    if not lo <= v <= hi:
        errors.append(f"{name} must be between {lo:g} and {hi:g}")
    return v


def parse_request(values: dict[str, str]) -> tuple[BacktestRequest | None, list[str]]:
    """The form's text values -> a request, or the list of what is wrong with them. Strategy
    parameters come as ``param:NAME`` keys; units are the CLI's (fractions, bps)."""
    errors: list[str] = []
    strategy = values.get("strategy", "")
    if strategy not in STRATEGIES:
        errors.append(f"unknown strategy {strategy!r}")
    symbol = values.get("symbol", "").strip().upper()
    if not symbol.isalnum():
        errors.append("symbol: letters and digits, e.g. ETHUSDT")
    start = _date_ms(values.get("from", "").strip(), "from", errors)
    end = _date_ms(values.get("to", "").strip(), "to", errors)
    if start is not None and end is not None and end <= start:
        errors.append("to must be after from")
    fee = _number(values.get("fee", "0.0004"), "fee (fraction, 0.0004 = 0.04%)", errors, 0.0, 0.0099)
    cash = _number(values.get("cash", "10000"), "cash", errors, 1.0, 1e12)
    leverage = _number(values.get("leverage", "1"), "leverage", errors, 1.0, 125.0)
    slippage = _number(values.get("slippage_bps", "0"), "slippage_bps", errors, 0.0, 1000.0)
    funding = _number(values.get("funding_rate", "0"), "funding_rate (fraction per 8 h)", errors, -0.05, 0.05)
    params: list[tuple[str, float]] = []
    if strategy in STRATEGIES:
        for name, default in param_fields(strategy):
            text = values.get(f"param:{name}", "")
            params.append((name, _number(text, name, errors, -1e9, 1e9) if text.strip() else default))
        if not errors:
            try:
                make_strategy(strategy, **dict(params))  # the strategy's own checks (0 < stop < 1 ...)
            except ValueError as exc:
                errors.append(str(exc))
    data = values.get("data", "").strip()
    if data and symbol and not errors:
        from tradeconsole.tui.startup import data_symbol_problem

        problem = data_symbol_problem(data, symbol)  # never label one symbol's prices as another's
        if problem:
            errors.append(problem)
    if errors:
        return None, errors
    return BacktestRequest(
        strategy=strategy,
        symbol=symbol,
        interval=values["interval"],
        data=data,
        start_ms=start,
        end_ms=end,
        fill_model=values["fill_model"],
        fee_rate=fee,
        cash=cash,
        leverage=leverage,
        slippage_bps=slippage,
        funding_rate_8h=funding,
        params=tuple(params),
    ), []


@dataclass(slots=True)
class BacktestRun:
    number: int
    request: BacktestRequest
    result: Any  # tradeconsole.backtest.runner.BacktestResult
    metrics: dict[str, Any]
    data_summary: str


# ---------------------------------------------------------------------------- result views


def _when(iso: str | None) -> str:
    """``2022-01-01T00:00:00.000Z`` -> ``2022-01-01``; keeps the time when it is not midnight."""
    if not iso:
        return "-"
    text = iso[:16].replace("T", " ")
    return text[:10] if text.endswith("00:00") else text


def metrics_table(m: dict[str, Any], data_summary: str) -> Table:
    """The step-1 metrics as a compact two-column grid that fits a narrow pane."""
    t = Table.grid(padding=(0, 1))
    t.add_column(style="dim", no_wrap=True, min_width=14)  # labels whole; values wrap instead
    t.add_column(overflow="fold")

    def signed(v: float | None, spec: str = "+.2f", suffix: str = "%") -> Text:
        return Text(_fmt(v, spec, suffix), style="dim" if v is None else "green" if v > 0 else "red" if v < 0 else "")

    a = m["assumptions"]
    t.add_row("run", Text(f"{m['strategy']} {m['symbol']} {m['interval']} ({a['fill_model']})", style="bold"))
    t.add_row("period", f"{_when(m['start'])} → {_when(m['end'])}")
    t.add_row("bars", f"{m['bars']:,}" + ("  (cancelled)" if m.get("cancelled") else ""))
    t.add_row("return", signed(m["return_pct"]))
    t.add_row("buy & hold", signed(m["buy_and_hold_return_pct"]))
    t.add_row("final equity", f"{_fmt(m['final_equity'])} (from {_fmt(m['initial_cash'])})")
    t.add_row("round trips", f"{m['trades']} ({m['long_trades']} long, {m['short_trades']} short)")
    t.add_row("wins/losses", f"{m['wins']} / {m['losses']}  win rate {_fmt(m['win_rate_pct'], '.1f', '%')}")
    t.add_row("max drawdown", _fmt(m["max_drawdown_pct"], ".2f", "%"))
    t.add_row("sharpe/sortino", f"{_fmt(m['sharpe'], '.2f')} / {_fmt(m['sortino'], '.2f')}")
    t.add_row("profit factor", _fmt(m["profit_factor"], ".2f"))
    t.add_row("avg trade", f"{_fmt(m['avg_trade_pnl'])} ({_fmt(m['avg_trade_pct'], '+.2f', '%')})")
    t.add_row("exposure", _fmt(m["exposure_pct"], ".1f", "%"))
    t.add_row("fees", _fmt(m["fees_paid"]))
    t.add_row("costs", f"fee {a['fee_rate']:g}  stop_loss {a['stop_loss_pct']:g}  take_profit {a['take_profit_pct']:g}")
    op = m.get("open_position")
    if op:
        t.add_row("open at end", f"{op['side']} {op['qty']:.4f} @ {op['entry_price']:,.2f}")
    t.add_row("data", Text(data_summary, style="dim"))
    return t


#: the Runs table's metric columns, most telling first
RUN_METRICS = ("return", "maxDD", "win", "PF", "sharpe", "trades", "final", "B&H")


def _setting(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _fill_time(ms: int) -> str:
    """A fill's time as the console shows times: an exit found on a closed bar is stamped with
    the bar's close (``…:59.999``) and shown as the minute it completes (``21:00``, not
    ``20:59``), so entries (at opens) and exits read on the same clock."""
    if ms % 1000 == 999:
        ms += 1
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _sort_key(value: Any) -> tuple[int, Any]:
    """Cells are formatted text; sort numbers as numbers and the rest as text."""
    s = str(value.plain if isinstance(value, Text) else value).replace(",", "").rstrip("%")
    try:
        return (0, float(s))
    except ValueError:
        return (1, s)


class SortableTable(DataTable):
    """A DataTable sorted from the keyboard: ``s`` sorts by the cursor's column, again reverses;
    the sorted column's label carries ▲ (ascending) or ▼."""

    BINDINGS = [Binding("s", "sort_column", "Sort by column")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="cell", zebra_stripes=True, **kwargs)
        self.sorted_by: tuple[str, bool] | None = None
        self._labels: dict[str, str] = {}

    def set_columns(self, *labels: str) -> None:
        """Replace every column (labels keep two cells for the sort mark)."""
        self.clear(columns=True)
        self._labels = {}
        self.sorted_by = None
        for label in labels:
            key = self.add_column(f"{label}  ", key=label)
            self._labels[str(key.value)] = label

    def action_sort_column(self) -> None:
        if not self.columns or not self.row_count:
            return
        column = list(self.columns)[self.cursor_column]
        reverse = self.sorted_by is not None and self.sorted_by == (str(column.value), False)
        self.sort(column, key=_sort_key, reverse=reverse)
        self.sorted_by = (str(column.value), reverse)
        for key, col in self.columns.items():
            base = self._labels.get(str(key.value), str(col.label).rstrip(" ▲▼"))
            mark = ("▼" if reverse else "▲") if key == column else " "
            col.label = Text(f"{base} {mark}")
        self.refresh()


class ResultChart(ThreadedPlot):
    """Equity curve or price-with-fills of one run (downsampled to the pane's width)."""

    can_focus = True

    def __init__(self, kind: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind = kind
        self.run: BacktestRun | None = None

    def show(self, run: BacktestRun | None) -> None:
        self.run = run
        self.show_data(run)

    def draw(self, plt: Plot, run: BacktestRun | None, width: int, height: int) -> str | None:
        if run is None or len(run.result.close) < 2 or width < 20 or height < 5:
            return "no run yet: fill the form and press ctrl+r"
        import numpy as np

        r = run.result
        n = len(r.close)
        step = max(1, n // max(10, (width - 12) * 2))
        x = list(range(0, n, step))
        if self.kind == "equity":
            plt.plot(x, r.equity[::step].tolist(), marker="braille", color="cyan+")
            plt.hline(r.settings.initial_cash, "gray")
        else:
            plt.plot(x, r.close[::step].tolist(), marker="braille", color="gray")
            times = r.open_time

            def idx(t: int) -> int:
                return int(min(n - 1, max(0, np.searchsorted(times, t, side="right") - 1)))

            for reasons, marker, color in (
                (("entry_long",), "▲", "green+"),
                (("entry_short",), "▼", "red+"),
                (("stop_loss", "take_profit", "liquidation", "flatten"), "x", "cyan"),
            ):
                pts = [f for f in r.fills if f.reason.value in reasons]
                if pts:
                    plt.scatter([idx(f.time) for f in pts], [f.price for f in pts], marker=marker, color=color)
        idx_, labels = spaced_ticks(
            len(x),
            width - 12,
            10,
            lambda i: datetime.fromtimestamp(int(r.open_time[x[i]]) / 1000, tz=UTC).strftime("%Y-%m-%d"),
        )
        plt.xticks([x[i] for i in idx_], labels)
        return None


# ---------------------------------------------------------------------------- the screen


def _row(label: str, field: Any) -> Horizontal:
    return form_row(label, field, "bt")


class BacktestScreen(PaneScreen):
    BINDINGS = BACKTEST_BINDINGS
    # the result views: one at a time on a narrow terminal (ctrl+n, or Tab into one)
    PANES = VIEWS
    PANE_TITLES = VIEW_TITLES
    PANE_BAR = "bt-views"
    PANE_HINT = "ctrl+n next"

    def __init__(
        self,
        *,
        strategy: str = "basic",
        symbol: str = "ETHUSDT",
        interval: str | None = None,
        data: str = "",
        cash: float = 10_000.0,
        deterministic: bool = False,
        loader: Loader = default_loader,
        chart_builder: ChartBuilder | None = None,
        intervals: Sequence[str] = INTERVALS,
    ) -> None:
        super().__init__()
        self.chart_builder = chart_builder
        self.intervals = list(intervals)
        self.initial = {
            "strategy": strategy,
            "symbol": symbol,
            "interval": interval or STRATEGIES[strategy].default_interval,
            "data": data,
            "cash": cash,
        }
        self.deterministic = deterministic
        self.loader = loader
        self.runs: list[BacktestRun] = []
        self.shown: BacktestRun | None = None
        self.view = "metrics"
        self.running = False
        self._cancel = threading.Event()
        self._progress = (0, 0)
        self._number = 0
        self._timer = None
        self.status_message = ""

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        ini = self.initial
        yield Static("Backtest · the live strategy code on history · trading continues behind", id="bt-title")
        with Horizontal(id="bt-main"):
            with VerticalScroll(id="bt-form", can_focus=False):
                yield _row("Strategy", choice_field(STRATEGIES, ini["strategy"], "strategy"))
                yield _row("Symbol", text_field(ini["symbol"], "symbol"))
                yield _row("Interval", choice_field(self.intervals, ini["interval"], "interval"))
                yield _row("Data", text_field(ini["data"], "data", placeholder="history cache"))
                yield _row("From", text_field("", "from", placeholder="YYYY-MM-DD"))
                yield _row("To", text_field("", "to", placeholder="YYYY-MM-DD"))
                yield _row("Fills", choice_field(("realistic", "seed"), "realistic", "fill_model"))
                yield _row("Cash", text_field(f"{ini['cash']:g}", "cash"))
                # the CLI's names and units: fractions, bps (tradeconsole backtest --help)
                yield _row("leverage", text_field("1", "leverage"))
                yield _row("fee", text_field("0.0004", "fee", tooltip="fraction: 0.0004 = 0.04%"))
                yield _row("slippage_bps", text_field("0", "slippage_bps"))
                yield _row("funding_rate", text_field("0", "funding_rate", tooltip="fraction per 8 h"))
                yield Label("strategy params (--param)", classes="bt-section")
                yield Vertical(*self._param_rows(ini["strategy"]), id="bt-params")
                yield run_button("run")
            with Vertical(id="bt-results"):
                yield Static("", id="bt-views")
                with Vertical(id="bt-grid"):
                    yield VerticalScroll(Static("", id="metrics-body"), id="metrics", classes="view")
                    yield SortableTable(id="runs", classes="view")
                    yield ResultChart("equity", id="equity", classes="view", builder=self.chart_builder)
                    yield ResultChart("price", id="price", classes="view", builder=self.chart_builder)
                    yield SortableTable(id="trades", classes="view")
        with Horizontal(id="bt-bottom"):  # outside the form's scroll: always visible, wraps
            yield ProgressBar(total=100, show_eta=False, id="progress")
            yield Static("", id="bt-status")
        yield KeyBar(BACKTEST_BINDINGS)

    def _param_rows(self, strategy: str) -> list[Horizontal]:
        """One input per field of the strategy's ``Params`` declaration, at its default."""
        return [
            _row(name, text_field(f"{default:g}", f"param-{name}", classes="param"))
            for name, default in param_fields(strategy)
        ]

    @on(Select.Changed, "#strategy")
    async def _strategy_changed(self, event: Select.Changed) -> None:
        box = self.query_one("#bt-params", Vertical)
        if event.value not in STRATEGIES:
            return
        current = [inp.id for inp in box.query(Input)]
        wanted = [f"param-{n}" for n, _ in param_fields(str(event.value))]
        if current == wanted:
            return
        await box.remove_children()
        await box.mount(*self._param_rows(str(event.value)))
        set_cursor_blink(box, self.deterministic)

    def on_mount(self) -> None:
        set_cursor_blink(self, self.deterministic)
        titles = {
            "metrics": "Metrics",
            "runs": "Runs (Enter shows one)",
            "equity": "Equity",
            "price": "Price & fills (▲ long ▼ short x exit)",
            "trades": "Trades (s sorts)",
        }
        for v in VIEWS:
            self.query_one(f"#{v}").border_title = titles[v]
        self.query_one("#runs", SortableTable).set_columns("#", *RUN_METRICS)
        trades = self.query_one("#trades", SortableTable)
        trades.set_columns("#", "side", "entry time", "entry", "exit time", "exit", "pnl", "ret %", "reason")
        self.query_one("#metrics-body", Static).update(Text("No run yet. Fill the form, then ctrl+r.", style="dim"))
        self._show_view("metrics")
        self.query_one("#strategy").focus()

    # ------------------------------------------------------------------ running
    def form_values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in ("strategy", "interval", "fill_model"):
            out[name] = str(self.query_one(f"#{name}", Select).value)
        for name in ("symbol", "data", "from", "to", "cash", "leverage", "fee", "slippage_bps", "funding_rate"):
            out[name] = self.query_one(f"#{name}", Input).value
        for inp in self.query("#bt-params Input").results(Input):
            out[f"param:{str(inp.id).removeprefix('param-')}"] = inp.value
        return out

    def _status(self, text: str, style: str = "") -> None:
        self.status_message = text
        self.query_one("#bt-status", Static).update(Text(text, style=style))

    @on(Button.Pressed, "#run")
    def _run_pressed(self) -> None:
        self.action_run()

    def action_run(self) -> None:
        if self.running:
            self._status("a backtest is already running (Escape cancels it)", "yellow")
            return
        req, errors = parse_request(self.form_values())
        if req is None:
            self._status("; ".join(errors), "bold red")
            return
        self.running = True
        self._cancel.clear()
        self._progress = (0, 0)
        self.query_one("#progress", ProgressBar).update(total=100, progress=0)
        self._status(f"loading {req.source()} …")
        self._timer = self.set_interval(0.1, self._show_progress)
        self._run_worker(req)

    def action_cancel_or_back(self) -> None:
        if self.running:
            self._cancel.set()
            self._status("cancelling…", "yellow")
        else:
            self.app.pop_screen()

    def _progress_cb(self, done: int, total: int) -> bool:
        self._progress = (done, total)
        return not self._cancel.is_set()

    def _show_progress(self) -> None:
        done, total = self._progress
        if total:
            self.query_one("#progress", ProgressBar).update(total=total, progress=done)
            self._status(f"running… {done:,}/{total:,} bars (Escape cancels)")

    @work(thread=True, exclusive=True, group="backtest")
    def _run_worker(self, req: BacktestRequest) -> None:
        """Load, slice, run and measure off the UI thread; report back with call_from_thread.
        The run is the one ``Backtest`` of ``tradeconsole backtest``: the dates select the traded
        window and the candles before it warm the indicators up, so the same window gives the
        same numbers here and on the command line."""
        from tradeconsole.backtest.facade import Backtest

        try:
            candles, summary = self.loader(req.source(), req.interval)
            bt = Backtest(
                candles,
                req.strategy,
                params=dict(req.params),
                fill_model=req.fill_model,
                cash=req.cash,
                fee=req.fee_rate,
                leverage=req.leverage,
                slippage_bps=req.slippage_bps,
                funding_rate_8h=req.funding_rate_8h,
                symbol=req.symbol,
                interval=req.interval,
                start=req.start_ms,
                end=req.end_ms,
            )
            if bt.bars < 2:
                raise ValueError("fewer than 2 candles in the chosen data and date range")
            if self._cancel.is_set():
                self._report(None, "cancelled before the run started")
                return
            outcome = bt.run(progress=self._progress_cb)
            metrics = outcome.metrics
        except Exception as exc:  # noqa: BLE001 - bad data, bad parameters: shown, never fatal
            self._report(None, f"{type(exc).__name__}: {exc}")
            return
        self._report(BacktestRun(0, req, outcome.result, metrics, summary), "")

    def _report(self, run: BacktestRun | None, error: str) -> None:
        """Hand the outcome to the UI thread (nothing to do if the app has closed meanwhile)."""
        try:
            self.app.call_from_thread(self._finished, run, error)
        except Exception:  # noqa: BLE001 - app gone (RuntimeError) or no active app: nobody to tell
            pass

    def on_unmount(self) -> None:
        self._cancel.set()  # the app is closing: a running backtest stops at its next progress call

    def _finished(self, run: BacktestRun | None, error: str) -> None:
        self.running = False
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if run is None:
            self._status(error, "bold red" if "cancelled" not in error else "yellow")
            return
        self._number += 1
        run.number = self._number
        self.runs.append(run)
        del self.runs[:-MAX_RUNS]
        total = len(run.result.close)
        self.query_one("#progress", ProgressBar).update(total=max(1, total), progress=total)
        m = run.metrics
        state = "cancelled" if m.get("cancelled") else "done"
        diff = ""
        if len(self.runs) > 1:  # what this run changed, so two runs are never told apart by guessing
            before, now = self.runs[-2].request.settings_dict(), run.request.settings_dict()
            changed = [
                f"{k} {_setting(before.get(k))}→{_setting(now.get(k))}" for k in now if before.get(k) != now.get(k)
            ]
            diff = f"; vs #{self.runs[-2].number}: {', '.join(changed) or 'same settings'}"
        self._status(
            f"run #{run.number} {state}: {m['trades']} round trips, return {m['return_pct']:+.2f}%{diff}",
            "yellow" if m.get("cancelled") else "green",
        )
        self._fill_runs()
        self.show_run(run)
        self._show_view("metrics")

    # ------------------------------------------------------------------ results
    def _fill_runs(self) -> None:
        """Every kept run: the settings that differ between them (all the same: in the title),
        then every headline metric. ``s`` sorts by the cursor's column, Enter shows the run."""
        table = self.query_one("#runs", SortableTable)
        settings = [r.request.settings_dict() for r in self.runs]
        keys = list(dict.fromkeys(k for d in settings for k in d))
        differ = [k for k in keys if len({repr(d.get(k)) for d in settings}) > 1]
        same = [k for k in keys if k not in differ]
        table.set_columns("#", *differ, *RUN_METRICS)
        for r, d in zip(self.runs, settings, strict=True):
            m = r.metrics
            cells = [_setting(d.get(k)) for k in differ]
            table.add_row(
                str(r.number),
                *cells,
                _fmt(m["return_pct"], "+.2f", "%"),
                _fmt(m["max_drawdown_pct"], ".1f", "%"),
                _fmt(m["win_rate_pct"], ".0f", "%"),
                _fmt(m["profit_factor"], ".2f"),
                _fmt(m["sharpe"], ".2f"),
                str(m["trades"]),
                _fmt(m["final_equity"], ",.2f"),
                _fmt(m["buy_and_hold_return_pct"], "+.2f", "%"),
                key=str(r.number),
            )
        common = " ".join(f"{k}={_setting(settings[0][k])}" for k in same if settings and settings[0].get(k) != "")
        table.border_title = (
            f"Runs (Enter shows one, s sorts) · all: {common}"
            if len(self.runs) > 1
            else "Runs (Enter shows one, s sorts)"
        )

    @on(DataTable.CellSelected, "#runs")
    def _run_cell_selected(self, event: DataTable.CellSelected) -> None:
        for r in self.runs:
            if str(r.number) == event.cell_key.row_key.value:
                self.show_run(r)
                self._status(f"showing run #{r.number}")

    def show_run(self, run: BacktestRun) -> None:
        self.shown = run
        self.query_one("#metrics-body", Static).update(metrics_table(run.metrics, run.data_summary))
        self.query_one("#equity", ResultChart).show(run)
        self.query_one("#price", ResultChart).show(run)
        trades = self.query_one("#trades", SortableTable)
        trades.clear()
        trades.sorted_by = None
        for i, t in enumerate(run.result.trades, start=1):
            d = t.to_dict()
            pnl = Text(f"{t.pnl:+,.2f}", style="green" if t.pnl > 0 else "red")
            trades.add_row(
                str(i),
                d["side"],
                _fill_time(t.entry_time),
                f"{t.entry_price:,.2f}",
                _fill_time(t.exit_time),
                f"{t.exit_price:,.2f}",
                pnl,
                f"{t.return_pct:+.2f}",
                d["exit_reason"],
            )

    def action_optimise(self) -> None:
        """Open the optimisation screen for what the form holds (its checks first)."""
        req, errors = parse_request(self.form_values())
        if req is None:
            self._status("; ".join(errors), "bold red")
            return
        from tradeconsole.tui.screens.optimize import OptimizeScreen

        self.app.push_screen(OptimizeScreen(req, deterministic=self.deterministic))

    def action_export(self) -> None:
        run = self.shown
        if run is None:
            self._status("nothing to export yet: run a backtest first", "yellow")
            return
        from tradeconsole.tui.screens.dialogs import TextDialog

        default = str(
            Path.cwd() / f"trades-{run.metrics['strategy']}-{run.metrics['symbol']}-"
            f"{run.metrics['interval']}-run{run.number}.csv"
        )

        def chosen(path: str | None) -> None:
            if not path:
                return
            from tradeconsole.backtest.report import write_trades_csv

            try:
                n = write_trades_csv(run.result, path)
            except OSError as exc:
                self._status(f"export failed: {exc}", "bold red")
                return
            self._status(f"wrote {n} round trips to {path}", "green")

        self.app.push_screen(
            TextDialog("Export trades", f"CSV file for run #{run.number}'s round trips:", default), chosen
        )
