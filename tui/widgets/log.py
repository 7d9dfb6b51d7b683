"""The event log: engine state changes, connection changes, signals, fills, positions and errors.

Lines come from the collector's bounded log (the candle flood never reaches it); the widget
itself keeps at most ``max_lines``. Market events are stamped with market time (a replay shows
the replay's clock); engine and connection events with the wall clock, which snapshot tests hide.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import RichLog
from tradeconsole.tui.collector import LogLine

__all__ = ["EventLog", "format_line"]

_LEVEL_STYLE = {"info": "", "warning": "yellow", "error": "bold red", "trade": "cyan"}


def format_line(line: LogLine, hide_wall_clock: bool = False) -> Text:
    if line.time_ms <= 0 or (line.wall and hide_wall_clock):
        stamp = " " * 11
    else:
        stamp = datetime.fromtimestamp(line.time_ms / 1000, tz=UTC).strftime("%m-%d %H:%M")
    return Text.assemble((stamp + " ", "dim"), (line.text, _LEVEL_STYLE.get(line.level, "")))


class EventLog(RichLog):
    """Append-only view of the collector's log."""

    def __init__(self, hide_wall_clock: bool = False, **kwargs: object) -> None:
        # wrap: a log line is never cut mid-number ("target 1,60"); min_width small so narrow
        # terminals wrap at their own width instead of RichLog's default 78 columns
        super().__init__(max_lines=500, wrap=True, min_width=20, markup=False, highlight=False, **kwargs)  # type: ignore[arg-type]
        self.border_title = "Log"
        self.hide_wall_clock = hide_wall_clock
        self.last_seq = 0
        self._kept: deque[LogLine] = deque(maxlen=500)
        self._wrapped_at = 0

    def _width(self) -> int | None:
        w = self.scrollable_content_region.width
        return w if w >= 20 else None

    def append(self, lines: Iterable[LogLine]) -> None:
        for line in lines:
            self._kept.append(line)
            self.write(format_line(line, self.hide_wall_clock), width=self._width())
            self.last_seq = line.seq
        self._wrapped_at = self._width() or 0

    def on_resize(self) -> None:
        """Wrap again at the new width (lines are wrapped when written)."""
        w = self._width()
        if w is None or w == self._wrapped_at or not self._kept:
            return
        self._wrapped_at = w
        self.clear()
        for line in self._kept:
            self.write(format_line(line, self.hide_wall_clock), width=w)
