"""`tradeconsole backtest` options end to end (in-process through the CLI entry point)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from tradeconsole.tui.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["backtest", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_text_report_trades_csv_and_plot(capsys, tmp_path, data_1h):
    csv_path = tmp_path / "trades.csv"
    code, out, err = run(
        capsys, "--strategy", "engulfing", "--data", str(data_1h), "--trades-csv", str(csv_path), "--plot"
    )
    assert code == 0
    assert "Final equity" in out and "Max drawdown" in out and "fill model realistic" in out
    assert "Equity (USDT)" in out  # the plotext figure
    rows = list(csv.DictReader(csv_path.open()))
    m = f"wrote {len(rows)} round trips"
    assert m in err and rows and {"entry_time", "exit_price", "pnl", "exit_reason"} <= set(rows[0])


def test_date_range_and_param_overrides(capsys, data_1h):
    code, out, _ = run(
        capsys,
        "--strategy",
        "engulfing",
        "--data",
        str(data_1h),
        "--from",
        "2022-06-01",
        "--to",
        "2022-09-01",
        "--param",
        "rsi_oversold=35",
        "--stop-loss",
        "0.02",
        "--json",
    )
    r = json.loads(out)
    assert code == 0 and r["start"] == "2022-06-01T00:00:00.000Z" and r["end"] == "2022-09-01T00:00:00.000Z"
    assert r["bars"] == (30 + 31 + 31) * 24
    assert r["assumptions"]["rsi_oversold"] == 35 and r["assumptions"]["stop_loss_pct"] == 0.02


def test_leverage_fee_and_slippage_change_results(capsys, data_1h):
    base = json.loads(run(capsys, "--strategy", "engulfing", "--data", str(data_1h), "--json")[1])
    slip = json.loads(
        run(
            capsys,
            "--strategy",
            "engulfing",
            "--data",
            str(data_1h),
            "--json",
            "--slippage-bps",
            "5",
            "--fee",
            "0.0005",
        )[1]
    )
    assert slip["fees_paid"] > 0 and slip["final_equity"] < base["final_equity"]
    lev = json.loads(run(capsys, "--strategy", "engulfing", "--data", str(data_1h), "--json", "--leverage", "3")[1])
    assert lev["assumptions"]["leverage"] == 3 and lev["fees_paid"] > 2.5 * base["fees_paid"] * 0.5


def test_metrics_are_consistent(capsys, data_5m):
    r = json.loads(run(capsys, "--strategy", "basic", "--data", str(data_5m), "--mode", "seed", "--json")[1])
    assert r["buys"] + r["sells"] == len(r["fills"])
    assert r["wins"] + r["losses"] == r["trades"] == r["long_trades"] + r["short_trades"]
    assert r["fees_paid"] == pytest.approx(sum(f["fee"] for f in r["fills"]))
    assert 0 < r["exposure_pct"] < 100 and 0 < r["max_drawdown_pct"] < 100
    assert r["buy_and_hold_return_pct"] == pytest.approx(-5.48, abs=0.01)


def test_bad_arguments_give_clear_errors(capsys, tmp_path, data_1h):
    code, _, err = run(capsys, "--strategy", "engulfing", "--data", str(tmp_path / "missing"))
    assert code == 2 and "no such file" in err
    code, _, err = run(capsys, "--strategy", "engulfing", "--data", str(data_1h), "--param", "nope=1")
    assert code == 2 and "unknown parameter" in err
    code, _, err = run(capsys, "--strategy", "engulfing", "--data", str(data_1h), "--from", "2030-01-01")
    assert code == 2 and "no candles" in err
    code, _, err = run(capsys, "--strategy", "engulfing", "--symbol", "ETHUSDT", "--interval", "1h")
    assert code == 2 and "data download" in err
    code, _, err = run(capsys, "--strategy", "engulfing", "--data", str(data_1h), "--from", "yesterday")
    assert code == 2 and "not a date" in err


def test_reads_the_history_cache(capsys, candles_1h):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tradeconsole.core.paths import history_cache_dir

    d = history_cache_dir("ETHUSDT", "1h", "futures")
    d.mkdir(parents=True)
    a = candles_1h
    for month in np.unique(a.open_time // (86_400_000 * 30)):
        sel = (a.open_time // (86_400_000 * 30)) == month
        pq.write_table(
            pa.table(
                {k: getattr(a, k)[sel] for k in ("open_time", "open", "high", "low", "close", "volume", "close_time")}
            ),
            d / f"ETHUSDT-1h-{month}.parquet",
        )
    code, out, _ = run(
        capsys,
        "--strategy",
        "engulfing",
        "--symbol",
        "ETHUSDT",
        "--interval",
        "1h",
        "--market",
        "futures",
        "--mode",
        "seed",
        "--json",
    )
    r = json.loads(out)
    assert code == 0 and r["trades"] == 92 and r["final_equity"] == pytest.approx(9656.00, abs=0.005)


def test_plot_never_shares_stdout_with_json(capsys, data_1h):
    code, out, err = run(capsys, "--strategy", "engulfing", "--data", str(data_1h), "--json", "--plot")
    assert code == 0
    json.loads(out)  # stdout is exactly one JSON document: `| jq` works
    assert "Equity (USDT)" in err and "Equity (USDT)" not in out


def test_plot_colours_only_on_a_terminal_without_no_color(capsys, data_1h, monkeypatch):
    from tradeconsole.backtest.cli import _color_ok

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert _color_ok(Tty()) and not _color_ok(object())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _color_ok(Tty())
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: an empty value does not disable colour
    assert _color_ok(Tty())
    # through the CLI: captured stdout is not a terminal, so the figure has no escape codes
    code, out, _ = run(capsys, "--strategy", "engulfing", "--data", str(data_1h), "--plot")
    assert code == 0 and "Equity (USDT)" in out and "\x1b[" not in out


def test_plot_time_axis_has_dates(data_1h):
    from tradeconsole.backtest.data import load_candles, slice_by_time
    from tradeconsole.backtest.report import plot_result
    from tradeconsole.backtest.runner import run_backtest
    from tradeconsole.core.domain import parse_utc_ms
    from tradeconsole.core.strategies import make_strategy

    candles, _ = load_candles(data_1h, interval="1h")
    candles = slice_by_time(candles, parse_utc_ms("2022-03-01"), parse_utc_ms("2022-06-01"))
    result = run_backtest(candles, make_strategy("engulfing"), symbol="ETHUSDT", interval="1h")
    plain = plot_result(result, 120, 40, color=False)
    assert "2022-03-01" in plain and "2022-05-31" in plain and "time (UTC)" in plain and "\x1b[" not in plain
    assert "\x1b[" in plot_result(result, 120, 40, color=True)
