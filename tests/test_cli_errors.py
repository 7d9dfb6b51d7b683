"""One error path for the whole command line (issue 12 item 5, issue 10 items 5/7/9).

Walks every subcommand (console, backtest, run, data download, forward, kibana import) with bad
input and asserts: the exit code (2 for a user mistake, 1 for the environment), exactly one
``error:`` line on stderr, no traceback, and nothing of a long bad token echoed in full.
In-process cases go through ``tradeconsole.tui.cli.main``; the ``run``/console cases and one per subcommand
also go through a real ``python -m tradeconsole.tui.cli`` process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tradeconsole.tui.cli import UserError, clip, main

pytestmark = pytest.mark.timeout(120)

HUGE = "x" * 20_000_000  # the 20 MB token of issue 10 item 9


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def assert_one_error(code: int, out: str, err: str, want_code: int, fragment: str) -> None:
    assert code == want_code, (code, err[-2000:])
    assert "Traceback" not in out + err, err[-2000:]
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and error_lines[0].startswith("error: "), err[-2000:]
    assert fragment in error_lines[0], error_lines[0]
    assert len(err) < 3000, f"stderr is {len(err)} characters"


def run_inproc(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def run_proc(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, stdin=subprocess.DEVNULL
) -> tuple[int, str, str]:
    p = subprocess.run(
        [sys.executable, "-m", "tradeconsole.tui.cli", *argv],
        capture_output=True,
        text=True,
        stdin=stdin,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=60,
    )
    return p.returncode, p.stdout, p.stderr


@pytest.fixture()
def cfg(tmp_path):
    """Write a config file with the given text and mode, return its path."""

    def make(text: str, mode: int = 0o600) -> str:
        p = tmp_path / f"config-{abs(hash(text))}.toml"
        p.write_text(text)
        p.chmod(mode)
        return str(p)

    return make


def _binary(tmp_path: Path) -> str:
    p = tmp_path / "ETHUSDT-1h-2022-01.csv"
    p.write_bytes(bytes(range(256)) * 64)
    return str(p)


# ---------------------------------------------------------------------- backtest (in process)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--interval", "7m"], "unknown interval '7m'"),
        (["--param", "rsi_oversold=abc"], "'abc' is not a number"),
        (["--param", "rsi_overbought=-5"], "allowed 0 <= rsi_overbought <= 100"),
        (["--param", "rsi_oversold=nan"], "not a finite number"),
        (["--param", "nope=1"], "unknown parameter"),
        (["--param", "novalue"], "NAME=VALUE"),
        (["--cash", "nan"], "finite"),
        (["--cash", "inf"], "finite"),
        (["--cash", "-1"], "allowed 0 < cash"),
        (["--cash", "0"], "allowed 0 < cash"),
        (["--fee", "-0.1"], "allowed 0 <= fee < 0.01"),
        (["--fee", "nan"], "finite"),
        (["--slippage-bps", "-1"], "allowed 0 <= slippage-bps"),
        (["--leverage", "0"], "allowed 1 <= leverage <= 125"),
        (["--leverage", "500"], "allowed 1 <= leverage <= 125"),
        (["--funding-rate", "inf"], "finite"),
        (["--stop-loss", "2"], "allowed 0 < --stop-loss < 1"),
        (["--stop-loss", "-0.01"], "allowed 0 < --stop-loss < 1"),
        (["--take-profit", "0"], "allowed 0 < --take-profit < 10"),
        (["--from", "yesterday"], "not a date"),
        (["--from", "2022-06-01", "--to", "2022-05-01"], "--to must be after --from"),
        (["--from", "2030-01-01"], "no candles"),
        (["--trades-csv", "/nonexistent/x.csv"], "directory /nonexistent does not exist"),
        (["--mode", "fast"], "invalid choice"),
        (["--no-such-option"], "unrecognized arguments"),
    ],
)
def test_backtest_bad_options(capsys, data_1h, extra, fragment):
    code, out, err = run_inproc(capsys, ["backtest", "--strategy", "engulfing", "--data", str(data_1h), *extra])
    assert_one_error(code, out, err, 2, fragment)
    assert out == ""  # validation happens before the work: no report was produced


def test_backtest_bad_data(capsys, tmp_path):
    code, out, err = run_inproc(capsys, ["backtest", "--strategy", "engulfing", "--data", _binary(tmp_path)])
    assert_one_error(code, out, err, 2, "ETHUSDT-1h-2022-01.csv: binary data")
    code, out, err = run_inproc(capsys, ["backtest", "--strategy", "engulfing", "--data", str(tmp_path / "none")])
    assert_one_error(code, out, err, 2, "no such file")
    bad_parquet = tmp_path / "pq" / "x.parquet"
    bad_parquet.parent.mkdir()
    bad_parquet.write_text("not parquet")
    code, out, err = run_inproc(capsys, ["backtest", "--strategy", "engulfing", "--data", str(bad_parquet.parent)])
    assert_one_error(code, out, err, 2, "not a Parquet file")
    code, out, err = run_inproc(
        capsys, ["backtest", "--strategy", "engulfing", "--symbol", "ETHUSDT", "--interval", "1h"]
    )
    assert_one_error(code, out, err, 2, "data download ETHUSDT 1h")


def test_trades_csv_is_checked_before_the_run(capsys, data_5m):
    t0 = time.monotonic()
    code, out, err = run_inproc(
        capsys, ["backtest", "--strategy", "basic", "--data", str(data_5m), "--trades-csv", "/nonexistent/x.csv"]
    )
    assert_one_error(code, out, err, 2, "--trades-csv")
    assert time.monotonic() - t0 < 5  # far less than loading and running six months of 5m data


@pytest.mark.parametrize(
    "argv",
    [
        ["backtest", "--strategy", HUGE, "--data", "x"],
        ["backtest", "--strategy", "basic", "--data", HUGE],
        ["backtest", "--strategy", "basic", "--data", "DATA", "--param", f"{HUGE}=1"],
        ["backtest", "--strategy", "basic", "--data", "DATA", "--param", f"rsi_oversold={HUGE}"],
        ["backtest", "--strategy", "basic", "--data", "DATA", "--cash", HUGE],
        ["data", "download", HUGE, "1h", "--from", "2022-01-01"],
        ["data", "download", "ETHUSDT", HUGE, "--from", "2022-01-01"],
        ["kibana", "import", "--kibana", "http://127.0.0.1:9", "--config", HUGE],
        [HUGE],
    ],
    ids=["strategy", "data", "param-name", "param-value", "cash", "symbol", "interval", "config", "command"],
)
def test_a_20mb_token_is_never_echoed_in_full(capsys, data_1h, argv):
    argv = [str(data_1h) if a == "DATA" else a for a in argv]
    code, out, err = run_inproc(capsys, argv)
    assert code == 2 and len(err) < 3000 and "…(20000" in err and "Traceback" not in err
    assert [line.startswith("error: ") for line in err.splitlines() if "error:" in line] == [True]


def test_clip():
    assert clip("abc") == "abc" and clip("a" * 81) == "a" * 80 + "…(81 chars)"


# ---------------------------------------------------------------------- global options


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("tradeconsole ")
    for argv in (
        ["--help"],
        ["backtest", "--help"],
        ["run", "--help"],
        ["data", "download", "--help"],
        ["forward", "--help"],
        ["kibana", "import", "--help"],
    ):
        assert main(argv) == 0
        assert "usage:" in capsys.readouterr().out


def test_every_option_has_help_text():
    import argparse

    from tradeconsole.tui.cli import build_parser

    def walk(p: argparse.ArgumentParser, path: str):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sp in a.choices.items():
                    yield from walk(sp, f"{path} {name}")
            elif not isinstance(a, argparse._HelpAction):
                yield f"{path} {a.dest}", a.help

    missing = [name for name, text in walk(build_parser(), "tradeconsole") if not text]
    assert missing == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--mode", "seed", "backtest", "--strategy", "basic", "--data", "DATA"],
        ["--cash", "5000", "run", "--headless"],
        ["--config", "x.toml", "data", "download", "ETHUSDT", "1h", "--from", "2022-01-01"],
        ["--strategy", "engulfing", "backtest", "--strategy", "basic", "--data", "DATA"],
    ],
)
def test_console_options_before_a_subcommand_are_refused(capsys, data_1h, argv):
    argv = [str(data_1h) if a == "DATA" else a for a in argv]
    code, out, err = run_inproc(capsys, argv)
    assert_one_error(code, out, err, 2, "put them after the subcommand")
    assert out == ""


def test_debug_shows_the_traceback(capsys, data_1h):
    code = main(["backtest", "--debug", "--strategy", "engulfing", "--data", str(data_1h), "--param", "x=abc"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" in err and err.splitlines()[-1].startswith("error: --param x")


# ---------------------------------------------------------------------- config files


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("binance = 5\n", "[binance] must be a table"),
        ('kafka = "x"\n', "[kafka] must be a table"),
        ('[risk]\nmax_notional = "x"\n', "[risk] max_notional must be a number"),
        ("[risk]\nmax_notional = -5\n", "[risk] max_notional=-5 is out of range"),
        ("[risk]\nmax_daily_loss = nan\n", "[risk] max_daily_loss=nan is out of range"),
        ("[risk]\nmax_orders_per_minute = -5\n", "[risk] max_orders_per_minute=-5 is out of range"),
        ("[risk]\nmax_orders_per_minute = 2.5\n", "must be a whole number"),
        ("[paper]\ncash = inf\n", "[paper] cash=inf is out of range"),
        ("[binance]\nfutures_rest = 5\n", "[binance] futures_rest must be a string"),
        ("not toml [\n", "not valid TOML"),
    ],
)
def test_config_type_errors_end_in_one_line(capsys, cfg, text, fragment):
    path = cfg(text)
    code, out, err = run_inproc(capsys, ["data", "download", "ETHUSDT", "1h", "--from", "2022-01-01", "--config", path])
    assert_one_error(code, out, err, 2, fragment)
    assert f"config {path}" in err


# ---------------------------------------------------------------------- data download, forward, kibana


def test_data_download_bad_input(capsys):
    for argv, fragment in (
        (["ETHUSDT", "7m", "--from", "2022-01-01"], "unknown interval"),
        (["ETH/USDT", "1h", "--from", "2022-01-01"], "not a symbol"),
        (["ETHUSDT", "1h", "--from", "yesterday"], "not a date"),
        (["ETHUSDT", "1h", "--from", "2022-02-01", "--to", "2022-01-01"], "--to must be after"),
        (["ETHUSDT", "1h"], "required: --from"),
    ):
        code, out, err = run_inproc(capsys, ["data", "download", *argv])
        assert_one_error(code, out, err, 2, fragment)


def test_data_download_offline_ends_at_once_and_says_nothing_was_downloaded(capsys, monkeypatch):
    # RFC 6761: names under .invalid never resolve, which is what an offline machine sees
    monkeypatch.setenv("TRADECONSOLE_BINANCE_SPOT_REST", "http://api.binance.invalid/api")
    t0 = time.monotonic()
    code, out, err = run_inproc(capsys, ["data", "download", "ETHUSDT", "1h", "--from", "2022-01-01"])
    assert_one_error(code, out, err, 1, "cannot resolve api.binance.invalid")
    assert "nothing was downloaded" in err and time.monotonic() - t0 < 5


def test_forward_and_kibana_bad_input(capsys, cfg):
    code, out, err = run_inproc(capsys, ["forward", "--kafka", "127.0.0.1:1"])
    assert_one_error(code, out, err, 2, "--elasticsearch")
    code, out, err = run_inproc(
        capsys,
        [
            "forward",
            "--kafka",
            "127.0.0.1:1",
            "--elasticsearch",
            "http://127.0.0.1:1",
            "--config",
            cfg("elasticsearch = 5\n"),
        ],
    )
    assert_one_error(code, out, err, 2, "[elasticsearch] must be a table")
    code, out, err = run_inproc(capsys, ["kibana", "import"])
    assert_one_error(code, out, err, 2, "--kibana")
    code, out, err = run_inproc(
        capsys,
        [
            "kibana",
            "import",
            "--kibana",
            "http://127.0.0.1:1",
            "--config",
            cfg('[kibana]\npassword = "hunter2"\n', 0o644),
        ],
    )
    assert_one_error(code, out, err, 2, "chmod 600")
    assert "hunter2" not in out + err
    code, out, err = run_inproc(
        capsys, ["kibana", "import", "--kibana", f"http://127.0.0.1:{_closed_port()}", "--config", cfg("")]
    )
    assert_one_error(code, out, err, 1, "cannot reach Kibana")
    assert out == ""  # errors go to stderr, never stdout


# ---------------------------------------------------------------------- run --headless and the console (processes)


def test_run_and_console_bad_input_in_real_processes(tmp_path, data_1h, cfg):
    d = str(data_1h)
    cases = [
        (["run", "--strategy", "basic"], 2, "needs --headless"),
        (["run", "--headless", "--speed", "nan"], 2, "speed must be"),
        (["run", "--headless", "--speed", "-1"], 2, "speed must be"),
        (["run", "--headless", "--cash", "nan"], 2, "finite"),
        (["run", "--headless", "--strategy", "nope"], 2, "unknown strategy"),
        (["run", "--headless", "--interval", "7m"], 2, "unknown interval"),
        (
            ["run", "--headless", "--live", "--replay", d, "--confirm", "ETHUSDT"],
            2,
            "--live cannot be combined with --replay",
        ),
        (["run", "--headless", "--testnet", "--replay", d], 2, "--testnet cannot be combined with --replay"),
        (["run", "--headless", "--replay", str(tmp_path / "none")], 2, "no such replay"),
        (["run", "--headless", "--replay", _binary(tmp_path), "--interval", "1h"], 2, "ETHUSDT-1h-2022-01.csv"),
        (["run", "--headless", "--replay", d, "--config", cfg("binance = 5\n")], 2, "[binance] must be a table"),
        (
            ["run", "--headless", "--replay", d, "--config", cfg("[risk]\nmax_orders_per_minute = -5\n")],
            2,
            "max_orders_per_minute=-5",
        ),
        (
            ["run", "--headless", "--replay", d, "--config", cfg('[kafka]\nssl_password = "pw"\n', 0o644)],
            2,
            "chmod 600",
        ),
        (["--replay", d], 2, "run --headless"),  # the console without a terminal
        (["--live", "--replay", d], 2, "cannot be combined with --replay"),
        (["--interval", "7m"], 2, "unknown interval"),
        (["backtest", "--strategy", "engulfing", "--data", d, "--param", "rsi_oversold=abc"], 2, "not a number"),
        (["data", "download", "ETHUSDT", "1h", "--from", "2022-01-01"], 1, "nothing was downloaded"),
    ]
    env = {
        "TRADECONSOLE_BINANCE_SPOT_REST": "http://api.binance.invalid/api",
        "TRADECONSOLE_CONFIG": str(tmp_path / "no.toml"),
    }
    for argv, want, fragment in cases:
        code, out, err = run_proc(argv, env=env, cwd=tmp_path)
        assert_one_error(code, out, err, want, fragment)


def test_console_refuses_a_pipe_before_drawing_anything(tmp_path):
    code, out, err = run_proc([], env={"TRADECONSOLE_CONFIG": str(tmp_path / "no.toml")}, cwd=tmp_path)
    assert_one_error(code, out, err, 2, "needs a terminal")
    assert out == "" and "\x1b" not in err


def test_user_error_is_the_one_exception_type_handlers_raise():
    assert issubclass(UserError, Exception) and UserError.exit_code == 2


def test_options_apply_where_they_are_given():
    from tradeconsole.tui.cli import build_parser

    console = build_parser().parse_args(["--mode", "seed", "--cash", "5000", "--strategy", "engulfing:1h"])
    assert (console.command, console.fill_model, console.cash, console.strategies) == (
        None,
        "seed",
        5000.0,
        ["engulfing:1h"],
    )
    assert (
        console.speed == 60.0 and console.symbol is None
    )  # the console's own defaults (None: the config's symbols, else ETHUSDT)
    run = build_parser().parse_args(["run", "--headless", "--mode", "seed", "--cash", "5000"])
    assert (run.fill_model, run.cash, run.speed) == ("seed", 5000.0, None)
    bt = build_parser().parse_args(["--debug", "backtest", "--strategy", "basic", "--data", "x", "--mode", "seed"])
    assert bt.fill_model == "seed" and bt.debug is True  # --debug is global and applies everywhere
