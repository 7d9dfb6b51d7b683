"""Strategies are the user's: loaded from files, the user directory and entry points; written from
a template; listed; checked; bad files named with their line, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

HERE = Path(__file__).parent
STRATS = HERE / "strategies"
CLI = [sys.executable, "-m", "tradeconsole.tui.cli"]


def cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        CLI + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=HERE.parent,
    )


@pytest.fixture(scope="module")
def data_3m(tmp_path_factory, data_1h) -> Path:
    """Three months of real 1h candles (2,160): long enough for every check, quick to replay."""
    d = tmp_path_factory.mktemp("eth1h")
    for f in sorted(data_1h.glob("ETHUSDT-1h-2022-0[123].csv")):
        shutil.copy(f, d / f.name)
    return d


def one_error_line(p: subprocess.CompletedProcess) -> str:
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and lines[-1].startswith("error: "), p.stderr[-2000:]
    return lines[-1]


@pytest.mark.parametrize(
    "body, line, what",
    [
        ("from tradeconsole.core.strategies import Strategy\n\nclass X(Strategy)\n    pass\n", 3, "syntax error"),
        ("from tradeconsole.core.strategies import Strategy\nimport math\n\nVALUE = 1 / 0\n", 4, "ZeroDivisionError"),
        (
            "from tradeconsole.core.strategies import Side, Strategy, ta\n\n\nclass X(Strategy):\n    name = 'x'\n"
            "    default_interval = '1h'\n    indicators = {'q': ta('no_such_indicator')}\n\n"
            "    def entry_signal(self, c, ind):\n        return None\n",
            7,
            "pandas-ta has no indicator",
        ),
        (
            "from tradeconsole.core.strategies import Side, Strategy, custom\n\n\nclass X(Strategy):\n    name = 'x'\n"
            "    default_interval = '1h'\n    indicators = {'q': custom(lambda df: df.close.iloc[:3])}\n\n"
            "    def entry_signal(self, c, ind):\n        return None\n",
            4,
            "one value per candle",
        ),
        ("x = 1\n", None, "defines no Strategy subclass"),
    ],
)
def test_a_bad_strategy_file_is_one_error_naming_file_and_line(tmp_path, data_3m, body, line, what):
    f = tmp_path / "bad_strat.py"
    f.write_text(body)
    for cmd in (
        ["backtest", "--strategy-path", str(f), "--strategy", "basic", "--data", str(data_3m)],
        ["run", "--headless", "--strategy-path", str(f), "--replay", str(data_3m)],
        ["strategy", "list", "--strategy-path", str(f)],
    ):
        err = one_error_line(cli(*cmd))
        assert f"{f}{f':{line}' if line else ''}:" in err and what in err, err


def test_loaded_strategies_are_the_choices_and_the_list(data_3m):
    h = cli("backtest", "--help", "--strategy-path", str(STRATS))
    assert h.returncode == 0 and "bollinger_trail" in h.stdout and "peeking" in h.stdout
    unknown = one_error_line(cli("backtest", "--strategy", "bollinger_trail", "--data", str(data_3m)))
    assert "invalid choice" in unknown and "basic" in unknown  # not loaded without --strategy-path
    lst = cli("strategy", "list", "--strategy-path", str(STRATS / "bollinger_trail.py"), "--json")
    rows = {r["name"]: r for r in json.loads(lst.stdout)}
    assert set(rows) == {"basic", "engulfing", "bollinger_trail"}
    bt = rows["bollinger_trail"]
    assert bt["intervals"] == ["1h"] and bt["indicators"] == ["bb"] and bt["source"].endswith("bollinger_trail.py")
    assert {"name": "trail_pct", "default": 0.01, "low": 0.001, "high": 0.2} in bt["params"]
    text = cli("strategy", "list", "--strategy-path", str(STRATS)).stdout
    assert "trail_pct = 0.01  [0.001 .. 0.2]" in text and "signal_time_exit" in text


def test_user_dir_and_entry_points_are_found_and_broken_ones_skipped_visibly(tmp_path, data_3m):
    data_dir = Path(os.environ["TRADECONSOLE_DATA_DIR"])
    (data_dir / "strategies").mkdir(parents=True)
    shutil.copy(STRATS / "bollinger_trail.py", data_dir / "strategies")
    (data_dir / "strategies" / "broken.py").write_text("import nonexistent_module_xyz\n")
    site = tmp_path / "site"
    dist = site / "fake_strats-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-strats\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tradeconsole.strategies]\npacked = fake_strats:Packed\n")
    (site / "fake_strats.py").write_text(
        (STRATS / "peeking.py").read_text().replace('"peeking"', '"packed"').replace("class Peeking", "class Packed")
    )
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    p = cli("strategy", "list", "--json", env=env)
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r["source"] for r in json.loads(p.stdout)}
    assert rows["bollinger_trail"] == str(data_dir / "strategies" / "bollinger_trail.py")
    assert rows["packed"].startswith("entry point packed")
    assert f"warning: skipped {data_dir / 'strategies' / 'broken.py'}:1: ModuleNotFoundError" in p.stderr
    b = cli("backtest", "--strategy", "bollinger_trail", "--data", str(data_3m), "--json", env=env)
    assert b.returncode == 0 and json.loads(b.stdout)["trades"] > 0


def test_strategy_new_then_backtest_runs_with_no_other_step(data_5m):
    p = cli("strategy", "new", "mystrat")
    assert p.returncode == 0, p.stderr
    path = Path(p.stdout.strip())
    assert path.is_file() and path.parent == Path(os.environ["TRADECONSOLE_DATA_DIR"]) / "strategies"
    b = cli("backtest", "--strategy-path", str(path), "--strategy", "mystrat", "--data", str(data_5m))
    assert b.returncode == 0, b.stderr[-2000:]
    assert "mystrat on ETHUSDT 5m" in b.stdout and "Round trips" in b.stdout
    assert "never passed `tradeconsole strategy check mystrat`" in b.stdout
    j = json.loads(cli("backtest", "--strategy", "mystrat", "--data", str(data_5m), "--json").stdout)
    reasons = {f["reason"] for f in j["fills"]}
    assert j["trades"] > 10 and {"entry_long", "entry_short"} <= reasons
    again = one_error_line(cli("strategy", "new", "mystrat"))
    assert "exists" in again and "--force" in again
    assert "built-in" in one_error_line(cli("strategy", "new", "basic"))


def check(name: str, data: Path) -> subprocess.CompletedProcess:
    return cli("strategy", "check", name, "--strategy-path", str(STRATS), "--data", str(data), "--live-bars", "2160")


def test_check_passes_honest_strategies_and_backtests_say_so(data_3m):
    before = cli(
        "backtest", "--strategy-path", str(STRATS), "--strategy", "bollinger_trail", "--data", str(data_3m), "--json"
    )
    assert "never passed" in json.loads(before.stdout)["strategy_check"]
    for name in ("bollinger_trail", "signal_time_exit"):
        p = check(name, data_3m)
        assert p.returncode == 0, p.stdout + p.stderr[-2000:]
        assert p.stdout.count("PASS") == 3 and "FAIL" not in p.stdout
        assert "2160 candles through the live path" in p.stdout
    after = cli(
        "backtest", "--strategy-path", str(STRATS), "--strategy", "bollinger_trail", "--data", str(data_3m), "--json"
    )
    assert json.loads(after.stdout)["strategy_check"].startswith("passed ")


def test_check_catches_the_peeking_strategy_and_names_the_bar(data_3m):
    p = check("peeking", data_3m)
    assert p.returncode == 1, p.stdout + p.stderr[-2000:]
    look = next(x for x in p.stdout.splitlines() if "look-ahead" in x)
    assert look.strip().startswith("FAIL  look-ahead at bar ")
    bar = int(look.split("at bar ")[1].split()[0])
    assert 0 < bar < 2160 and "nxt = nan instead of" in look
    assert "FAIL  live == backtest at bar" in p.stdout
    assert "a check FAILED" in p.stdout


def test_check_catches_a_warm_up_too_short(tmp_path, data_3m):
    f = tmp_path / "short_warmup.py"
    f.write_text(
        (STRATS / "signal_time_exit.py")
        .read_text()
        .replace("startup_candle_count = 400", "startup_candle_count = 30")
        .replace('"signal_time_exit"', '"short_warmup"')
    )
    p = cli(
        "strategy", "check", "short_warmup", "--strategy-path", str(f), "--data", str(data_3m), "--live-bars", "200"
    )
    assert p.returncode == 1
    assert "FAIL  warm-up at bar " in p.stdout and "raise startup_candle_count" in p.stdout


@pytest.mark.parametrize(
    "name, modes",
    [
        ("bollinger_trail", ("realistic", "seed")),
        ("signal_time_exit", ("realistic", "seed")),
        ("peeking", ("realistic",)),
    ],
)
def test_headless_replay_fills_equal_the_backtest(data_3m, name, modes):
    for mode in modes:
        common = ["--strategy-path", str(STRATS), "--strategy", name, "--mode", mode, "--json"]
        h = cli("run", "--headless", "--replay", str(data_3m), "--speed", "max", *common)
        b = cli("backtest", "--data", str(data_3m), *common)
        assert h.returncode == 0 and b.returncode == 0, h.stderr[-1500:] + b.stderr[-1500:]
        live, bt = json.loads(h.stdout), json.loads(b.stdout)
        if name == "peeking":
            # a strategy reading the next candle cannot be traded live: the replay cannot see
            # the future, so its fills differ from the backtest's (what `strategy check` names)
            assert live["fills"] != bt["fills"] and bt["final_equity"] > 2 * live["final_equity"]
            continue
        # same fills; a price read from a windowed indicator (a Bollinger band as the target) may
        # differ in its last digits: pandas' rolling sums round differently over 60 candles than
        # over the whole history (strategy check's tolerance is 1e-6; here 1e-10 relative)
        assert len(live["fills"]) == len(bt["fills"]) > 20, mode
        for a, b in zip(live["fills"], bt["fills"]):
            assert (a["time"], a["side"], a["reason"]) == (b["time"], b["side"], b["reason"]), mode
            for k in ("price", "qty", "fee"):
                assert a[k] == pytest.approx(b[k], rel=1e-10), (mode, k)
        reasons = {f["reason"] for f in bt["fills"]}
        if name == "signal_time_exit":
            assert {"exit_signal", "time_exit", "stop_loss"} <= reasons
        else:
            assert "stop_loss" in reasons and "take_profit" in reasons


def test_live_trading_refuses_exits_the_live_broker_cannot_place():
    env = {"BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": "s" * 64}
    p = cli(
        "run",
        "--headless",
        "--testnet",
        "--confirm",
        "ETHUSDT",
        "--strategy-path",
        str(STRATS),
        "--strategy",
        "signal_time_exit",
        env=env,
        timeout=60,
    )
    err = one_error_line(p)
    assert "the strategy 'signal_time_exit' declares" in err and "a time exit (max_bars_in_trade)" in err
    assert "exit signals" in err and "risk sizing" in err and "k" * 64 not in p.stderr
