"""``Backtest``: the one backtest entry point (CLI, console screen, optimiser, tests).

The seed numbers are the research backtests' (tests/backtest/test_seed_reproduction.py runs them
through the CLI); here they must come out of the facade itself, and the facade must give exactly
what the hand-assembled run (``window_with_warmup`` + ``run_backtest``) gives.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tradeconsole import Backtest, BacktestOutcome
from tradeconsole.backtest.data import DataError, load_candles, window_with_warmup
from tradeconsole.backtest.metrics import compute_metrics
from tradeconsole.backtest.optimize.evaluate import comparable
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.broker import BrokerSettings
from tradeconsole.core.domain import parse_utc_ms
from tradeconsole.core.strategies import make_strategy


@pytest.mark.parametrize(
    "strategy,interval,fill_model,trades,final",
    [
        ("basic", "5m", "seed", 105, 10_873.56),
        ("engulfing", "1h", "seed", 92, 9_656.00),
        ("basic", "5m", "realistic", 31, 8_346.72),
        ("engulfing", "1h", "realistic", 22, 7_703.46),
    ],
)
def test_seed_parity_through_the_facade(data_5m, data_1h, strategy, interval, fill_model, trades, final):
    data = data_5m if interval == "5m" else data_1h
    out = Backtest(data, strategy, fill_model=fill_model).run()
    assert isinstance(out, BacktestOutcome)
    assert len(out.trades) == out.metrics["trades"] == trades
    assert out.metrics["final_equity"] == pytest.approx(final, abs=0.005)
    assert out.equity.iloc[-1] == pytest.approx(out.metrics["final_equity"])
    assert out.metrics["interval"] == interval and out.metrics["symbol"] == "ETHUSDT"  # from the data's layout
    assert "candles from" in out.metrics["data"]


def test_a_window_equals_the_hand_assembled_run(data_1h, candles_1h):
    start, end = "2022-03-01", "2022-07-01"
    settings = BrokerSettings(initial_cash=5_000.0, fee_rate=0.0005, leverage=2.0, slippage_bps=3.0)
    upto, warmup = window_with_warmup(candles_1h, parse_utc_ms(start), parse_utc_ms(end))
    want = compute_metrics(
        run_backtest(
            upto,
            make_strategy("engulfing", rsi_oversold=35),
            interval="1h",
            fill_model="realistic",
            settings=settings,
            warmup=warmup,
        )
    )
    by_path = Backtest(
        data_1h,
        "engulfing",
        params={"rsi_oversold": 35},
        cash=5_000.0,
        fee=0.0005,
        leverage=2.0,
        slippage_bps=3.0,
        start=start,
        end=end,
    ).run()
    by_arrays = Backtest(
        candles_1h,
        "engulfing",
        params={"rsi_oversold": 35},
        settings=settings,
        start=parse_utc_ms(start),
        end=parse_utc_ms(end),
    ).run()
    assert want["bars"] == (31 + 30 + 31 + 30) * 24 and want["trades"] > 0
    assert comparable(by_arrays.metrics) == comparable(want)  # no "data" key: it did not load the data
    assert {k: v for k, v in comparable(by_path.metrics).items() if k != "data"} == comparable(want)


def test_an_explicit_warmup_is_the_optimisers_fold(candles_1h):
    head = candles_1h.take(slice(0, 3000))
    want = compute_metrics(
        run_backtest(head, make_strategy("engulfing"), interval="1h", fill_model="seed", warmup=1000)
    )
    got = Backtest(head, "engulfing", fill_model="seed", warmup=1000).run().metrics
    assert comparable(got) == comparable(want) and got["bars"] == 2000


def test_the_same_facade_as_the_cli(data_1h):
    """`tradeconsole backtest --json` prints what Backtest(...).run().metrics holds."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradeconsole.tui.cli",
            "backtest",
            "--strategy",
            "engulfing",
            "--data",
            str(data_1h),
            "--from",
            "2022-06-01",
            "--fill-model",
            "seed",
            "--fee",
            "0.0006",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    cli = json.loads(out.stdout)
    mine = json.loads(Backtest(data_1h, "engulfing", fill_model="seed", fee=0.0006, start="2022-06-01").run().to_json())
    drop = {"run_id", "strategy_check"}
    assert {k: v for k, v in cli.items() if k not in drop} == {k: v for k, v in mine.items() if k not in drop}


