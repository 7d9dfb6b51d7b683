"""Position and account panels.

The position panel answers "what am I holding and how is it doing": side, size, entry, mark,
unrealised PnL, and the protective stop and target the broker holds. The equity panel shows the
account (equity, return since the start, cash). With several sessions running, the panel lists
the other sessions' positions on one line each so nothing open goes unseen.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static
from tradeconsole.core.domain import Side
from tradeconsole.tui.collector import SessionSnapshot, fmt_num

__all__ = ["EquityPanel", "PositionStrip", "PositionsPanel", "label_lines", "position_lines"]


def _signed_style(v: float | None) -> str:
    if v is None:
        return "dim"
    return "bold green" if v > 0 else "bold red" if v < 0 else ""


def label_lines(rows: list[tuple[str, Text]]) -> Text:
    """``label  value`` lines with aligned values. Plain Text rather than a rich Table: these
    panels change with every price tick, and a Table measures its columns on every render."""
    width = max((len(label) for label, _ in rows), default=0) + 1
    out = Text(no_wrap=True, overflow="ellipsis")
    for i, (label, value) in enumerate(rows):
        if i:
            out.append("\n")
        out.append(label.ljust(width), style="dim")
        out.append_text(value)
    return out


def position_lines(s: SessionSnapshot) -> list[tuple[str, Text]]:
    """(label, value) rows describing the session's position (or that it is flat)."""
    p = s.position
    if p is None:
        return [("side", Text("FLAT", style="dim")), ("mark", Text(fmt_num(s.mark)))]
    side = Text(p.side.name, style="bold green" if p.side is Side.LONG else "bold red")
    upnl = s.unrealized_pnl
    pct = None if upnl is None or not p.notional else 100.0 * upnl / (p.notional / p.leverage)
    return [
        ("side", side),
        ("size", Text(f"{p.qty:.4f} {p.symbol}")),
        ("entry", Text(fmt_num(p.entry_price))),
        ("mark", Text(fmt_num(s.mark))),
        ("uPnL", Text(f"{fmt_num(upnl, '+,.2f')} ({fmt_num(pct, '+.2f')}%)", style=_signed_style(upnl))),
        ("stop", Text(fmt_num(p.stop_price), style="red")),
        ("target", Text(fmt_num(p.target_price), style="green")),
    ]


class PositionsPanel(Static):
    """Selected session's position in detail, others in one line each."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.border_title = "Position"
        self._key: tuple[object, ...] | None = None

    def show(self, selected: SessionSnapshot | None, others: Sequence[SessionSnapshot]) -> None:
        key = (
            selected and (selected.key, selected.position, selected.mark),
            tuple((o.key, o.position) for o in others),
        )
        if key == self._key:
            return
        self._key = key
        if selected is None:
            self.update(Text("no session yet", style="dim"), layout=False)
            return
        rows = position_lines(selected)
        for o in others:
            p = o.position
            state = (
                Text("flat", style="dim")
                if p is None
                else Text(f"{p.side.name} {fmt_num(o.unrealized_pnl, '+,.2f')}", style=_signed_style(o.unrealized_pnl))
            )
            if o.symbol != selected.symbol:  # several symbols: say whose position it is
                label = f"{o.symbol} {o.strategy}"
            elif o.interval == selected.interval:
                label = o.strategy
            else:
                label = f"{o.strategy} {o.interval}"
            rows.append((label, state))
        self.update(label_lines(rows), layout=False)  # fixed-size panel: redraw without a relayout


class EquityPanel(Static):
    """Equity, return since start and cash of the selected session's account."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.border_title = "Equity"
        self._key: object = None

    def show(self, selected: SessionSnapshot | None, account: float | None = None) -> None:
        """``account``: with several sessions on one shared paper account, its equity (the sum of
        the sessions'), shown in the panel's title next to the selected session's own."""
        eq = selected.equity if selected is not None else None
        if (eq, account) == self._key:
            return
        self._key = (eq, account)
        if eq is None:
            self.update(Text("no equity yet", style="dim"), layout=False)
            return
        rows = [
            ("equity", Text(fmt_num(eq.equity), style="bold")),
            ("return", Text(f"{eq.return_pct:+.2f}%", style=_signed_style(eq.return_pct))),
            ("cash", Text(fmt_num(eq.cash))),
        ]
        # in the border: the panel's three rows are the session's, the account is the sum of all
        self.border_title = "Equity" if account is None else f"Equity · account {fmt_num(account)}"
        self.update(label_lines(rows), layout=False)


class PositionStrip(Static):
    """The position and account in two lines, for terminals too narrow for the side panel
    (below 80 columns): what is held must stay on screen, whatever else collapses."""

    DEFAULT_CSS = """
    PositionStrip { height: 2; padding: 0 1; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self._key: object = None

    def show(self, s: SessionSnapshot | None) -> None:
        key = s and (s.key, s.position, s.mark, s.equity)
        if key == self._key:
            return
        self._key = key
        self.update(self.strip_text(s), layout=False)

    @staticmethod
    def strip_text(s: SessionSnapshot | None) -> Text:
        t = Text(no_wrap=True, overflow="crop")
        if s is None:
            return t.append("no session yet", style="dim")
        p = s.position
        if p is None:
            t.append("FLAT", style="dim")
            t.append(f"  mark {fmt_num(s.mark)}")
        else:
            t.append(p.side.name, style="bold green" if p.side is Side.LONG else "bold red")
            t.append(f" {p.qty:.4f} @ {fmt_num(p.entry_price)} mark {fmt_num(s.mark)} ")
            t.append(f"uPnL {fmt_num(s.unrealized_pnl, '+,.2f')}", style=_signed_style(s.unrealized_pnl))
        t.append("\n")
        if p is not None:
            t.append(f"stop {fmt_num(p.stop_price)}", style="red")
            t.append(f" target {fmt_num(p.target_price)}", style="green")
            t.append(" ")
        eq = s.equity
        if eq is not None:
            t.append(f"equity {fmt_num(eq.equity)} ")
            t.append(f"{eq.return_pct:+.2f}%", style=_signed_style(eq.return_pct))
        return t
