"""Feed alarms state exactly what they count (issue 10, found by tests/e2e/test_fault_injection.py).

The stream rate-limits its ``FeedAlarm``s (a burst of 3, then one per ``alarm_period``). Rejections
suppressed meanwhile are reported by a summary alarm, or folded into the next alarm that passes.
Before the fix, a summary of 2 read "2 more candle(s) refused: ... (+1 more rejected since the
last alarm)" (3 implied), and an alarm that folded suppressed rejections in named only its own
reason: the journal (where the alarms end up as feed errors) could not tell what was refused.
"""

from __future__ import annotations

import re

import pytest
import tradeconsole.infra.binance.market.stream as stream_module
from tradeconsole.core.feed import FeedAlarm
from tradeconsole.infra.binance.market.stream import BinanceKlineStream


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _drain(stream: BinanceKlineStream, n: int) -> list[FeedAlarm]:
    out = [stream._outbox.get() for _ in range(n)]
    assert all(isinstance(a, FeedAlarm) for a in out), out
    return out


def _counted(alarms: list[FeedAlarm]) -> dict[str, int]:
    """Rejections per reason as the alarm texts state them (what the journal keeps)."""
    counts: dict[str, int] = {}
    for a in alarms:
        pairs = re.findall(r"([a-z_]+) (\d+)", a.detail.split("refused", 1)[1])
        own = re.match(r"\s*\((\w+)\)", a.detail.split("refused", 1)[1])
        if own:
            counts[own.group(1)] = counts.get(own.group(1), 0) + 1
        for reason, k in pairs:
            counts[reason] = counts.get(reason, 0) + int(k)
        assert sum(int(k) for _, k in pairs) + (1 if own else 0) == a.count, a
    return counts


@pytest.fixture
def stream(monkeypatch) -> BinanceKlineStream:
    clock = _Clock()
    monkeypatch.setattr(stream_module.time, "monotonic", clock)
    s = BinanceKlineStream([("ETHUSDT", "5m")], "spot", alarm_period=10.0)
    s.clock = clock  # type: ignore[attr-defined]
    return s


def test_a_summary_alarm_counts_what_it_says(stream):
    for reason in ("future", "future", "price_band", "off_grid", "bad_value"):
        stream._reject("ETHUSDT", "5m", reason, "stream kline", "c")
    stream.clock.t += 10.0
    stream._flush_suppressed_alarms()
    alarms = _drain(stream, 4)
    assert alarms[-1].count == 2
    assert alarms[-1].detail == "2 more candle(s) refused: off_grid 1, bad_value 1"
    assert _counted(alarms) == {"future": 2, "price_band": 1, "off_grid": 1, "bad_value": 1}


def test_an_alarm_that_folds_suppressed_rejections_in_names_their_reasons(stream):
    for reason in ("future", "future", "price_band", "off_grid", "bad_value", "off_grid"):
        stream._reject("ETHUSDT", "5m", reason, "stream kline", "c")
    stream.clock.t += 10.0  # a token is back, and a rejection comes before the periodic flush
    stream._reject("ETHUSDT", "5m", "ohlc", "stream kline", "c")
    stream._flush_suppressed_alarms()  # nothing left to summarise
    alarms = _drain(stream, 4)
    assert alarms[-1].count == 4 and alarms[-1].reason == "ohlc"
    assert alarms[-1].detail.endswith("(+3 more rejected since the last alarm: off_grid 2, bad_value 1)")
    assert _counted(alarms) == {"future": 2, "price_band": 1, "off_grid": 2, "bad_value": 1, "ohlc": 1}
    assert sum(a.count for a in alarms) == stream.counters.rejected == 7
