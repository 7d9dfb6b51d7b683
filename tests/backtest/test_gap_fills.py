"""Issue 12, item 2, on the real data: a realistic entry signalled on the last candle before a
3-day gap is dropped (not filled days later at a price the strategy never saw), counted in the
result, the JSON and the text report, and its order ends as ``expired`` in the event stream."""

from __future__ import annotations

import json

import numpy as np
from tradeconsole.backtest.metrics import compute_metrics
from tradeconsole.backtest.report import text_report
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.events import OrderEvent
from tradeconsole.core.strategies import make_strategy
from tradeconsole.tui.cli import main

H = 3_600_000


def _first_entry_and_gapped(candles_1h: CandleArrays) -> tuple[int, CandleArrays]:
    """The first realistic engulfing entry's fill time T, and the history with the 72 candles
    from T on removed (so its signal candle is the last one before a 3-day gap)."""
    full = run_backtest(candles_1h, make_strategy("engulfing"), interval="1h")
    t = next(f.time for f in full.fills if f.reason.value.startswith("entry"))
    keep = (candles_1h.open_time < t) | (candles_1h.open_time >= t + 72 * H)
    return t, candles_1h.take(keep)


def test_entry_signalled_before_a_three_day_gap_is_dropped(candles_1h):
    t, gapped = _first_entry_and_gapped(candles_1h)
    events: list = []
    r = run_backtest(gapped, make_strategy("engulfing"), interval="1h", publish=events.append)
    assert all(f.time != t + 72 * H or not f.reason.value.startswith("entry") for f in r.fills)
    d = r.dropped_entries[0]
    assert d.signal_time == t - H and d.next_open_time == t + 72 * H
    expired = [e for e in events if isinstance(e, OrderEvent) and e.status == "expired"]
    assert [e.order.client_id for e in expired] == [x.order_id for x in r.dropped_entries]
    assert "not the immediate successor" in expired[0].message
    # every entry that did fill was at the open right after its signal candle's close
    signals = {
        e.order.client_id: e.time
        for e in events
        if isinstance(e, OrderEvent) and e.status == "new" and e.order.type.value == "MARKET"
    }
    for f in r.fills:
        if f.reason.value.startswith("entry"):
            assert f.time == signals[f.order_id] + 1  # signal close_time + 1 ms = next open
    m = compute_metrics(r)
    assert m["entries_dropped"] == len(r.dropped_entries) >= 1
    assert f"Entries dropped      {m['entries_dropped']}" in text_report(m)


def test_without_the_gap_the_same_signal_fills(candles_1h):
    t, _ = _first_entry_and_gapped(candles_1h)
    r = run_backtest(candles_1h, make_strategy("engulfing"), interval="1h")
    assert r.dropped_entries == [] and any(f.time == t for f in r.fills)
    assert compute_metrics(r)["entries_dropped"] == 0


def test_cli_reports_dropped_entries_in_json(capsys, tmp_path, candles_1h):
    _, gapped = _first_entry_and_gapped(candles_1h)
    path = tmp_path / "ETHUSDT-1h-gapped.csv"
    cols = np.column_stack(
        [gapped.open_time, gapped.open, gapped.high, gapped.low, gapped.close, gapped.volume, gapped.close_time]
    )
    np.savetxt(path, cols, delimiter=",", fmt=["%d", "%.2f", "%.2f", "%.2f", "%.2f", "%.4f", "%d"])
    code = main(["backtest", "--strategy", "engulfing", "--data", str(path), "--json"])
    out = capsys.readouterr()
    assert code == 0 and "gap of 72 candle(s)" in out.err
    assert json.loads(out.out)["entries_dropped"] >= 1
