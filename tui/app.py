"""``tradeconsole``: the Textual trading console.

The app owns one ``Runtime`` (engine thread, market-data source, journal, sinks) and one
``EventCollector`` subscribed to the engine. Screens draw from the collector on a timer; key
presses become engine commands (``StartTrading``, ``PauseEntries``, ``Flatten``,
``SwitchStrategy``...) sent through ``Engine.send``, which only enqueues. Anything that could
block (probing the network, loading a replay, building or stopping a runtime) runs off the UI
thread, so neither side ever waits for the other.

Startup: a live/testnet run asks for the typed confirmation first (``LiveConfirmDialog``); a
run on live data probes Binance and, when it cannot be reached or the live feed cannot be built,
offers a replay of history instead of failing. A symbol or interval switch builds a new runtime
(the old one is stopped cleanly first); a strategy switch is an engine command.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from tradeconsole.core.domain import INTERVAL_MS
from tradeconsole.core.engine import Flatten, PauseEntries, StartTrading, StopTrading, SwitchStrategy
from tradeconsole.core.events import Event
from tradeconsole.tui.collector import CollectorSnapshot, EventCollector
from tradeconsole.tui.runtime import Runtime, RuntimeOptions, options_from_args
from tradeconsole.tui.screens import INTERVALS
from tradeconsole.tui.screens.dashboard import DASHBOARD_BINDINGS, DashboardScreen
from tradeconsole.tui.screens.dialogs import (
    ChoiceDialog,
    ConfirmDialog,
    LiveConfirmDialog,
    QuitDialog,
    ReplayOfferDialog,
    StrategyDialog,
    TextDialog,
)
from tradeconsole.tui.screens.help import HelpScreen
from tradeconsole.tui.startup import (
    data_symbol_problem,
    load_theme,
    probe_binance,
    replay_candidates,
    retarget_replay,
    save_theme,
    symbol_problem,
    with_market,
)
from tradeconsole.tui.widgets.chart import ChartBuilder, ThreadedPlot
from tradeconsole.tui.widgets.header import HeaderState

__all__ = ["TradeConsoleApp", "main"]

RuntimeFactory = Callable[[RuntimeOptions, Callable[[str], str] | None, list[Callable[[Event], None]]], Runtime]
NetworkProbe = Callable[[RuntimeOptions], str | None]

#: The engine and the replay are CPU-bound Python threads. With CPython's default 5 ms switch
#: interval, every time the UI's event loop releases the GIL (each select() on the terminal) it
#: can wait up to 5 ms to get it back, and one key press takes dozens of loop iterations: under a
#: replay at full speed that adds up to hundreds of milliseconds. A shorter interval hands the
#: GIL back sooner; the engine loses a little throughput, the keyboard stays responsive.
GIL_SWITCH_INTERVAL = 0.0005

#: seconds the event sinks get to deliver at shutdown (the rest is resent from the journal)
SINK_BUDGET_S = 0.8

#: engine inputs a console replay may run ahead (5 per candle with 4 updates): a pause or a
#: step stops within a few candles even at full speed
REPLAY_MAX_BACKLOG = 16

#: replay speeds the +/- keys step through (None = as fast as possible)
SPEEDS: list[float | None] = [1, 2, 5, 10, 30, 60, 120, 300, 600, 1_000, 3_000, 10_000, None]

#: keys that belong to widgets and dialogs rather than a screen's bindings (listed in help)
HELP_EXTRA = [
    Binding("tab,shift+tab", "", "Next / previous field or pane (collapsed panes too)"),
    Binding("up,down", "", "Move in a table or list; Enter selects (a run in the Runs table)"),
    Binding("s", "", "Sort a backtest table by the column under the cursor (again: reverse)"),
    Binding("y,enter", "", "Confirm dialog: yes"),
    Binding("n,escape", "", "Confirm dialog: no / close any dialog"),
    Binding("l", "", "Quit dialog: leave the position protected and quit"),
    Binding("f", "", "Quit dialog: flatten, then quit"),
]

assert all(iv in INTERVAL_MS for iv in INTERVALS)  # the intervals the dialogs offer are Binance's


def settle_garbage_collector() -> None:
    """Move everything alive now (modules, widgets, the runtime and its history) out of the
    cyclic collector's reach. Otherwise each full collection walks all of it, ~60 ms with the
    GIL held, stalling the keyboard a few times a minute during a fast replay. Objects created
    later are collected as usual; ``unfreeze`` first so a replaced runtime's cycles are freed."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def default_runtime_factory(
    opts: RuntimeOptions, confirm: Callable[[str], str] | None, subscribers: list[Callable[[Event], None]]
) -> Runtime:
    return Runtime(opts, confirm=confirm, extra_subscribers=subscribers)


