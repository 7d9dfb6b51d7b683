"""plotext charts built off the UI thread.

Building a plotext picture is the most expensive thing the console does: 5-30 ms per chart, and
several times that while a replay at full speed competes for the GIL. Done in ``render`` (as
``textual_plotext.PlotextPlot`` does) it stalls the event loop, and a key pressed meanwhile waits.
So charts here only *request* a picture: ``ChartBuilder``, one background thread per app, draws
the newest request of each chart (older ones are dropped, never queued) and posts the finished
picture back, already cut into Textual ``Strip`` lines, so drawing it is ``render_line`` handing
out stored lines: the UI thread neither runs plotext nor converts ANSI text into segments.

Each chart keeps its own plotext figure, touched only by the builder thread once mounted. The
data handed to a draw function must be immutable (the collector's tuples are).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.text import Text
from textual.message import Message
from textual.strip import Strip
from textual_plotext import Plot, PlotextPlot

__all__ = ["ChartBuilder", "ThreadedPlot"]

#: draw(plt, data, width, height) -> None when it drew, or a short message to show instead
DrawFn = Callable[[Plot, Any, int, int], str | None]


class ChartBuilder:
    """A daemon thread building the latest requested picture of each chart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: dict[int, tuple[ThreadedPlot, DrawFn, Any, int, int, str, int]] = {}
        self._thread: threading.Thread | None = None
        self._console = Console(width=200, force_terminal=True, color_system="truecolor", legacy_windows=False)
        self.built = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tradeconsole-charts", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def submit(
        self, chart: ThreadedPlot, draw: DrawFn, data: Any, width: int, height: int, theme: str, seq: int
    ) -> None:
        with self._lock:
            self._pending[id(chart)] = (chart, draw, data, width, height, theme, seq)
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            while not self._stop.is_set():
                with self._lock:
                    if not self._pending:
                        break
                    _, job = self._pending.popitem()
                chart, draw, data, width, height, theme, seq = job
                strips = build_picture(chart.plt, draw, data, width, height, theme, self._console)
                self.built += 1
                chart.post_message(ThreadedPlot.Built(seq, strips, (width, height)))


def build_picture(
    plt: Plot, draw: DrawFn, data: Any, width: int, height: int, theme: str, console: Console | None = None
) -> list[Strip]:
    """Run ``draw`` on a cleared figure of the given size; the picture as ``height`` strips."""
    plt.clear_figure()
    try:
        message = draw(plt, data, width, height)
    except Exception as exc:  # noqa: BLE001 - a bad picture must not kill the builder thread
        text = Text(f"chart error: {type(exc).__name__}: {exc}", style="red")
    else:
        if message is not None:
            text = Text(message, style="dim")
        else:
            plt.plotsize(width, height)
            plt._set_size(width, height)  # textual-plotext does the same; plotsize alone can lag a resize
            plt.theme(theme)
            text = Text.from_ansi(plt.build())
    text.no_wrap = True
    console = console or Console(
        width=max(1, width), force_terminal=True, color_system="truecolor", legacy_windows=False
    )
    options = console.options.update(width=max(1, width), height=max(1, height), no_wrap=True, overflow="crop")
    lines = console.render_lines(text, options, pad=True)
    return [Strip(line, max(1, width)) for line in lines[:height]]


class ThreadedPlot(PlotextPlot):
    """A PlotextPlot whose picture is built by the ``ChartBuilder`` it is handed (or inline
    without one). Subclasses implement ``draw`` and call ``show_data`` with immutable data.

    The builder is injected by whoever composes the chart (the screen, from the app), never
    looked up on ``self.app``: widgets know nothing of the app or the screens above them."""

    class Built(Message):
        def __init__(self, seq: int, strips: list[Strip], size: tuple[int, int]) -> None:
            super().__init__()
            self.seq = seq
            self.strips = strips
            self.size = size

    def __init__(self, *, builder: ChartBuilder | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.builder = builder
        self._data: Any = None
        self._strips: list[Strip] = []
        self.requested = 0
        self.shown = 0
        self._size_drawn = (0, 0)

    def draw(self, plt: Plot, data: Any, width: int, height: int) -> str | None:
        raise NotImplementedError

    @property
    def settled(self) -> bool:
        """The picture on screen is the one for the latest data and size."""
        return self.shown == self.requested and self._size_drawn == tuple(self.size)

    def show_data(self, data: Any) -> None:
        self._data = data
        self._request()

    def on_resize(self) -> None:
        self._request()

    def _request(self) -> None:
        if not self.is_mounted:
            return
        self.requested += 1
        width, height = self.size
        theme = self._get_plotext_theme_name(self.app.theme)
        builder = self.builder
        draw = type(self).draw.__get__(self)
        if builder is None:
            self._apply(
                self.requested, build_picture(self.plt, draw, self._data, width, height, theme), (width, height)
            )
        else:
            builder.submit(self, draw, self._data, width, height, theme, self.requested)

    def on_threaded_plot_built(self, message: ThreadedPlot.Built) -> None:
        message.stop()
        if message.seq >= self.shown:
            self._apply(message.seq, message.strips, message.size)

    def _apply(self, seq: int, strips: list[Strip], size: tuple[int, int]) -> None:
        self.shown, self._strips, self._size_drawn = seq, strips, size
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y < len(self._strips):
            strip = self._strips[y]
            return strip if strip.cell_length == width else strip.crop_extend(0, width, None)
        return Strip.blank(width)
