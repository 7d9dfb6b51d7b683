"""The optimisation screen: search a strategy's parameters from the backtest screen (ctrl+o there).

It takes the backtest form's strategy, data, dates, fill model and costs, and runs exactly what
``tradeconsole optimize`` runs (``tradeconsole.backtest.optimize.cli.run_optimisation``: the
compiled kernel self-checked against ``run_backtest``, or the plain path for strategies the kernel
does not model; walk-forward by default) in a thread worker. Its progress hook only stores three
values and reads the cancel flag; a timer copies them into the progress bar, so the UI never waits
for the search and Escape stops it at the next finished batch (finished rows are kept in the
results file, and a re-run resumes from it).

Every run is journalled and shipped as the CLI's is, by the same composition
(``tradeconsole.tui.optimize_command``): its ``optimization_run``/``optimization_trial`` events
are committed from the worker thread to ``journal-optimize.sqlite`` in the data directory (the
CLI's default journal), and when the console ships its events (``--kafka``/``--elasticsearch`` or
the config) that journal is shipped to the same sinks once the results are shown. The trials
pane's subtitle names the run id the events carry; a journal that cannot be opened or written
stops the run with its one-line reason in the status line.

Results: a heatmap of the best score over two searched parameters (ctrl+n cycles the pair), a
sortable table of the top trials - their full-window (in-sample) metrics next to their results on
the walk-forward test windows - and the walk-forward folds, whose out-of-sample numbers are the
honest ones (each fold chose on its training window alone). ``ctrl+t`` copies the selected trial's
parameters into the backtest form; ``ctrl+g`` switches the selected paper session to the strategy
with these parameters through the engine's ``SwitchStrategy`` command (after a confirmation;
refused outside paper trading). ``ctrl+l`` opens a stored results file instead of running.
"""

from __future__ import annotations

import argparse
import math
import os
import threading
from collections import Counter
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, ProgressBar, Select, Static
from tradeconsole.core.strategies import SOURCES, STRATEGIES
from tradeconsole.tui.screens.backtest import BacktestRequest, SortableTable, _day
from tradeconsole.tui.screens.panes import PaneScreen
from tradeconsole.tui.widgets.form import choice_field, form_row, run_bindings, run_button, set_cursor_blink, text_field
from tradeconsole.tui.widgets.header import KeyBar

__all__ = ["OPTIMIZE_BINDINGS", "OptimizeScreen", "default_space", "heatmap_text", "optimize_argv", "stored_results"]

OPTIMIZE_BINDINGS = [
    *run_bindings("optimisation (finished rows kept)", "the backtest form"),
    Binding(
        "ctrl+f",
        "next_view",
        "Next view",
        key_display="^f",
        tooltip="the form, top trials, heatmap or walk-forward (one at a time below 120x36)",
    ),
    Binding(
        "ctrl+t",
        "apply",
        "Apply to form",
        key_display="^t",
        tooltip="copy the selected trial's parameters into the backtest form",
    ),
    Binding(
        "ctrl+g",
        "paper",
        "Paper with these",
        key_display="^g",
        tooltip="switch the selected paper session to these parameters (asks first)",
    ),
    Binding("ctrl+n", "next_pair", "Heatmap pair", key_display="^n", tooltip="heatmap of the next two parameters"),
    Binding(
        "ctrl+l",
        "open_results",
        "Open results",
        key_display="^l",
        tooltip="show the stored results file named in the form",
    ),
]

OBJECTIVES = ("sharpe", "return", "sortino", "calmar", "profit_factor")
#: the panes, in ``ctrl+f`` order; below 120x36 one is shown at a time
VIEWS = ("op-form", "op-trials", "op-heatmap-box", "op-wf")
VIEW_TITLES = {"op-form": "Form", "op-trials": "Top trials", "op-heatmap-box": "Heatmap", "op-wf": "Walk-forward"}
#: the trials table's metric columns: full labels, and the short ones of a narrow terminal
METRIC_COLUMNS = ("score", "ret %", "sharpe", "dd %", "trades", "test ret %", "test score")
SHORT_METRIC_COLUMNS = ("score", "ret%", "shrp", "dd%", "n", "oos%", "oos")
#: below this width the title drops its tail
NARROW = 120
#: the form's width in the wide layout (``#op-form``), and what a bordered table loses to its frame
FORM_WIDTH = 34
TABLE_FRAME = 4  # two border cells and a two-cell scrollbar
HEADLINE = ("return_pct", "sharpe", "max_drawdown_pct", "trades")


