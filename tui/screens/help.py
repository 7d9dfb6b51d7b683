"""The help screen: every key, what the modes mean, and where data comes from.

Generated from the screens' own binding tables so it can never disagree with the footer.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

__all__ = ["HelpScreen", "bindings_table"]

ABOUT = """\
Modes: PAPER (default) simulates fills locally; TESTNET trades on Binance's futures testnet;
LIVE trades real money and needs API keys, --live and the symbol typed back at start.
Without a network the console offers to replay history (the download cache or any
CSV/Parquet path): the engine, strategies and broker are exactly those of live paper trading.
Command palette: ctrl+p lists every action by name."""


_KEY_NAMES = {
    "question_mark": "?",
    "full_stop": ".",
    "plus": "+",
    "equals_sign": "=",
    "minus": "-",
    "escape": "Esc",
    "enter": "Enter",
    "space": "Space",
    "tab": "Tab",
    "shift+tab": "Shift+Tab",
    "up": "↑",
    "down": "↓",
    "f1": "F1",
    "f5": "F5",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
}


def key_names(keys: str) -> str:
    """``question_mark,f1`` -> ``?, F1``; ``ctrl+r`` -> ``^r``."""
    out = []
    for k in (k.strip() for k in keys.split(",")):
        out.append(_KEY_NAMES.get(k) or (f"^{k[5:]}" if k.startswith("ctrl+") else k))
    return ", ".join(dict.fromkeys(out))


def bindings_table(title: str, bindings: Iterable[BindingType]) -> Text:
    """Key/description lines of the bindings that have a description, under a bold title.
    Plain Text (not a rich Table) so the screen opens without measuring columns."""
    rows = []
    for b in bindings:
        if not isinstance(b, Binding) or not b.description:
            continue
        keys = key_names(b.key)
        rows.append((keys, b.description + (f" — {b.tooltip}" if b.tooltip else "")))
    width = max((len(k) for k, _ in rows), default=0) + 2
    out = Text()
    out.append(title, style="bold underline")
    for keys, text in rows:
        out.append("\n")
        out.append(keys.ljust(width), style="bold cyan")
        out.append(text)
    return out


class HelpScreen(Screen):
    """A full (opaque) screen rather than a modal: a modal keeps the dashboard rendering behind
    it, which makes opening and closing help cost two full repaints during a fast replay."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close help")]
    DEFAULT_CSS = """
    HelpScreen { align: center top; }
    HelpScreen > VerticalScroll {
        width: 100; max-width: 100%; height: 1fr;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, sections: list[tuple[str, Iterable[BindingType]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll() as v:
            v.border_title = "Help (Escape to close)"
            text = Text()
            for title, bindings in self.sections:
                text.append_text(bindings_table(title, bindings))
                text.append("\n\n")
            text.append(ABOUT, style="dim")
            yield Static(text)

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.app.pop_screen()
