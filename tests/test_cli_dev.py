"""``./dev`` keeps the caller's working directory for user paths (issue 12 item 8)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(300)


@pytest.mark.skipif(not (ROOT / ".venv" / ".stamp-install").exists(), reason="needs the ./dev environment")
def test_dev_resolves_relative_paths_against_the_callers_directory(tmp_path, data_1h):
    caller = tmp_path / "elsewhere"
    caller.mkdir()
    rel_data = os.path.relpath(data_1h, caller)
    out = subprocess.run(
        [
            str(ROOT / "dev"),
            "backtest",
            "--strategy",
            "engulfing",
            "--data",
            rel_data,
            "--from",
            "2022-03-01",
            "--to",
            "2022-04-01",
            "--json",
            "--trades-csv",
            "trades.csv",
        ],
        cwd=caller,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["bars"] == 31 * 24
    assert (caller / "trades.csv").is_file()  # the export lands where the user is, not in the checkout
    assert not (ROOT / "trades.csv").exists()


def test_dev_installs_dev_extras_only_for_tests():
    text = (ROOT / "dev").read_text()
    runtime = text[text.index("  console)") :]
    assert "ensure_venv dev" in text[text.index("  test)") : text.index("  console)")]
    assert "ensure_venv runtime" in runtime and "ensure_venv dev" not in runtime
    assert "pip install -q -e .)" in text  # the runtime install names no extras