def default_space(strategy: str) -> str:
    """The form's starting ``--param`` specs: a user strategy's own declared ranges (as the CLI
    uses them without ``--param``); for a built-in a small stop/target grid every strategy has."""
    from tradeconsole.backtest.optimize.space import default_specs

    own = default_specs(strategy)
    if own:
        return " ".join(own)
    return "stop_loss_pct=0.01,0.015,0.02,0.03 take_profit_pct=0.02,0.03,0.045,0.06"


def optimize_argv(req: BacktestRequest, form: dict[str, str]) -> list[str]:
    """The ``tradeconsole optimize`` command line of the backtest request plus this screen's form,
    so the screen runs exactly what the CLI would (and its option checks refuse what it refuses)."""
    argv = [
        "optimize",
        "--strategy",
        req.strategy,
        "--data",
        req.source(),
        "--interval",
        req.interval,
        "--fill-model",
        req.fill_model,
        "--cash",
        repr(req.cash),
        "--leverage",
        repr(req.leverage),
        "--fee",
        repr(req.fee_rate),
        "--slippage-bps",
        repr(req.slippage_bps),
        "--funding-rate",
        repr(req.funding_rate_8h),
        "--search",
        form.get("search") or "grid",
        "--objective",
        form.get("objective") or "sharpe",
    ]
    if req.start_ms is not None:
        argv += ["--from", _day(req.start_ms)]
    if req.end_ms is not None:
        argv += ["--to", _day(req.end_ms)]
    specs = (form.get("space") or "").split()
    for spec in specs:
        argv += ["--param", spec]
    # the form's other parameters, where they differ from the strategy's defaults, are held fixed
    # (one-value dimensions): the optimisation searches around what the form would backtest
    searched = {sp.partition("=")[0].strip() for sp in specs}
    defaults = STRATEGIES[req.strategy].Params()
    for name, value in req.params:
        if name not in searched and float(getattr(defaults, name)) != value:
            argv += ["--param", f"{name}={value!r}"]
    for key, opt in (
        ("trials", "--trials"),
        ("folds", "--folds"),
        ("min_trades", "--min-trades"),
        ("workers", "--workers"),
        ("results", "--results"),
        ("top", "--top"),
    ):
        value = (form.get(key) or "").strip()
        if value:
            argv += [opt, value]
    return argv


def parse_optimize_args(argv: list[str]) -> argparse.Namespace:
    """``argv`` through the CLI's own parser (a mistake is a ``UserError`` with the CLI's words)."""
    from tradeconsole.tui.cli import build_parser

    return build_parser().parse_args(argv)


def stored_results(
    path: str, strategy: str, objective: str
) -> tuple[list[str], list[dict[str, float]], list[dict[str, Any]]]:
    """The full-window rows of a results file (``--results``): parameter names, points, rows
    scored by ``objective`` (rows of other windows are the walk-forward's and are left out)."""
    from dataclasses import fields

    from tradeconsole.backtest.optimize.objective import Objective, load_objective
    from tradeconsole.backtest.optimize.store import ResultsStore

    store = ResultsStore(path)
    store.close()
    declared = [f.name for f in fields(STRATEGIES[strategy].Params)]
    rows = [r for r in store.rows.values() if r.get("window") == "full"]
    names = [n for n in declared if rows and all(n in r and r[n] is not None for r in rows)]
    obj = Objective(objective, load_objective(objective))
    points, scored = [], []
    for r in rows:
        points.append({n: float(r[n]) for n in names})
        scored.append({**r, "score": obj.score(r)})
    return names, points, scored


