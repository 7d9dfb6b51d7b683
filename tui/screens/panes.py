"""Screens whose panes show one at a time on a small terminal (the backtest and optimise screens).

A one-line bar names the panes and marks the one shown; a key (``action_next_view``) shows and
focuses the next, and tabbing into a pane shows it. Which panes are hidden is CSS: each pane gets
the ``-shown`` class when it is the chosen one, and a screen's CSS decides (by the app's size
breakpoints) whether only the shown one is displayed or all of them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static

__all__ = ["PaneScreen"]


class PaneScreen(Screen):
    """``PANES`` (widget ids, in ``action_next_view`` order), ``PANE_TITLES`` (their names in the
    bar), ``PANE_BAR`` (the bar's id), ``PANE_HINT`` (the key, said at the end of the bar)."""

    PANES: ClassVar[tuple[str, ...]] = ()
    PANE_TITLES: ClassVar[dict[str, str]] = {}
    PANE_BAR: ClassVar[str] = ""
    PANE_HINT: ClassVar[str] = ""

    #: the pane shown now
    view: str = ""

    def _show_view(self, view: str) -> None:
        """Show ``view`` (the compact layout hides the others) and mark it in the bar."""
        self.view = view
        for v in self.PANES:
            self.query_one(f"#{v}").set_class(v == view, "-shown")
        bar = Text()
        for v in self.PANES:
            bar.append(f" {self.PANE_TITLES[v]} ", style="bold reverse" if v == view else "dim")
        bar.append(f"  {self.PANE_HINT}", style="dim")
        self.query_one(f"#{self.PANE_BAR}", Static).update(bar)
        self._view_shown(view)

    def _view_shown(self, view: str) -> None:
        """After ``view`` is shown: for what a screen redraws then."""

    def _focus_view(self, view: str) -> None:
        self.query_one(f"#{view}").focus()

    def action_next_view(self) -> None:
        """Show the next pane and focus it, so its keys (arrows, ``s`` to sort) work."""
        view = self.PANES[(self.PANES.index(self.view) + 1) % len(self.PANES)]
        self._show_view(view)
        self._focus_view(view)

    def on_descendant_focus(self, event: Any) -> None:
        """Tabbing into a pane shows it (the compact layout shows one pane at a time)."""
        node = event.widget
        while node is not None and node is not self:
            if node.id in self.PANES:
                if node.id != self.view:
                    self._show_view(node.id)
                return
            node = node.parent
