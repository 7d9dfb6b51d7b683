"""``tradeconsole optimize`` end to end: options, errors, reports, results files, resume after
Ctrl-C, the self-check and the heatmap."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tradeconsole.tui.cli import main

pytestmark = pytest.mark.xdist_group("optimize")
ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["optimize", *args])
    out, err = capsys.readouterr()
    return code, out, err


def small(data: Path, *extra: str) -> list[str]:
    return [
        "--strategy",
        "basic",
        "--data",
        str(data),
        "--from",
        "2022-08-01",
        "--to",
        "2022-10-01",
        "--param",
        "rsi_oversold=25,30,35",
        "--param",
        "take_profit_pct=0.02:0.04:0.01",
        "--workers",
        "1",
        *extra,
    ]


def test_json_report_is_honest_and_self_checked(capsys, data_5m):
    code, out, err = run(capsys, *small(data_5m, "--json", "--folds", "2", "--mode", "seed"))
    assert code == 0, err
    o = json.loads(out)
    assert o["evaluated"] == 9 and o["verified_against_backtest"] == 5 + 2
    assert o["best"]["params"].keys() == {"rsi_oversold", "take_profit_pct"}
    wf = o["walk_forward"]
    assert len(wf["folds"]) == 2
    for f in wf["folds"]:
        assert f["train"][1] == f["test"][0]  # the test starts where training ends
        assert set(f["in_sample"]) == set(f["out_of_sample"])
    assert 0 <= o["pbo"]["pbo"] <= 1 and o["pbo"]["splits"] == 12870
    assert o["stability"]["neighbours"] >= 3


def test_chosen_result_equals_the_backtest_command(capsys, data_5m):
    code, out, _ = run(capsys, *small(data_5m, "--json", "--folds", "0"))
    assert code == 0
    o = json.loads(out)
    assert "in-sample only" in o["warning"]
    best = o["best"]["params"]
    code = main(
        [
            "backtest",
            "--strategy",
            "basic",
            "--data",
            str(data_5m),
            "--from",
            "2022-08-01",
            "--to",
            "2022-10-01",
            "--param",
            f"rsi_oversold={best['rsi_oversold']}",
            "--take-profit",
            str(best["take_profit_pct"]),
            "--json",
        ]
    )
    bt = json.loads(capsys.readouterr().out)
    assert code == 0
    assert bt["sharpe"] == o["best"]["score"] == o["best"]["in_sample_full_window"]["sharpe"]
    assert bt["return_pct"] == o["best"]["in_sample_full_window"]["return_pct"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--param", "rsi_oversold=abc"], "not a number"),
        (["--param", "rsi_oversold=-5,20"], "out of range"),
        (["--param", "nope=1,2"], "unknown parameter"),
        (["--param", "rsi_oversold=30:20:5"], "below LOW"),
        (["--param", "rsi_oversold=20:30:0"], "step must be positive"),
        (["--param", "rsi_oversold", "--search", "random"], "needs --trials"),
        (["--param", "rsi_oversold", "--objective", "nosuchmodule_xyz:f"], "cannot import"),
        (["--param", "rsi_oversold", "--objective", "sharp"], "module:function"),
        (["--param", "rsi_oversold", "--results", "/nonexistent-dir/x.csv"], "does not exist"),
        (["--param", "rsi_oversold", "--results", "x.txt"], ".csv or .parquet"),
        (["--param", "rsi_oversold", "--train", "60d"], "go together"),
        ([], "nothing to optimise"),
    ],
)
def test_mistakes_are_one_line_exit_2(capsys, data_5m, args, message):
    code, out, err = run(capsys, "--strategy", "basic", "--data", str(data_5m), "--folds", "0", *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_self_check_failure_exits_1(capsys, data_5m, monkeypatch):
    from tradeconsole.backtest.optimize import evaluate

    real = evaluate.Workspace.run

    def skewed(self, params, **kw):
        r = real(self, params, **kw)
        r.fees_paid += 1e-9
        return r

    monkeypatch.setattr(evaluate.Workspace, "run", skewed)
    code, out, err = run(capsys, *small(data_5m, "--folds", "0"))
    assert code == 1
    assert "self-check failed" in err and "fees_paid" in err and out == ""


def test_random_optuna_objectives_and_constraints(capsys, data_5m, tmp_path, monkeypatch):
    (tmp_path / "myobj.py").write_text("def score(m):\n    return m['return_pct'] - m['max_drawdown_pct']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for search in ("random", "optuna"):
        code, out, err = run(
            capsys,
            "--strategy",
            "basic",
            "--data",
            str(data_5m),
            "--to",
            "2022-09-15",
            "--param",
            "rsi_oversold",
            "--param",
            "stop_loss_pct=0.01,0.02",
            "--search",
            search,
            "--trials",
            "8",
            "--objective",
            "myobj:score",
            "--min-trades",
            "3",
            "--folds",
            "0",
            "--workers",
            "1",
            "--json",
        )
        assert code == 0, err
        o = json.loads(out)
        assert o["evaluated"] == 8 and o["objective"] == "myobj:score"
        for t in o["top"]:
            assert 0 < t["params"]["rsi_oversold"] < 100
            assert t["trades"] >= 3
            assert t["score"] == pytest.approx(t["return_pct"] - t["max_drawdown_pct"])
    code, out, _ = run(capsys, *small(data_5m, "--folds", "0", "--json", "--max-drawdown", "0.0001"))
    o = json.loads(out)
    assert code == 0 and o["best"] is None and o["feasible"] == 0


def test_results_file_resumes_csv_and_parquet(capsys, data_5m, tmp_path):
    for name in ("r.csv", "r.parquet"):
        path = tmp_path / name
        code, out, _ = run(capsys, *small(data_5m, "--folds", "0", "--json", "--results", str(path)))
        first = json.loads(out)
        assert code == 0 and first["computed"] == 9 and first["resumed"] == 0
        code, out, _ = run(capsys, *small(data_5m, "--folds", "0", "--json", "--results", str(path)))
        again = json.loads(out)
        assert again["computed"] == 0 and again["resumed"] == 9
        assert again["top"] == first["top"]
        # other costs: nothing reused from the file
        code, out, _ = run(capsys, *small(data_5m, "--folds", "0", "--json", "--results", str(path), "--fee", "0.001"))
        assert json.loads(out)["computed"] == 9
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == 18 and {"key", "rsi_oversold", "take_profit_pct", "sharpe", "trades", "blocks"} <= set(rows[0])


def test_ctrl_c_keeps_finished_rows_and_a_rerun_resumes(data_5m, tmp_path):
    results = tmp_path / "r.csv"
    cmd = [
        sys.executable,
        "-m",
        "tradeconsole.tui.cli",
        "optimize",
        "--strategy",
        "basic",
        "--data",
        str(data_5m),
        "--param",
        "rsi_oversold=20:40:1",
        "--param",
        "stop_loss_pct=0.005:0.03:0.0025",
        "--param",
        "take_profit_pct=0.01:0.06:0.01",
        "--folds",
        "0",
        "--workers",
        "2",
        "--json",
        "--results",
        str(results),
    ]
    # SIGINT back to its default in the child: a suite started from a background shell inherits
    # an ignored SIGINT, and Python keeps an inherited SIG_IGN (no KeyboardInterrupt at all)
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and results.read_text().count("\n") > 40:
            break
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "resume" in err and out == ""
    kept = list(csv.DictReader(results.open()))
    total = 21 * 11 * 6
    assert 40 <= len(kept) < total
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    o = json.loads(done.stdout)
    assert o["resumed"] == len(kept) and o["computed"] == total - len(kept) and o["evaluated"] == total
    rows = list(csv.DictReader(results.open()))
    assert len(rows) == total and len({r["key"] for r in rows}) == total
    assert o["verified_against_backtest"] == 5  # resumed rows are checked against backtest too


def test_plot_heatmap_on_stderr_with_json_and_no_colour(capsys, data_5m, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, err = run(capsys, *small(data_5m, "--folds", "0", "--json", "--plot"))
    assert code == 0
    json.loads(out)  # stdout stays pure JSON
    assert "rsi_oversold" in err and "take_profit_pct" in err and "\x1b[" not in err
    code, out, err = run(
        capsys, *small(data_5m, "--folds", "0", "--plot", "--plot-params", "take_profit_pct,rsi_oversold")
    )
    assert code == 0 and "best score by take_profit_pct" in out
