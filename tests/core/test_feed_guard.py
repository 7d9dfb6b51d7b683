"""The feed guard's pure rules (tradeconsole.core.feed_guard), and the engine's two uses of them: feed alarms
journalled as errors, and a future ``last_open_time`` in the journal not believed on restart."""

from __future__ import annotations

import math

import pytest
from tradeconsole.core.broker import BrokerSettings, SimulatedFuturesBroker
from tradeconsole.core.domain import Candle
from tradeconsole.core.engine import Engine, SessionSpec
from tradeconsole.core.feed import CandleClosed, FeedAlarm
from tradeconsole.core.feed_guard import (
    REASONS,
    AlarmLimiter,
    ExchangeClock,
    GuardSettings,
    check_candle,
    check_values,
    current_open_time,
    grid_start,
)
from tradeconsole.core.store import SessionState

STEP = 300_000  # 5m
NOW = 1_700_000_123_456  # exchange time, inside the candle opening at T0
T0 = NOW - NOW % STEP


def candle(
    t: int = T0 - STEP,
    o: float = 100.0,
    h: float = 101.0,
    lo: float = 99.0,
    c: float = 100.5,
    v: float = 10.0,
    closed: bool = True,
    close_time: int | None = None,
) -> Candle:
    return Candle(t, o, h, lo, c, v, t + STEP - 1 if close_time is None else close_time, closed)


def test_a_true_closed_candle_and_the_open_candle_pass():
    assert check_candle(candle(), "5m", NOW) is None
    assert check_candle(candle(T0, closed=False), "5m", NOW) is None
    assert check_candle(candle(T0 - 100 * STEP), "5m", NOW) is None  # history is fine (REST backfill)


@pytest.mark.parametrize(
    "bad, reason",
    [
        (candle(o=math.nan), "bad_value"),
        (candle(c=math.inf, h=math.inf), "bad_value"),
        (candle(lo=0.0), "bad_value"),
        (candle(o=-1.0, lo=-2.0), "bad_value"),
        (candle(v=math.nan), "bad_value"),
        (candle(v=-1.0), "bad_value"),
        (candle(h=99.5), "ohlc"),  # high below close
        (candle(lo=100.2), "ohlc"),  # low above open
        (candle(T0 - STEP + 1), "off_grid"),
        (candle(close_time=T0 - 1 + STEP), "close_time"),
        (candle(T0 + 86_400_000), "future"),  # the repro: t = now + 1 day
        (candle(10**18), "future"),  # and t = 10**18 (no date arithmetic, no overflow)
        (candle(T0 + STEP, closed=False), "future"),  # an update beyond the open candle
        (candle(T0, closed=True), "early_close"),  # the open candle marked closed before its end
    ],
)
def test_each_rule_has_its_reason(bad, reason):
    assert reason in REASONS
    assert check_candle(bad, "5m", NOW) == reason


def test_skew_allowance_is_bounded():
    settings = GuardSettings(max_skew_ms=5_000)
    # our clock estimate is 4 s behind the exchange: the just-opened candle and its close still pass
    assert check_candle(candle(T0, closed=False), "5m", T0 - 4_000, settings=settings) is None
    assert check_candle(candle(T0 - STEP), "5m", T0 - 4_000, settings=settings) is None
    assert check_candle(candle(T0, closed=False), "5m", T0 - 6_000, settings=settings) == "future"
    assert check_candle(candle(T0 - STEP), "5m", T0 - 6_000, settings=settings) == "early_close"


def test_price_band_against_a_recent_reference_only():
    ref = dict(last_close=100.0, last_open_time=T0 - 2 * STEP)
    assert check_candle(candle(o=1.0, h=1.0, lo=1.0, c=1.0), "5m", NOW, **ref) == "price_band"  # the repro
    assert check_candle(candle(o=100.0, h=160.0, lo=99.0, c=155.0), "5m", NOW, **ref) == "price_band"
    assert check_candle(candle(o=100.0, h=146.0, lo=99.0, c=145.0), "5m", NOW, **ref) is None  # inside 50%
    # a wick alone (open and close normal) trips paper stops and skews CCI: it is checked too
    assert check_candle(candle(o=100.0, h=101.0, lo=1.0, c=100.5), "5m", NOW, **ref) == "price_band"
    wide = GuardSettings(price_band=0.6)
    assert check_candle(candle(o=100.0, h=160.0, lo=99.0, c=155.0), "5m", NOW, settings=wide, **ref) is None
    # a reference older than band_intervals: the market may really have moved, band re-anchors
    old = dict(last_close=100.0, last_open_time=T0 - STEP - 4 * STEP)
    assert check_candle(candle(o=1.0, h=1.0, lo=1.0, c=1.0), "5m", NOW, **old) is None


def test_weekly_grid_opens_on_mondays():
    monday = 4 * 86_400_000 + 2800 * 7 * 86_400_000
    assert grid_start(monday + 3 * 86_400_000, "1w") == monday
    assert current_open_time(monday + 5, "1w") == monday
    week = Candle(monday, 1, 2, 0.5, 1.5, 1, monday + 7 * 86_400_000 - 1, True)
    assert check_candle(week, "1w", monday + 8 * 86_400_000) is None
    assert (
        check_candle(
            week._replace(open_time=monday - 86_400_000, close_time=monday + 6 * 86_400_000 - 1),
            "1w",
            monday + 8 * 86_400_000,
        )
        == "off_grid"
    )


