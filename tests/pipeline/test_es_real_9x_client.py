"""The failure of issue 9 with the real thing: the official 9.x Python client (what an unpinned
install resolved) against the 8.x cluster compose runs, and against a 9.x cluster.

The 9.x client is installed on first use from PyPI into ``.venv/pip-es9`` (outside git, next to
the project's environment) and put ahead of the pinned 8.x client with PYTHONPATH in a child
process; the test process itself keeps the pinned client."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.es_standin import ElasticsearchStandIn

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
# the 9.x client and what it needs beyond the project's own environment (installed with --no-deps)
CLIENT_9X = ("elasticsearch>=9,<10", "elastic-transport>=9,<10", "anyio", "sniffio", "idna")


@pytest.fixture(scope="module")
def client_9x() -> dict[str, str]:
    """Environment for a child process that imports the 9.x client (its other dependencies,
    urllib3, anyio, python-dateutil..., come from the project's environment)."""
    target = Path(os.environ.get("TRADECONSOLE_PIP_CACHE") or ROOT / ".venv") / "pip-es9"
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".installed").exists():
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "--target",
                    str(target),
                    "--no-deps",
                    *CLIENT_9X,
                ],
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert done.returncode == 0, f"pip install {CLIENT_9X} failed:\n{done.stderr[-2000:]}"
            (target / ".installed").write_text(" ".join(CLIENT_9X))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    probe = subprocess.run(
        [sys.executable, "-c", "import elasticsearch; print(elasticsearch.__versionstr__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0 and probe.stdout.startswith("9."), probe.stderr
    return env


def test_forward_with_the_real_9x_client_against_compose_8x_cluster_fails_with_one_clear_line(client_9x, tmp_path):
    with ElasticsearchStandIn() as standin:
        assert standin.major == 8
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tradeconsole.tui.cli",
                "forward",
                "--kafka",
                "127.0.0.1:1",
                "--elasticsearch",
                standin.url,
            ],
            env={**client_9x, "TRADECONSOLE_DATA_DIR": str(tmp_path)},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert standin.refused_media_types == 1 and standin.templates == {}
    assert done.returncode == 1, done.stdout + done.stderr
    (error,) = [ln for ln in done.stderr.splitlines() if "error:" in ln]  # one line, on stderr (tradeconsole.tui.cli)
    assert error.startswith("error: ") and done.stdout == ""
    assert "this client sent compatible-with=9 (Python client elasticsearch 9." in error
    assert "Traceback" not in done.stdout + done.stderr


_INDEX_WITH_THIS_CLIENT = """
import sys
from elasticsearch import Elasticsearch, helpers
es = Elasticsearch(sys.argv[1])
print(es.info()["version"]["number"])
ok, errors = helpers.bulk(es, [{"_op_type": "create", "_index": "probe", "_id": str(i), "_source": {"n": i}}
                               for i in range(10)], raise_on_error=False)
es.indices.refresh(index="probe")
print(ok, errors, es.count(index="probe")["count"])
"""


def test_a_9x_cluster_takes_the_9x_and_the_8x_client(client_9x):
    with ElasticsearchStandIn(version="9.1.5") as standin:
        done = subprocess.run(
            [sys.executable, "-c", _INDEX_WITH_THIS_CLIENT, standin.url],
            env=client_9x,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("\n")[:2] == ["9.1.5", "10 [] 10"]
        # the pinned 8.x client: compatible-with=8 is the 9.x cluster's previous major, accepted
        done = subprocess.run(
            [sys.executable, "-c", _INDEX_WITH_THIS_CLIENT.replace('"probe"', '"probe8"'), standin.url],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("\n")[:2] == ["9.1.5", "10 [] 10"]
        assert standin.refused_media_types == 0