def heatmap_text(points: list[dict[str, float]], rows: list[dict[str, Any]], x: str, y: str, width: int = 80) -> Text:
    """The best score over ``x`` (columns) and ``y`` (rows), colour from red (low) to green
    (high), the number in every cell so nothing depends on colour; '-' = no feasible trial."""
    best: dict[tuple[float, float], float] = {}
    for p, r in zip(points, rows, strict=True):
        s = r.get("score")
        if s is None or not math.isfinite(s):
            continue
        k = (p[x], p[y])
        if k not in best or s > best[k]:
            best[k] = s
    xs = sorted({p[x] for p in points})
    ys = sorted({p[y] for p in points}, reverse=True)
    out = Text()
    out.append(f"best score: {y} (rows) × {x} (cols)\n", style="bold")
    if not xs or not ys:
        out.append("no trials", style="dim")
        return out
    label_w = max(len(f"{v:g}") for v in ys) + 1
    cell = max(7, *(len(f"{v:g}") + 1 for v in xs))  # 6 characters of score and a space
    fit = max(1, (width - label_w) // cell)
    if len(xs) > fit:
        out.append(f"({len(xs) - fit} more columns than fit)\n", style="dim")
        xs = xs[:fit]
    vals = list(best.values())
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    span = (hi - lo) or 1.0
    out.append(" " * label_w + "".join(f"{v:>{cell}g}" for v in xs) + "\n", style="dim")
    for yv in ys:
        out.append(f"{yv:>{label_w - 1}g} ", style="dim")
        for xv in xs:
            v = best.get((xv, yv))
            if v is None:
                out.append(f"{'-':>{cell}}", style="dim")
                continue
            f = (v - lo) / span
            r, g = int(200 * (1 - f)) + 30, int(170 * f) + 30
            out.append(" ")
            out.append(f"{v:>{cell - 1}.3g}", style=f"bold white on rgb({r},{g},40)")
        out.append("\n")
    out.append(f"low {lo:.3g} … high {hi:.3g}", style="dim")
    return out


def _f(v: Any, spec: str = ".3g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def _row(label: str, field: Any) -> Horizontal:
    return form_row(label, field, "op")


def short_names(names: list[str]) -> dict[str, str]:
    """Column labels for parameters on a narrow terminal: the initials of the name's words, with
    ``_pct`` as ``%`` (``stop_loss_pct`` -> ``sl%``); names that would collide keep more of their
    last word (``rsi_oversold``/``rsi_overbought`` -> ``rovers``/``roverb``); short names stay."""

    def abbrev(name: str, keep: int) -> str:
        if len(name) <= 5:
            return name
        words = [w for w in name.split("_") if w]
        pct = len(words) > 1 and words[-1] == "pct"
        if pct:
            words = words[:-1]
        last = words[-1][: keep if len(words) > 1 else max(keep, 4)]  # one word: its first letters
        head = "".join(w[0] for w in words[:-1]) + last
        return head + ("%" if pct else "")

    out = {n: abbrev(n, 1) for n in names}
    longest = max((len(n) for n in names), default=0)
    keep = 1
    while len(set(out.values())) < len(out) and keep < longest:
        keep += 1
        counts = Counter(out.values())
        out = {n: abbrev(n, keep) if counts[a] > 1 else a for n, a in out.items()}
    return out if len(set(out.values())) == len(out) else {n: n for n in names}


class OptimizeScreen(PaneScreen):
    """Search the backtest form's strategy; see the module docstring."""

    BINDINGS = OPTIMIZE_BINDINGS
    PANES = VIEWS
    PANE_TITLES = VIEW_TITLES
    PANE_BAR = "op-views"
    PANE_HINT = "ctrl+f next"
    # Below 120x36 (the app's -wide/-tall breakpoints) one pane is shown at a time, full width,
    # chosen in the view bar (ctrl+f, or Tab into a pane); from 120x36 the form is on the left and
    # the heatmap, trials and walk-forward are stacked on the right.
    DEFAULT_CSS = """
    OptimizeScreen { layout: vertical; }
    #op-title { height: 1; background: $boost; padding: 0 1; }
    #op-views { height: 1; }
    #op-main { height: 1fr; }
    #op-form { border: round $panel-lighten-2; padding: 0 1; display: none; width: 1fr; }
    #op-form.-shown { display: block; }
    OptimizeScreen.-form-view #op-results { display: none; }
    .op-row { height: 1; }
    .op-label { width: 11; }
    .op-row Input, .op-row Select { width: 1fr; }
    #op-results { width: 1fr; }
    #op-results > .op-view { display: none; height: 1fr; border: round $panel-lighten-2; }
    #op-results > .op-view.-shown { display: block; }
    #op-bottom { height: auto; }
    #op-progress { width: 30; }
    #op-status { width: 1fr; }
    OptimizeScreen.-wide.-tall #op-views { display: none; }
    OptimizeScreen.-wide.-tall #op-form { display: block; width: 34; }  /* FORM_WIDTH */
    OptimizeScreen.-wide.-tall #op-results { display: block; }
    OptimizeScreen.-wide.-tall #op-results > .op-view { display: block; }
    OptimizeScreen.-wide.-tall #op-heatmap-box { height: auto; min-height: 5; max-height: 45%; }
    OptimizeScreen.-wide.-tall #op-trials { height: 1fr; min-height: 6; }
    OptimizeScreen.-wide.-tall #op-wf { height: auto; min-height: 4; max-height: 12; }
    .op-view:focus-within, #op-form:focus-within { border: round $accent; }
    """

    def __init__(self, request: BacktestRequest, *, deterministic: bool = False) -> None:
        super().__init__()
        self.request = request
        self.deterministic = deterministic
        self.running = False
        self._cancel = threading.Event()
        self._progress: tuple[str, int, int] = ("", 0, 0)
        self._timer: Any = None
        self.report: dict[str, Any] | None = None
        self.names: list[str] = []
        self.points: list[dict[str, float]] = []
        self.rows: list[dict[str, Any]] = []
        self.trials: list[dict[str, Any]] = []  # the table's trials, by row key (their rank)
        self.pair = 0
        self.status_message = ""
        self.view = "op-form"
        #: the last journalled run: its id (the events' run_id), journal file, shipping state
        self.run_id: str | None = None
        self.journal_path: str | None = None
        self.shipping_note = ""

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        req = self.request
        yield Static(self._title(), id="op-title")
        yield Static("", id="op-views")
        with Horizontal(id="op-main"):
            with VerticalScroll(id="op-form", can_focus=False):
                yield _row(
                    "Params",
                    text_field(
                        default_space(req.strategy),
                        "space",
                        tooltip="--param specs: NAME=20,25,30 or NAME=LOW:HIGH:STEP or NAME",
                    ),
                )
                yield _row("Search", choice_field(("grid", "random", "optuna"), "grid", "search"))
                yield _row("Trials", text_field("", "trials", placeholder="random/optuna"))
                yield _row("Objective", choice_field(OBJECTIVES, "sharpe", "objective"))
                yield _row("Folds", text_field("4", "folds", tooltip="walk-forward folds; 0 = in-sample only"))
                yield _row("Min trades", text_field("0", "min_trades"))
                yield _row(
                    "Workers",
                    text_field(
                        str(max(1, (os.cpu_count() or 1) - 1)),
                        "workers",
                        tooltip="worker processes (one core is left to the console)",
                    ),
                )
                yield _row("Top", text_field("10", "top"))
                yield _row("Results", text_field("", "results", placeholder="file .csv (resume/open)"))
                yield run_button("op-run")
            with Vertical(id="op-results"):
                yield VerticalScroll(Static("", id="op-heatmap"), id="op-heatmap-box", classes="op-view")
                yield SortableTable(id="op-trials", classes="op-view")
                yield VerticalScroll(Static("", id="op-wf-body"), id="op-wf", classes="op-view")
        with Horizontal(id="op-bottom"):
            yield ProgressBar(total=100, show_eta=False, id="op-progress")
            yield Static("", id="op-status")
        yield KeyBar(OPTIMIZE_BINDINGS)

    def _title(self) -> str:
        req = self.request
        kind = "user strategy" if SOURCES.get(req.strategy) != "built-in" else "built-in"
        head = f"Optimise · {req.strategy} ({kind}) {req.symbol} {req.interval} · {req.fill_model} fills"
        wide = self.size.width == 0 or self.size.width >= NARROW
        return head + (" · walk-forward, self-checked against the backtest" if wide else "")

    @property
    def compact(self) -> bool:
        """One pane at a time (below the app's 120x36 breakpoints)."""
        return not (self.has_class("-wide") and self.has_class("-tall"))

    def _table_width(self) -> int:
        """The cells the trials table has for its columns in the current layout."""
        return self.size.width - (0 if self.compact else FORM_WIDTH) - TABLE_FRAME

    def on_mount(self) -> None:
        set_cursor_blink(self, self.deterministic)
        self.query_one("#op-heatmap-box").border_title = "Heatmap (ctrl+n: next pair)"
        self.query_one("#op-wf").border_title = "Walk-forward (honest: chosen on training windows only)"
        self.query_one("#op-heatmap", Static).update(
            Text("No optimisation yet: check the form, then ctrl+r.", style="dim")
        )
        self.query_one("#op-wf-body", Static).update(Text("No walk-forward yet.", style="dim"))
        self._columns([])
        self._show_view("op-form")
        self.query_one("#space", Input).focus()

    # ------------------------------------------------------------------ views
    def _view_shown(self, view: str) -> None:
        self.set_class(view == "op-form", "-form-view")  # the compact form takes the whole width
        if view == "op-heatmap-box":
            self.call_after_refresh(self._draw_heatmap)  # sized to the pane once it is laid out

    def _focus_view(self, view: str) -> None:
        self.query_one("#space" if view == "op-form" else f"#{view}").focus()

    def on_resize(self, event: Any) -> None:
        """The title, the trials' labels and the heatmap follow the terminal's width."""
        self.query_one("#op-title", Static).update(self._title())
        if self.trials:
            self._fill_trials()  # the labels that fit the new width (a sort is reset)
        self.call_after_refresh(self._draw_heatmap)

    # ------------------------------------------------------------------ form
    def form_values(self) -> dict[str, str]:
        out = {
            k: self.query_one(f"#{k}", Input).value
            for k in ("space", "trials", "folds", "min_trades", "workers", "top", "results")
        }
        for k in ("search", "objective"):
            out[k] = str(self.query_one(f"#{k}", Select).value)
        return out

    def _status(self, text: str, style: str = "") -> None:
        self.status_message = text
        self.query_one("#op-status", Static).update(Text(text, style=style))

    # ------------------------------------------------------------------ running
    @on(Button.Pressed, "#op-run")
    def _run_pressed(self) -> None:
        self.action_run()

    def action_run(self) -> None:
        if self.running:
            self._status("an optimisation is already running (Escape cancels it)", "yellow")
            return
        from tradeconsole.core.errors import UserError

        try:
            args = parse_optimize_args(optimize_argv(self.request, self.form_values()))
        except UserError as exc:
            self._status(str(exc), "bold red")
            return
        self.running = True
        self._cancel.clear()
        self._progress = ("", 0, 0)
        self.query_one("#op-progress", ProgressBar).update(total=100, progress=0)
        self._status(f"loading {self.request.source()} …")
        self._timer = self.set_interval(0.1, self._show_progress)
        runtime = getattr(self.app, "runtime", None)  # its sinks, if any, get the run's events too
        self._worker(args, runtime.sink_targets() if hasattr(runtime, "sink_targets") else None)

    def action_cancel_or_back(self) -> None:
        if self.running:
            self._cancel.set()
            self._status("cancelling… (finished rows are kept)", "yellow")
        else:
            self.app.pop_screen()

    def _progress_cb(self, label: str, done: int, total: int) -> bool:
        self._progress = (label, done, total)
        return not self._cancel.is_set()

    def _show_progress(self) -> None:
        label, done, total = self._progress
        if total:
            self.query_one("#op-progress", ProgressBar).update(total=total, progress=done)
            self._status(f"{label}: {done:,}/{total:,} combinations (Escape cancels)")

    @work(thread=True, exclusive=True, group="optimize")
    def _worker(self, args: argparse.Namespace, targets: Any = None) -> None:
        """The optimisation off the UI thread, journalled and shipped by the CLI's own composition
        (``tradeconsole.tui.optimize_command``): its events are committed here, in this thread, to
        the optimisation journal; the outcome goes back with call_from_thread, then the journal
        is shipped to ``targets`` (the console runtime's sinks, when it has any)."""
        from tradeconsole.backtest.optimize.cli import Interrupted, run_optimisation
        from tradeconsole.tui.optimize_command import journalled

        journal = None
        try:
            if self._cancel.is_set():
                raise Interrupted(0, args.results)
            with journalled(None, args) as journal:
                out = run_optimisation(args, on_progress=self._progress_cb, publish=journal.publish)
        except Interrupted as exc:
            kept = f" kept in {exc.results}" if exc.results else " (no results file: nothing kept)"
            self._report(None, f"cancelled: {exc.computed} combination(s) computed{kept}", journal)
            self._ship(journal, targets)
            return
        except Exception as exc:  # noqa: BLE001 - bad data, bad space, journal refused: shown, never fatal
            self._report(None, f"{type(exc).__name__}: {exc}" if not _is_user_error(exc) else str(exc), journal)
            return
        self._report(out, "", journal)
        self._ship(journal, targets)

    def _ship(self, journal: Any, targets: Any) -> None:
        """Ship the optimisation journal (still in the worker thread: the UI never waits)."""
        if journal is None or journal.run_id is None or targets is None or not targets.configured:
            return
        from tradeconsole.tui.optimize_command import ship_journal

        names = ", ".join(targets.names())
        self._call(self._shipping, f"shipping to {names}…", "")
        try:
            problems = ship_journal(journal.path, targets)
        except Exception as exc:  # noqa: BLE001 - a sink that cannot even start: said, the events stay
            problems = [f"cannot ship to {names}: {type(exc).__name__}: {exc}; the events stay in {journal.path}"]
        self._call(
            self._shipping, f"not all shipped to {names}" if problems else f"shipped to {names}", "; ".join(problems)
        )

    def _report(self, out: dict[str, Any] | None, error: str, journal: Any = None) -> None:
        self._call(self._finished, out, error, journal)

    def _call(self, fn: Any, *args: Any) -> None:
        try:
            self.app.call_from_thread(fn, *args)
        except Exception:  # noqa: BLE001 - the app has closed meanwhile: nobody to tell
            pass

    def on_unmount(self) -> None:
        self._cancel.set()  # closing: a running search stops at its next finished batch

    def _finished(self, out: dict[str, Any] | None, error: str, journal: Any = None) -> None:
        self.running = False
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if journal is not None and journal.run_id is not None:
            self.run_id, self.journal_path = journal.run_id, str(journal.path)
            self.shipping_note = ""
            self._show_journal()
        if out is None:
            self._status(error, "yellow" if error.startswith("cancelled") else "bold red")
            return
        self.show_report(out)
        if self.compact:  # one pane at a time: the results replace the form
            self._show_view("op-trials")
            self.query_one("#op-trials").focus()
        best = out.get("best")
        took = "" if self.deterministic else f", {out['elapsed_s']:.1f}s"  # snapshots: no wall clock
        head = (
            f"done: {out['evaluated']} combinations, {out['feasible']} feasible{took}; "
            f"{out['verified_against_backtest']} re-run through the backtest: identical; kernel: {out['kernel']}"
        )
        self._status(
            head if best else f"{head}; {out.get('note', 'no feasible combination')}", "green" if best else "yellow"
        )

    def _shipping(self, note: str, problem: str) -> None:
        self.shipping_note = note
        self._show_journal()
        if problem:
            self._status(f"{self.status_message}; {problem}" if self.status_message else problem, "yellow")

    def _show_journal(self) -> None:
        """Which journalled run the results are (its run id: the events' ``run_id`` in the
        journal, Kafka and Kibana), and whether it was shipped."""
        if self.run_id is None:
            return
        run = "run" if self.deterministic else f"run {self.run_id}"  # snapshots: no random ids
        note = f" · {self.shipping_note}" if self.shipping_note else ""
        self.query_one("#op-trials").border_subtitle = f"{run} journalled{note}"

    # ------------------------------------------------------------------ results
    def show_report(self, out: dict[str, Any]) -> None:
        """A finished run's report: heatmap, top trials, walk-forward."""
        self.report = out
        self.names = [d.name for d in out["_dims"]]
        self.points, self.rows = out["_points"], out["_rows"]
        self.trials = [dict(t) for t in out["top"]]
        self.pair = 0
        self._draw_heatmap()
        self._fill_trials()
        self._fill_walk_forward(out.get("walk_forward"), out.get("warning"))

    def _columns(self, names: list[str], cells: list[list[Any]] | None = None) -> None:
        """The trials table's columns: the full labels when they fit its width with ``cells``
        (the rows to come), else short ones that a legend in the title names."""
        table = self.query_one("#op-trials", SortableTable)
        full = ["#", *names, *METRIC_COLUMNS]
        if _columns_width(full, cells or []) <= self._table_width() or self.size.width == 0:
            table.set_columns(*full)
            table.border_title = "Top trials (s sorts, Enter selects)"
            return
        short = short_names(names)
        table.set_columns("#", *(short[n] for n in names), *SHORT_METRIC_COLUMNS)
        legend = " ".join(f"{short[n]}={n}" for n in names if short[n] != n)
        table.border_title = " ".join(p for p in ("Top trials (s sorts)", legend, "oos=test") if p)

    def _trial_cells(self) -> list[list[Any]]:
        cells = []
        for i, t in enumerate(self.trials, start=1):
            tw = t.get("test_windows") or {}
            ret = t.get("return_pct")
            cells.append(
                [
                    str(i),
                    *(f"{t['params'][n]:g}" for n in self.names),
                    _f(t.get("score")),
                    Text(_f(ret, "+.2f"), style="green" if (ret or 0) > 0 else "red"),
                    _f(t.get("sharpe"), ".2f"),
                    _f(t.get("max_drawdown_pct"), ".1f"),
                    _f(t.get("trades")),
                    _f(tw.get("return_pct"), "+.2f") if tw.get("windows") else "-",
                    _f(tw.get("score_mean")) if tw.get("windows") else "-",
                ]
            )
        return cells

    def _fill_trials(self) -> None:
        table = self.query_one("#op-trials", SortableTable)
        cells = self._trial_cells()
        self._columns(self.names, cells)
        for i, row in enumerate(cells, start=1):
            table.add_row(*row, key=str(i))

    def _fill_walk_forward(self, wf: dict[str, Any] | None, warning: str | None) -> None:
        body = self.query_one("#op-wf-body", Static)
        if not wf:
            body.update(
                Text(warning or "no walk-forward (in-sample only): every number was seen by the choice", style="yellow")
            )
            return
        text = Text()
        for f in wf["folds"]:
            if "params" not in f:
                text.append(f"fold {f['fold']}: {f['note']}\n", style="dim")
                continue
            oos = f["out_of_sample"]["return_pct"]
            text.append(
                f"fold {f['fold']} {f['test'][0][:10]}..{f['test'][1][:10]}  IS {_f(f['in_sample_score'])}  "
                f"OOS {_f(f['out_of_sample_score'])}  OOS ret "
            )
            text.append(f"{oos:+.2f}%", style="green" if oos > 0 else "red")
            text.append(f"  {' '.join(f'{k}={v:g}' for k, v in f['params'].items())}\n")
        comp = wf["out_of_sample_return_pct_compounded"]
        text.append(
            f"out-of-sample compounded {_f(comp, '+.2f')}%; mean score IS {_f(wf['mean_in_sample_score'])} "
            f"vs OOS {_f(wf['mean_out_of_sample_score'])}",
            style="bold",
        )
        body.update(text)

    def _draw_heatmap(self) -> None:
        box = self.query_one("#op-heatmap", Static)
        if len(self.names) < 2:
            box.update(Text("one searched parameter: no heatmap (the table has every trial's score)", style="dim"))
            return
        varied = [n for n in self.names if len({p[n] for p in self.points}) > 1] or self.names
        if len(varied) < 2:
            box.update(Text("one searched parameter varies: no heatmap (the table has the scores)", style="dim"))
            return
        pairs = [(a, b) for i, a in enumerate(varied) for b in varied[i + 1 :]]
        x, y = pairs[self.pair % len(pairs)]
        pane = self.query_one("#op-heatmap-box").size.width or self.size.width  # hidden: the screen's
        width = max(20, pane - 2)
        box.update(heatmap_text(self.points, self.rows, x, y, width))

    def action_next_pair(self) -> None:
        if len(self.names) >= 2:
            self.pair += 1
            self._draw_heatmap()

    def action_open_results(self) -> None:
        """Show a stored results file (the form's Results field) without running anything."""
        path = self.query_one("#results", Input).value.strip()
        if not path:
            self._status("name a results file (.csv/.parquet) in the Results field first", "yellow")
            return
        objective = str(self.query_one("#objective", Select).value)
        try:
            names, points, rows = stored_results(path, self.request.strategy, objective)
        except (OSError, ValueError, KeyError) as exc:
            self._status(f"cannot open {path}: {exc}", "bold red")
            return
        if not rows:
            self._status(f"{path}: no full-window rows of {self.request.strategy}", "yellow")
            return
        top = int(self.query_one("#top", Input).value or 10) if self.query_one("#top", Input).value.isdigit() else 10
        order = sorted(
            (i for i, r in enumerate(rows) if r["score"] is not None), key=lambda i: rows[i]["score"], reverse=True
        )[:top]
        self.report = None
        self.names, self.points, self.rows = names, points, rows
        self.trials = [{"params": points[i], **rows[i]} for i in order]
        self.pair = 0
        self._draw_heatmap()
        self._fill_trials()
        self._fill_walk_forward(None, "stored results: full-window (in-sample) rows only; run to walk forward")
        if self.compact:
            self._show_view("op-trials")
        self._status(f"opened {path}: {len(rows)} full-window trials, {len(order)} shown", "green")

    # ------------------------------------------------------------------ actions on a trial
    def selected_trial(self) -> dict[str, Any] | None:
        """The trial under the table's cursor (the best one when the table has no focus yet)."""
        if not self.trials:
            return None
        table = self.query_one("#op-trials", SortableTable)
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - empty table / no cursor
            key = "1"
        return self.trials[int(key or 1) - 1]

    @on(DataTable.CellSelected, "#op-trials")
    def _trial_selected(self, event: DataTable.CellSelected) -> None:
        t = self.trials[int(event.cell_key.row_key.value or 1) - 1]
        self._status(f"selected {_params_text(t['params'])}: ctrl+t applies to the form, ctrl+g paper-trades it")

    def action_apply(self) -> None:
        """Copy the trial's parameters into the backtest form (the screen below this one)."""
        t = self.selected_trial()
        if t is None:
            self._status("no trial yet: run an optimisation (ctrl+r) or open results (ctrl+l)", "yellow")
            return
        from tradeconsole.tui.screens.backtest import BacktestScreen

        form = next((s for s in reversed(self.app.screen_stack) if isinstance(s, BacktestScreen)), None)
        if form is None:
            self._status("no backtest form to apply to", "yellow")
            return
        missing = []
        for name, value in t["params"].items():
            found = form.query(f"#param-{name}")
            if not found:
                missing.append(name)
                continue
            found.first(Input).value = f"{value:g}"
        if missing:
            self._status(f"the form has no field for {', '.join(missing)} (another strategy?)", "bold red")
            return
        self._status(f"applied {_params_text(t['params'])} to the backtest form (Escape, then ctrl+r)", "green")

    def action_paper(self) -> None:
        """Switch the selected paper session to this strategy with the trial's parameters, through
        the engine's ``SwitchStrategy`` (the engine refuses it while that session holds a position)."""
        t = self.selected_trial()
        if t is None:
            self._status("no trial yet: run an optimisation (ctrl+r) or open results (ctrl+l)", "yellow")
            return
        app: Any = self.app
        runtime = getattr(app, "runtime", None)
        key = getattr(app, "selected_key", None)
        if runtime is None or key is None:
            self._status("no running session to switch (start the console's paper engine first)", "yellow")
            return
        if runtime.trading_mode != "paper":
            self._status(
                f"refused: the console trades {runtime.trading_mode.upper()}; optimised parameters go to "
                "paper sessions only",
                "bold red",
            )
            return
        from tradeconsole.core.engine import SwitchStrategy
        from tradeconsole.tui.screens.dialogs import ConfirmDialog

        strategy, params = self.request.strategy, dict(t["params"])

        def confirmed(ok: bool | None) -> None:
            engine = getattr(app, "_engine", lambda: None)()
            if not ok or engine is None:
                return
            app.collector.alias(key, strategy)
            engine.send(SwitchStrategy(key, strategy, params))
            app.collector.note(f"switch {key} to {strategy} {_params_text(params)} requested (optimiser)")
            self._status(
                f"asked paper session {key} to switch to {strategy} {_params_text(params)} "
                "(the dashboard log shows whether the engine took it)",
                "green",
            )

        app.push_screen(
            ConfirmDialog(
                f"Paper-trade session {key} with {strategy}\n{_params_text(params)}?\n"
                "(refused by the engine while it holds a position)",
                "Paper with these",
            ),
            confirmed,
        )


def _columns_width(labels: list[str], rows: list[list[Any]]) -> int:
    """Cells a DataTable needs for ``labels`` over ``rows``: each column as wide as its label
    (with ``SortableTable``'s two cells for the sort mark) or its widest cell, plus its padding."""
    width = 0
    for i, label in enumerate(labels):
        cells = [len(r[i].plain if isinstance(r[i], Text) else str(r[i])) for r in rows]
        width += max([len(label) + 2, *cells]) + 2
    return width


def _params_text(params: dict[str, float]) -> str:
    return " ".join(f"{k}={v:g}" for k, v in params.items())


def _is_user_error(exc: BaseException) -> bool:
    """Errors whose message is the whole story (one line, as the CLI prints them)."""
    from tradeconsole.core.errors import EnvironmentFailure, UserError

    return isinstance(exc, UserError | EnvironmentFailure) or type(exc).__name__ == "DataError"
