"""The console composes downwards only: tui.app -> tui.screens -> tui.widgets, never back up
(the import-linter contract in pyproject.toml says the same; this test keeps it without the tool).
Imports inside functions and under TYPE_CHECKING count too: a cycle hidden in a function is
still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import tradeconsole.tui as tui

TUI = Path(tui.__file__).parent


def imported(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{p.relative_to(TUI)}: {m}"
        for p in (TUI / folder).glob("*.py")
        for m in imported(p)
        if m.startswith(forbidden)
    )


def test_widgets_never_import_the_app_or_screens():
    assert offenders("widgets", ("tradeconsole.tui.app", "tradeconsole.tui.screens")) == []


def test_screens_never_import_the_app():
    assert offenders("screens", ("tradeconsole.tui.app",)) == []


def test_charts_are_handed_their_builder():
    source = (TUI / "widgets" / "chart.py").read_text()
    assert 'self.app, "chart_builder"' not in source and "chart_builder" not in source