def test_progress_cancels(candles_1h):
    calls: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> bool:
        calls.append((done, total))
        return done < 2000

    # a subscriber keeps the run on the per-bar path, which asks every few thousand bars
    out = Backtest(candles_1h, "engulfing").run(progress=progress, publish=lambda e: None)
    assert out.cancelled
    assert 2000 <= len(out.equity) < len(candles_1h) and calls[-1][0] >= 2000


def test_progress_cancels_the_compiled_run_before_it_starts(candles_1h):
    """Without a subscriber the compiled loop runs the whole history in milliseconds: it asks
    once before (False cancels after the first bar, as the per-bar loop would) and once at the end."""
    calls: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> bool:
        calls.append((done, total))
        return False

    out = Backtest(candles_1h, "engulfing").run(progress=progress)
    assert out.cancelled and len(out.equity) == 1 and calls == [(0, len(candles_1h))]
    full = Backtest(candles_1h, "engulfing").run(progress=lambda d, t: calls.append((d, t)) is None)
    assert not full.cancelled and calls[-1] == (len(candles_1h), len(candles_1h))


def test_events_go_to_the_writer_in_order(candles_1h):
    events = []
    out = Backtest(candles_1h.take(slice(0, 1500)), "engulfing").run(publish=events.append, run_id="bt-test")
    assert out.result.run_id == "bt-test" and events and {e.run_id for e in events} == {"bt-test"}
    assert {e.mode for e in events} == {"backtest"}  # mode is the trading mode; the fill model is not in it
    fills = [e.fill for e in events if e.type == "fill"]
    assert fills == out.result.fills


def test_mistakes_surface_before_any_data_is_read(tmp_path):
    missing = tmp_path / "nothing-here"
    with pytest.raises(ValueError, match="stop_loss_pct"):
        Backtest(missing, "engulfing", params={"stop_loss_pct": 2.0})
    with pytest.raises(ValueError, match="leverage"):
        Backtest(missing, "engulfing", leverage=500)
    with pytest.raises(ValueError, match="fill model"):
        Backtest(missing, "engulfing", fill_model="optimistic")
    with pytest.raises(ValueError, match="end must be after start"):
        Backtest(missing, "engulfing", start="2022-06-01", end="2022-05-01")
    with pytest.raises(ValueError, match="already built"):
        Backtest(missing, make_strategy("engulfing"), params={"rsi_oversold": 30})
    bt = Backtest(missing, "engulfing")  # nothing read yet
    with pytest.raises(DataError):
        bt.run()


def test_an_empty_window_says_what_the_data_covers(candles_1h):
    with pytest.raises(DataError, match="no candles in the requested date range: the data covers 2022-01-01"):
        Backtest(candles_1h, "engulfing", start="2030-01-01").prepare()


def test_report_is_the_cli_text_report(data_1h):
    out = Backtest(load_candles(data_1h, interval="1h")[0], "engulfing", fill_model="seed").run()
    text = out.report()
    assert "Final equity" in text and "9,656.00" in text and "fill model seed" in text


def test_the_command_without_kafka_imports_no_infra(data_1h):
    """`backtest` composes infra (journal, shipper, Kafka) only for --kafka, in the tui layer; a
    plain run loads none of it (and the backtest package never imports infra at all)."""
    code = (
        "import sys\nfrom tradeconsole.tui.cli import main\n"
        f"rc = main(['backtest', '--strategy', 'engulfing', '--data', {str(data_1h)!r}, '--to', '2022-03-01', "
        "'--json'])\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('tradeconsole.infra', 'textual', 'kafka', "
        "'elasticsearch')))\n"
        "print(rc, bad, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stderr.strip().splitlines()[-1] == "0 []", out.stderr[-2000:]
