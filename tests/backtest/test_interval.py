"""Issue 12, item 1: the data's interval is inferred and checked against the run's interval.

Reproductions quoted in the issue: `backtest --strategy basic --data <1h data>` ran as 5m with
thousands of gap warnings and Sharpe annualised for 5m; `run --headless --replay <1h>` emitted
9,503 gap error events and exited 0. Both must now refuse at start and say what the data is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tradeconsole.backtest.data import DataError, IntervalMismatchError, infer_interval, load_candles
from tradeconsole.tui.cli import main

from tests.backtest.test_data import rows, write


def test_loader_infers_the_interval_of_real_data(data_1h, data_5m):
    _, rep1 = load_candles(data_1h)
    _, rep5 = load_candles(data_5m, interval="5m")
    assert rep1.interval == "1h" and rep5.interval == "5m"


def test_one_hour_data_run_as_five_minutes_is_refused_naming_what_it_is(data_1h):
    with pytest.raises(IntervalMismatchError) as exc:
        load_candles(data_1h, interval="5m", expected_by="the strategy 'basic' runs on 5m")
    assert "this is 1h data; the strategy 'basic' runs on 5m: pass --interval 1h or other data" in str(exc.value)
    assert exc.value.data_interval == "1h" and exc.value.expected == "5m"
    assert isinstance(exc.value, DataError)  # the CLI's data-error path shows it as `error: ...`


def test_gaps_do_not_fool_the_inference(tmp_path):
    # a 5m history with a third of its candles missing is still 5m data with gaps
    p = write(tmp_path, "gappy.csv", rows(60, skip=set(range(10, 30))))
    arr, rep = load_candles(p, interval="5m")
    assert rep.interval == "5m" and sum(g[2] for g in rep.gaps) == 20
    with pytest.raises(IntervalMismatchError, match="this is 5m data; --interval is 1m"):
        load_candles(p, interval="1m")


def test_a_step_that_is_no_binance_interval_is_named(tmp_path):
    p = write(tmp_path, "seven.csv", rows(30, step=7 * 60_000))
    assert infer_interval(load_candles(p)[0].open_time) is None
    with pytest.raises(IntervalMismatchError, match="candles are 7m apart, which is not a Binance interval"):
        load_candles(p, interval="5m")


def test_backtest_cli_refuses_wrong_interval_before_running(capsys, data_1h):
    code = main(["backtest", "--strategy", "basic", "--data", str(data_1h), "--json"])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert "error: " in out.err and "this is 1h data; the strategy 'basic' runs on 5m: pass --interval 1h" in out.err
    assert "gap" not in out.err  # no longer thousands of gap warnings


def test_backtest_cli_explicit_interval_mismatch_says_so(capsys, data_5m):
    code = main(["backtest", "--strategy", "engulfing", "--data", str(data_5m), "--interval", "1h", "--json"])
    err = capsys.readouterr().err
    assert code == 2 and "this is 5m data; --interval is 1h: pass --interval 5m or other data" in err


def test_backtest_cli_right_interval_still_runs(capsys, data_1h):
    code = main(["backtest", "--strategy", "basic", "--data", str(data_1h), "--interval", "1h", "--json"])
    assert code == 0 and '"interval":"1h"' in capsys.readouterr().out


def test_headless_replay_of_wrong_interval_refuses_at_start(tmp_path, data_1h):
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradeconsole.tui.cli",
            "run",
            "--headless",
            "--strategy",
            "basic",
            "--replay",
            str(data_1h),
            "--speed",
            "max",
            "--journal",
            str(tmp_path / "j.sqlite"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "this is 1h data; the strategy 'basic' runs on 5m: pass --interval 1h or other data" in proc.stderr
    assert "Traceback" not in proc.stderr and '"gap' not in proc.stderr
