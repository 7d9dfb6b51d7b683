"""The one retry policy (infra/retry.py) that the forwarder and the Elasticsearch sink share."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from tradeconsole.infra.retry import (
    Backoff,
    RetryPolicy,
    Stopped,
    parse_retry_after,
    retry_call,
    stop_requested,
    wait_or_stop,
)


def test_delays_grow_exponentially_to_the_cap_with_bounded_jitter():
    policy = RetryPolicy(initial_s=0.5, max_s=4.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittery = RetryPolicy(initial_s=1.0, max_s=10.0, jitter=0.2)
    rng = random.Random(7)
    samples = [jittery.delay(1, rng=rng) for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in samples) and len(set(samples)) > 100
    assert RetryPolicy().delay(10_000) <= RetryPolicy().max_s * 1.1  # no overflow for long outages
    with pytest.raises(ValueError):
        RetryPolicy(initial_s=5, max_s=1)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_retry_after_is_a_lower_bound_and_is_capped():
    policy = RetryPolicy(initial_s=0.2, max_s=30.0, jitter=0.0, max_retry_after_s=60.0)
    assert policy.delay(1, retry_after=7) == 7.0  # the server asks for longer: it wins
    assert policy.delay(6, retry_after=1) == 6.4  # our backoff is longer already
    assert policy.delay(1, retry_after=3600) == 60.0  # a huge header cannot park us for an hour


def test_retry_after_header_forms_per_rfc_9110():
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(b"5") == 5.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=now) == 0.0  # in the past: now
    for bad in (None, "", "soon", "-5", "1.5e3"):
        assert parse_retry_after(bad) is None


def test_a_wait_ends_as_soon_as_any_stop_signal_is_set():
    stop = threading.Event()
    flag = {"v": False}
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    assert wait_or_stop(30.0, stop) is False
    assert time.monotonic() - t0 < 5.0
    threading.Timer(0.2, lambda: flag.__setitem__("v", True)).start()
    t0 = time.monotonic()
    assert wait_or_stop(30.0, [threading.Event(), lambda: flag["v"], None]) is False
    assert time.monotonic() - t0 < 5.0
    assert wait_or_stop(0.05, None) is True
    assert stop_requested([None, stop]) and not stop_requested(None)


def test_retry_call_retries_what_is_transient_and_logs_one_line_each(caplog):
    caplog.set_level(logging.INFO, logger="t")
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("refused\nsecond line")
        return "ok"

    policy = RetryPolicy(initial_s=0.01, max_s=0.02)
    assert (
        retry_call(flaky, name="thing", classify=lambda e: True, policy=policy, logger=logging.getLogger("t")) == "ok"
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all(r.exc_info is None for r in warnings)
    assert all("\n" not in r.getMessage() for r in warnings)
    assert "thing failed (attempt 1): ConnectionError: refused second line; retrying in" in warnings[0].getMessage()
    assert "succeeded after 2 failed attempt(s)" in caplog.records[-1].getMessage()


def test_retry_call_raises_what_is_permanent_at_once_and_gives_up_after_max_attempts():
    calls = []

    def refused():
        calls.append(1)
        raise PermissionError("401")

    with pytest.raises(PermissionError):
        retry_call(refused, name="auth", classify=lambda e: None)
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(PermissionError):
        retry_call(
            refused, name="auth", classify=lambda e: True, policy=RetryPolicy(initial_s=0, max_s=0, max_attempts=3)
        )
    assert len(calls) == 3


def test_retry_call_stops_while_waiting():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(Stopped):
        retry_call(lambda: 1 / 0, name="div", classify=lambda e: 60.0, stop=stop)  # Retry-After 60 s
    assert time.monotonic() - t0 < 5.0


def test_backoff_pause_raises_stopped_and_counts_failures():
    stop = threading.Event()
    stop.set()
    b = Backoff("x", RetryPolicy(initial_s=10, max_s=10), stop=stop)
    with pytest.raises(Stopped):
        b.pause("down")
    assert b.failures == 1 and b.last_reason == "down"
    b.succeeded()
    assert b.failures == 0 and b.total_failures == 1


def test_the_elasticsearch_side_reads_retry_after_from_a_response():
    from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
    from elasticsearch import ApiError
    from tradeconsole.infra.sinks.elastic import refusal, retry_after_of

    meta = ApiResponseMeta(
        status=429,
        http_version="1.1",
        headers=HttpHeaders({"Retry-After": "7"}),
        duration=0.0,
        node=NodeConfig("http", "127.0.0.1", 9200),
    )
    exc = ApiError(
        "es_rejected_execution_exception", meta=meta, body={"error": {"type": "es_rejected_execution_exception"}}
    )
    assert retry_after_of(exc) == 7.0 and refusal(exc) is None  # throttled: retry, after at least 7 s
    assert retry_after_of(ConnectionError("down")) is None
