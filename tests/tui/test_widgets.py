"""Small pieces of the console that need no running app: the mode badge, the key bar, tick
spacing, panel lines, and a chart picture built off the UI thread."""

from __future__ import annotations

import pytest
from tradeconsole.core.domain import Position, Side
from tradeconsole.tui.collector import SessionSnapshot
from tradeconsole.tui.screens.backtest import BACKTEST_BINDINGS
from tradeconsole.tui.screens.dashboard import DASHBOARD_BINDINGS
from tradeconsole.tui.widgets.candles import CandleChart, CandleData, spaced_ticks, time_labels
from tradeconsole.tui.widgets.chart import build_picture
from tradeconsole.tui.widgets.header import HeaderState, KeyBar, StatusHeader
from tradeconsole.tui.widgets.positions import position_lines

pytestmark = pytest.mark.timeout(30)


def header(mode: str) -> HeaderState:
    return HeaderState(
        mode=mode,
        symbol="ETHUSDT",
        interval="5m",
        strategy="basic",
        connection="binance connected",
        data="lag 120 ms",
        trading=True,
        entries_paused=True,
    )


@pytest.mark.parametrize(
    ("mode", "label", "background"),
    [("paper", " PAPER ", "#5fafff"), ("testnet", " TESTNET ", "#ffaf00"), ("live", " LIVE · REAL MONEY ", "#d70000")],
)
def test_mode_badge_comes_first_in_its_colour(mode, label, background):
    text = StatusHeader.render_state(header(mode))
    assert text.plain.startswith(label)
    first = text.spans[0]
    assert (first.start, first.end) == (0, len(label)) and background in str(first.style)
    assert "ETHUSDT 5m basic" in text.plain and "entries paused" in text.plain and "lag 120 ms" in text.plain


def test_header_shows_event_delivery_apart():
    from dataclasses import replace

    text = StatusHeader.render_state(replace(header("paper"), delivery=(("kafka connected 12 ms", "connected"),)))
    assert text.plain.endswith("│ kafka connected 12 ms") and "binance connected" in text.plain


def test_key_bars_fit_their_width_and_never_drop_essential_keys():
    from tradeconsole.tui.screens.dashboard import ESSENTIAL_KEYS

    full = KeyBar.render_keys(DASHBOARD_BINDINGS).plain
    for words in (
        "s Start/Stop",
        "p Pause",
        "f Flatten",
        "k Kill",
        "t Strategy",
        "y Symbol",
        "i Interval",
        "b Backtest",
        "? Help",
        "q Quit",
        "^p palette",
    ):
        assert words in full
    for width in (40, 60, 80, 100):
        bar = KeyBar.render_keys(DASHBOARD_BINDINGS, width, ESSENTIAL_KEYS).plain
        assert len(bar) <= max(width, 46), (width, bar)
        for words in ("s Start/Stop", "f Flatten", "k Kill", "? Help", "q Quit"):
            assert words in bar, (width, bar)
    assert "^p palette" in KeyBar.render_keys(DASHBOARD_BINDINGS, 80, ESSENTIAL_KEYS).plain
    bt = KeyBar.render_keys(BACKTEST_BINDINGS, 80).plain
    assert len(bt) <= 80 and "^r Run" in bt and "esc Cancel/Back" in bt and "^s Export CSV" in bt


def test_ticks_never_overlap():
    for n, columns in ((40, 30), (300, 190), (3, 100), (1, 10)):
        idx, labels = spaced_ticks(n, columns, 8, str)
        assert idx == sorted(set(idx)) and all(0 <= i < n for i in idx)
        assert len(idx) * (8 + 3) <= max(columns, 11)
    times = [1_640_995_200_000 + i * 3_600_000 for i in range(48)]
    idx, labels = time_labels(times, "1h", 60)
    assert labels[0] == "01-01 00" and len(labels) == 5


def test_position_lines(candles_1h):
    p = Position("ETHUSDT", Side.SHORT, 2.0, 100.0, 0, 0.1, 1.0, 101.5, 97.0, 199.0)
    s = SessionSnapshot(
        key="k",
        symbol="ETHUSDT",
        interval="1h",
        strategy="basic",
        candles=(),
        indicators=(),
        open_candle=None,
        open_indicators=None,
        mark=99.0,
        position=p,
        equity=None,
        markers=(),
        fills=(),
        orders=(),
        working=(),
        closed_total=0,
        version=0,
        book_version=0,
    )
    rows = dict((label, value.plain) for label, value in position_lines(s))
    assert rows["side"] == "SHORT" and rows["stop"] == "101.50" and rows["target"] == "97.00"
    assert rows["uPnL"] == "+2.00 (+1.00%)"  # short 2 @ 100, mark 99


def test_candle_picture_is_built_without_an_app(candles_1h):
    chart = CandleChart()
    data = CandleData(tuple(candles_1h.candles()[:100]), None, (), None, "1h")
    strips = build_picture(chart.plt, chart.draw, data, 80, 12, "default")
    assert len(strips) == 12 and all(s.cell_length == 80 for s in strips)
    text = "".join(seg.text for s in strips for seg in s)
    assert "01-0" in text  # time labels on the x axis
    empty = build_picture(chart.plt, chart.draw, None, 80, 12, "default")
    assert "waiting for candles" in "".join(seg.text for seg in empty[0])


@pytest.mark.parametrize("width", [80, 100, 200])
def test_header_keeps_every_state_at_80_columns(width):
    from dataclasses import replace

    worst = replace(
        header("paper"),
        connection="replay reconnecting",
        trading=False,
        entries_paused=True,
        replay_paused=True,
        market_ms=1_643_673_600_000,
        speed="×10,000",
        delivery=(("kafka connecting 1,234 ms", "connecting"), ("elasticsearch stale", "stale")),
    )
    text = StatusHeader.render_state(worst, width).plain
    assert len(text) <= width, text
    for words in ("PAPER", "ETHUSDT", "stopped", "entries", "replay", "kafka", "stale", "02-01 00:00"):
        assert words in text, (width, words, text)
    assert "retry" in text or "reconnecting" in text
    assert "wait" in text or "connecting" in text
    if width >= 100:
        assert "×10,000" in text


def test_header_at_60_columns_keeps_the_trading_state():
    from dataclasses import replace

    st = replace(
        header("paper"),
        connection="replay finished",
        market_ms=1_643_673_600_000,
        speed="max",
        entries_paused=False,
        data="744/744",
    )
    text = StatusHeader.render_state(st, 60).plain
    assert len(text) <= 60 and "▶ trading" in text and "ETHUSDT" in text and "01-31" not in text
    assert "02-01 00:00" in text
