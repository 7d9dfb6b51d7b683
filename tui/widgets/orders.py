"""Orders and trades tables.

Orders: the orders still working (the protective STOP_MARKET / TAKE_PROFIT_MARKET of the open
position, an entry waiting for the next open) first, then every order event newest first
(filled, canceled, rejected). Trades: every fill, newest first, with the PnL of the round trip
it closes.

Tables are rebuilt only when the session's book changed, and hold at most the collector's
bounded rows.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import DataTable

from tui.collector import SessionSnapshot, fmt_num

__all__ = ["OrdersTable", "TradesTable", "short_time"]


def short_time(ms: int) -> str:
    """Compact UTC time for table cells: ``01-31 13:05``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%m-%d %H:%M")


class _BookTable(DataTable):
    """A DataTable redrawn from a session snapshot when its book version changes."""

    COLUMNS: tuple[str, ...] = ()

    def __init__(self, title: str, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.border_title = title
        self._seen: tuple[str, int] | None = None

    def on_mount(self) -> None:
        self.add_columns(*self.COLUMNS)

    def show(self, s: SessionSnapshot | None) -> None:
        seen = (s.key, s.book_version) if s is not None else None
        if seen == self._seen:
            return
        self._seen = seen
        self.clear()
        if s is not None:
            self.add_rows(self.rows_for(s))

    def rows_for(self, s: SessionSnapshot) -> list[tuple[object, ...]]:
        raise NotImplementedError


class OrdersTable(_BookTable):
    COLUMNS = ("time", "side", "type", "qty", "price", "status", "note")

    def __init__(self, **kwargs: object) -> None:
        super().__init__("Orders", **kwargs)

    def rows_for(self, s: SessionSnapshot) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        for o in s.working:  # working orders first: what protects the position right now
            rows.append((short_time(o.time), o.side, o.kind, fmt_num(o.qty, ".4f"), fmt_num(o.price),
                         Text("working", style="bold yellow"), o.note))
        for o in reversed(s.orders):
            style = {"filled": "green", "new": "", "canceled": "dim", "rejected": "bold red"}.get(o.status, "")
            rows.append((short_time(o.time), o.side, o.kind, fmt_num(o.qty, ".4f"), fmt_num(o.price),
                         Text(o.status, style=style), o.note))
        return rows


class TradesTable(_BookTable):
    COLUMNS = ("time", "side", "reason", "price", "qty", "fee", "pnl")

    def __init__(self, **kwargs: object) -> None:
        super().__init__("Trades", **kwargs)

    def rows_for(self, s: SessionSnapshot) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        for f in reversed(s.fills):
            pnl = Text("") if f.pnl is None else Text(f"{f.pnl:+,.2f}", style="green" if f.pnl > 0 else "red")
            rows.append((short_time(f.time), f.side, f.reason, fmt_num(f.price), f"{f.qty:.4f}", fmt_num(f.fee),
                         pnl))
        return rows