def test_check_values_matches_candle_is_valid():
    for c in (candle(), candle(o=math.nan), candle(h=99.5), candle(v=-1.0)):
        assert (check_values(c) is None) == c.is_valid()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(max_skew_ms=-1),
        dict(price_band=0),
        dict(price_band=math.nan),
        dict(band_intervals=0),
        dict(max_skew_ms=1.5),
    ],
)
def test_settings_are_validated(kwargs):
    with pytest.raises(ValueError):
        GuardSettings(**kwargs)


def test_exchange_clock_uses_the_round_trip_midpoint():
    clock = ExchangeClock()
    assert not clock.synced and clock.now(1000.0) == 1000
    clock.sync(server_ms=50_000, sent_local_ms=1000.0, received_local_ms=1100.0)
    assert clock.offset_ms == 50_000 - 1050 and clock.error_ms == 50
    assert clock.now(2050.0) == 51_000


def test_alarm_limiter_bursts_then_counts_what_it_suppressed():
    lim = AlarmLimiter(period_s=10.0, burst=3)
    assert [lim.allow(0.0) for _ in range(5)] == [True, True, True, False, False]
    assert lim.allow(1.0, record=False) is False and lim.suppressed == 2
    assert lim.allow(10.5) is True  # one token back after a period
    assert lim.take_suppressed() == 2 and lim.suppressed == 0
    assert lim.allow(10.6) is False
    # a flood of 10,000 rejections in a minute gives at most burst + 6 alarms
    lim = AlarmLimiter(period_s=10.0, burst=3)
    allowed = sum(lim.allow(i * 0.006) for i in range(10_000))
    assert allowed <= 3 + 6 and lim.suppressed == 10_000 - allowed


# ---------------------------------------------------------------------------- the engine's uses
H1 = 3_600_000


def _journal_with_future_state(tmp_path, now_ms: int, last_open_time: int):
    from tradeconsole.infra.persistence.journal import Journal

    spec = SessionSpec("ETHUSDT", "1h", "engulfing")
    journal = Journal(tmp_path / "j.sqlite", sync="normal")
    snapshot = SimulatedFuturesBroker("ETHUSDT", BrokerSettings()).snapshot()
    journal.commit([], [SessionState(spec.key, "paper-restart", snapshot, last_open_time)])
    return spec, journal


@pytest.mark.parametrize("future", [86_400_000, 10**18])
def test_engine_does_not_believe_a_future_last_open_time(tmp_path, future):
    now_ms = 1_700_000_000_000 + 1234
    latest = now_ms - now_ms % H1 - H1  # the newest candle that has closed
    bogus = future if future > now_ms else now_ms + future
    spec, journal = _journal_with_future_state(tmp_path, now_ms, bogus)
    engine = Engine([spec], journal=journal, clock=lambda: now_ms / 1000)
    assert engine.resumed
    seen = []
    engine.subscribe(seen.append)
    engine.start()
    try:
        old = Candle(latest, 100, 101, 99, 100.5, 5, latest + H1 - 1, True)
        nxt = Candle(latest + H1, 100.5, 102, 100, 101, 5, latest + 2 * H1 - 1, True)
        engine.feed(CandleClosed("ETHUSDT", "1h", old))  # already processed before the restart: warm-up
        engine.feed(CandleClosed("ETHUSDT", "1h", nxt))  # new: traded, not skipped for a day
        assert engine.wait_idle(10)
    finally:
        engine.stop()
    assert engine.processed_closed == 1
    alarms = [e for e in seen if e.type == "error" and e.source == "journal"]
    assert len(alarms) == 1 and "future" in alarms[0].message and str(bogus) in alarms[0].message
    state = journal.session_state(spec.key)
    assert state is not None and state.last_open_time == latest + H1  # the journal is healed


def test_engine_keeps_a_believable_last_open_time(tmp_path):
    now_ms = 1_700_000_000_000 + 1234
    latest = now_ms - now_ms % H1 - H1
    spec, journal = _journal_with_future_state(tmp_path, now_ms, latest)
    engine = Engine([spec], journal=journal, clock=lambda: now_ms / 1000)
    seen = []
    engine.subscribe(seen.append)
    engine.start()
    engine.stop()
    assert not [e for e in seen if e.type == "error"]
    assert engine._slots[spec.key].last_open_time == latest


def test_feed_alarms_become_error_events():
    engine = Engine([SessionSpec("ETHUSDT", "5m", "basic")])
    seen = []
    engine.subscribe(seen.append)
    engine.start()
    try:
        engine.feed(
            FeedAlarm(
                "binance-futures", "ETHUSDT", "5m", "future", "stream kline refused (future)", 3, 1_700_000_000_000
            )
        )
        assert engine.wait_idle(10)
    finally:
        engine.stop()
    errors = [e for e in seen if e.type == "error"]
    assert len(errors) == 1 and errors[0].source == "feed" and errors[0].symbol == "ETHUSDT"
    assert "binance-futures" in errors[0].message and "future" in errors[0].message
    assert errors[0].time == 1_700_000_000_000
