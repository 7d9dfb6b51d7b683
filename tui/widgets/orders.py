"""Orders and trades tables.

Orders: by default the *open* orders, one row per order in its latest state (the protective
STOP_MARKET / TAKE_PROFIT_MARKET of the open position, an entry waiting for the next open);
``o`` toggles to the history, one row per order with its final state (filled, canceled,
rejected), newest first. Trades: every fill, newest first, with the PnL of the round trip it
closes.

Numbers are never cut: when the pane is too narrow for every column, labels get shorter
(``STOP_MARKET`` -> ``STOP``) and whole columns are dropped by priority (note, time, qty, fee
first; price, PnL and side last). Tables are rebuilt only when the session's book or the pane's
width changed, and hold at most the collector's bounded rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import DataTable
from tradeconsole.tui.collector import OrderRow, SessionSnapshot, fmt_num

__all__ = ["OrdersTable", "TradesTable", "fit_columns", "short_time"]

_SHORT_TYPE = {"STOP_MARKET": "STOP", "TAKE_PROFIT_MARKET": "TP", "MARKET": "MKT"}
_STATUS_STYLE = {
    "filled": "green",
    "new": "bold yellow",
    "working": "bold yellow",
    "canceled": "dim",
    "rejected": "bold red",
}


def short_time(ms: int) -> str:
    """Compact UTC time for table cells: ``01-31 13:05``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%m-%d %H:%M")


def _cell_len(v: object) -> int:
    return v.cell_len if isinstance(v, Text) else len(str(v))


def fit_columns(columns: Sequence[tuple[str, int]], rows: Sequence[dict[str, object]], width: int) -> list[str]:
    """The columns (name, priority: 1 = kept longest) that fit ``width`` cells with every value
    whole; DataTable pads each cell by one on both sides."""
    need = {name: max([len(name)] + [_cell_len(r.get(name, "")) for r in rows]) + 2 for name, _ in columns}
    kept = [name for name, _ in columns]
    by_drop = sorted(columns, key=lambda c: -c[1])
    for name, prio in by_drop:
        if sum(need[n] for n in kept) <= width or prio <= 1:
            break
        kept.remove(name)
    return kept


class _BookTable(DataTable):
    """A DataTable redrawn from a session snapshot when its book version or width changes."""

    COLUMNS: tuple[tuple[str, int], ...] = ()

    def __init__(self, title: str, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.title = title
        self.border_title = title
        self._seen: tuple[object, ...] | None = None
        self._snap: SessionSnapshot | None = None
        self._others: tuple[SessionSnapshot, ...] = ()
        self.shown_columns: list[str] = []

    def show(self, s: SessionSnapshot | None, others: Sequence[SessionSnapshot] = ()) -> None:
        """Draw ``s`` (the selected session); tables that list every session (the orders) also
        get the ``others``."""
        self._snap = s
        self._others = tuple(others)
        self._redraw()

    def table_columns(self) -> tuple[tuple[str, int], ...]:
        return self.COLUMNS

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self, force: bool = False) -> None:
        s = self._snap
        width = self.size.width - 1  # room for the vertical scrollbar
        others = tuple((o.key, o.book_version) for o in self._others)
        seen = (
            (s.key, s.book_version, others, width, self.view_key()) if s is not None else (None, width, self.view_key())
        )
        if seen == self._seen and not force:
            return
        self._seen = seen
        short = width < 72
        rows = self.rows_for(s, short) if s is not None else []
        cols = fit_columns(self.table_columns(), rows, width) if width > 0 else [c for c, _ in self.table_columns()]
        self.clear(columns=cols != self.shown_columns)
        if cols != self.shown_columns:
            self.shown_columns = cols
            self.add_columns(*cols)
        self.add_rows([tuple(r.get(c, "") for c in cols) for r in rows])
        self.border_title = self.title_text()

    def view_key(self) -> object:
        return None

    def title_text(self) -> str:
        return self.title

    def rows_for(self, s: SessionSnapshot, short: bool) -> list[dict[str, object]]:
        raise NotImplementedError


class OrdersTable(_BookTable):
    COLUMNS = (("time", 3), ("side", 1), ("type", 1), ("qty", 2), ("price", 1), ("status", 1), ("note", 4))

    def __init__(self, **kwargs: object) -> None:
        super().__init__("Orders", **kwargs)
        self.history = False

    def toggle_history(self) -> None:
        """Open orders <-> the history of every order (latest state of each)."""
        self.history = not self.history
        self._redraw()

    def view_key(self) -> object:
        return self.history

    def title_text(self) -> str:
        n = self.row_count
        return f"Orders: history ({n}) · o open" if self.history else f"Orders: open ({n}) · o history"

    def table_columns(self) -> tuple[tuple[str, int], ...]:
        # several sessions: every session's orders, each row saying whose (kept at any width)
        return (("session", 1), *self.COLUMNS) if self._others else self.COLUMNS

    def rows_for(self, s: SessionSnapshot, short: bool) -> list[dict[str, object]]:
        sessions = [s, *self._others]
        many = len(sessions) > 1
        symbols = {x.symbol for x in sessions}
        picked: list[tuple[OrderRow, SessionSnapshot]] = []
        for x in sessions:
            if self.history:
                picked += [(o, x) for o in reversed(x.order_book) if o.status not in ("new", "working")]
            else:
                picked += [(o, x) for o in x.working]
        if many:  # the newest first across sessions (the history), working orders by time placed
            picked.sort(key=lambda ox: ox[0].time, reverse=self.history)
        out = []
        for o, x in picked:
            status = "working" if o.status == "new" else o.status
            row: dict[str, object] = {
                "time": short_time(o.time),
                "side": o.side,
                "type": _SHORT_TYPE.get(o.kind, o.kind) if short else o.kind,
                "qty": fmt_num(o.qty, ".4f"),
                "price": fmt_num(o.price),
                "status": Text(status, style=_STATUS_STYLE.get(status, "")),
                "note": o.note,
            }
            if many:
                who = x.symbol if len(symbols) > 1 else x.strategy
                if len(symbols) > 1 and len(sessions) > len(symbols):
                    who = f"{x.symbol} {x.strategy}"
                row["session"] = Text(who, style="bold" if x.key == s.key else "")
            out.append(row)
        return out


class TradesTable(_BookTable):
    COLUMNS = (("time", 2), ("side", 1), ("reason", 2), ("price", 1), ("qty", 3), ("fee", 4), ("pnl", 1))

    def __init__(self, **kwargs: object) -> None:
        super().__init__("Trades", **kwargs)

    def rows_for(self, s: SessionSnapshot, short: bool) -> list[dict[str, object]]:
        out = []
        for f in reversed(s.fills):
            pnl = Text("") if f.pnl is None else Text(f"{f.pnl:+,.2f}", style="green" if f.pnl > 0 else "red")
            out.append(
                {
                    "time": short_time(f.time),
                    "side": f.side,
                    "reason": f.reason,
                    "price": fmt_num(f.price),
                    "qty": f"{f.qty:.4f}",
                    "fee": fmt_num(f.fee),
                    "pnl": pnl,
                }
            )
        return out
