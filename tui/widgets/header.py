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
from datetime import UTC, datetime

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
    "connected": "green",
    "finished": "cyan",
    "connecting": "yellow",
    "backfilling": "yellow",
    "reconnecting": "bold yellow",
    "stale": "bold red",
    "disconnected": "bold red",
    "stopped": "red",
    # a feed showing only rejected frames, or a sink low on disk; a sink the server refuses (wrong
    # version header, credentials): it never heals by itself, the operator must act
    "degraded": "bold yellow",
    "refused": "bold red",
}


#: the narrowest header's words for sources and states (still words, never bare symbols)
_SHORT = {
    "connected": "ok",
    "connecting": "wait",
    "reconnecting": "retry",
    "disconnected": "down",
    "backfilling": "fill",
    "finished": "done",
    "elasticsearch": "es",
    "degraded": "degr",
    "refused": "refused",
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
    market_ms: int | None = None  # a replay's market time (what the engine has processed)
    speed: str = ""  # a replay's pace: "×60", "max"


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
        self.update(self.render_state(state, self.size.width or None), layout=False)  # one line: no relayout

    def on_resize(self) -> None:
        if self._state is not None:
            self.update(self.render_state(self._state, self.size.width or None), layout=False)

    @staticmethod
    def render_state(st: HeaderState, width: int | None = None) -> Text:
        """The header at its most detailed form that fits ``width``. What must stay at every
        width: mode, symbol, the trading / entries / replay state and every connection's state;
        details (strategy, lag, counters, the year) go first."""
        last = Text()
        for level in range(6):
            last = StatusHeader._render_level(st, level)
            if width is None or last.cell_len <= width:
                return last
        return last

    @staticmethod
    def _render_level(st: HeaderState, level: int) -> Text:
        sep = Text(" │ " if level < 3 else "│", style="dim")
        t = Text.assemble(mode_badge(st.mode), " ")
        t.append(st.symbol or "-", style="bold")
        if level < 5:
            t.append(f" {st.interval}")
        if level < 2:
            t.append(" ")
            t.append(st.strategy, style="bold magenta")
        if st.session_hint:
            t.append(f" [{st.session_hint}]", style="dim")
        if st.starting:
            t.append_text(sep)
            t.append(st.starting, style="yellow")
            return t
        t.append_text(sep)
        conn = st.connection or "connecting"
        state_word = conn.split()[-1]
        t.append(conn if level < 4 else _SHORT.get(state_word, state_word), style=_CONN_STYLE.get(state_word, "yellow"))
        if st.market_ms is not None:
            fmt = "%Y-%m-%d %H:%M" if level < 1 else "%m-%d %H:%M"
            t.append(" " + datetime.fromtimestamp(st.market_ms / 1000, tz=UTC).strftime(fmt), style="bold")
        if st.speed and level < 5:
            t.append(f" {st.speed}", style="bold cyan")
        if st.data and level < 1:
            t.append(f" {st.data}", style="dim")
        t.append_text(sep)
        if st.trading:
            t.append("▶ trading", style="green")
        else:
            t.append("■ stopped", style="bold red")
        if st.entries_paused:
            t.append(" ⏸ entries paused" if level < 3 else " ⏸entries", style="bold yellow")
        if st.replay_paused:
            t.append(" ⏸ replay paused" if level < 3 else " ⏸replay", style="bold yellow")
        for text, state in st.delivery:
            t.append_text(sep)
            words = text.split()
            short = " ".join(words[:2]) if level >= 1 else text  # "kafka connected" without its lag
            if level >= 4 and len(words) >= 2:
                short = f"{_SHORT.get(words[0], words[0])} {_SHORT.get(words[1], words[1])}"
            t.append(short, style=_CONN_STYLE.get(state, "yellow"))
        return t


class KeyBar(Static):
    """The bottom line: the screen's keys and what they do.

    Textual's ``Footer`` recomposes (remounts one widget per key) every time the screen changes,
    which costs a relayout each time help or a dialog closes; the keys of a screen never change,
    so this bar renders them as one line of text, re-laid out only when its width changes. When
    the line does not fit, keys are dropped from the end of ``Binding`` order except those
    marked essential (Quit, Help, Stop, Flatten, Kill...), which always stay.
    """

    DEFAULT_CSS = """
    KeyBar { height: 1; width: 1fr; background: $panel; }
    """

    def __init__(self, bindings: Sequence[BindingType], essential: Sequence[str] = (), **kwargs: object) -> None:
        self.bindings = list(bindings)
        self.essential = tuple(essential)
        super().__init__(self.render_keys(self.bindings, None, self.essential), **kwargs)  # type: ignore[arg-type]

    def on_resize(self) -> None:
        self.update(self.render_keys(self.bindings, self.size.width, self.essential))

    @staticmethod
    def render_keys(bindings: Sequence[BindingType], width: int | None = None, essential: Sequence[str] = ()) -> Text:
        """``key description`` pairs that fit ``width`` (all when None); bindings of one group
        share a description."""
        items: list[tuple[str, str, bool]] = []
        groups: dict[str, int] = {}
        for b in bindings:
            if not isinstance(b, Binding) or not b.show:
                continue
            key = b.key_display or b.key.split(",")[0]
            key = {"question_mark": "?", "escape": "esc"}.get(key, key)
            keep = b.action in essential
            if b.group is not None:
                if b.group.description in groups:
                    i = groups[b.group.description]
                    items[i] = (items[i][0] + key, items[i][1], items[i][2] or keep)
                    continue
                groups[b.group.description] = len(items)
                items.append((key, b.group.description, keep))
            else:
                items.append((key, b.description, keep))
        items.append(("^p", "palette", False))
        if width is not None:
            # the palette key goes last among the droppable ones: it reaches every action
            def length(xs: list[tuple[str, str, bool]]) -> int:
                return sum(len(k) + len(t) + 2 for k, t, _ in xs)

            while length(items) > width:
                drop = next(
                    (i for i in range(len(items) - 2, -1, -1) if not items[i][2]),
                    None if items[-1][2] else len(items) - 1,
                )
                if drop is None:
                    break
                items.pop(drop)
        out = Text(no_wrap=True, overflow="crop")
        for key, text, _ in items:  # one space between items
            out.append(f" {key}", style="bold #ffaf00")
            out.append(f" {text}")
        return out
