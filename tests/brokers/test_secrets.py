"""The API key and secret never leave the python-binance client: not in logs (any logger, any
level, including urllib3 and python-binance), not in exception text, not in snapshots, alerts,
findings or the broker's repr."""

from __future__ import annotations

import json
import logging

import pytest
from tradeconsole.core.domain import Side
from tradeconsole.infra.binance.http.errors import BinanceError

from tests.brokers.conftest import API_KEY, API_SECRET, LiveHarness, flat, make_live_broker
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(30)


def leaks(text: str) -> list[str]:
    return [name for name, s in (("key", API_KEY), ("secret", API_SECRET)) if s in text]


def test_no_key_or_secret_anywhere_through_a_full_session(
    server: FuturesStandIn, caplog: pytest.LogCaptureFixture
) -> None:
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
    for inject in (
        lambda: server.reject_next("/fapi/v1/order", -2019, "Margin is insufficient."),
        lambda: server.reject_next("/fapi/v1/order", -1111, "Precision is over the maximum."),
        lambda: server.rate_limit_next("/fapi/v1/order", method="POST", status=418),
    ):
        inject()
        try:
            h.enter(Side.SHORT, flat(2, 2000), 2)
        except BinanceError as e:
            errors.append(e)
    for bad in (
        make_live_broker(server, api_secret="wrong-" + API_SECRET[::-1]),
        make_live_broker(server, api_key="wrong-" + API_KEY[::-1]),
    ):
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


# ---------------------------------------------------------------------- settings side (issue 10 item 6)

PLACES = {
    "binance api_key": ('[binance]\napi_key = "{v}"\n', "BK-7f3a9c1e5b"),
    "binance api_secret": ('[binance]\napi_secret = "{v}"\n', "BS-2d8e4f6a0c"),
    "kafka sasl_plain_password": ('[kafka]\nsasl_plain_password = "{v}"\n', "KSASL-93bd1a7"),
    "kafka ssl_password": ('[kafka]\nssl_password = "{v}"\n', "KSSL-5e0c2f81"),
    "elasticsearch password": ('[elasticsearch]\nusername = "elastic"\npassword = "{v}"\n', "ESPW-61a7d3c9"),
    "elasticsearch api_key": ('[elasticsearch]\napi_key = "{v}"\n', "ESKEY-0b9f4e2a"),
    "elasticsearch url user:password": (
        '[elasticsearch]\nurl = "http://elastic:{v}@127.0.0.1:9200"\n',
        "ESURL-c4e81b7d",
    ),
    "kibana password": ('[kibana]\nusername = "k"\npassword = "{v}"\n', "KIB-3a5f0d92"),
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_secret_in_a_world_readable_file_is_refused_naming_the_file(place, tmp_path, capsys):
    from tradeconsole.infra.settings import ConfigError, load_settings
    from tradeconsole.tui.cli import main

    template, value = PLACES[place]
    cfg = tmp_path / "config.toml"
    cfg.write_text(template.format(v=value))
    cfg.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        load_settings(cfg, env={})
    assert str(cfg) in str(info.value) and value not in str(info.value)
    code = main(["data", "download", "ETHUSDT", "1h", "--from", "2022-01-01", "--config", str(cfg)])
    cap = capsys.readouterr()
    assert code == 2 and cap.err.count("error:") == 1 and f"chmod 600 {cfg}" in cap.err
    assert value not in cap.out + cap.err


@pytest.mark.parametrize("place", sorted(PLACES))
def test_secrets_are_wrapped_and_redacted_in_the_public_view(place, tmp_path):
    from tradeconsole.infra.settings import Secret, load_settings

    template, value = PLACES[place]
    cfg = tmp_path / "config.toml"
    cfg.write_text(template.format(v=value))
    cfg.chmod(0o600)
    st = load_settings(cfg, env={})
    view = json.dumps(st.public_view())
    assert value not in view and value not in repr(st) and value not in str(st)
    revealed = [v.reveal() for d in (st.kafka, st.elasticsearch) for v in d.values() if isinstance(v, Secret)]
    revealed += [s.reveal() for s in (st.api_key, st.api_secret) if s is not None]
    if not place.startswith("kibana"):  # [kibana] is read by tradeconsole.infra.sinks.kibana itself
        assert value in revealed  # wrapped, and still usable by whoever needs it
    if place.endswith("user:password"):
        assert st.elasticsearch["url"] == "http://127.0.0.1:9200" and st.elasticsearch["username"] == "elastic"


def test_secrets_from_the_environment_are_wrapped(tmp_path):
    from tradeconsole.infra.settings import Secret, load_settings

    env = {
        "TRADECONSOLE_KAFKA_SSL_PASSWORD": "env-kssl",
        "TRADECONSOLE_KAFKA_SASL_PLAIN_PASSWORD": "env-ksasl",
        "TRADECONSOLE_ELASTICSEARCH_PASSWORD": "env-espw",
        "TRADECONSOLE_CONFIG": str(tmp_path / "none.toml"),
    }
    st = load_settings(None, env=env)
    assert isinstance(st.kafka["ssl_password"], Secret) and st.kafka["ssl_password"].reveal() == "env-kssl"
    assert st.kafka["sasl_plain_password"].reveal() == "env-ksasl"
    assert st.elasticsearch["password"].reveal() == "env-espw"
    assert "env-" not in json.dumps(st.public_view())


def test_no_secret_reaches_stdout_stderr_journal_or_events(tmp_path, data_1h):
    """A headless replay with a secret in every place (config file and command line) and an
    Elasticsearch sink: the secrets appear in no output, no file (journal included) and no
    indexed event."""
    import os
    import subprocess
    import sys

    from tests.servers.es_standin import ElasticsearchStandIn

    values = {place: value for place, (_, value) in PLACES.items() if not place.startswith("elasticsearch url")}
    cli_pw = "CLIPW-8d2e6b0f"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[binance]\napi_key = "{values["binance api_key"]}"\napi_secret = "{values["binance api_secret"]}"\n'
        f'[kafka]\nsasl_plain_password = "{values["kafka sasl_plain_password"]}"\n'
        f'ssl_password = "{values["kafka ssl_password"]}"\n'
        f'[elasticsearch]\nusername = "elastic"\npassword = "{values["elasticsearch password"]}"\n'
        f'[kibana]\npassword = "{values["kibana password"]}"\n'
    )
    cfg.chmod(0o600)
    journal = tmp_path / "journal.sqlite"
    with ElasticsearchStandIn() as es:
        url = es.url.replace("http://", f"http://elastic:{cli_pw}@")
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "tradeconsole.tui.cli",
                "run",
                "--headless",
                "--strategy",
                "engulfing",
                "--interval",
                "1h",
                "--replay",
                str(data_1h / "ETHUSDT-1h-2022-01.csv"),
                "--speed",
                "max",
                "--journal",
                str(journal),
                "--config",
                str(cfg),
                "--elasticsearch",
                url,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "TRADECONSOLE_DATA_DIR": str(tmp_path / "data")},
        )
        docs = es.documents()
    assert out.returncode == 0, out.stderr[-2000:]
    assert docs, "the Elasticsearch sink indexed nothing: the events were not checked"
    blob = out.stdout + out.stderr + json.dumps(docs)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != cfg:
            blob += path.read_bytes().decode("latin-1")
    leaked = [name for name, v in {**values, "command line url": cli_pw}.items() if v in blob]
    assert leaked == []
    raw = journal.read_bytes().decode("latin-1")
    assert "elastic:***@127.0.0.1" in raw and '"keys_configured": true' in raw  # redacted, not dropped
