"""Topic names per family, keys per symbol."""

from __future__ import annotations

import pytest
from tradeconsole.core.domain import Candle
from tradeconsole.core.events import CandleEvent, EngineStateEvent
from tradeconsole.infra.sinks.topics import TopicNames, event_classes, families, message_key


def test_one_topic_per_family_with_prefix():
    names = TopicNames()
    assert names.for_family("candles") == "tradeconsole.candles"
    assert names.deadletter == "tradeconsole.deadletter"
    assert names.all() == [f"tradeconsole.{f}" for f in families()]
    assert set(families()) == {c.family for c in event_classes().values()}
    assert "tradeconsole.deadletter" not in names.all()
    custom = TopicNames("desk-2.paper")
    assert custom.for_family("trades") == "desk-2.paper.trades"
    assert custom.family_of("desk-2.paper.trades") == "trades"
    assert custom.family_of("tradeconsole.trades") is None
    assert custom.family_of("desk-2.paper.deadletter") is None


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "x" * 240])
def test_illegal_prefixes_are_refused(bad):
    with pytest.raises(ValueError):
        TopicNames(bad)


def test_key_is_the_symbol():
    c = Candle(0, 1.0, 1.0, 1.0, 1.0, 1.0, 59_999)
    ev = CandleEvent(event_id="e", time=0, run_id="r", mode="paper", symbol="ETHUSDT", candle=c, indicators={})
    assert message_key(ev) == b"ETHUSDT"
    assert TopicNames().for_event(ev) == "tradeconsole.candles"
    state = EngineStateEvent(event_id="s", time=0, run_id="r", mode="paper", state="running")
    assert message_key(state) == b""
    assert TopicNames().for_event(state) == "tradeconsole.status"
