"""A published backtest's events, played back from the array loop's record
(``tradeconsole.backtest.events_from_arrays``), equal the per-candle path's event for event:
same types, ids, payloads and order, on the shared data, both strategies, both fill models,
with slippage, funding and liquidations, after a warm-up and gaps (dropped entries), with an
entry still pending at the end, and when the consumer cancels. The playback refuses a record
the strategy's own decisions do not produce."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tradeconsole.backtest.events_from_arrays import ReplayMismatch
from tradeconsole.backtest.optimize import vector
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.broker import BrokerSettings
from tradeconsole.core.strategies import make_strategy
from tradeconsole.core.strategies.basic import BasicStrategy

from tests.backtest.test_compiled_step import _result_dict

COSTLY = BrokerSettings(slippage_bps=3.0, funding_rate_8h=0.0003, leverage=100.0)


def _both(candles, strategy: str, **kw):
    """(events, result) of the array path and of the per-candle path, same run id."""
    out = []
    for per_candle in (False, True):
        events: list = []
        r = run_backtest(
            candles, make_strategy(strategy), publish=events.append, run_id="bt-same", per_candle=per_candle, **kw
        )
        out.append((events, r))
    return out


def _summary(r) -> dict:
    return {**_result_dict(r), "cancelled": r.cancelled}


def _assert_same(arrays, per_candle) -> None:
    (ea, ra), (eb, rb) = arrays, per_candle
    assert len(ea) == len(eb)
    for a, b in zip(ea, eb, strict=True):
        # as serialised (what the journal and Kafka get): a warm-up NaN equals itself there
        assert type(a) is type(b) and json.dumps(a.to_dict()) == json.dumps(b.to_dict()), (a.event_id, b.event_id)
    assert _summary(ra) == _summary(rb)


@pytest.mark.parametrize("settings", ["default", "costly"])
@pytest.mark.parametrize("model", ["seed", "realistic"])
@pytest.mark.parametrize("strategy,which", [("engulfing", "1h"), ("basic", "5m")])
def test_events_from_the_record_equal_the_per_candle_events(strategy, which, model, settings, candles_1h, candles_5m):
    candles = candles_1h if which == "1h" else candles_5m.take(slice(0, 15_000))
    s = COSTLY if settings == "costly" else BrokerSettings()
    arrays, per_candle = _both(candles, strategy, interval=which, fill_model=model, settings=s)
    _assert_same(arrays, per_candle)
    events = arrays[0]
    kinds = {e.type for e in events}
    assert {"candle", "signal", "order", "fill", "position", "equity"} <= kinds
    assert sum(e.type == "candle" for e in events) == len(candles)
    if settings == "costly":
        assert any(e.type == "fill" and e.fill.reason.value == "liquidation" for e in events)
        assert arrays[1].funding_paid != 0.0


def test_warmup_and_gaps_drop_entries_alike(candles_5m):
    keep = np.ones(20_000, dtype=bool)
    keep[5_000:5_040] = False
    keep[12_000:12_003] = False
    candles = candles_5m.take(slice(0, 20_000)).take(keep)
    for model in ("seed", "realistic"):
        arrays, per_candle = _both(candles, "basic", fill_model=model, warmup=3_000)
        _assert_same(arrays, per_candle)
    gapped = candles_5m.take(slice(0, 20_000))
    # a gap right after every signal candle of the first run: each of those entries is dropped
    first = run_backtest(gapped, make_strategy("basic"), fill_model="realistic")
    sig_bars = np.searchsorted(gapped.open_time, [f.time for f in first.fills if f.reason.value.startswith("entry")])
    keep = np.ones(len(gapped), dtype=bool)
    keep[sig_bars[:5]] = False  # the successor candle is missing: the pending entry is dropped
    arrays, per_candle = _both(gapped.take(keep), "basic", fill_model="realistic")
    assert arrays[1].dropped_entries
    assert any(e.type == "order" and e.status == "expired" for e in arrays[0])
    _assert_same(arrays, per_candle)


def test_an_entry_pending_at_the_end(candles_5m):
    """Realistic: a signal on the last candle leaves a market order that never fills."""
    c = candles_5m.take(slice(0, 15_000))
    full = run_backtest(c, make_strategy("basic"), fill_model="realistic")
    entry = next(f for f in full.fills if f.reason.value.startswith("entry"))
    end = int(np.searchsorted(c.open_time, entry.time))  # the entry's fill candle: cut just before it
    arrays, per_candle = _both(c.take(slice(0, end)), "basic", fill_model="realistic")
    assert arrays[0][-1].type == "equity"
    assert any(e.type == "order" and e.status == "new" and e.order.type.value == "MARKET" for e in arrays[0])
    _assert_same(arrays, per_candle)


def test_a_published_run_never_steps_the_python_broker(candles_5m, monkeypatch):
    """The events come from the record: the per-candle broker is not stepped at all."""
    from tradeconsole.core.broker import SimulatedFuturesBroker

    def refuse(self, candle):
        raise AssertionError("the Python broker was stepped")

    monkeypatch.setattr(SimulatedFuturesBroker, "on_candle", refuse)
    events: list = []
    r = run_backtest(candles_5m.take(slice(0, 5_000)), make_strategy("basic"), publish=events.append)
    assert r.fills and sum(e.type == "fill" for e in events) == len(r.fills)


def test_a_cancel_stops_both_paths_at_the_same_candle(candles_5m):
    c = candles_5m.take(slice(0, 15_000))
    out = []
    for per_candle in (False, True):
        calls = []

        def progress(done, total, calls=calls):
            calls.append(done)
            return len(calls) < 40  # cancel on the 40th report

        events: list = []
        r = run_backtest(
            c, make_strategy("basic"), publish=events.append, progress=progress, run_id="bt-c", per_candle=per_candle
        )
        out.append((events, r))
    _assert_same(*out)
    assert out[0][1].cancelled and len(out[0][1].equity) < len(c)


def test_a_record_the_strategy_does_not_produce_is_refused(candles_5m, monkeypatch):
    """A vectorised signal that disagrees with ``entry_signal`` must stop the run, not publish
    events no broker made (here: the signal one candle late)."""
    real = vector.VECTOR_SIGNALS[BasicStrategy]
    monkeypatch.setitem(vector.VECTOR_SIGNALS, BasicStrategy, lambda ind, p: np.roll(real(ind, p), 1))
    c = candles_5m.take(slice(0, 15_000))
    for model in ("seed", "realistic"):
        with pytest.raises(ReplayMismatch, match="vectorised signal disagrees"):
            run_backtest(c, make_strategy("basic"), fill_model=model, publish=lambda e: None)
