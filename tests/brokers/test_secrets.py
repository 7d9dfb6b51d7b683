"""The API key and secret never leave the python-binance client: not in logs (any logger, any
level, including urllib3 and python-binance), not in exception text, not in snapshots, alerts,
findings or the broker's repr."""

from __future__ import annotations

import json
import logging

import pytest

from core.domain import Side
from infra.binance.errors import BinanceError
from tests.brokers.conftest import API_KEY, API_SECRET, LiveHarness, flat, make_live_broker
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(30)


def leaks(text: str) -> list[str]:
    return [name for name, s in (("key", API_KEY), ("secret", API_SECRET)) if s in text]


def test_no_key_or_secret_anywhere_through_a_full_session(server: FuturesStandIn,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # root: urllib3, binance, ours
    errors: list[BaseException] = []
    h = LiveHarness(server, request_timeout=0.4)
    texts: list[str] = [repr(h.broker)]

    # an entry that times out after executing, then protection that fails and is flattened
    server.delay_next("/fapi/v1/order", 1.0)
    server.reject_next("/fapi/v1/algoOrder", -2021, "Order would immediately trigger.")
    h.enter(Side.LONG, flat(0, 2000), 0)
    h.feed(flat(1, 2000))
    # rejects and failures of every kind
    for inject in (lambda: server.reject_next("/fapi/v1/order", -2019, "Margin is insufficient."),
                   lambda: server.reject_next("/fapi/v1/order", -1111, "Precision is over the maximum."),
                   lambda: server.rate_limit_next("/fapi/v1/order", method="POST", status=418)):
        inject()
        try:
            h.enter(Side.SHORT, flat(2, 2000), 2)
        except BinanceError as e:
            errors.append(e)
    for bad in (make_live_broker(server, api_secret="wrong-" + API_SECRET[::-1]),
                make_live_broker(server, api_key="wrong-" + API_KEY[::-1])):
        try:
            bad.start()
        except BinanceError as e:
            errors.append(e)
    # an entry, reconcile of an external position, a restart and a flatten
    h.enter(Side.LONG, flat(3, 2000), 3)
    server.cancel_algo_externally(h.broker._entry_order_id + "tp")
    texts += [str(f) for f in h.broker.reconcile()]
    snap = h.broker.snapshot()
    h2 = h.reborn()
    texts += [str(f) for f in h2.broker.reconcile()]
    h2.flatten(flat(4, 2000))

    assert len(errors) == 5
    texts += [str(e) for e in errors] + [repr(e) for e in errors] + [e.api_message for e in errors]  # type: ignore[attr-defined]
    texts += [json.dumps(snap), json.dumps(h2.broker.snapshot()), *h.broker.alerts, *h2.broker.alerts]
    texts += [caplog.text, *(str(r.args) for r in caplog.records)]
    texts += [json.dumps(r.params) for r in server.requests]
    assert "urllib3" in caplog.text or "binance" in caplog.text  # the capture really saw library logs
    assert any(leaks(t) for t in [API_KEY]) and not [t for t in texts if leaks(t)]


def test_snapshot_has_no_credentials_even_in_nested_values(server: FuturesStandIn) -> None:
    h = LiveHarness(server)
    h.enter(Side.SHORT, flat(0, 2000), 0)
    dumped = json.dumps(h.broker.snapshot())
    assert not leaks(dumped) and "api" not in dumped.lower()
