"""The event schemas describe what the engine really publishes, and the mappings follow them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tradeconsole.core.domain import Candle, FillReason, Order, OrderSide, OrderType
from tradeconsole.core.events import (
    SCHEMA_VERSION,
    BacktestRunEvent,
    CandleUpdateEvent,
    ConnectionEvent,
    EngineStateEvent,
    ErrorEvent,
    OrderEvent,
)
from tradeconsole.infra.sinks.elastic import mapping_for_family
from tradeconsole.infra.sinks.schemas import SCHEMA_DIR, event_types, family_of_type, load_schema, validate
from tradeconsole.infra.sinks.topics import event_classes, families

ENV = {"run_id": "run-1", "mode": "paper", "symbol": "ETHUSDT", "interval": "1h", "strategy": "engulfing"}


@pytest.fixture(scope="module")
def backtest_events(candles_1h):
    from tradeconsole.backtest.runner import run_backtest
    from tradeconsole.core.strategies import make_strategy

    events = []
    result = run_backtest(
        candles_1h, make_strategy("engulfing"), symbol="ETHUSDT", interval="1h", publish=events.append
    )
    return events, result


def _manual_events() -> dict[str, object]:
    candle = Candle(1_700_000_000_000, 2000.0, 2010.5, 1995.25, 2005.0, 12.5, 1_700_003_599_999, False)
    order = Order(
        "tc123",
        "ETHUSDT",
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        1.5,
        1_700_000_000_000,
        stop_price=1950.0,
        reduce_only=True,
        reason=FillReason.STOP_LOSS,
    )
    return {
        "candle_update": CandleUpdateEvent(
            event_id="run-1:tick:1",
            time=candle.open_time,
            **ENV,
            candle=candle,
            indicators={
                "rsi": 51.2,
                "macd": float("nan"),
                "macd_signal": None,
                "macd_hist": 0.1,
                "cci": -20.0,
                "bull": 1,
                "engulfing": 0,
            },
        ),
        "order": OrderEvent(event_id="run-1:order:tc123", time=candle.open_time, **ENV, order=order, status="new"),
        "connection": ConnectionEvent(
            event_id="run-1:conn:1",
            time=candle.open_time,
            **ENV,
            source="market_data",
            state="reconnecting",
            lag_ms=1200.0,
            detail="socket closed",
        ),
        "engine_state": EngineStateEvent(
            event_id="run-1:state:1", time=candle.open_time, **{**ENV, "symbol": ""}, state="paused", detail="operator"
        ),
        "error": ErrorEvent(
            event_id="run-1:error:1",
            time=candle.open_time,
            **ENV,
            source="broker",
            message="order rejected: -2019 margin is insufficient",
            fatal=False,
        ),
    }


def test_every_event_class_has_a_schema_of_its_family():
    classes = event_classes()
    assert set(classes) == set(event_types())
    for t, cls in classes.items():
        schema = load_schema(t)
        assert schema["x-family"] == cls.family, t
        assert schema["x-schema-version"] == SCHEMA_VERSION
        assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
        assert schema["properties"]["type"]["const"] == t
        assert {"event_id", "@timestamp", "run_id", "mode", "symbol"} <= set(schema["required"])


def test_backtest_events_validate(backtest_events):
    events, _ = backtest_events
    seen = set()
    for ev in events:
        doc = ev.to_dict()
        assert validate(doc) == [], (doc["type"], validate(doc))
        seen.add(doc["type"])
    assert {"candle", "equity", "fill", "position", "signal"} <= seen
    closing = [e.to_dict() for e in events if e.type == "fill" and e.trade is not None]
    assert closing and "trade" in closing[0]  # the nested round trip is covered by the schema too


@pytest.mark.parametrize("event_type", ["candle_update", "order", "connection", "engine_state", "error"])
def test_live_event_types_validate(event_type):
    doc = _manual_events()[event_type].to_dict()
    assert validate(doc) == []


def test_backtest_run_validates(backtest_events):
    from tradeconsole.backtest.metrics import compute_metrics

    _, result = backtest_events
    metrics = compute_metrics(result)
    metrics["data"] = "9504 candles from 13 file(s)"
    ev = BacktestRunEvent(
        event_id=f"{result.run_id}:backtest_run",
        time=int(result.open_time[-1]),
        run_id=result.run_id,
        mode="backtest",
        symbol="ETHUSDT",
        interval="1h",
        strategy="engulfing",
        metrics=metrics,
    )
    doc = ev.to_dict()
    errors = validate(doc)
    assert errors == [] and doc["mode"] == "backtest" and doc["fill_model"] == metrics["fill_model"]
    assert doc["bars"] == len(result.equity) and doc["trades"] == len(result.trades)


def test_validator_reports_what_is_wrong():
    doc = _manual_events()["error"].to_dict()
    assert validate({**doc, "fatal": "no"}) == ["$.fatal: expected boolean, got str"]
    missing = dict(doc)
    del missing["event_id"]
    assert validate(missing) == ["$.event_id: required"]
    assert validate({**doc, "@timestamp": "yesterday"})[0].startswith("$.@timestamp: 'yesterday' is not")
    assert validate({**doc, "mode": "demo"})[0].startswith("$.mode: 'demo' not one of")
    assert validate({**doc, "surprise": 1}) == ["$.surprise: not allowed"]
    assert validate({**doc, "schema_version": 2}) == ["$.schema_version: expected 1, got 2"]
    assert validate({"type": "nope"})[0].startswith("$.type: no schema")


def test_every_family_has_consistent_explicit_mappings():
    assert set(families()) == {family_of_type(t) for t in event_types()}
    for family in families():
        m = mapping_for_family(family)
        props = m["properties"]
        assert props["@timestamp"] == {"type": "date"}
        assert props["event_id"]["type"] == "keyword"
        assert props["mode"]["type"] == "keyword"
    candles = mapping_for_family("candles")["properties"]
    assert candles["close"] == {"type": "double"} and candles["rsi"] == {"type": "double"}
    assert candles["open_time"] == {"type": "date"} and candles["engulfing"] == {"type": "long"}
    trades = mapping_for_family("trades")["properties"]
    assert trades["trade"]["properties"]["exit_time"] == {"type": "date"}
    assert mapping_for_family("signals")["properties"]["candle_time"] == {"type": "date", "format": "epoch_millis"}
    assert mapping_for_family("status")["properties"]["message"]["type"] == "text"


def test_readme_documents_every_type_and_field():
    readme = (SCHEMA_DIR / "README.md").read_text()
    for t in event_types():
        section = re.search(rf"^### `{t}`.*?(?=^### |\Z)", readme, re.MULTILINE | re.DOTALL)
        assert section, f"README has no section for {t}"
        schema = load_schema(t)
        envelope = set(load_schema("error")["properties"]) & set(schema["properties"])
        for field in set(schema["properties"]) - envelope:
            assert f"`{field}`" in section.group(0), f"{t}.{field} undocumented"
    for field in ("schema_version", "event_id", "@timestamp", "run_id", "mode", "symbol", "interval", "strategy"):
        assert f"`{field}`" in readme
    assert Path(SCHEMA_DIR / "candle.schema.json").is_file()
