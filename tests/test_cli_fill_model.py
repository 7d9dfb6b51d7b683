"""One name per concept: the fill model is `--fill-model` on every command (`--mode` is its
deprecated alias: same values, one `warning:` line); `mode` is only the trading mode."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from tradeconsole.tui.cli import build_parser, main
from tradeconsole.tui.runtime import RuntimeOptions, options_from_args


def test_fill_model_flag_and_its_deprecated_alias_give_the_same_run(capsys, data_1h):
    args = ["backtest", "--strategy", "engulfing", "--data", str(data_1h), "--to", "2022-06-01", "--json"]
    assert main([*args, "--fill-model", "seed"]) == 0
    new = capsys.readouterr()
    assert main([*args, "--mode", "seed"]) == 0
    old = capsys.readouterr()
    assert "warning" not in new.err
    assert [line for line in old.err.splitlines() if line.startswith("warning:")] == [
        "warning: --mode is deprecated, use --fill-model (same values)"
    ]
    a, b = json.loads(new.out), json.loads(old.out)
    assert a["assumptions"]["fill_model"] == b["assumptions"]["fill_model"] == "seed"
    assert {k: v for k, v in a.items() if k != "run_id"} == {k: v for k, v in b.items() if k != "run_id"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--fill-model", "seed"],
        ["run", "--headless", "--fill-model", "seed"],
        ["backtest", "--strategy", "basic", "--data", "x", "--fill-model", "seed"],
        ["optimize", "--strategy", "basic", "--data", "x", "--fill-model", "seed"],
        ["strategy", "check", "basic", "--data", "x", "--fill-model", "seed"],
    ],
)
def test_every_command_names_it_fill_model(argv):
    ns = build_parser().parse_args(argv)
    assert ns.fill_model == "seed" and not hasattr(ns, "mode")
    assert "deprecated_options" not in vars(ns)


def test_a_bad_fill_model_is_one_error(capsys):
    assert main(["run", "--headless", "--fill-model", "optimistic"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "invalid choice" in err and "warning" not in err


def test_runtime_options_are_built_from_the_parsed_options_with_the_same_defaults():
    """`options_from_args` reads every engine option by name (no getattr defaults), and a bare
    `run --headless` gives RuntimeOptions' own defaults: the two declarations cannot drift."""
    opts = options_from_args(build_parser().parse_args(["run", "--headless"]))
    default = RuntimeOptions()
    for f in fields(RuntimeOptions):
        assert getattr(opts, f.name) == getattr(default, f.name), f.name
    given = options_from_args(
        build_parser().parse_args(
            [
                "run",
                "--headless",
                "--fill-model",
                "seed",
                "--cash",
                "500",
                "--strategy",
                "engulfing:1h",
                "--symbol",
                "btcusdt",
                "--kafka",
                "k:9092",
                "--elasticsearch",
                "http://es:9200",
            ]
        )
    )
    assert (given.fill_model, given.cash, given.strategies, given.symbol, given.kafka, given.elasticsearch) == (
        "seed",
        500.0,
        [("engulfing", "1h")],
        "BTCUSDT",
        "k:9092",
        "http://es:9200",
    )
