"""Modal dialogs: confirm, choose from a list, type a value, confirm live trading, and the
offer to replay history when Binance cannot be reached.

Every dialog works from the keyboard alone: Enter accepts, Escape cancels, and the focused
widget is the one you type into. Each dismisses with its result (None when cancelled) so callers
use ``push_screen(dialog, callback)`` or ``push_screen_wait``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option
from tradeconsole.tui.widgets.header import mode_badge

__all__ = [
    "ChoiceDialog",
    "ConfirmDialog",
    "LiveConfirmDialog",
    "QuitDialog",
    "ReplayOfferDialog",
    "StrategyDialog",
    "TextDialog",
    "strategy_choices",
]


class _Dialog(ModalScreen):
    DEFAULT_CSS = """
    _Dialog { align: center middle; }
    _Dialog > Vertical {
        width: 64; max-width: 95%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    _Dialog .hint { color: $text-muted; margin-top: 1; }
    _Dialog .error { color: $error; }
    _Dialog Label, _Dialog Static { width: 100%; }  /* wrap inside the dialog, never cut */
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(_Dialog):
    """Yes/no. ``y``/Enter confirms, ``n``/Escape cancels; dismisses with a bool."""

    BINDINGS = [Binding("y,enter", "confirm", "Yes"), Binding("n,escape", "cancel", "No")]

    def __init__(self, question: str, title: str = "Confirm") -> None:
        super().__init__()
        self.question = question
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = self.title_text
            yield Static(self.question)
            yield Label("[b]y[/b]/Enter = yes    [b]n[/b]/Escape = no", classes="hint")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class QuitDialog(_Dialog):
    """Quit with a position open: leave it protected (``l``), flatten first (``f``), or stay
    (Escape). Dismisses with ``"leave"``, ``"flatten"`` or None."""

    BINDINGS = [
        Binding("l", "answer('leave')", "Leave protected"),
        Binding("f", "answer('flatten')", "Flatten"),
        Binding("escape,n", "cancel", "Cancel"),
    ]

    def __init__(self, positions: Sequence[str], *, live: bool = False, throwaway: bool = False) -> None:
        super().__init__()
        self.positions = list(positions)
        self.live = live
        self.throwaway = throwaway

    def compose(self) -> ComposeResult:
        if self.live:
            leave = "the stop-loss and take-profit orders stay on the exchange and protect it"
        elif self.throwaway:
            leave = "this replay has no journal (--journal): the position ends with it"
        else:
            leave = "the journal keeps it; the next start restores it with its stop/target"
        with Vertical() as v:
            v.border_title = "Quit with an open position"
            yield Static("Open now:\n  " + "\n  ".join(self.positions))
            yield Static(Text.assemble(("l", "bold"), "  leave it protected and quit: ", leave))
            yield Static(Text.assemble(("f", "bold"), "  flatten (close at market) and quit"))
            yield Label("[b]l[/b] leave   [b]f[/b] flatten   [b]Escape[/b] stay", classes="hint")

    def action_answer(self, answer: str) -> None:
        self.dismiss(answer)


class ChoiceDialog(_Dialog):
    """Pick one of ``choices`` with the arrow keys and Enter; dismisses with the choice or None."""

    def __init__(
        self, title: str, choices: Sequence[str], current: str | None = None, descriptions: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.title_text = title
        self.choices = list(choices)
        self.current = current
        self.descriptions = descriptions or {}

    def compose(self) -> ComposeResult:
        options = []
        for c in self.choices:
            label = Text(c, style="bold")
            if c == self.current:
                label.append("  (current)", style="dim")
            if c in self.descriptions:
                label.append(f"  {self.descriptions[c]}", style="dim")
            options.append(Option(label, id=c))
        options += self.extra_options()
        with Vertical() as v:
            v.border_title = self.title_text
            yield OptionList(*options, id="choices")
            yield Label("↑/↓ choose, Enter select, Escape cancel", classes="hint")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        if self.current in self.choices:
            ol.highlighted = self.choices.index(self.current)
        ol.focus()

    def extra_options(self) -> list[Option]:
        """Lines shown after the choices (subclasses: e.g. what could not be offered, and why)."""
        return []

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)


def strategy_choices(rescan: bool = True) -> tuple[list[str], dict[str, str], list[str]]:
    """The strategy switcher's content: every strategy ``available()`` lists (built-ins, files
    from ``--strategy-path`` and the user strategies directory, entry points), each described by
    its source and intervals, plus one line per strategy file that could not be loaded.

    ``rescan`` looks at the user directory and the entry points again first, so a file saved
    while the console runs is offered. A file is user code: whatever it raises (even
    ``SystemExit``) becomes a line here, never an exception in the console."""
    from tradeconsole.backtest.strategy_loader import available, load_strategies

    problems: list[str] = []
    if rescan:
        try:
            problems += load_strategies((), user_dir=True, entry_points=True).skipped
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code: reported, the console goes on
            problems.append(f"strategies not rescanned: {type(exc).__name__}: {exc}")
    names: list[str] = []
    descriptions: dict[str, str] = {}
    for info in available():
        names.append(info["name"])
        source = info["source"]
        where = "built-in" if source == "built-in" else source.rsplit("/", 1)[-1]
        descriptions[info["name"]] = f"{'/'.join(info['intervals'])}  {where}"
    return names, descriptions, problems


class StrategyDialog(ChoiceDialog):
    """The console's strategy switcher: ``strategy_choices`` as a list; strategy files that could
    not be loaded are shown under it (greyed out, with file, line and reason) instead of
    silently missing."""

    def __init__(self, current: str | None = None, rescan: bool = True) -> None:
        names, descriptions, self.problems = strategy_choices(rescan)
        super().__init__("Strategy", names, current, descriptions)

    def extra_options(self) -> list[Option]:
        return [Option(Text(f"not loaded: {p}", style="dim red"), disabled=True) for p in self.problems]


class TextDialog(_Dialog):
    """Type a value. ``validate`` returns an error message (shown, dialog stays) or None."""

    def __init__(
        self,
        title: str,
        prompt: str,
        value: str = "",
        placeholder: str = "",
        validate: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.value = value
        self.placeholder = placeholder
        self.validate = validate

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = self.title_text
            yield Static(self.prompt)
            yield Input(self.value, placeholder=self.placeholder, id="value")
            yield Label("", id="error", classes="error")
            yield Label("Enter accept, Escape cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        problem = self.validate(text) if self.validate else None
        if problem:
            self.query_one("#error", Label).update(problem)
            return
        self.dismiss(text)


class LiveConfirmDialog(TextDialog):
    """The typed confirmation live trading requires: the symbol, typed back. Dismisses with
    what was typed (the live-trading gate compares it), or None on Escape."""

    def __init__(self, prompt: str, symbol: str) -> None:
        super().__init__("LIVE TRADING", prompt, placeholder=symbol)
        self.symbol = symbol

    def compose(self) -> ComposeResult:
        with Vertical(id="live-box") as v:
            v.border_title = "LIVE TRADING"
            yield Static(Text.assemble(mode_badge("live"), "  orders go to Binance USD-M futures with real money."))
            yield Static(self.prompt)
            yield Input(placeholder=self.symbol, id="value")
            yield Label("", id="error", classes="error")
            yield Label("Enter confirm, Escape refuse (nothing is traded)", classes="hint")

    DEFAULT_CSS = """
    LiveConfirmDialog > #live-box { border: thick $error; }
    """


class ReplayOfferDialog(_Dialog):
    """Binance is unreachable (or the live feed failed): offer to replay history instead.

    Lists the history-cache directories that hold data for the symbol/interval (Enter on one
    uses it) and a path field for any CSV/Parquet file or directory. Dismisses with the chosen
    path, or None to quit.
    """

    def __init__(self, reason: str, candidates: Sequence[str], default_path: str = "", error: str = "") -> None:
        super().__init__()
        self.reason = reason
        self.candidates = list(candidates)
        self.default_path = default_path
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = "No live market data"
            yield Static(Text.assemble(("Live data unavailable: ", "bold"), self.reason))
            yield Static("Replay history instead (paper trading, nothing leaves this machine):")
            if self.candidates:
                yield OptionList(*[Option(c, id=str(i)) for i, c in enumerate(self.candidates)], id="cache")
            else:
                yield Label("No history cache found (fill it with `tradeconsole data download`).", classes="hint")
            yield Input(self.default_path, placeholder="path to a CSV/Parquet file or directory", id="path")
            yield Label(self.error, id="error", classes="error")
            yield Label("Enter replay the selection/path, Tab switch field, Escape quit", classes="hint")

    def on_mount(self) -> None:
        if self.candidates:
            self.query_one("#cache", OptionList).focus()
        else:
            self.query_one("#path", Input).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.candidates[int(event.option.id or 0)])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            self.query_one("#error", Label).update("type a path, or Escape to quit")
            return
        self.dismiss(event.value.strip())
