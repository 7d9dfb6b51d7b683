"""The fields of the console's run forms (the backtest screen's and the optimise screen's).

Both forms are a column of one-line rows - a label and a compact input or choice - ending with a
Run button, and both screens run in a worker with the same two keys: ``ctrl+r`` runs, Escape
cancels the running job or goes back. The pieces are built here once, so the two forms look and
behave alike; each screen keeps its own CSS prefix (``bt``/``op``) for its label width.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.binding import Binding
from textual.containers import Horizontal
from textual.dom import DOMNode
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select

__all__ = ["choice_field", "form_row", "run_bindings", "run_button", "set_cursor_blink", "text_field"]


def run_bindings(job: str, back_to: str) -> list[Binding]:
    """``ctrl+r`` (or F5) runs; Escape cancels the running ``job``, else goes back to ``back_to``."""
    tooltip = f"cancel the running {job}, else back to {back_to}"
    return [
        Binding("ctrl+r,f5", "run", "Run", key_display="^r"),
        Binding("escape", "cancel_or_back", "Cancel/Back", key_display="esc", tooltip=tooltip),
    ]


def form_row(label: str, field: Widget, prefix: str) -> Horizontal:
    """One line of a form: ``label`` (class ``PREFIX-label``) and its field (row class ``PREFIX-row``)."""
    return Horizontal(Label(label, classes=f"{prefix}-label"), field, classes=f"{prefix}-row")


def text_field(
    value: str,
    id: str,
    *,
    placeholder: str = "",
    tooltip: str | None = None,
    classes: str | None = None,
) -> Input:
    """A compact one-line text input."""
    return Input(value, placeholder=placeholder, compact=True, id=id, tooltip=tooltip, classes=classes)


def choice_field(options: Iterable[str], value: str, id: str) -> Select[str]:
    """A compact choice among ``options`` (each shown as itself), never blank."""
    return Select([(o, o) for o in options], value=value, allow_blank=False, compact=True, id=id)


def run_button(id: str) -> Button:
    return Button("Run (ctrl+r)", id=id, compact=True, variant="primary")


def set_cursor_blink(node: DOMNode, deterministic: bool) -> None:
    """Inputs under ``node`` blink their cursor, except in deterministic mode (snapshots)."""
    for inp in node.query(Input):
        inp.cursor_blink = not deterministic
