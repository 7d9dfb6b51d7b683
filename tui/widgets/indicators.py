"""Indicator panes, from the strategy's own declarations.

Which panes there are comes from the strategy shown (``Strategy.chart_layout``: its base panes,
RSI with its 30/70 lines, MACD line/signal/histogram and CCI with +/-100 lines for the built-ins,
then each declared indicator with its reference lines), so a user's strategy is charted without
touching this package; ``IndicatorPanes`` rebuilds its panes when the session's strategy changes.
Declared indicators that overlay the price chart are handed to the candle chart as lines
(``overlay_lines``).

Values come from the engine's candle events (closed candles plus the open candle's preview), so
the panes show exactly what the strategies see. NaN (indicator warm-up) is simply not drawn.
The pane's border title carries the latest values, readable even when the pane is tiny.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual.containers import Horizontal
from textual_plotext import Plot
from tradeconsole.core.strategies import STRATEGIES
from tradeconsole.core.strategies.charts import BASE_CHARTS, Chart
from tradeconsole.tui.collector import fmt_num
from tradeconsole.tui.widgets.candles import visible_count
from tradeconsole.tui.widgets.chart import ChartBuilder, ThreadedPlot

__all__ = ["IndicatorChart", "IndicatorPanes", "KINDS", "charts_for", "overlay_lines"]

IndicatorRow = dict[str, float | int | None]

#: kind -> (series drawn as lines with their colours, horizontal guide lines) of the base panes
KINDS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[float, ...]]] = {
    "rsi": ((("rsi", "magenta+"),), (30.0, 70.0)),
    "macd": ((("macd", "cyan+"), ("macd_signal", "orange+")), (0.0,)),
    "cci": ((("cci", "yellow+"),), (-100.0, 100.0)),
}
#: colours of a declared indicator's lines, in order
PALETTE = ("magenta+", "cyan+", "orange+", "yellow+", "green+", "blue+", "red+", "white")
#: colours of overlay lines on the price chart (not the candles' green/red)
OVERLAY_PALETTE = ("cyan", "orange", "magenta", "yellow", "blue", "white")


_LAYOUTS: dict[tuple[str, int], tuple[tuple[Chart, ...], str]] = {}


def charts_for(strategy: str) -> tuple[tuple[Chart, ...], str]:
    """The charts of a registered strategy and a problem to show ("" when none). An unknown name
    or a declaration that cannot be laid out falls back to the base panes: a strategy must never
    take the dashboard down. Remembered per (name, class), so a failing one is tried once."""
    default = tuple(BASE_CHARTS.values())
    cls = STRATEGIES.get(strategy)
    if cls is None:
        return default, ""
    key = (strategy, id(cls))
    hit = _LAYOUTS.get(key)
    if hit is None:
        try:
            hit = (cls.chart_layout(), "")
        except Exception as exc:  # noqa: BLE001 - a user's declaration; shown, never raised into the UI
            hit = (default, f"{strategy}: indicators not charted: {type(exc).__name__}: {exc}")
        _LAYOUTS[key] = hit
    return hit


def overlay_lines(
    charts: Sequence[Chart], rows: Sequence[IndicatorRow], open_row: IndicatorRow | None
) -> tuple[tuple[str, str, tuple[float, ...]], ...]:
    """(name, colour, values) of every overlay line, one value per row (NaN where undefined),
    the open candle's last when there is one: aligned with the candle chart's series."""
    data = tuple(rows) + ((open_row,) if open_row is not None else ())
    out = []
    names = [n for ch in charts if ch.overlay for n in ch.lines]
    for i, name in enumerate(names):
        vals = tuple(float(v) if _finite(v := r.get(name)) else math.nan for r in data)  # type: ignore[arg-type]
        out.append((name, OVERLAY_PALETTE[i % len(OVERLAY_PALETTE)], vals))
    return tuple(out)


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


class IndicatorChart(ThreadedPlot):
    """One indicator pane: a base one (``kind`` ``rsi``, ``macd`` or ``cci``, drawn as the console
    always has) or any ``Chart`` a strategy's declarations give."""

    can_focus = True

    def __init__(self, kind: str | Chart, **kwargs: object) -> None:
        chart = BASE_CHARTS.get(kind) if isinstance(kind, str) else kind
        if chart is None:
            raise ValueError(f"unknown indicator pane {kind!r}")
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.chart = chart
        #: the base pane this is drawn as, or "" for a declared indicator
        self.kind = chart.key if chart == BASE_CHARTS.get(chart.key) else ""
        self.border_title = chart.title.upper() if self.kind else chart.title

    def set_data(self, rows: Sequence[IndicatorRow], open_row: IndicatorRow | None) -> None:
        data = tuple(rows) + ((open_row,) if open_row is not None else ())
        self.border_title = self.title_text(data)
        self.show_data(data)

    def on_resize(self) -> None:
        if self._data is not None:
            self.border_title = self.title_text(self._data)
        super().on_resize()

    def title_text(self, rows: Sequence[IndicatorRow], width: int | None = None) -> str:
        """The latest values; when the pane is narrow, shorter labels, then fewer values, but a
        number is never cut."""
        last = rows[-1] if rows else {}
        room = (width or self.size.width or 200) - 4
        if not self.kind:
            return _declared_title(self.chart, last, room)
        if self.kind == "rsi":
            return f"RSI {fmt_num(last.get('rsi'), '.1f')}"
        if self.kind == "cci":
            return f"CCI {fmt_num(last.get('cci'), '.0f')}"
        m, sig, h = (
            fmt_num(last.get("macd"), ".2f"),
            fmt_num(last.get("macd_signal"), ".2f"),
            fmt_num(last.get("macd_hist"), "+.2f"),
        )
        options = [f"MACD {m} sig {sig} hist {h}", f"MACD {m} s {sig} h {h}", f"MACD {m} h {h}", f"MACD {m}"]
        return next((o for o in options if len(o) <= room), options[-1])

    def draw(self, plt: Plot, data: tuple[IndicatorRow, ...] | None, width: int, height: int) -> str | None:
        rows = data or ()
        n = visible_count(width, len(rows))
        rows = rows[-n:] if n else ()
        ch = self.chart
        if self.kind:
            series, guides = KINDS[self.kind]
        else:
            series = tuple((name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(ch.lines))
            guides = ch.levels
        first = (series[0][0],) if self.kind else ch.fields
        if height < 3 or not any(_finite(r.get(f)) for r in rows for f in first):
            return "warming up…"
        values: list[float] = list(guides)
        for bar in ch.bars:
            # the histogram first and thin, so the lines are drawn over it
            pos = [(i, float(r[bar])) for i, r in enumerate(rows) if _finite(r.get(bar))]  # type: ignore[arg-type]
            up = [(i, v) for i, v in pos if v >= 0]
            down = [(i, v) for i, v in pos if v < 0]
            for pts, color in ((up, "green"), (down, "red")):
                if pts:
                    plt.bar([p[0] for p in pts], [p[1] for p in pts], color=color, width=0.1, marker="│")
            values += [v for _, v in pos]
        for g in guides:
            plt.hline(g, "gray")
        for name, color in series:
            pts = [(i, float(r[name])) for i, r in enumerate(rows) if _finite(r.get(name))]  # type: ignore[arg-type]
            if pts:
                plt.plot([p[0] for p in pts], [p[1] for p in pts], color=color, marker="braille")
                values += [v for _, v in pts]
        lo, hi = ch.bounds if ch.bounds is not None else (min(values), max(values))
        if hi <= lo:
            hi = lo + 1.0
        plt.ylim(lo, hi)
        # explicit ticks, only as many as the rows hold: plotext drops labels that collide in
        # an order that varies between processes
        plt.yticks(*axis_ticks(self.kind or ch, lo, hi, height - 2))
        plt.xticks([])
        plt.xlim(-1, max(1, len(rows)))
        return None


def _declared_title(ch: Chart, last: IndicatorRow, room: int) -> str:
    """``key v`` for one line, ``key a v b v`` for several (suffixes after the key), dropping
    trailing values rather than cutting a number."""

    def num(v: object) -> str:
        return fmt_num(v, ",.0f" if _finite(v) and abs(v) >= 1000 else ".2f")  # type: ignore[arg-type, operator]

    parts = []
    for name in ch.fields:
        label = name[len(ch.key) + 1 :] if name.startswith(ch.key + "_") else ""
        parts.append(f"{label} {num(last.get(name))}".strip())
    for k in range(len(parts), 0, -1):
        text = " ".join([ch.title, *parts[:k]])
        if len(text) <= room:
            return text
    return ch.title


class IndicatorPanes(Horizontal):
    """The row of indicator panes for the strategy shown: rebuilt (panes removed and mounted)
    only when the strategy's layout changes. Base panes keep their ids (``rsi``, ``macd``,
    ``cci``); a declared indicator's pane is ``pane-<key>``."""

    def __init__(self, *, builder: ChartBuilder | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        #: handed to every pane (the screen injects it; widgets never reach up to the app)
        self.builder = builder
        self.charts: tuple[Chart, ...] = tuple(BASE_CHARTS.values())
        self.problem = ""

    def compose(self):  # type: ignore[no-untyped-def]
        yield from self._panes(self.charts)

    def _panes(self, charts: Sequence[Chart]) -> list[IndicatorChart]:
        return [
            IndicatorChart(ch, id=ch.key if ch == BASE_CHARTS.get(ch.key) else f"pane-{ch.key}", builder=self.builder)
            for ch in charts
            if not ch.overlay
        ]

    @property
    def pane_ids(self) -> list[str]:
        return [p.id for p in self.query(IndicatorChart) if p.id]

    def show(self, strategy: str, rows: Sequence[IndicatorRow], open_row: IndicatorRow | None) -> tuple[Chart, ...]:
        """Lay the panes out for ``strategy`` and hand them the data; returns its charts (the
        overlays are the caller's to hand to the price chart)."""
        charts, self.problem = charts_for(strategy)
        if charts != self.charts:
            self.charts = charts
            self.call_later(self._rebuild, charts, tuple(rows), open_row)
            return charts
        for pane in self.query(IndicatorChart):
            pane.set_data(rows, open_row)
        return charts

    async def _rebuild(
        self, charts: tuple[Chart, ...], rows: tuple[IndicatorRow, ...], open_row: IndicatorRow | None
    ) -> None:
        """Replace the panes (the old ones are gone before the new ones, which may reuse their
        ids, are mounted), unless another layout was asked for meanwhile."""
        if charts != self.charts:
            return
        await self.remove_children()
        panes = self._panes(charts)
        await self.mount_all(panes)
        for pane in panes:
            pane.set_data(rows, open_row)


def axis_ticks(kind: str | Chart, lo: float, hi: float, rows: int) -> tuple[list[float], list[str]]:
    """Y ticks for an indicator pane: its reference lines first (RSI 30/70, CCI +/-100, MACD 0,
    a declared indicator's ``levels``), then the range's ends when there are rows enough to keep
    labels apart."""
    if isinstance(kind, Chart):  # a declared indicator: its levels first, the range's ends where they fit
        span = (hi - lo) or 1.0
        kept = sorted({v for v in kind.levels if lo <= v <= hi})[: 1 if rows < 3 else None]
        for end in [lo, hi] if rows >= 5 or not kept else []:
            if all(abs(end - t) / span * max(1, rows - 1) >= 1.2 for t in kept):
                kept.append(end)
        return _spread(sorted(kept), lo, hi, rows)
    refs = list(KINDS[kind][1])
    if kind == "macd":
        ticks = [lo, 0.0, hi] if rows >= 5 and lo < 0 < hi else [0.0] if lo <= 0 <= hi else [lo, hi]
    elif kind == "cci":
        ticks = [v for v in refs if lo <= v <= hi] or [lo, hi]
    else:
        ticks = refs
    if rows < 3:
        ticks = ticks[:1] if kind != "rsi" else [70.0]
    return _spread(sorted(set(ticks)), lo, hi, rows)


def _spread(ticks: list[float], lo: float, hi: float, rows: int) -> tuple[list[float], list[str]]:
    span = (hi - lo) or 1.0
    kept: list[float] = []
    for t in ticks:  # labels on distinct rows
        if not kept or (t - kept[-1]) / span * max(1, rows - 1) >= 1.2:
            kept.append(t)
    return kept, [f"{t:.0f}" if abs(t) >= 10 or t == 0 else f"{t:.1f}" for t in kept]
