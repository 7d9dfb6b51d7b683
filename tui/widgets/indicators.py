"""Indicator panes: RSI with its 30/70 lines, MACD line/signal/histogram, CCI with +/-100 lines.

Values come from the engine's candle events (closed candles plus the open candle's preview), so
the panes show exactly what the strategies see. NaN (indicator warm-up) is simply not drawn.
The pane's border title carries the latest values, readable even when the pane is tiny.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual_plotext import Plot

from tui.collector import fmt_num
from tui.widgets.candles import visible_count
from tui.widgets.chart import ThreadedPlot

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

    def title_text(self, rows: Sequence[IndicatorRow]) -> str:
        last = rows[-1] if rows else {}
        if self.kind == "rsi":
            return f"RSI {fmt_num(last.get('rsi'), '.1f')}"
        if self.kind == "cci":
            return f"CCI {fmt_num(last.get('cci'), '.0f')}"
        return (f"MACD {fmt_num(last.get('macd'), '.2f')} sig {fmt_num(last.get('macd_signal'), '.2f')} "
                f"hist {fmt_num(last.get('macd_hist'), '+.2f')}")

    def draw(self, plt: Plot, data: tuple[IndicatorRow, ...] | None, width: int, height: int) -> str | None:
        rows = data or ()
        n = visible_count(width, len(rows))
        rows = rows[-n:] if n else ()
        series, guides = KINDS[self.kind]
        if height < 3 or not any(_finite(r.get(series[0][0])) for r in rows):
            return "warming up…"
        if self.kind == "macd":
            pos = [(i, r["macd_hist"]) for i, r in enumerate(rows) if _finite(r.get("macd_hist"))]
            up = [(i, v) for i, v in pos if v >= 0]  # type: ignore[operator]
            down = [(i, v) for i, v in pos if v < 0]  # type: ignore[operator]
            for pts, color in ((up, "green"), (down, "red")):
                if pts:
                    plt.bar([p[0] for p in pts], [p[1] for p in pts], color=color, width=0.4, marker="sd")
        for name, color in series:
            pts = [(i, float(r[name])) for i, r in enumerate(rows) if _finite(r.get(name))]  # type: ignore[arg-type]
            if pts:
                plt.plot([p[0] for p in pts], [p[1] for p in pts], color=color, marker="braille")
        for g in guides:
            plt.hline(g, "gray")
        if self.kind == "rsi":
            plt.ylim(0, 100)
            # labels that do not fit are dropped by plotext in an order that varies between
            # processes; below 9 rows show none (the 30/70 guides are drawn anyway)
            plt.yticks([30, 70] if height >= 9 else [])
        plt.xticks([])
        plt.xlim(-1, max(1, len(rows)))
        return None