class TradeConsoleApp(App[int]):
    """The console. ``deterministic`` removes wall clocks, run ids and cursor blinking from the
    screen (snapshot tests); ``runtime_factory`` and ``network_probe`` are seams for tests."""

    CSS_PATH = "app.tcss"
    TITLE = "tradeconsole"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False, priority=True)]

    def __init__(
        self,
        options: RuntimeOptions,
        *,
        runtime_factory: RuntimeFactory = default_runtime_factory,
        network_probe: NetworkProbe = probe_binance,
        deterministic: bool = False,
        refresh_hz: float = 5.0,
    ) -> None:
        super().__init__()
        if options.replay_max_backlog is None:  # a pause must stop the replayed market at once
            options = replace(options, replay_max_backlog=REPLAY_MAX_BACKLOG)
        self.options = options
        self.runtime_factory = runtime_factory
        self.network_probe = network_probe
        self.deterministic = deterministic
        self.refresh_hz = refresh_hz
        self.collector = EventCollector(mask_run_ids=deterministic)
        self.runtime: Runtime | None = None
        self.selected_key: str | None = None
        self.trading = True
        self.entries_paused = False
        self.status = "starting…"
        self.exit_message = ""  # why the console refused to start (printed after exit)
        self._errors_seen = 0
        self._quitting = False
        self._backtest_installed = False
        self.last_stopped: Runtime | None = None  # kept for inspection (tests); older ones are dropped
        self.chart_builder = ChartBuilder()

    # ------------------------------------------------------------------ lifecycle
    def on_mount(self) -> None:
        saved = load_theme(self.options.config)
        if saved and saved in self.available_themes and not self.deterministic:
            self.theme = saved
        self._theme_ready = True  # from now on a theme change is the user's: save it
        self._switch_interval = sys.getswitchinterval()
        if GIL_SWITCH_INTERVAL:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        self.chart_builder.start()
        self.push_screen(DashboardScreen(self, chart_builder=self.chart_builder))
        self.launch(self.options)

    @work(exclusive=True, group="runtime")
    async def launch(self, opts: RuntimeOptions, previous: Runtime | None = None) -> None:
        """Build and start a runtime for ``opts`` (stopping ``previous`` first), asking the user
        whatever it takes: live confirmation, or a replay when live data is unavailable."""
        if previous is not None:
            self.status = "stopping the engine…"
            await asyncio.to_thread(previous.stop, 10.0, SINK_BUDGET_S)
            self.last_stopped = previous
        self.collector.reset()
        self.trading, self.entries_paused = True, False
        problem = ""
        while True:
            if not opts.replay:
                self.status = "checking Binance…"
                problem = problem or await asyncio.to_thread(self.network_probe, opts) or ""
                if problem:
                    path = await self._offer_replay(opts, problem)
                    if path is None:
                        return
                    opts, problem = replace(opts, replay=path), ""
            confirm = None
            if opts.live and not opts.testnet:
                confirm = await self._live_confirmation(opts)
            self.status = "loading the replay…" if opts.replay else "connecting…"
            try:
                rt = await asyncio.to_thread(self.runtime_factory, opts, confirm, [self.collector])
            except Exception as exc:  # noqa: BLE001 - every failure is shown, none is fatal to the UI
                from tradeconsole.infra.persistence.journal import JournalError
                from tradeconsole.infra.settings import ConfigError, LiveTradingRefused

                if isinstance(exc, (LiveTradingRefused, ConfigError, JournalError)):
                    self.exit_message = f"tradeconsole: {exc}"
                    self.exit(2, return_code=2, message=self.exit_message)
                    return
                reason = f"{type(exc).__name__}: {exc}"
                self.collector.note(reason, "error")
                if not opts.replay:
                    problem = f"the live feed could not start ({reason})"
                    continue
                path = await self._offer_replay(opts, "the replay could not be loaded", error=reason)
                if path is None:
                    return
                opts = replace(opts, replay=path)
                continue
            break
        self.collector.set_replay(rt.replay_candles is not None)
        for spec in rt.specs:
            self.collector.register(spec.key, spec.symbol, spec.interval, spec.strategy)
        self.collector.note(
            f"{rt.trading_mode} trading {', '.join(s.key for s in rt.specs)}"
            + (f" on a replay of {len(rt.replay_candles):,} candles" if rt.replay_candles is not None else "")
        )
        # start() only spawns the engine and feed threads: done here, nothing can cancel between
        # building the runtime and owning it
        rt.start()
        self.options = opts
        self.runtime = rt
        self.selected_key = rt.specs[0].key
        self.status = ""
        self.refresh_bindings()
        settle_garbage_collector()

    async def _offer_replay(self, opts: RuntimeOptions, reason: str, error: str = "") -> str | None:
        """Ask for history to replay; None (Escape) quits the console."""
        iv = opts.strategies[0][1]
        candidates = await asyncio.to_thread(replay_candidates, opts.symbol, iv, opts.market)
        self.status = "live data unavailable"
        path = await self.push_screen_wait(ReplayOfferDialog(reason, candidates, opts.replay or "", error))
        if path is None:
            self.shutdown_runtime()
            self.exit(0)
        return path

    async def _live_confirmation(self, opts: RuntimeOptions) -> Callable[[str], str] | None:
        """The typed symbol for the live-trading gate, asked before anything starts. Without keys
        the gate refuses before asking, so the user is not asked for nothing."""
        from tradeconsole.infra.settings import load_settings

        try:
            has_keys = (await asyncio.to_thread(load_settings, opts.config)).has_keys
        except Exception:  # noqa: BLE001 - the runtime reports config problems itself
            return None
        if not has_keys:
            return None
        # several symbols: every one of them, comma-separated (the gate compares exactly that)
        symbols = ",".join(opts.symbols) if len(opts.symbols) > 1 else opts.symbol
        prompt = f"Type the symbol{'s' if ',' in symbols else ''} ({symbols}) to confirm live trading:"
        typed = await self.push_screen_wait(LiveConfirmDialog(prompt, symbols))
        answer = typed or ""
        return lambda _prompt: answer

    def shutdown_runtime(self) -> None:
        """Stop the engine cleanly (source, engine thread, sinks, journal); idempotent. Sinks get
        ``SINK_BUDGET_S`` to deliver: what they could not stays in the journal and is resent by
        the next start, so the console never hangs on an unreachable Kafka/Elasticsearch."""
        rt, self.runtime = self.runtime, None
        if rt is not None:
            rt.stop(sink_timeout=SINK_BUDGET_S)
            self.last_stopped = rt

    async def action_quit(self) -> None:
        """Quit; with an open position, ask first whether to leave it protected or flatten.
        Quit again while shutting down exits at once (the journal already holds everything)."""
        if self._quitting:
            self.exit(0)
            return
        open_now = self.open_positions() if self.runtime is not None else []
        if open_now and not isinstance(self.screen, QuitDialog):
            live = self.runtime is not None and self.runtime.trading_mode in ("live", "testnet")
            replay = self.runtime is not None and self.runtime.replay_candles is not None and not self.options.journal
            self.push_screen(QuitDialog(open_now, live=live, throwaway=replay), self._quit_answer)
            return
        await self._shutdown_and_exit(flatten=False)

    async def _quit_answer(self, answer: str | None) -> None:
        if answer in ("leave", "flatten"):
            await self._shutdown_and_exit(flatten=answer == "flatten")

    async def _shutdown_and_exit(self, flatten: bool) -> None:
        self._quitting = True
        self.status = "shutting down…"
        self.workers.cancel_group(self, "runtime")
        rt = self.runtime
        if flatten and rt is not None:
            rt.engine.send(Flatten(pause=True))
            self.collector.note("quit: flattening every position first", "warning")
            await asyncio.to_thread(rt.engine.wait_idle, 5.0)
        await asyncio.to_thread(self.shutdown_runtime)
        self.exit(0)

    def on_unmount(self) -> None:
        self.shutdown_runtime()  # exits that bypassed action_quit (ctrl+c, errors)
        self.chart_builder.stop()
        sys.setswitchinterval(getattr(self, "_switch_interval", 0.005))
        gc.unfreeze()  # process-wide settings go back as they were (tests run many apps in one process)

    def watch_theme(self, theme: str) -> None:
        """A theme chosen in the palette is kept in the config file's ``[ui]`` table."""
        if not getattr(self, "_theme_ready", False) or self.deterministic:
            return
        try:
            path = save_theme(self.options.config, theme)
        except (OSError, ValueError) as exc:
            self.notify(f"theme not saved: {exc}", severity="warning", timeout=4)
            return
        self.collector.note(f"theme {theme} saved in {path}")

    # ------------------------------------------------------------------ view state
    def account_equity(self, snap: CollectorSnapshot) -> float | None:
        """The shared paper account's equity (the sum of its sessions' equities: each trades an
        allocation of it, see tradeconsole.core.account), or None without a shared account."""
        rt = self.runtime
        if rt is None or getattr(rt, "account", None) is None:
            return None
        allocation = {spec.key: spec.broker.initial_cash for spec in rt.specs}
        return sum(s.equity.equity if s.equity is not None else allocation.get(s.key, 0.0) for s in snap.sessions)

    def header_state(self, snap: CollectorSnapshot) -> HeaderState:
        rt = self.runtime
        opts = self.options
        mode = rt.trading_mode if rt is not None else "live" if opts.live else "testnet" if opts.testnet else "paper"
        s = snap.session(self.selected_key)
        strategy = s.strategy if s is not None else opts.strategies[0][0]
        interval = s.interval if s is not None else opts.strategies[0][1]
        conn = snap.connection
        data = ""
        market_ms = None
        speed = ""
        if rt is not None and rt.replay_candles is not None:
            total = len(rt.replay_candles)
            done = s.closed_total if s is not None else 0
            pace = getattr(rt.source, "speed", opts.speed)
            speed = "max" if pace is None else f"×{pace:,g}"
            data = f"{done:,}/{total:,}"
            if s is not None:  # the replay's market clock: the open candle, else the last close
                market_ms = (
                    s.open_candle.open_time
                    if s.open_candle is not None
                    else (s.candles[-1].close_time + 1 if s.candles else None)
                )
        elif conn.lag_ms is not None or conn.last_market_mono is not None:
            parts = []
            if conn.lag_ms is not None:
                parts.append(f"lag {conn.lag_ms:,.0f} ms")
            if conn.last_market_mono is not None and not self.deterministic:
                parts.append(f"{time.monotonic() - conn.last_market_mono:,.0f}s ago")
            data = " ".join(parts)
        source = rt.source if rt is not None else None
        n = len(snap.sessions)
        hint = ""
        if n > 1 and s is not None:
            hint = f"{[x.key for x in snap.sessions].index(s.key) + 1}/{n}"
        return HeaderState(
            mode=mode,
            symbol=s.symbol if s is not None else opts.symbol,
            interval=interval,
            strategy=strategy,
            connection=f"{conn.source} {conn.state}".strip() if conn.source else "connecting",
            data=data,
            trading=self.trading,
            entries_paused=self.entries_paused,
            replay_paused=bool(getattr(source, "paused", False)),
            session_hint=hint,
            starting=self.status,
            market_ms=market_ms,
            speed=speed,
            delivery=tuple(
                (f"{d.source} {d.state}" + (f" {d.lag_ms:,.0f} ms" if d.lag_ms else ""), d.state) for d in snap.delivery
            ),
        )

    def charts_settled(self) -> bool:
        """Every chart on the current screen shows the picture of its latest data (tests and
        snapshots wait for this; pictures are built in the chart thread)."""
        return all(c.settled for c in self.screen.query(ThreadedPlot) if c.display and c.size.area)

    def on_snapshot(self, snap: CollectorSnapshot) -> None:
        """New engine data arrived: raise a toast for new errors (they also go to the log)."""
        if snap.errors_total > self._errors_seen:
            self._errors_seen = snap.errors_total
            for line in reversed(self.collector.log_since(max(0, snap.log_seq - 20))):
                if line.level == "error":
                    self.notify(line.text, title="engine error", severity="error", timeout=6)
                    break

    # ------------------------------------------------------------------ actions
    def _engine(self):  # noqa: ANN202 - tradeconsole.core.engine.Engine, imported lazily by Runtime
        if self.runtime is None:
            self.notify("the engine is not running yet", severity="warning", timeout=3)
            return None
        return self.runtime.engine

    def _show_now(self, everything: bool = False) -> None:
        """Redraw the dashboard's header (or ``everything``) at once: an operator action is
        answered on screen in the same frame, not at the next timer tick."""
        if isinstance(self.screen, DashboardScreen):
            if everything:
                self.screen.refresh_view(force=True)
            else:
                self.screen.refresh_header()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self._quitting:
            return action == "quit"  # shutting down: no palette, no command reaches a dying engine
        if action in ("toggle_replay", "replay_step", "replay_speed"):
            return self.runtime is not None and hasattr(self.runtime.source, "pause")
        return True

    def action_toggle_trading(self) -> None:
        """Stop = no new entries and no strategy decisions, but open positions stay managed
        (marks, stop/target, paper fills) until they close or are flattened; start again."""
        engine = self._engine()
        if engine is None:
            return
        self.trading = not self.trading
        engine.send(StartTrading() if self.trading else StopTrading())
        self.collector.note(
            "trading started"
            if self.trading
            else "trading stopped by the operator: no new entries; open positions keep their stop/target"
        )
        self._show_now()

    def action_toggle_pause(self) -> None:
        engine = self._engine()
        if engine is None:
            return
        self.entries_paused = not self.entries_paused
        engine.send(PauseEntries(self.entries_paused))
        self._show_now()

    def open_positions(self) -> list[str]:
        """One line per open position or pending entry, as the collector last saw them."""
        out = []
        for s in self.collector.snapshot().sessions:
            if s.position is not None:
                p = s.position
                out.append(f"{s.symbol} {s.strategy} {p.side.name} {p.qty:,.4f} @ {p.entry_price:,.2f}")
            elif any(o.kind == "MARKET" for o in s.working):
                out.append(f"{s.symbol} {s.strategy} pending entry")
        return out

    def action_flatten(self) -> None:
        if self._engine() is None:
            return
        open_now = self.open_positions()
        if not open_now:
            self.notify("Nothing to close: no open position or pending entry.", title="Flatten", timeout=4)
            self.collector.note("flatten: nothing to close")
            return

        def confirmed(ok: bool | None) -> None:
            engine = self._engine()
            if ok and engine is not None:
                engine.send(Flatten())
                self.collector.note("flatten requested by the operator", "warning")

        self.push_screen(
            ConfirmDialog(
                "Close now at the last price (market):\n  "
                + "\n  ".join(open_now)
                + "\nand cancel pending entries?\nEntries stay allowed: "
                "use the kill switch (k) to also pause them.",
                "Flatten",
            ),
            confirmed,
        )

    def action_kill_switch(self) -> None:
        """The kill switch: flatten everything and pause new entries, after confirmation."""
        if self._engine() is None:
            return
        open_now = self.open_positions()

        def confirmed(ok: bool | None) -> None:
            engine = self._engine()
            if ok and engine is not None:
                engine.send(Flatten(pause=True))
                self.entries_paused = True
                self.collector.note("KILL SWITCH: flatten everything and pause entries", "warning")
                self._show_now()

        what = (
            ("Close now at the last price (market):\n  " + "\n  ".join(open_now))
            if open_now
            else "No open position (nothing to close)."
        )
        self.push_screen(
            ConfirmDialog(
                f"{what}\nCancel pending entries and PAUSE all new entries\n(p resumes them).", "KILL SWITCH"
            ),
            confirmed,
        )

    def action_switch_strategy(self) -> None:
        if self._engine() is None or self.selected_key is None:
            return
        key = self.selected_key
        s = self.collector.snapshot().session(key)
        current = s.strategy if s is not None else None

        def chosen(name: str | None) -> None:
            engine = self._engine()
            if name is None or name == current or engine is None:
                return
            self.collector.alias(key, name)
            engine.send(SwitchStrategy(key, name, {}))
            self.collector.note(f"switch {key} to {name} requested")

        self.push_screen(StrategyDialog(current), chosen)

    def action_switch_symbol(self) -> None:
        """Another symbol. During a replay the data must follow: the new symbol's history next
        to the current one (same layout), or the switch is refused in the dialog."""
        opts = self.options

        def chosen(symbol: str | None) -> None:
            if symbol and symbol.upper() != self.options.symbol:
                self._restart(symbol=symbol.upper())

        def validate(text: str) -> str | None:
            problem = symbol_problem(text)
            if problem or not opts.replay or text.upper() == opts.symbol:
                return problem
            iv = opts.strategies[0][1]
            path = retarget_replay(opts.replay, opts.symbol, text.upper(), iv, iv)
            if path is None:
                return (
                    f"this replay holds {opts.symbol} data and no {text.upper()} {iv} history was found "
                    f"next to it: download it (tradeconsole data download {text.upper()} {iv}) or keep "
                    f"{opts.symbol}"
                )
            return data_symbol_problem(path, text)

        self.push_screen(
            TextDialog("Symbol", "Symbol to trade (restarts the engine):", opts.symbol, validate=validate), chosen
        )

    def action_switch_interval(self) -> None:
        current = self.options.strategies[0][1]

        def chosen(interval: str | None) -> None:
            if interval and interval != current:
                self._restart(interval=interval)

        self.push_screen(ChoiceDialog("Interval", INTERVALS, current), chosen)

    def _restart(self, symbol: str | None = None, interval: str | None = None) -> None:
        """New runtime on another symbol/interval, keeping the strategies now running."""
        opts = self.options
        strategies = list(opts.strategies)
        if self.runtime is not None:
            # once per strategy spec, not once per symbol x spec
            strategies = list(
                dict.fromkeys((sess.strategy.name, sess.interval) for sess in self.runtime.engine.sessions.values())
            )
        new = with_market(opts, symbol=symbol, interval=interval, strategies=strategies)
        if symbol:  # "another symbol" replaces the set of symbols by that one
            new = replace(new, symbols=[new.symbol])
        if opts.replay:
            path = retarget_replay(opts.replay, opts.symbol, new.symbol, opts.strategies[0][1], new.strategies[0][1])
            new = replace(new, replay=path or "")
            if not path:
                self.collector.note(
                    f"no replay data found for {new.symbol} {new.strategies[0][1]} next to {opts.replay}", "warning"
                )
        previous, self.runtime = self.runtime, None
        self.collector.note(f"switching to {new.symbol} {new.strategies[0][1]}")
        self.launch(new, previous)

    def action_next_session(self, step: int = 1) -> None:
        """Show the next (``step`` 1) or previous (-1) session: chart, indicators, position,
        trades; the positions panel and the orders table keep listing every session."""
        snap = self.collector.snapshot()
        keys = [s.key for s in snap.sessions]
        if keys:
            i = keys.index(self.selected_key) if self.selected_key in keys else (-1 if step > 0 else 0)
            self.selected_key = keys[(i + step) % len(keys)]
            self._show_now(everything=True)

    def action_toggle_replay(self) -> None:
        source = self.runtime.source if self.runtime is not None else None
        if source is None or not hasattr(source, "pause"):
            return
        if source.paused:
            source.resume()
        else:
            source.pause()
        self._show_now()

    def action_replay_step(self) -> None:
        """Play exactly one more candle of the replay, then hold."""
        source = self.runtime.source if self.runtime is not None else None
        if source is None or not hasattr(source, "step"):
            return
        source.step()
        self._show_now()

    def action_replay_speed(self, direction: int) -> None:
        """Next faster (+1) or slower (-1) replay speed: x1 ... x10,000, max."""
        source = self.runtime.source if self.runtime is not None else None
        if source is None or not hasattr(source, "set_speed"):
            return
        now = source.speed
        if now in SPEEDS:
            i = SPEEDS.index(now)
        else:  # a speed from the command line: the nearest step
            i = len(SPEEDS) - 1 if now is None else min(range(len(SPEEDS) - 1), key=lambda j: abs(SPEEDS[j] - now))
        new = SPEEDS[max(0, min(len(SPEEDS) - 1, i + direction))]
        if new != now:
            source.set_speed(new)
            self.options = replace(self.options, speed=new)
            self.collector.note(f"replay speed {'max' if new is None else f'×{new:,g}'}")
        self._show_now()

    def action_backtest(self) -> None:
        from tradeconsole.tui.screens.backtest import BacktestScreen

        if not self._backtest_installed:
            s = self.collector.snapshot().session(self.selected_key)
            self.install_screen(
                BacktestScreen(
                    strategy=s.strategy if s is not None else self.options.strategies[0][0],
                    symbol=self.options.symbol,
                    interval=self.options.strategies[0][1],
                    data=self.options.replay or "",
                    cash=self.options.cash,
                    deterministic=self.deterministic,
                    chart_builder=self.chart_builder,
                    intervals=INTERVALS,
                ),
                name="backtest",
            )
            self._backtest_installed = True
        self.push_screen("backtest")

    def action_help(self) -> None:
        """Show the help screen; built once and kept, so opening it again costs one repaint."""
        from tradeconsole.tui.screens.backtest import BACKTEST_BINDINGS
        from tradeconsole.tui.screens.optimize import OPTIMIZE_BINDINGS

        if not self.is_screen_installed("help"):
            self.install_screen(
                HelpScreen(
                    [
                        ("Dashboard", DASHBOARD_BINDINGS),
                        ("Backtest screen", BACKTEST_BINDINGS),
                        ("Optimise screen (ctrl+o on the backtest screen)", OPTIMIZE_BINDINGS),
                        ("Tables and dialogs", HELP_EXTRA),
                        (
                            "Everywhere",
                            [
                                Binding("ctrl+p", "", "Command palette: every action by name"),
                                Binding("ctrl+q", "", "Quit (asks about open positions; again: at once)"),
                            ],
                        ),
                    ]
                ),
                name="help",
            )
        if not isinstance(self.screen, HelpScreen):
            self.push_screen("help")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every action once: Textual's own Quit and Keys are replaced by ours (our Quit asks
        about open positions; our help lists every key)."""
        for cmd in super().get_system_commands(screen):
            if cmd.title not in ("Quit", "Keys"):
                yield cmd
        yield SystemCommand(
            "Start / stop trading", "Stop acting on candles, or start again", self.action_toggle_trading
        )
        yield SystemCommand("Pause / resume entries", "No new positions; exits keep working", self.action_toggle_pause)
        yield SystemCommand("Flatten all positions", "Close everything now (asks first)", self.action_flatten)
        yield SystemCommand(
            "Kill switch", "Flatten everything and pause new entries (asks first)", self.action_kill_switch
        )
        yield SystemCommand("Switch strategy", "Another strategy for the selected session", self.action_switch_strategy)
        yield SystemCommand("Switch symbol", "Trade another symbol (restarts the engine)", self.action_switch_symbol)
        yield SystemCommand(
            "Switch interval", "Another kline interval (restarts the engine)", self.action_switch_interval
        )
        yield SystemCommand("Backtest", "Run a strategy over history", self.action_backtest)
        yield SystemCommand("Pause / resume replay", "Freeze the replay feed", self.action_toggle_replay)
        yield SystemCommand("Replay: one candle", "Play one more candle, then hold", self.action_replay_step)
        yield SystemCommand("Replay faster", "Next replay speed up (to max)", lambda: self.action_replay_speed(1))
        yield SystemCommand("Replay slower", "Next replay speed down (to x1)", lambda: self.action_replay_speed(-1))
        yield SystemCommand("Next session", "Show the next running session", self.action_next_session)
        yield SystemCommand(
            "Orders: open / history",
            "Toggle the orders table",
            lambda: self.screen.action_toggle_orders() if isinstance(self.screen, DashboardScreen) else None,
        )
        yield SystemCommand("Help: every key", "Keys of every screen and dialog", self.action_help)
        yield SystemCommand("Quit", "Stop the engine cleanly and exit", self.action_quit)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``tradeconsole`` without a subcommand (see ``tradeconsole.tui.cli``)."""
    from tradeconsole.tui.cli import UserError, check_engine_args, clip

    check_engine_args(args)
    try:
        # a replay in the console starts with 200 candles of history so the indicator panes are
        # live at once (headless replays keep 0 to match backtests from the first candle)
        opts = replace(options_from_args(args), replay_warmup=200)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if opts.replay and not Path(opts.replay).exists():
        raise UserError(f"no such replay file or directory: {clip(opts.replay, 200)}")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError(
            "the console needs a terminal on stdin and stdout; without one use "
            "`tradeconsole run --headless ...` (same options, JSON logs)"
        )
    app = TradeConsoleApp(opts)
    try:
        app.run()
    finally:
        app.shutdown_runtime()
    # an engine that died (journal full, broker failure) ends the console non-zero with its root
    # cause, so a supervisor or script sees it even though the UI itself closed normally
    failure = getattr(app.last_stopped, "failure", None)
    if failure:
        from tradeconsole.tui.cli import EnvironmentFailure

        raise EnvironmentFailure(failure)  # tradeconsole.tui.cli.main prints it as one `error:` line, exit 1
    return int(app.return_code or 0)
