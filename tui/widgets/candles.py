"""Candlestick chart of the last candles, with the open candle, entries/exits and the position's
entry, stop and target levels.

Drawn with plotext (textual-plotext) by the app's chart thread (see ``tradeconsole.tui.widgets.chart``). The
chart shows as many candles as it has columns, so a wider terminal shows more history; one
candle is one column.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from textual_plotext import Plot
from tradeconsole.core.domain import Candle, Position, interval_ms
from tradeconsole.tui.collector import Marker
from tradeconsole.tui.widgets.chart import ThreadedPlot

__all__ = ["CandleChart", "CandleData", "spaced_ticks", "time_labels", "visible_count"]

#: columns plotext needs around the plot area (y labels, frame)
_Y_AXIS = 11


def visible_count(width: int, available: int) -> int:
    """How many candles fit in a plot ``width`` columns wide."""
    return max(0, min(available, width - _Y_AXIS))


def time_labels(times: Sequence[int], interval: str, columns: int) -> tuple[list[int], list[str]]:
    """Evenly spaced x ticks labelled with UTC times (HH:MM below an hour, "MM-DD HH" below a
    day, dates above), as many as fit in ``columns`` without touching: plotext silently drops
    overlapping labels, and which one it drops is not stable from one process to the next."""
    n = len(times)
    if n == 0:
        return [], []
    ms = interval_ms(interval)
    spans_days = (
        times[-1] - times[0] >= 86_400_000
        or datetime.fromtimestamp(times[0] / 1000, tz=UTC).date()
        != datetime.fromtimestamp(times[-1] / 1000, tz=UTC).date()
    )
    if ms < 3_600_000:
        fmt = "%m-%d %H:%M" if spans_days else "%H:%M"  # a window over days says which day
    else:
        fmt = "%m-%d %H" if ms < 86_400_000 else "%Y-%m-%d"
    return spaced_ticks(
        n,
        columns,
        len(datetime.fromtimestamp(0, tz=UTC).strftime(fmt)),
        lambda i: datetime.fromtimestamp(times[i] / 1000, tz=UTC).strftime(fmt),
    )


def spaced_ticks(n: int, columns: int, label_width: int, label: Callable[[int], str]) -> tuple[list[int], list[str]]:
    """Tick positions among ``n`` points spread over ``columns``, with room for each label."""
    count = max(1, min(n, columns // (label_width + 3)))
    step = max(1, -(-n // count))
    idx = list(range(0, n, step))[:count]
    return idx, [label(i) for i in idx]


class CandleData(NamedTuple):
    candles: tuple[Candle, ...]
    open_candle: Candle | None
    markers: tuple[Marker, ...]
    position: Position | None
    interval: str
    #: lines over the candles (a strategy's overlay indicators): (name, colour, one value per candle)
    overlays: tuple[tuple[str, str, tuple[float, ...]], ...] = ()


class CandleChart(ThreadedPlot):
    """Candles plus markers: ``▲`` long entry, ``▼`` short entry, ``x`` exit; entry (blue), stop
    (red) and target (green) lines while a position is open."""

    can_focus = True

    def set_data(
        self,
        candles: Sequence[Candle],
        open_candle: Candle | None,
        markers: Sequence[Marker],
        position: Position | None,
        interval: str,
        overlays: tuple[tuple[str, str, tuple[float, ...]], ...] = (),
    ) -> None:
        self.show_data(CandleData(tuple(candles), open_candle, tuple(markers), position, interval, overlays))

    def draw(self, plt: Plot, data: CandleData | None, width: int, height: int) -> str | None:
        if data is None:
            return "waiting for candles…"
        series = list(data.candles)
        if data.open_candle is not None:
            series.append(data.open_candle)
        n = visible_count(width, len(series))
        if n < 2 or height < 4:
            return "waiting for candles…"
        series = series[-n:]
        x = list(range(n))
        plt.candlestick(
            x,
            {
                "Open": [c.open for c in series],
                "Close": [c.close for c in series],
                "High": [c.high for c in series],
                "Low": [c.low for c in series],
            },
        )
        opens = [c.open_time for c in series]
        marks: dict[str, tuple[list[int], list[float]]] = {"long": ([], []), "short": ([], []), "exit": ([], [])}
        for m in data.markers:
            i = bisect_right(opens, m.time) - 1
            if 0 <= i < n and m.time <= series[i].close_time:
                marks[m.kind][0].append(i)
                marks[m.kind][1].append(m.price)
        for kind, marker, color in (("long", "▲", "green+"), ("short", "▼", "red+"), ("exit", "x", "cyan")):
            xs, ys = marks[kind]
            if xs:
                plt.scatter(xs, ys, marker=marker, color=color)
        # the y-range comes from the candles (and the overlay lines drawn over them): a far
        # stop/target must not flatten them into a line
        lo = min(c.low for c in series)
        hi = max(c.high for c in series)
        for _name, color, values in data.overlays:
            vals = values[-n:]
            off = n - len(vals)  # fewer values than candles: they belong to the newest ones
            pts = [(i + off, v) for i, v in enumerate(vals) if v == v]
            if pts:
                plt.plot([p[0] for p in pts], [p[1] for p in pts], color=color, marker="braille")
                lo, hi = min(lo, min(p[1] for p in pts)), max(hi, max(p[1] for p in pts))
        pad = (hi - lo) * 0.04 or abs(hi) * 0.001 or 1.0
        lo, hi = lo - pad, hi + pad
        p = data.position
        if p is not None:
            for level, color, name in (
                (p.entry_price, "blue", "entry"),
                (p.stop_price, "red", "stop"),
                (p.target_price, "green", "target"),
            ):
                if lo <= level <= hi:
                    plt.hline(level, color)
                else:  # outside the candles' range: marked at the edge it lies beyond
                    arrow = "↑" if level > hi else "↓"
                    plt.text(
                        f"{arrow} {name} {level:,.2f}", x=0, y=hi if level > hi else lo, color=color, alignment="left"
                    )
        plt.ylim(lo, hi)
        ticks, labels = time_labels(opens, data.interval, width - _Y_AXIS)
        plt.xticks(ticks, labels)
        plt.xlim(-1, n)
        return None
