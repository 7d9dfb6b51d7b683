"""The two kinds of failure every command reports on one line (``tradeconsole.tui.cli.report_error``).

They live at the bottom of the package graph so that ``backtest`` and ``infra`` code can raise them
without importing the CLI layer: a ``UserError`` (a mistake in what was asked: exit 2) and an
``EnvironmentFailure`` (the network, disk or a server refused: exit 1).
"""

from __future__ import annotations

__all__ = ["CLIP", "EnvironmentFailure", "UserError", "clip"]


class UserError(Exception):
    """A mistake in what the user asked for (options, paths, config): exit 2, one line."""

    exit_code = 2


class EnvironmentFailure(Exception):
    """The environment refused (network, disk, permissions): exit 1, one line."""

    exit_code = 1


CLIP = 80


def clip(value: object, limit: int = CLIP) -> str:
    """``value`` as text, cut to ``limit`` characters plus ``…(N chars)`` when longer: messages
    quote what the user typed, and a hostile or mistaken 20 MB argument must not come back whole."""
    s = str(value)
    return s if len(s) <= limit else f"{s[:limit]}…({len(s)} chars)"
