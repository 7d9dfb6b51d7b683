"""User strategies in ``tradeconsole optimize`` (issue 16): ``--strategy`` takes what the loader
finds, a user strategy's declared ranges are the default space, and every strategy or exit the
compiled kernel does not model runs on the plain path (the real engine) - said in the output and
checked here against ``run_backtest`` combination by combination."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tradeconsole.backtest.optimize.evaluate import Workspace, kernel_reason, reference
from tradeconsole.backtest.optimize.store import scalar_row
from tradeconsole.backtest.strategy_loader import load_strategies
from tradeconsole.core.broker import BrokerSettings
from tradeconsole.core.domain import parse_utc_ms
from tradeconsole.tui.cli import main

pytestmark = pytest.mark.xdist_group("optimize")
STRATS = Path(__file__).resolve().parents[1] / "strategies"
SPAN = ["--from", "2022-03-01", "--to", "2022-06-01"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["optimize", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_kernel_models_only_the_builtins_fixed_exits():
    load_strategies(
        [str(STRATS / "bollinger_trail.py"), str(STRATS / "signal_time_exit.py")], user_dir=False, entry_points=False
    )
    assert kernel_reason("basic") is None and kernel_reason("engulfing") is None
    assert kernel_reason("bollinger_trail") == "trailing stop"
    assert kernel_reason("signal_time_exit") == "time exit"


def _window(candles, date_from: str, date_to: str):
    from tradeconsole.backtest.data import window_with_warmup

    return window_with_warmup(candles, parse_utc_ms(date_from), parse_utc_ms(date_to))


@pytest.mark.parametrize("model", ["seed", "realistic"])
def test_user_strategy_optimises_on_the_plain_path_equal_to_the_backtest(capsys, data_1h, candles_1h, model):
    path = STRATS / "bollinger_trail.py"
    code, out, err = run(
        capsys,
        "--strategy",
        "bollinger_trail",
        "--strategy-path",
        str(path),
        "--data",
        str(data_1h),
        *SPAN,
        "--param",
        "trail_pct=0.005,0.01,0.02",
        "--param",
        "stop_loss_pct=0.02,0.04",
        "--folds",
        "0",
        "--workers",
        "1",
        "--mode",
        model,
        "--json",
        "--top",
        "6",
        "--no-journal",
    )
    assert code == 0, err
    o = json.loads(out)
    assert o["kernel"] == "plain path (trailing stop)" and o["evaluated"] == 6 and len(o["top"]) == 6
    candles, warmup = _window(candles_1h, "2022-03-01", "2022-06-01")
    settings = BrokerSettings(initial_cash=10_000.0, fee_rate=0.0004)
    trades = 0
    for t in o["top"]:  # every combination, through run_backtest independently of the optimiser
        ref = scalar_row(
            reference(
                candles,
                "bollinger_trail",
                t["params"],
                fill_model=model,
                settings=settings,
                warmup=warmup,
                symbol="ETHUSDT",
                interval="1h",
            )
        )
        for k in ("return_pct", "sharpe", "sortino", "max_drawdown_pct", "profit_factor", "trades", "win_rate_pct"):
            assert t[k] == ref[k], (t["params"], k)
        trades += ref["trades"]
    assert trades > 6  # the strategy really trades in this window: the comparison is not of empty runs
    # a different trailing distance gives different results: the parameters reach the engine
    assert len({t["return_pct"] for t in o["top"]}) > 1


def test_text_report_says_plain_path_and_default_space_is_the_declared_range(capsys, data_1h):
    path = STRATS / "signal_time_exit.py"
    code, out, err = run(
        capsys,
        "--strategy",
        "signal_time_exit",
        "--strategy-path",
        str(path),
        "--data",
        str(data_1h),
        *SPAN,
        "--folds",
        "0",
        "--workers",
        "1",
        "--no-journal",
    )
    assert code == 0, err
    assert "kernel: plain path (time exit)" in out
    # no --param: the strategy's own declared range (hold 1..500) at the default 5 steps
    assert "5 evaluated" in out and "hold" in out


def test_user_strategy_on_worker_processes_equals_one_process(capsys, data_1h):
    path = STRATS / "signal_time_exit.py"
    args = [
        "--strategy",
        "signal_time_exit",
        "--strategy-path",
        str(path),
        "--data",
        str(data_1h),
        *SPAN,
        "--param",
        "hold=6,24",
        "--folds",
        "2",
        "--json",
        "--no-journal",
    ]
    code, out, err = run(capsys, *args, "--workers", "1")
    assert code == 0, err
    one = json.loads(out)
    code, out, err = run(capsys, *args, "--workers", "2")  # fresh processes register the file themselves
    assert code == 0, err
    two = json.loads(out)
    for o in (one, two):
        o.pop("elapsed_s")
    assert one == two and one["walk_forward"]["folds"][0]["params"]


def test_unknown_user_strategy_is_one_line_exit_2(capsys, data_1h):
    code, _, err = run(capsys, "--strategy", "nope", "--data", str(data_1h), "--param", "hold")
    assert code == 2 and err.startswith("error: ") and "nope" in err and "Traceback" not in err


def test_workspace_plain_path_equals_reference(candles_1h):
    load_strategies([str(STRATS / "bollinger_trail.py")], user_dir=False, entry_points=False)
    candles, warmup = _window(candles_1h, "2022-03-01", "2022-05-01")
    settings = BrokerSettings(initial_cash=5_000.0, fee_rate=0.001, leverage=3.0)
    ws = Workspace(candles, "bollinger_trail", "realistic", settings, warmup=warmup, interval="1h")
    assert ws.plain_reason == "trailing stop"
    p = {"trail_pct": 0.015}
    got, result = ws.scalar_metrics(p)
    want = scalar_row(
        reference(
            candles, "bollinger_trail", p, fill_model="realistic", settings=settings, warmup=warmup, interval="1h"
        )
    )
    assert got == want and len(result.trades) == got["trades"]
    assert ws.verify(p)["trades"] == got["trades"]
