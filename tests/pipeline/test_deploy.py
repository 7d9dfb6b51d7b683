"""Infrastructure files (Docker cannot run here, so their structure is checked) and the Kibana import."""

from __future__ import annotations

import base64
import json
import re
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.elastic import index_pattern, mapping_for_family
from infra.kibana import SAVED_OBJECTS_DIR, kibana_url_from_cloud_id, load_saved_objects
from infra.topics import TopicNames, families

DEPLOY = Path(__file__).resolve().parents[2] / "infra" / "deploy"


@pytest.fixture(scope="module")
def compose():
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the compose file")
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_has_kraft_kafka_ui_topic_init_elasticsearch_and_kibana(compose):
    services = compose["services"]
    assert set(services) == {"kafka", "kafka-init", "kafka-ui", "elasticsearch", "kibana"}
    assert not any("zookeeper" in name or "zookeeper" in str(s.get("image", "")) for name, s in services.items())
    env = services["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in env["KAFKA_LISTENERS"] and env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@")
    assert not any(k.startswith("KAFKA_ZOOKEEPER") for k in env)
    for name, svc in services.items():
        assert ":" in svc["image"] and not svc["image"].endswith(":latest"), f"{name}: pin an image version"
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    for dependent, dependency in (("kafka-init", "kafka"), ("kafka-ui", "kafka"), ("kibana", "elasticsearch")):
        assert services[dependent]["depends_on"][dependency]["condition"] == "service_healthy"
        assert "healthcheck" in services[dependency]
    internal = "kafka:19092"
    assert internal in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert services["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == internal
    assert internal in services["kafka-init"]["command"][0]
    assert "elasticsearch:9200" in services["kibana"]["environment"]["ELASTICSEARCH_HOSTS"]
    assert services["elasticsearch"]["environment"]["discovery.type"] == "single-node"


def test_topic_init_creates_exactly_the_topics_the_console_uses(compose):
    init = compose["services"]["kafka-init"]
    topics = init["environment"]["TOPICS"].split()
    names = TopicNames()
    assert sorted(topics) == sorted([*names.all(), names.deadletter])
    assert "--if-not-exists" in init["command"][0] and "$$TOPICS" in init["command"][0]


def test_compose_settings_are_explained():
    text = (DEPLOY / "docker-compose.yml").read_text()
    for setting in ("KAFKA_PROCESS_ROLES", "KAFKA_LISTENERS", "KAFKA_AUTO_CREATE_TOPICS_ENABLE",
                    "xpack.security.enabled", "discovery.type", "PARTITIONS"):
        line = next(i for i, ln in enumerate(text.splitlines()) if setting + ":" in ln)
        before = text.splitlines()[max(0, line - 4):line + 1]
        assert any(ln.strip().startswith("#") or " # " in ln for ln in before), f"{setting} is not explained"
    readme = (DEPLOY / "README.md").read_text()
    for needle in ("docker compose", "tradeconsole forward", "tradeconsole kibana import", "cloud_id", "SASL_SSL"):
        assert needle in readme


def saved_objects():
    objs = []
    for path in sorted(SAVED_OBJECTS_DIR.glob("*.ndjson")):
        for line in path.read_text().splitlines():
            if line.strip():
                objs.append(json.loads(line))
    return objs


def test_saved_objects_have_a_data_view_per_family_and_a_dashboard_of_vega_panels():
    objs = saved_objects()
    assert len({(o["type"], o["id"]) for o in objs}) == len(objs)
    views = {o["attributes"]["title"]: o for o in objs if o["type"] == "index-pattern"}
    assert set(views) == {index_pattern(f) for f in families()}
    assert all(v["attributes"]["timeFieldName"] == "@timestamp" for v in views.values())

    vis = {o["id"]: o for o in objs if o["type"] == "visualization"}
    used = {}
    for vid, o in vis.items():
        state = json.loads(o["attributes"]["visState"])
        assert state["type"] == "vega"
        spec = json.loads(state["params"]["spec"])
        index = spec["data"]["url"]["index"]
        family = re.fullmatch(r"tradeconsole-(\w+)-\*", index).group(1)
        props = mapping_for_family(family)["properties"]
        for field in spec["data"]["url"]["body"]["_source"]:
            assert field in props, f"{vid} reads {field}, which {family} documents do not have"
        assert spec["data"]["url"]["%timefield%"] == "@timestamp"
        used[family] = vid
    assert {"candles", "trades", "equity", "ticks"} <= set(used)
    price = json.loads(json.loads(vis[used["candles"]]["attributes"]["visState"])["params"]["spec"])
    assert {"rsi", "macd", "cci", "close"} <= set(price["data"]["url"]["body"]["_source"])

    (dashboard,) = [o for o in objs if o["type"] == "dashboard"]
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in dashboard["references"]}
    assert {p["panelRefName"] for p in panels} == set(refs)
    assert {r["id"] for r in refs.values()} == set(vis)


