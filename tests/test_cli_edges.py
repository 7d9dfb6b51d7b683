"""Rough edges found by a review run as a user: each mistake names the user's own words (the
flag typed, the file given, the data's real range) and exits 2 without touching the disk."""

from __future__ import annotations

import pytest

from tests.test_cli_errors import assert_one_error, run_inproc


def test_journal_that_is_a_directory_or_in_a_missing_folder(capsys, tmp_path, data_1h):
    code, out, err = run_inproc(capsys, ["run", "--headless", "--replay", str(data_1h), "--journal", str(tmp_path)])
    assert_one_error(code, out, err, 2, "is a directory")
    missing = tmp_path / "no-such-folder" / "j.sqlite"
    code, out, err = run_inproc(capsys, ["run", "--headless", "--replay", str(data_1h), "--journal", str(missing)])
    assert_one_error(code, out, err, 2, "does not exist")
    assert not missing.parent.exists()  # nothing created on a typo


def test_a_non_candle_file_is_named(capsys, tmp_path):
    f = tmp_path / "passwd"
    f.write_text("root:x:0:0:root:/root:/bin/bash\n")
    code, out, err = run_inproc(capsys, ["backtest", "--strategy", "basic", "--data", str(f)])
    assert_one_error(code, out, err, 2, str(f))


def test_empty_window_says_what_the_data_covers(capsys, data_5m):
    code, out, err = run_inproc(
        capsys, ["backtest", "--strategy", "basic", "--data", str(data_5m), "--from", "2030-01-01"]
    )
    assert_one_error(code, out, err, 2, "the data covers 2022-08-01T00:00 to 2023-01-31T23:55 UTC")


@pytest.mark.parametrize(("flag", "value"), [("--stop-loss", "2"), ("--take-profit", "-1")])
def test_level_flags_are_named_as_typed(capsys, data_5m, flag, value):
    code, out, err = run_inproc(capsys, ["backtest", "--strategy", "basic", "--data", str(data_5m), flag, value])
    assert_one_error(code, out, err, 2, f"{flag}={float(value):g} is out of range")


def test_root_help_shows_plain_metavars(capsys):
    from tradeconsole.tui.cli import build_parser

    text = build_parser().format_help()
    assert "CONSOLE__" not in text and "--symbol SYMBOL" in text


def test_backtest_refuses_a_directory_mixing_symbols(capsys, tmp_path, data_1h):
    """The report and exports are labelled with the data's symbol: a folder holding two symbols
    has no one label, and one symbol's prices are never reported as another's."""
    import shutil

    for f in sorted(data_1h.iterdir())[:2]:
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(sorted(data_1h.iterdir())[2], tmp_path / "BTCUSDT-1h-2022-03.csv")
    code, out, err = run_inproc(capsys, ["backtest", "--strategy", "engulfing", "--data", str(tmp_path)])
    assert_one_error(code, out, err, 2, "mixes data of several symbols (BTCUSDT, ETHUSDT)")
