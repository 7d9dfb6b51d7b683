"""Issue 10 defect 1, reproduced over the real websocket: hostile kline frames sent by the
stand-in into ``BinanceKlineStream`` (and on into the engine and its journal). Each one must be
refused and counted by reason, raised as a (rate-limited) alarm, and must not move anything: the
true closed candles still arrive exactly once and in order, the journal's last candle is the
true one, the stream thread never raises."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from tradeconsole.core.domain import iso_ms
from tradeconsole.core.engine import Engine, SessionSpec
from tradeconsole.core.feed import CandleUpdate

from tests.binance.conftest import RecordingSink, assert_true_sequence, wait_caught_up, wait_until

pytestmark = pytest.mark.timeout(90)

STEP = 300_000
DAY = 86_400_000


def _start(make_stream, server, sink, **kwargs):
    stream = make_stream(server, market="futures", **kwargs)
    stream.start(sink)
    wait_until(lambda: sink.has_state("connected"), what="connected status")
    return stream


def _hostile_frames(server) -> dict[str, int]:
    """The issue's reproductions (and a few more), sent while the candle at ``S`` is open.
    Returns the rejections expected per reason."""
    s = server.now_ms - server.now_ms % STEP  # the open candle
    server.send_kline(closed=True, t=s + DAY)  # a closed kline one day ahead
    server.send_kline(closed=True, t=10**18)  # year 31690708
    server.send_kline(closed=False, t=s, o="1.0", h="1.0", l="1.0", c="1.0")  # price 1.0
    server.send_kline(closed=True, t=s - STEP + 1, T=s)  # off the 5m grid
    server.send_kline(closed=True, t=s)  # the open candle "closed" 5 minutes early
    server.send_kline(closed=False, t=s, o="NaN")  # NaN
    server.send_kline(closed=False, t=s, h="1.0")  # high below open/close
    server.send_kline(closed=False, t=s, v="-5")  # negative volume
    return {"future": 2, "price_band": 1, "off_grid": 1, "early_close": 1, "bad_value": 2, "ohlc": 1}


def test_hostile_frames_are_refused_counted_and_alarmed_and_change_nothing(
    market_server, make_stream, tmp_path, caplog
):
    from tradeconsole.infra.persistence.journal import Journal

    caplog.set_level(logging.WARNING, logger="tradeconsole.infra.binance.market.stream")
    journal = Journal(tmp_path / "j.sqlite", sync="normal")
    engine = Engine([SessionSpec("ETHUSDT", "5m", "basic")], journal=journal)
    engine.start()
    sink = RecordingSink(on_event=engine.feed)
    # the stand-in's clock jumps when a test advances it, so let the stream re-check the
    # exchange clock on every suspicious frame (the cooldown is tested below)
    stream = _start(make_stream, market_server, sink, clock_resync_cooldown=0.0, alarm_period=0.3, silence_timeout=5.0)
    market_server.advance(2)
    wait_caught_up(sink, market_server)
    # past and duplicate frames: the last delivered candle again (other values) and an old one
    last = market_server.last_closed_open_time("ETHUSDT", "5m")
    market_server.send_kline(closed=True, t=last, c="1.5", l="1.5")
    market_server.send_kline(closed=True, t=last - 10 * STEP)
    expected = _hostile_frames(market_server)
    n_bad = sum(expected.values())
    wait_until(lambda: stream.counters.rejected == n_bad, what=f"{n_bad} rejections")
    wait_until(lambda: stream.counters.duplicates == 2, what="2 duplicates")
    market_server.advance(3)
    wait_caught_up(sink, market_server)

    c = stream.counters
    assert c.rejections == expected
    # gap fill never asked REST beyond "now" (the future frame would have asked for a day more)
    ends = [int(q["endTime"]) for path, q in market_server.request_log if path.endswith("klines") and "endTime" in q]
    assert ends and max(ends) <= market_server.now_ms
    assert c.malformed == 0 and c.errors == 0 and c.sink_errors == 0
    got = assert_true_sequence(sink, market_server)  # exactly once, in order, true values
    assert got[-1].open_time == market_server.last_closed_open_time("ETHUSDT", "5m")
    assert all(u.candle.close > 100 for u in sink.updates[("ETHUSDT", "5m")])  # never the 1.0 frame
    assert stream.last_closed("ETHUSDT", "5m") == got[-1].open_time
    assert stream.alive and stream.state == "connected"
    # alarms: a burst, then the rest summarised once the rate limit allows; every rejection counted
    wait_until(lambda: sum(a.count for a in sink.alarms) == n_bad, what="all rejections alarmed")
    assert 3 <= len(sink.alarms) < n_bad
    assert {a.reason for a in sink.alarms[:3]} <= set(expected)
    assert all(len(a.detail) < 400 for a in sink.alarms)
    # no traceback from the stream's threads
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[-2000:]

    # the engine and the journal saw the true candles only, and the alarms as errors
    assert engine.wait_idle(20)
    engine.stop()
    candles = [p for _, p in journal.events(types=["candle"])]
    assert [p["open_time"] for p in candles] == [iso_ms(x.open_time) for x in got]
    assert all(p["close"] > 100 for p in candles)
    state = journal.session_state("ETHUSDT:5m:basic")
    assert state is not None and state.last_open_time == got[-1].open_time
    feed_errors = [p for _, p in journal.events(types=["error"]) if p["source"] == "feed"]
    assert len(feed_errors) == len(sink.alarms)


def test_a_flood_of_future_frames_neither_floods_rest_nor_the_alarms(market_server, make_stream):
    sink = RecordingSink()
    stream = _start(
        make_stream, market_server, sink, silence_timeout=5.0, alarm_period=10.0, clock_resync_cooldown=30.0
    )
    market_server.reset_counts()
    s = market_server.now_ms - market_server.now_ms % STEP
    for k in range(200):
        market_server.send_kline(closed=True, t=s + (k + 1) * DAY)
    wait_until(lambda: stream.counters.rejected == 200, what="200 rejections")
    assert stream.counters.rejections == {"future": 200}
    # one re-check of the exchange clock (it said the frame is wrong), then the cooldown
    assert market_server.request_counts["/fapi/v1/time"] == 1, (market_server.request_counts, stream.counters)
    assert market_server.request_counts["/fapi/v1/klines"] == 0  # no gap fill towards the future
    assert 3 <= len(sink.alarms) <= 5 and sum(a.count for a in sink.alarms) <= 200  # burst; the rest later
    assert stream.last_closed("ETHUSDT", "5m") < s and stream.alive


def test_only_rejected_frames_is_degraded_not_connected(market_server, make_stream):
    sink = RecordingSink()
    stream = _start(make_stream, market_server, sink, silence_timeout=5.0, degraded_after=0.4)
    s = market_server.now_ms - market_server.now_ms % STEP
    stop = threading.Event()

    def flood():  # a live-looking connection that delivers nothing believable
        while not stop.is_set():
            market_server.send_kline(closed=False, t=s, o="1.0", h="1.0", l="1.0", c="1.0")
            time.sleep(0.05)

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        wait_until(lambda: stream.state == "degraded", what="degraded status")
        time.sleep(0.5)  # periodic statuses keep saying degraded, never connected
        states = sink.states()
        first = states.index("degraded")
        assert "connected" not in states[first:]
        assert stream.state == "degraded"
    finally:
        stop.set()
        t.join(5)
    assert stream.counters.silences == 0  # messages kept coming: degraded, not stale
    assert stream.counters.degraded == 1
    detail = [st.detail for st in sink.statuses if st.state == "degraded"][0]
    assert "ETHUSDT 5m" in detail and "price_band" in detail
    market_server.advance(2)  # valid candles again
    wait_caught_up(sink, market_server)
    wait_until(lambda: stream.state == "connected", what="connected again")
    assert_true_sequence(sink, market_server)


def test_rest_backfill_goes_through_the_same_guard(market_server, make_stream):
    sink = RecordingSink()
    stream = _start(make_stream, market_server, sink, silence_timeout=5.0)
    s = market_server.now_ms - market_server.now_ms % STEP
    market_server.corrupt_rest_kline(s + STEP, o="1.0", h="1.0", l="1.0", c="1.0")
    market_server.skip_stream_candles(3)  # the stream misses s .. s+2*STEP: filled over REST
    market_server.advance(5)
    wait_caught_up(sink, market_server)
    got = [x.open_time for x in sink.candles()]
    truth = [x.open_time for x in market_server.closed_candles("ETHUSDT", "5m", got[0])]
    assert got == [t for t in truth if t != s + STEP]  # the lying REST row was refused, nothing else
    assert stream.counters.rejections == {"price_band": 1}
    assert all(x.close > 100 for x in sink.candles())
    assert not sink.violations and stream.alive
    assert not any(isinstance(e, CandleUpdate) and e.candle.close < 100 for e in sink.updates[("ETHUSDT", "5m")])
