"""The Broker Protocol is the whole surface, and both brokers implement all of it themselves.

``core.broker_protocol.Broker`` is what the engine and the strategy session call; both brokers
subclass it explicitly, so a member one of them forgot would silently be the Protocol's empty
body. These tests fail when a broker inherits a member from the Protocol instead of defining it,
when the Protocol and its member list drift apart, when a no-op stops being one, and when the
engine or the runtime go back to probing brokers with getattr/hasattr.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from tradeconsole.core.broker import SimulatedFuturesBroker
from tradeconsole.core.broker_protocol import BROKER_MEMBERS, Broker
from tradeconsole.core.domain import Side
from tradeconsole.infra.binance.execution.broker import BinanceFuturesBroker

from tests.brokers.conftest import Harness, flat

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]
_DATA = {"symbol", "position", "cash", "pending", "pending_exit"}  # instance attributes (or properties) of a broker


def _defined_by(cls: type, name: str) -> type | None:
    """The class in ``cls``'s MRO that defines ``name``, ignoring the Protocol itself."""
    for klass in cls.__mro__:
        if klass in (Broker, object) or klass.__module__ == "typing":
            continue
        if name in vars(klass):
            return klass
    return None


def test_the_member_list_is_the_protocol() -> None:
    assert set(BROKER_MEMBERS) == set(Broker.__protocol_attrs__)  # type: ignore[attr-defined]
    assert len(BROKER_MEMBERS) == len(set(BROKER_MEMBERS))


@pytest.mark.parametrize("cls", [SimulatedFuturesBroker, BinanceFuturesBroker])
def test_both_brokers_define_every_method_themselves(cls: type) -> None:
    assert Broker in cls.__mro__  # explicit: issubclass() is refused for Protocols with data members
    missing = [n for n in BROKER_MEMBERS if n not in _DATA and _defined_by(cls, n) is None]
    assert missing == [], f"{cls.__name__} inherits these from the Protocol's empty bodies: {missing}"
    for name in BROKER_MEMBERS:
        if name in _DATA:
            continue
        ours = inspect.unwrap(
            getattr(cls, name).fget if isinstance(getattr(cls, name), property) else getattr(cls, name)
        )
        proto = getattr(Broker, name)
        proto = proto.fget if isinstance(proto, property) else proto
        assert ours is not proto, name


def test_every_member_exists_on_a_live_instance_of_both(harness: Harness) -> None:
    b = harness.broker
    assert isinstance(b, Broker)
    for name in BROKER_MEMBERS:
        assert hasattr(b, name), name
    assert b.symbol == "ETHUSDT"
    assert b.pending is None and b.is_flat


def test_the_documented_no_ops(harness: Harness) -> None:
    """What a broker with nothing to do answers: the same for both where the behaviour is shared."""
    h = harness
    b = h.broker
    h.feed(flat(0, 2000))
    assert b.take_alerts() == []
    assert list(b.reconcile()) == []  # nothing differs (live: the stand-in matches the broker)
    assert b.take_dropped() == []
    assert b.cancel_pending() is False
    b.start()  # idempotent on both
    if h.kind == "paper":
        b.check_feed("replay")  # a simulation may be driven by anything
        assert b.apply_stream_event({"e": "ACCOUNT_UPDATE"}) == [] and b.on_stream_gap() == []
    else:
        assert b.on_candle_open(flat(1, 2000)) is None  # market entries never wait for an open
        h.enter(Side.LONG, flat(1, 2000), 1)
        assert b.pending is None and not b.is_flat


@pytest.mark.parametrize("path", ["core/engine.py", "tui/runtime.py"])
def test_no_getattr_probing_of_brokers(path: str) -> None:
    source = (REPO / path).read_text()
    probes = [
        line.strip() for line in source.splitlines() if re.search(r"\b(getattr|hasattr)\(\s*[\w.]*broker\b", line)
    ]
    assert probes == []
