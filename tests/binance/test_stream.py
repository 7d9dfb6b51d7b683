"""Scenario tests of the live kline stream against the local Binance stand-in, over the fault
menu. After every scenario the closed candles the sink received must equal the server's true
sequence (no gap, no duplicate, in order, same values) and the stream must still be running."""

from __future__ import annotations

import random
import threading

import pytest
from tradeconsole.core.feed import CandleClosed, CandleUpdate

from tests.binance.conftest import RecordingSink, assert_true_sequence, wait_caught_up, wait_until
from tests.servers.binance_market import BinanceMarketServer, generated_series

pytestmark = pytest.mark.timeout(60)

STEP_5M = 300_000


def _start(make_stream, server, sink=None, **kwargs):
    sink = sink or RecordingSink()
    stream = make_stream(server, **kwargs)
    stream.start(sink)
    wait_until(lambda: sink.has_state("connected"), what="connected status")
    return stream, sink


@pytest.mark.parametrize("market", ["spot", "futures"])
def test_clean_stream_warms_up_then_streams(market_server, make_stream, market):
    stream, sink = _start(make_stream, market_server, market=market, backfill=1000)
    warm = sink.candles()
    assert len(warm) == 1000
    assert warm[-1].open_time == market_server.now_ms - STEP_5M  # everything closed before now
    market_server.advance(5)
    wait_caught_up(sink, market_server)
    got = assert_true_sequence(sink, market_server)
    assert len(got) == 1005
    c = stream.counters
    assert (c.closed_backfill, c.closed_stream, c.duplicates, c.malformed) == (1000, 5, 0, 0)
    market_server.advance_ms(STEP_5M // 2)  # updates of the new open candle, never superseded by its close
    current = market_server.current_candle("ETHUSDT", "5m")
    wait_until(
        lambda: sink.updates[("ETHUSDT", "5m")][-1:] and sink.updates[("ETHUSDT", "5m")][-1].candle == current,
        what="the open candle's update",
    )
    assert all(e.backfill for e in sink.closed[("ETHUSDT", "5m")][:1000])
    assert not any(e.backfill for e in sink.closed[("ETHUSDT", "5m")][1000:])
    rest_path, ws_path = (
        ("/api/v3/klines", "/stream") if market == "spot" else ("/fapi/v1/klines", "/futures/market/stream")
    )
    other = "/fapi/v1/klines" if market == "spot" else "/api/v3/klines"
    assert market_server.request_counts[rest_path] >= 1 and market_server.request_counts[other] == 0
    assert market_server.request_counts[ws_path] == 1
    assert stream.alive and stream.state == "connected"


def test_connection_dropped_mid_candle(market_server, make_stream):
    stream, sink = _start(make_stream, market_server)
    market_server.advance(2)
    market_server.advance_ms(STEP_5M // 2)  # updates of the open candle were sent
    open_time = market_server.current_candle("ETHUSDT", "5m").open_time
    wait_until(
        lambda: (
            sink.updates[("ETHUSDT", "5m")][-1:] and sink.updates[("ETHUSDT", "5m")][-1].candle.open_time == open_time
        )
    )
    assert market_server.drop_connections() == 1
    market_server.advance(3)  # closes happen while the client is away
    wait_until(lambda: stream.counters.connects >= 2, what="reconnect")
    market_server.advance(2)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)
    assert stream.counters.reconnects >= 1 and "reconnecting" in sink.states()
    assert stream.alive


def test_silent_server_is_detected_and_replaced(market_server, make_stream):
    stream, sink = _start(make_stream, market_server)
    market_server.set_silent(True)
    market_server.advance(3)  # three candles close that the stream never hears about
    wait_until(lambda: stream.counters.silences >= 1, what="silence detection")
    market_server.set_silent(False)
    market_server.advance(2)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)
    assert "stale" in sink.states()
    assert stream.alive


def test_gap_of_several_candles_on_the_stream_is_filled_over_rest(market_server, make_stream):
    stream, sink = _start(make_stream, market_server)
    market_server.advance(1)
    market_server.skip_stream_candles(4)
    market_server.advance(6)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)
    c = stream.counters
    assert c.gap_fills >= 1 and c.closed_backfill >= 50 + 4 and c.connects == 1
    assert stream.alive


def test_duplicated_messages_are_delivered_once(market_server, make_stream):
    stream, sink = _start(make_stream, market_server)
    market_server.duplicate_next(40)  # every message of the next 10 candles, twice
    market_server.advance(10)
    wait_caught_up(sink, market_server)
    wait_until(lambda: stream.counters.messages >= 80, what="all 80 messages")
    assert_true_sequence(sink, market_server)
    assert stream.counters.duplicates == 10  # each close once more; duplicated updates are harmless
    assert stream.alive


def test_closed_candle_arriving_after_its_successor(market_server, make_stream):
    stream, sink = _start(make_stream, market_server)
    market_server.delay_next_close()
    market_server.advance(4)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)
    assert stream.counters.duplicates >= 1  # the late close, already delivered via REST
    assert stream.alive


