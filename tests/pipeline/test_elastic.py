"""Elasticsearch side: index names, templates that never destroy anything, clients, the direct sink."""

from __future__ import annotations

import base64
import json

import pytest
from tradeconsole.core.events import EngineStateEvent
from tradeconsole.infra.sinks.elastic import (
    TEMPLATE_VERSION,
    ElasticsearchSink,
    client_from_settings,
    index_name,
    index_pattern,
    index_template,
    install_templates,
)
from tradeconsole.infra.sinks.topics import families

from tests.pipeline.helpers import wait_for

pytestmark = pytest.mark.timeout(120)


def test_monthly_index_from_the_event_time_in_utc():
    assert index_name("candles", "2022-01-31T23:00:00.000Z") == "tradeconsole-candles-2022.01"
    assert index_name("trades", "2022-01-31T23:30:00.000-02:00", "desk") == "desk-trades-2022.02"
    assert index_name("equity", "2024-12-01T00:00:00+00:00") == "tradeconsole-equity-2024.12"
    for bad in ("yesterday", "2022-01-31T10:00:00"):
        with pytest.raises(ValueError):
            index_name("candles", bad)
    with pytest.raises(ValueError):
        index_pattern("candles", "Has Upper")
    assert index_pattern("candles", "desk") == "desk-candles-*"


def test_templates_are_installed_once_and_foreign_or_existing_things_are_left_alone(es):
    client, prefix = es.client, es.index_prefix
    # Someone else's template for one family, and an index that exists before any template.
    foreign = f"{prefix}-ticks"
    client.indices.put_index_template(
        name=foreign,
        index_patterns=[f"{prefix}-ticks-*"],
        priority=100,
        template={"mappings": {"properties": {"close": {"type": "keyword"}}}},
    )
    client.indices.create(index=f"{prefix}-candles-2021.12", mappings={"properties": {"close": {"type": "keyword"}}})
    client.index(index=f"{prefix}-candles-2021.12", id="old", document={"close": "1.0"}, refresh=True)

    result = install_templates(client, prefix)
    assert result[foreign] == "foreign"
    assert {v for k, v in result.items() if k != foreign} == {"created"}
    assert len(result) == len(families())
    again = install_templates(client, prefix)
    assert {v for k, v in again.items() if k != foreign} == {"unchanged"}

    got = client.indices.get_index_template(name=foreign)["index_templates"][0]["index_template"]
    assert got["template"]["mappings"]["properties"]["close"] == {"type": "keyword"}  # untouched
    old = client.indices.get_mapping(index=f"{prefix}-candles-2021.12")
    assert old[f"{prefix}-candles-2021.12"]["mappings"]["properties"]["close"]["type"] == "keyword"
    assert client.get(index=f"{prefix}-candles-2021.12", id="old")["_source"] == {"close": "1.0"}

    # An older template of ours is updated in place.
    body = index_template("equity", prefix)
    body["version"] = TEMPLATE_VERSION - 1
    client.indices.put_index_template(name=f"{prefix}-equity", **body)
    assert install_templates(client, prefix)[f"{prefix}-equity"] == "updated"

    # New indices get the explicit mappings.
    client.index(
        index=f"{prefix}-candles-2022.01", id="e", document={"close": 1, "@timestamp": "2022-01-01T00:00:00.000Z"}
    )
    props = client.indices.get_mapping(index=f"{prefix}-candles-2022.01")[f"{prefix}-candles-2022.01"]["mappings"][
        "properties"
    ]
    assert props["close"]["type"] == "double" and props["@timestamp"]["type"] == "date"


def test_clients_from_config_for_a_url_or_elastic_cloud(monkeypatch):
    from tradeconsole.infra.settings import Secret

    client = client_from_settings("http://127.0.0.1:9", {"api_key": Secret("a2V5OnNlY3JldA==")}, env={})
    assert client._headers["authorization"] == "ApiKey a2V5OnNlY3JldA=="
    cloud_id = "deployment:" + base64.b64encode(b"eu-west-1.aws.found.io:443$esuuid$kbuuid").decode()
    cloud = client_from_settings(
        None, {"cloud_id": cloud_id}, env={"TRADECONSOLE_ELASTICSEARCH_API_KEY": "ZW52OmtleQ=="}
    )
    node = cloud.transport.node_pool.all()[0]
    assert node.base_url == "https://esuuid.eu-west-1.aws.found.io:443"
    assert cloud._headers["authorization"] == "ApiKey ZW52OmtleQ=="
    with pytest.raises(ValueError):
        client_from_settings(None, {}, env={})
    assert "a2V5" not in repr(client) and "ZW52" not in repr(cloud)


def test_direct_sink_indexes_a_backtest_once(es, candles_1h, tmp_path):
    from tradeconsole.backtest.runner import run_backtest
    from tradeconsole.core.strategies import make_strategy

    events = []
    sink = ElasticsearchSink(es.client, index_prefix=es.index_prefix, spool_dir=tmp_path / "spool")
    run_backtest(
        candles_1h.take(slice(0, 2000)),
        make_strategy("engulfing"),
        symbol="ETHUSDT",
        interval="1h",
        publish=lambda e: (events.append(e), sink.publish(e)),
    )
    for e in events[:50]:  # a replay of the same events must not duplicate anything
        sink.publish(e)
    assert sink.flush(60)
    assert sink.close()
    stats = sink.stats()
    assert stats["indexed"] == len(events) and stats["duplicates"] == 50 and stats["rejected"] == 0
    ids = es.ids()
    assert len(ids) == len(events) and set(ids.values()) == {1}
    mapping = es.client.indices.get_mapping(index=f"{es.index_prefix}-candles-*")
    assert all(m["mappings"]["properties"]["rsi"]["type"] == "double" for m in mapping.values())


def test_direct_sink_spools_through_an_outage_and_dead_letters_rejects(es, tmp_path):
    if es.standin is None:
        pytest.skip("failure injection needs the stand-in")
    prefix = es.index_prefix
    # An index made by hand with a mapping our documents cannot fit: they are rejected, not lost.
    es.client.indices.create(index=f"{prefix}-status-2023.11", mappings={"properties": {"state": {"type": "long"}}})
    sink = ElasticsearchSink(es.client, index_prefix=prefix, spool_dir=tmp_path / "spool")
    wait_for(lambda: es.client.indices.exists_index_template(name=f"{prefix}-status"), 30, message="templates")
    es.standin.fail_requests(8, status=503)  # two bulk calls fail completely (the client retries 3 times)
    good = [
        EngineStateEvent(event_id=f"r:state:{i}", time=1_700_000_000_000 + i, run_id="r", mode="paper", state="running")
        for i in range(300)
    ]  # November 2023: refused
    later = [
        EngineStateEvent(event_id=f"r:later:{i}", time=1_704_100_000_000 + i, run_id="r", mode="paper", state="paused")
        for i in range(200)
    ]  # January 2024: fine
    for e in good + later:
        sink.publish(e)
    assert sink.flush(60), sink.stats()
    stats = sink.stats()
    assert sink.close()
    assert stats["retries"] > 0 and stats["spooled_total"] > 0
    assert stats["rejected"] == 300 and stats["indexed"] == 200
    lines = [json.loads(x) for x in sink.deadletter_path.read_text().splitlines()]
    assert (
        len(lines) == 300 and "state" in lines[0]["reason"] and lines[0]["document"]["event_id"].startswith("r:state:")
    )
    assert es.count("status") == 200