def test_import_payload_applies_another_index_prefix():
    default = load_saved_objects()
    assert default.count(b"\n") == len(saved_objects())
    desk = load_saved_objects(index_prefix="desk2").decode()
    assert "tradeconsole-" not in desk and "desk2-candles-*" in desk
    with pytest.raises(ValueError):
        load_saved_objects(index_prefix="Bad Prefix")


def test_kibana_url_from_an_elastic_cloud_id():
    cloud_id = "trading:" + base64.b64encode(b"eu-west-1.aws.found.io:443$es123$kb456").decode()
    assert kibana_url_from_cloud_id(cloud_id) == "https://kb456.eu-west-1.aws.found.io"
    with pytest.raises(ValueError):
        kibana_url_from_cloud_id("not-a-cloud-id!")


class StubKibana:
    """Records saved-object imports the way Kibana's API takes them (multipart, kbn-xsrf)."""

    def __init__(self, answer=None, status=200):
        self.requests = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                msg = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
                files = {p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
                         for p in msg.iter_parts()}
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "files": files})
                count = files.get("file", b"").count(b"\n")
                data = json.dumps(answer or {"success": True, "successCount": count}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_kibana_import_command_posts_the_saved_objects(tmp_path, monkeypatch, capsys):
    from tui.cli import main

    config = tmp_path / "config.toml"
    config.write_text('[kibana]\nspace = "trading"\n[elasticsearch]\nindex_prefix = "desk2"\n')
    config.chmod(0o600)
    monkeypatch.setenv("TRADECONSOLE_KIBANA_API_KEY", "a2liYW5hOmtleQ==")
    stub = StubKibana()
    try:
        assert main(["kibana", "import", "--kibana", stub.url, "--config", str(config)]) == 0
    finally:
        stub.close()
    (req,) = stub.requests
    assert req["path"] == "/s/trading/api/saved_objects/_import?overwrite=true"
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert headers["kbn-xsrf"] == "true"
    assert headers["authorization"] == "ApiKey a2liYW5hOmtleQ=="
    assert req["files"]["file"] == load_saved_objects(index_prefix="desk2")
    out = capsys.readouterr().out
    assert f"imported {len(saved_objects())} saved object(s)" in out
    assert "a2liYW5h" not in out


def test_kibana_import_reports_refused_objects(tmp_path, monkeypatch, capsys):
    from tui.cli import main

    monkeypatch.setenv("TRADECONSOLE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TRADECONSOLE_KIBANA_API_KEY", raising=False)
    stub = StubKibana(answer={"success": False, "successCount": 13, "errors": [
        {"type": "dashboard", "id": "tradeconsole-dashboard", "error": {"type": "missing_references"}}]})
    try:
        assert main(["kibana", "import", "--kibana", stub.url]) == 1
    finally:
        stub.close()
    assert "authorization" not in {k.lower() for k in stub.requests[0]["headers"]}
    err = capsys.readouterr().err  # errors go to stderr, as one `error:` line
    assert "dashboard/tradeconsole-dashboard: missing_references" in err and err.count("error:") == 1
    assert main(["kibana", "import", "--kibana", "http://127.0.0.1:9"]) == 1
    assert "cannot reach Kibana" in capsys.readouterr().err