def test_older_update_after_newer_one_is_dropped(market_server, make_stream):
    stream, sink = _start(make_stream, market_server)
    market_server.advance_ms(STEP_5M // 8)
    market_server.swap_next_update()
    market_server.advance(3)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)  # includes "no update went backwards"
    assert stream.counters.stale_updates >= 1
    assert stream.alive


def test_malformed_and_unexpected_messages_are_counted_not_fatal(market_server, make_stream):
    stream, sink = _start(make_stream, market_server)
    market_server.advance(1)
    malformed, unexpected = market_server.send_malformed()
    market_server.advance(3)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)
    c = stream.counters
    assert (c.malformed, c.unexpected) == (malformed, unexpected)
    assert c.connects == 1, "bad messages must not cost the connection"
    assert stream.alive


def test_binance_24h_disconnect_is_survived():
    # 1h candles so that a day of server time is quick to simulate
    with BinanceMarketServer(connection_lifetime_ms=24 * 3_600_000) as server:
        from tradeconsole.infra.binance.market.stream import BinanceKlineStream

        sink = RecordingSink()
        stream = BinanceKlineStream(
            [("ETHUSDT", "1h")],
            "futures",
            endpoints=server.endpoints(),
            backfill=30,
            silence_timeout=5,
            backoff_initial=0.02,
            backoff_max=0.2,
            seed=1,
        )
        stream.start(sink)
        try:
            wait_until(lambda: sink.has_state("connected"))
            for _ in range(30):
                server.advance(1, "1h")
            wait_until(lambda: stream.counters.connects >= 2, what="reconnect after 24 h")
            server.advance(2, "1h")
            wait_caught_up(sink, server, interval="1h")
            assert_true_sequence(sink, server, interval="1h")
            assert stream.alive
        finally:
            stream.stop()
        assert not stream.alive


def test_connection_renewed_before_the_age_limit(market_server, make_stream):
    stream, sink = _start(make_stream, market_server, max_connection_age=0.3)
    wait_until(lambda: stream.counters.scheduled_reconnects >= 1, what="scheduled reconnect")
    market_server.advance(3)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)
    assert stream.alive


def test_refused_handshakes_back_off_and_retry(market_server, make_stream):
    market_server.reject_connections(3)
    stream, sink = _start(make_stream, market_server)
    assert stream.counters.errors >= 3
    assert sink.states()[:2] == ["connecting", "reconnecting"]
    market_server.advance(2)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limited_backfill_honours_retry_after(market_server, make_stream, status):
    market_server.fail_rest(status, count=2, retry_after=0)
    stream, sink = _start(make_stream, market_server)
    market_server.advance(2)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)
    assert stream._rest.stats.rate_limited == 2


def test_slow_rest_fill_is_not_mistaken_for_silence(market_server, make_stream):
    stream, sink = _start(make_stream, market_server, silence_timeout=0.3)
    market_server.skip_stream_candles(2)
    market_server.fail_rest(429, count=1, retry_after=1)  # the gap fill waits 1 s > silence timeout
    market_server.advance(4)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)
    assert stream._rest.stats.rate_limited == 1
    assert stream.counters.silences == 0 and stream.counters.connects == 1


def test_blocked_sink_loses_no_closed_candle(market_server, make_stream):
    release = threading.Event()
    blocked = threading.Event()

    def block_on_first_live_close(event):
        if isinstance(event, CandleClosed) and not event.backfill and not blocked.is_set():
            blocked.set()
            release.wait(20)

    sink = RecordingSink(on_event=block_on_first_live_close)
    stream, _ = _start(make_stream, market_server, sink=sink)
    market_server.advance(1)
    wait_until(blocked.is_set, what="sink to block")
    market_server.advance(12)  # 12 closes and 36 updates pile up while the sink is stuck
    wait_until(lambda: stream.counters.closed_stream >= 13, what="stream to keep reading")
    release.set()
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)
    assert stream.counters.coalesced_updates >= 1
    assert stream.counters.connects == 1
    assert stream.alive


