"""The status line at the top of the dashboard, and the key bar at the bottom of each screen.

The trading mode comes first and in colour, because the worst mistake this console can enable is
believing you are on paper when you are live: PAPER is a calm blue badge, TESTNET amber, LIVE a
red badge that says REAL MONEY (the dashboard also gets a red frame in live mode, see app.tcss).
Then what is traded (symbol, interval, strategy), whether data is flowing (connection state and
lag, or the replay position), and what the engine is allowed to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Static

__all__ = ["HeaderState", "KeyBar", "StatusHeader", "mode_badge"]

_BADGES = {
    "paper": (" PAPER ", "bold #000000 on #5fafff"),
    "testnet": (" TESTNET ", "bold #000000 on #ffaf00"),
    "live": (" LIVE · REAL MONEY ", "bold #ffffff on #d70000"),
}
_CONN_STYLE = {
    "connected": "green", "finished": "cyan", "connecting": "yellow", "backfilling": "yellow",
    "reconnecting": "bold yellow", "stale": "bold red", "disconnected": "bold red", "stopped": "red",
}


def mode_badge(mode: str) -> Text:
    """The coloured mode badge (also used by dialogs that must show the mode)."""
    label, style = _BADGES.get(mode, (f" {mode.upper() or '…'} ", "bold reverse"))
    return Text(label, style=style)


@dataclass(frozen=True, slots=True)
class HeaderState:
    mode: str
    symbol: str
    interval: str
    strategy: str
    connection: str
    data: str  # lag / staleness, or the replay position
    trading: bool
    entries_paused: bool
    replay_paused: bool = False
    session_hint: str = ""  # "1/2" when several sessions run
    delivery: tuple[tuple[str, str], ...] = ()  # (text, state) per event sink (Kafka, Elasticsearch)
    starting: str = ""  # startup message while no engine runs yet


class StatusHeader(Static):
    """One line; re-rendered only when its state changes."""

    DEFAULT_CSS = """
    StatusHeader { height: 1; width: 1fr; background: $panel; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self._state: HeaderState | None = None

    @property
    def state(self) -> HeaderState | None:
        return self._state

    def show(self, state: HeaderState) -> None:
        if state == self._state:
            return
        self._state = state
        self.set_class(state.mode == "live", "-live")
        self.set_class(state.mode == "testnet", "-testnet")
        self.update(self.render_state(state), layout=False)  # one line, fixed size: no relayout

    @staticmethod
    def render_state(st: HeaderState) -> Text:
        sep = Text(" │ ", style="dim")
        t = Text.assemble(mode_badge(st.mode), " ")
        t.append(st.symbol or "-", style="bold")
        t.append(f" {st.interval} ")
        t.append(st.strategy, style="bold magenta")
        if st.session_hint:
            t.append(f" [{st.session_hint}]", style="dim")
        if st.starting:
            t.append_text(sep)
            t.append(st.starting, style="yellow")
            return t
        t.append_text(sep)
        conn = st.connection or "connecting"
        t.append(conn, style=_CONN_STYLE.get(conn.split()[-1], "yellow"))
        if st.data:
            t.append(f" {st.data}", style="dim")
        t.append_text(sep)
        if st.trading:
            t.append("▶ trading", style="green")
        else:
            t.append("■ stopped", style="bold red")
        if st.entries_paused:
            t.append(" ⏸ entries paused", style="bold yellow")
        if st.replay_paused:
            t.append(" ⏸ replay paused", style="bold yellow")
        for text, state in st.delivery:
            t.append_text(sep)
            t.append(text, style=_CONN_STYLE.get(state, "yellow"))
        return t


class KeyBar(Static):
    """The bottom line: the screen's keys and what they do.

    Textual's ``Footer`` recomposes (remounts one widget per key) every time the screen changes,
    which costs a relayout each time help or a dialog closes; the keys of a screen never change,
    so this bar renders them once as one line of text.
    """

    DEFAULT_CSS = """
    KeyBar { height: 1; width: 1fr; background: $panel; }
    """

    def __init__(self, bindings: Sequence[BindingType], **kwargs: object) -> None:
        super().__init__(self.render_keys(bindings), **kwargs)  # type: ignore[arg-type]

    @staticmethod
    def render_keys(bindings: Sequence[BindingType]) -> Text:
        """``key description`` pairs; bindings of one group share a description."""
        items: list[tuple[str, str]] = []
        groups: dict[str, int] = {}
        for b in bindings:
            if not isinstance(b, Binding) or not b.show:
                continue
            key = b.key_display or b.key.split(",")[0]
            key = {"question_mark": "?", "escape": "esc"}.get(key, key)
            if b.group is not None:
                if b.group.description in groups:
                    i = groups[b.group.description]
                    items[i] = (items[i][0] + key, items[i][1])
                    continue
                groups[b.group.description] = len(items)
                items.append((key, b.group.description))
            else:
                items.append((key, b.description))
        items.append(("^p", "palette"))
        out = Text(no_wrap=True, overflow="crop")
        for key, text in items:  # one space between items: the dashboard's keys fit 80 columns
            out.append(f" {key}", style="bold #ffaf00")
            out.append(f" {text}")
        return out
