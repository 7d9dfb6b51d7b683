"""Packaging that keeps its shape (issue 12 item 9, issue 13 item 5).

The repository keeps its top-level folders (core/ backtest/ infra/ tui/) but installs them under
one import name, ``tradeconsole``. These tests make that mapping hard to break: a sub-package
missing from pyproject's list would be silently left out of the wheel, a bare ``import core``
works in a checkout but not once installed, ``tradeconsole backtest`` must stay usable on a
server without the console's or the pipeline's libraries, and PyPI's own ``backtest`` and
``tui`` packages must be able to live in the same environment as ours.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import DATA_1H, ROOT

PACKAGE_FOLDERS = {
    "core": "tradeconsole.core",
    "backtest": "tradeconsole.backtest",
    "infra": "tradeconsole.infra",
    "tui": "tradeconsole.tui",
}
OUR_TOP_LEVEL = frozenset(PACKAGE_FOLDERS)
#: folders that are never part of the source tree proper
SKIP_DIRS = frozenset(
    {
        ".venv",
        ".git",
        "build",
        "dist",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "tradeconsole.egg-info",
        "node_modules",
    }
)
#: what `tradeconsole backtest` must run without: the console (Textual) and the pipeline's clients
HEAVY_MODULES = ("textual", "kafka", "elasticsearch", "elastic_transport")
#: keys every `backtest --json` report carries (docs: README "Fill models"; backtest/metrics.py)
METRIC_KEYS = {
    "strategy",
    "interval",
    "fill_model",
    "bars",
    "initial_cash",
    "final_equity",
    "return_pct",
    "trades",
    "wins",
    "losses",
    "win_rate_pct",
    "max_drawdown_pct",
    "sharpe",
    "sortino",
    "profit_factor",
    "profit_factor_note",
    "fees_paid",
    "exposure_pct",
}
#: PyPI's unrelated packages that own the bare names of two of our folders
PYPI = ["backtest", "tui"]
BACKTEST_ARGS = ["backtest", "--data", str(DATA_1H), "--strategy", "basic", "--interval", "1h", "--json"]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _python_files() -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        found += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    return found


def _dotted(folder: Path) -> str:
    """The import name a package folder installs under (core/public is `tradeconsole` itself)."""
    rel = folder.relative_to(ROOT)
    if rel.parts[:2] == ("core", "public"):
        return ".".join(("tradeconsole", *rel.parts[2:]))
    return ".".join((PACKAGE_FOLDERS[rel.parts[0]], *rel.parts[1:]))


def test_setuptools_packages_are_exactly_the_folders_with_an_init():
    cfg = _pyproject()["tool"]["setuptools"]
    listed = set(cfg["packages"])
    on_disk = {
        _dotted(init.parent)
        for top in PACKAGE_FOLDERS
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert "tradeconsole" in on_disk and "tradeconsole.core" in on_disk
    assert listed == on_disk, (
        f"missing from [tool.setuptools] packages: {sorted(on_disk - listed)}; "
        f"listed but not on disk: {sorted(listed - on_disk)}"
    )
    assert cfg["package-dir"] == {"tradeconsole": "core/public", **{v: k for k, v in PACKAGE_FOLDERS.items()}}


def _bare_imports_at(path: Path, root: Path) -> list[str]:
    """`import core...` / `from tui... import` lines (absolute, top-level name one of our folders)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module]
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
            else []
        )
        out += [f"{path.relative_to(root)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in OUR_TOP_LEVEL]
    return out


def test_bare_import_detector_sees_both_forms(tmp_path):
    """The repository scan below would pass vacuously if it missed either spelling."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import core.domain\nfrom backtest.runner import run_backtest\nimport tradeconsole.tui\n"
        "from tests.tui import conftest\nfrom . import sibling\n"
    )
    assert _bare_imports_at(probe, tmp_path) == ["probe.py:1: core.domain", "probe.py:2: backtest.runner"]


def test_no_bare_core_backtest_infra_tui_imports_anywhere():
    files = _python_files()
    assert len(files) > 100  # the walk really covered the repository
    bad = [hit for f in files for hit in _bare_imports_at(f, ROOT)]
    assert not bad, "import through the tradeconsole namespace instead:\n" + "\n".join(bad)


def test_backtest_cli_never_imports_textual_kafka_or_elasticsearch(tmp_path):
    """`tradeconsole backtest` on a server: none of the console's or the pipeline's libraries load."""
    probe = (
        "import json, sys\n"
        "from tradeconsole.tui.cli import main\n"
        f"rc = main({BACKTEST_ARGS!r})\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY_MODULES!r})\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}), file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    verdict = json.loads(res.stderr.strip().splitlines()[-1])
    assert verdict == {"rc": 0, "heavy": []}, verdict
    report = json.loads(res.stdout)
    assert METRIC_KEYS <= set(report) and report["interval"] == "1h"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{cmd[:4]}... exited {res.returncode}:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.xdist_group("wheel")
def test_wheel_installs_beside_pypi_backtest_and_tui(tmp_path):
    """Issue 12's must-show: our wheel and PyPI's `backtest` and `tui` in one fresh venv, both usable.

    pip's cache keeps the dependency downloads to the first run; constraints.txt pins them as CI does.
    """
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # build from a copy of the sources: setuptools' in-tree build/ would otherwise be left in the
    # checkout, and files it kept from an earlier build could end up in the wheel
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*SKIP_DIRS, "*.pyc"))
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)],
        env=pip_env,
        timeout=600,
    )
    (wheel,) = wheels.glob("tradeconsole-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = zf.read(meta_name).decode()
        assert "License-Expression: MIT" in meta.splitlines()
        licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert licenses and b"MIT License" in zf.read(licenses[0])
        tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
        assert tops == {"tradeconsole"}, tops  # nothing installs as a bare core/backtest/infra/tui

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    py = venv / "bin" / "python"
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # Our wheel and PyPI's packages go into the fresh venv's own site-packages. Our third-party
    # dependencies (pandas, numba, ... ~1 GB) are not downloaded again: the test environment's
    # site-packages is appended to the fresh venv's path (a .pth line), after its own, so the
    # fresh venv's `backtest`/`tui`/`tradeconsole` win and the checkout's editable install (whose
    # finder is only activated by a .pth file *in* that directory, never processed from here) is
    # out of the picture -- the probe below proves where every name resolves.
    deps = Path(sysconfig.get_paths()["purelib"])
    (site / "zz_test_env_dependencies.pth").write_text(f"{deps}\n")
    _run(
        [str(py), "-m", "pip", "install", "-q", "--no-compile", "--no-deps", *PYPI, str(wheel)],
        env=pip_env,
        timeout=600,
    )
    # every dependency the wheel declares resolves in that venv (pip's resolver would have
    # installed these), so the run below is the wheel's own, not the checkout's
    deps_probe = (
        "import importlib.metadata as m, sys\n"
        "from packaging.requirements import Requirement\n"
        "missing = []\n"
        "for r in m.requires('tradeconsole') or []:\n"
        "    req = Requirement(r)\n"
        "    if req.marker is not None and 'extra' in str(req.marker):\n"
        "        continue\n"
        "    try:\n"
        "        if not req.specifier.contains(m.version(req.name), prereleases=True):\n"
        "            missing.append(f'{r} (have {m.version(req.name)})')\n"
        "    except m.PackageNotFoundError:\n"
        "        missing.append(r)\n"
        "print(missing)\n"
        "sys.exit(1 if missing else 0)\n"
    )
    _run([str(py), "-c", deps_probe], cwd=tmp_path, timeout=120)

    # PyPI's `tui` 1.1.1 is Python 2 code (a SyntaxError on import under 3.12), so where each name
    # resolves is read from its import spec, and the import itself is only attempted and reported
    probe = (
        "import importlib, importlib.util, json\n"
        "out = {}\n"
        "for name in ('backtest', 'tui', 'tradeconsole.backtest', 'tradeconsole.tui'):\n"
        "    spec = importlib.util.find_spec(name)\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "        imported = 'ok'\n"
        "    except Exception as exc:\n"
        "        imported = type(exc).__name__\n"
        "    out[name] = [spec.origin, imported]\n"
        "print(json.dumps(out))\n"
    )
    where = json.loads(_run([str(py), "-c", probe], cwd=tmp_path, timeout=120).stdout)
    for theirs in ("backtest", "tui"):  # the bare names are PyPI's packages, installed where pip put them
        assert Path(where[theirs][0]) == site / theirs / "__init__.py", where
    for ours in ("backtest", "tui"):  # ours live under tradeconsole/ and import cleanly beside them
        origin, imported = where[f"tradeconsole.{ours}"]
        assert Path(origin) == site / "tradeconsole" / ours / "__init__.py" and imported == "ok", where
    assert not (site / "backtest" / "runner.py").exists()  # PyPI's backtest is not ours, nor overwritten by it

    expected = json.loads(
        _run(
            [
                sys.executable,
                "-c",
                "import sys; from tradeconsole.tui.cli import main; sys.exit(main(sys.argv[1:]))",
                *BACKTEST_ARGS,
            ],
            cwd=tmp_path,
            timeout=240,
        ).stdout
    )
    for uninstall_theirs in (False, True):
        if uninstall_theirs:  # removing PyPI's packages must not take ours with them
            _run([str(py), "-m", "pip", "uninstall", "-y", "-q", "backtest", "tui"], env=pip_env, timeout=120)
        res = _run([str(venv / "bin" / "tradeconsole"), *BACKTEST_ARGS], cwd=tmp_path, timeout=240)
        report = json.loads(res.stdout)
        assert METRIC_KEYS <= set(report), sorted(METRIC_KEYS - set(report))
        # the installed wheel computes what the checkout computes
        assert (report["trades"], report["final_equity"]) == (expected["trades"], expected["final_equity"])