def test_sink_exceptions_are_not_fatal(market_server, make_stream):
    def explode_on_updates(event):
        if isinstance(event, CandleUpdate):
            raise RuntimeError("sink bug")

    sink = RecordingSink(on_event=explode_on_updates)
    stream, _ = _start(make_stream, market_server, sink=sink)
    market_server.advance(3)
    market_server.advance_ms(STEP_5M // 2)  # updates no close will supersede
    wait_until(lambda: stream.counters.sink_errors >= 1, what="the sink to raise")
    market_server.advance(2)
    wait_caught_up(sink, market_server)
    assert_true_sequence(sink, market_server)
    assert stream.alive


def test_two_pairs_on_one_connection_survive_a_drop(market_server, make_stream):
    pairs = [("ETHUSDT", "5m"), ("ETHUSDT", "1h")]
    stream, sink = _start(make_stream, market_server, pairs=pairs, market="futures")
    market_server.advance(13)  # crosses an hour boundary
    market_server.drop_connections()
    market_server.advance(14)
    wait_caught_up(sink, market_server, interval="5m")
    wait_caught_up(sink, market_server, interval="1h")
    assert_true_sequence(sink, market_server, interval="5m")
    assert_true_sequence(sink, market_server, interval="1h")
    assert market_server.request_counts["/futures/market/stream"] >= 2


def test_exchange_gap_is_reported_not_waited_for():
    start = 1_700_000_000_000 - 1_700_000_000_000 % STEP_5M
    series = generated_series("5m", start, 400, seed=3, missing=range(205, 208))
    with BinanceMarketServer({("TESTUSDT", "5m"): series}, start_time_ms=start + 200 * STEP_5M) as server:
        from tradeconsole.infra.binance.market.stream import BinanceKlineStream

        sink = RecordingSink()
        stream = BinanceKlineStream(
            [("TESTUSDT", "5m")],
            "spot",
            endpoints=server.endpoints(),
            backfill=100,
            silence_timeout=5,
            backoff_initial=0.02,
            backoff_max=0.2,
            seed=1,
        )
        stream.start(sink)
        try:
            wait_until(lambda: sink.has_state("connected"))
            server.advance(10)
            wait_caught_up(sink, server, "TESTUSDT")
            assert_true_sequence(sink, server, "TESTUSDT")
            assert stream.counters.exchange_gaps == 3
            # REST returned the candle after the hole, which proves the hole: no retry needed
            assert stream._rest.stats.kline_requests == 2  # warm-up + one gap fill
        finally:
            stream.stop()


def test_stop_is_clean_and_idempotent(market_server, make_stream):
    stream, sink = _start(make_stream, market_server)
    stream.stop()
    stream.stop()
    assert not stream.alive
    assert sink.states()[-1] == "stopped"
    # a stream that never manages to connect stops just as cleanly
    market_server.reject_connections(1000)
    other = make_stream(market_server)
    other_sink = RecordingSink()
    other.start(other_sink)
    wait_until(lambda: other.counters.errors >= 2)
    other.stop()
    assert not other.alive and other_sink.states()[-1] == "stopped"


def test_fault_menu_chaos(market_server, make_stream):
    """A seeded random mix of every stream fault, interleaved with candles."""
    stream, sink = _start(make_stream, market_server, pairs=[("ETHUSDT", "5m"), ("ETHUSDT", "1h")])
    rng = random.Random(2024)
    faults = [
        lambda: market_server.drop_connections(),
        lambda: market_server.close_connections(),
        lambda: market_server.skip_stream_candles(rng.randint(2, 5)),
        lambda: market_server.duplicate_next(rng.randint(1, 10)),
        lambda: market_server.delay_next_close(),
        lambda: market_server.swap_next_update(),
        lambda: market_server.send_malformed(),
        lambda: market_server.fail_rest(429, count=1, retry_after=0),
        lambda: market_server.advance_ms(rng.randint(1, STEP_5M - 1)),
    ]
    for _ in range(25):
        rng.choice(faults)()
        market_server.advance(rng.randint(1, 3))
    market_server.set_silent(True)
    market_server.advance(2)
    wait_until(lambda: stream.counters.silences >= 1)
    market_server.set_silent(False)
    market_server.advance(2)
    wait_caught_up(sink, market_server)
    wait_caught_up(sink, market_server, interval="1h")
    assert_true_sequence(sink, market_server)
    assert_true_sequence(sink, market_server, interval="1h")
    assert stream.alive


def test_default_futures_route_streams_and_the_retired_route_stays_silent(market_server, make_stream):
    """Our default USD-M futures base, mapped onto the stand-in (``/futures`` stands for
    fstream.binance.com), streams klines; the legacy unrouted base opens but never delivers one
    (Binance since 2026-04-23), which the stream reports as stale rather than connected."""
    import dataclasses
    from urllib.parse import urlsplit

    from tradeconsole.core.config import DEFAULT_ENDPOINTS

    default_path = urlsplit(DEFAULT_ENDPOINTS.futures_ws).path
    assert default_path == "/market/"
    base = market_server.endpoints()
    routed = dataclasses.replace(base, futures_ws=f"ws://127.0.0.1:{market_server.port}/futures{default_path}")
    legacy = dataclasses.replace(base, futures_ws=market_server.legacy_futures_ws())

    good, good_sink = _start(make_stream, market_server, market="futures", endpoints=routed)
    bad_sink = RecordingSink()
    bad = make_stream(market_server, market="futures", endpoints=legacy, silence_timeout=0.3)
    bad.start(bad_sink)
    wait_until(lambda: bad.counters.connects >= 1, what="legacy route handshake")
    market_server.advance(3)
    wait_caught_up(good_sink, market_server)
    assert_true_sequence(good_sink, market_server)
    assert good.counters.closed_stream == 3
    wait_until(lambda: bad.counters.silences >= 1, what="the silent legacy route to be noticed")
    assert bad.counters.closed_stream == 0 and bad.counters.updates == 0
    assert "stale" in bad_sink.states()
    assert market_server.request_counts["/futures/stream"] >= 1  # it really connected there
