"""Indicator panes: RSI with its 30/70 lines, MACD line/signal/histogram, CCI with +/-100 lines.

Values come from the engine's candle events (closed candles plus the open candle's preview), so
the panes show exactly what the strategies see. NaN (indicator warm-up) is simply not drawn.
The pane's border title carries the latest values, readable even when the pane is tiny.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual_plotext import Plot

from tradeconsole.tui.collector import fmt_num
from tradeconsole.tui.widgets.candles import visible_count
from tradeconsole.tui.widgets.chart import ThreadedPlot

__all__ = ["IndicatorChart", "KINDS"]

IndicatorRow = dict[str, float | int | None]

#: kind -> (series drawn as lines with their colours, horizontal guide lines)
KINDS: dict[str, tuple[tuple[tuple[str, str], ...], tuple[float, ...]]] = {
    "rsi": ((("rsi", "magenta+"),), (30.0, 70.0)),
    "macd": ((("macd", "cyan+"), ("macd_signal", "orange+")), (0.0,)),
    "cci": ((("cci", "yellow+"),), (-100.0, 100.0)),
}


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


class IndicatorChart(ThreadedPlot):
    """One indicator pane (``kind`` is ``rsi``, ``macd`` or ``cci``)."""

    can_focus = True

    def __init__(self, kind: str, **kwargs: object) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown indicator pane {kind!r}")
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.kind = kind
        self.border_title = kind.upper()

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
        if self.kind == "rsi":
            return f"RSI {fmt_num(last.get('rsi'), '.1f')}"
        if self.kind == "cci":
            return f"CCI {fmt_num(last.get('cci'), '.0f')}"
        m, sig, h = (fmt_num(last.get('macd'), '.2f'), fmt_num(last.get('macd_signal'), '.2f'),
                     fmt_num(last.get('macd_hist'), '+.2f'))
        options = [f"MACD {m} sig {sig} hist {h}", f"MACD {m} s {sig} h {h}", f"MACD {m} h {h}", f"MACD {m}"]
        room = (width or self.size.width or 200) - 4
        return next((o for o in options if len(o) <= room), options[-1])

    def draw(self, plt: Plot, data: tuple[IndicatorRow, ...] | None, width: int, height: int) -> str | None:
        rows = data or ()
        n = visible_count(width, len(rows))
        rows = rows[-n:] if n else ()
        series, guides = KINDS[self.kind]
        if height < 3 or not any(_finite(r.get(series[0][0])) for r in rows):
            return "warming up…"
        values: list[float] = list(guides)
        if self.kind == "macd":
            # the histogram first and thin, so the MACD and signal lines are drawn over it
            pos = [(i, float(r["macd_hist"])) for i, r in enumerate(rows) if _finite(r.get("macd_hist"))]  # type: ignore[arg-type]
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
        lo, hi = (0.0, 100.0) if self.kind == "rsi" else (min(values), max(values))
        if hi <= lo:
            hi = lo + 1.0
        plt.ylim(lo, hi)
        # explicit ticks, only as many as the rows hold: plotext drops labels that collide in
        # an order that varies between processes
        plt.yticks(*axis_ticks(self.kind, lo, hi, height - 2))
        plt.xticks([])
        plt.xlim(-1, max(1, len(rows)))
        return None


def axis_ticks(kind: str, lo: float, hi: float, rows: int) -> tuple[list[float], list[str]]:
    """Y ticks for an indicator pane: its reference lines first (RSI 30/70, CCI +/-100, MACD 0),
    then the range's ends when there are rows enough to keep labels apart."""
    refs = list(KINDS[kind][1])
    if kind == "macd":
        ticks = [lo, 0.0, hi] if rows >= 5 and lo < 0 < hi else [0.0] if lo <= 0 <= hi else [lo, hi]
    elif kind == "cci":
        ticks = [v for v in refs if lo <= v <= hi] or [lo, hi]
    else:
        ticks = refs
    if rows < 3:
        ticks = ticks[:1] if kind != "rsi" else [70.0]
    ticks = sorted(set(ticks))
    span = (hi - lo) or 1.0
    kept: list[float] = []
    for t in ticks:  # labels on distinct rows
        if not kept or (t - kept[-1]) / span * max(1, rows - 1) >= 1.2:
            kept.append(t)
    return kept, [f"{t:.0f}" if abs(t) >= 10 or t == 0 else f"{t:.1f}" for t in kept]
