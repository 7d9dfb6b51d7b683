"""``tradeconsole backtest``: load history, run, report.

Everything the user asked for is checked before the run starts (parameters against the
strategy's declared ranges, the broker settings, the data files being text or Parquet, the
``--trades-csv`` destination being writable), so a mistake never costs a whole backtest first.
Mistakes raise ``tradeconsole.core.errors.UserError``; ``tradeconsole.tui.cli.main`` prints them as one
``error:`` line. The run itself is ``tradeconsole.backtest.facade.Backtest``, the same object the
console's backtest screen and the optimiser use.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tradeconsole.backtest.inputs import check_data_files, check_input_path
from tradeconsole.core.errors import UserError, clip

if TYPE_CHECKING:
    from tradeconsole.core.events import Event

__all__ = ["main", "parse_params"]


def parse_params(pairs: list[str]) -> dict[str, float]:
    """``["rsi_oversold=25"]`` -> ``{"rsi_oversold": 25.0}``; anything else is a UserError (exit 2).
    Ranges are checked by the strategy's parameter declarations (``tradeconsole.core.strategies.base.Param``)."""
    out: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--param expects NAME=VALUE, got {clip(pair)!r}")
        try:
            v = float(value)
        except ValueError:
            raise UserError(f"--param {clip(name.strip())}: {clip(value)!r} is not a number") from None
        if not math.isfinite(v):
            raise UserError(f"--param {clip(name.strip())}: {clip(value)!r} is not a finite number")
        out[name.strip()] = v
    return out


def check_output_file(path: str, option: str) -> None:
    """Refuse an output path that cannot be written, before the run instead of after it."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise UserError(f"{option} {clip(path, 200)}: is a directory")
    if not parent.is_dir():
        raise UserError(f"{option} {clip(path, 200)}: directory {clip(parent, 200)} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UserError(f"{option} {clip(path, 200)}: not writable (permission denied)")


def main(args: argparse.Namespace, publish: Callable[[Event], None] | None = None) -> int:
    """Run one backtest as the options describe and print its report.

    ``publish`` is the event writer: it receives every engine event of the run and, last, the
    run's ``BacktestRunEvent`` (``tradeconsole backtest --kafka`` hands in the journal that its
    shipper delivers from, see ``tradeconsole.tui.commands.backtest``). This package never
    imports ``infra``: where events go is decided by the caller."""
    from tradeconsole.backtest.data import DataError
    from tradeconsole.backtest.facade import Backtest
    from tradeconsole.backtest.runner import tty_progress
    from tradeconsole.core.domain import parse_utc_ms
    from tradeconsole.core.strategies import STRATEGIES

    interval = args.interval or STRATEGIES[args.strategy].default_interval
    params = parse_params(args.param)
    if args.stop_loss is not None:
        params["stop_loss_pct"] = args.stop_loss
    if args.take_profit is not None:
        params["take_profit_pct"] = args.take_profit
    start = parse_utc_ms(args.date_from) if args.date_from else None
    end = parse_utc_ms(args.date_to) if args.date_to else None
    if start is not None and end is not None and end <= start:
        raise UserError("--to must be after --from")
    if args.data:
        check_input_path(args.data, "--data")
        source, symbol = args.data, symbol_of(args.data)
    else:
        from tradeconsole.core.paths import history_cache_dir

        symbol = args.symbol.upper()
        source = str(history_cache_dir(symbol, interval, args.market))
    expected_by = f"--interval is {interval}" if args.interval else f"the strategy {args.strategy!r} runs on {interval}"
    try:
        bt = Backtest(
            source,
            args.strategy,
            params=params,
            fill_model=args.fill_model,
            cash=args.cash,
            fee=args.fee,
            slippage_bps=args.slippage_bps,
            funding_rate_8h=args.funding_rate,
            leverage=args.leverage,
            symbol=symbol,
            interval=interval,
            start=start,
            end=end,
            skip_bad_rows=args.skip_bad_rows,
            expected_by=expected_by,
            cache=not args.no_cache,
        )
    except ValueError as exc:
        msg = str(exc)
        # name the flag the user typed, not the parameter it sets
        for flag, name in (("--stop-loss", "stop_loss_pct"), ("--take-profit", "take_profit_pct")):
            if getattr(args, flag[2:].replace("-", "_")) is not None and msg.startswith(name):
                msg = msg.replace(name, flag)
        raise UserError(msg) from None
    if args.trades_csv:
        check_output_file(args.trades_csv, "--trades-csv")
    check_data_files(source)
    try:
        bt.prepare()
    except DataError as exc:
        if args.data:
            raise
        raise UserError(
            f"{exc}; fill the cache with `tradeconsole data download {symbol} {interval} --from DATE "
            f"--market {args.market}`"
        ) from None
    except UnicodeDecodeError as exc:  # binary bytes past the part check_data_files looked at
        raise UserError(
            f"{clip(source, 200)}: binary data in a CSV file ({exc.reason} at byte {exc.start} of a read block)"
        ) from None
    report = bt.data_report
    assert report is not None  # loaded from a path
    for line in report.skipped_rows[:20]:
        print(f"warning: skipped {clip(line, 300)}", file=sys.stderr)
    for after, nxt, missing in report.gaps[:20]:
        from tradeconsole.core.domain import iso_ms

        print(f"warning: gap of {missing} candle(s) between {iso_ms(after)} and {iso_ms(nxt)}", file=sys.stderr)

    progress = tty_progress() if bt.bars > 20_000 else None
    from tradeconsole.core.indicators import IndicatorPlanError

    try:
        outcome = bt.run(progress=progress, publish=publish)
    except IndicatorPlanError as exc:  # a declared indicator that cannot run on this data
        raise UserError(f"strategy {args.strategy!r}: {exc}") from None
    from tradeconsole.backtest.report import plot_result, plot_stream
    from tradeconsole.backtest.strategy_check import check_status

    result, metrics = outcome.result, outcome.metrics
    # a strategy never proven free of look-ahead and equal live says so next to its numbers
    metrics["strategy_check"] = check_status(STRATEGIES[args.strategy])
    if publish is not None:
        from tradeconsole.core.events import BacktestRunEvent

        end_time = int(result.open_time[-1])
        publish(
            BacktestRunEvent(
                event_id=f"{result.run_id}:backtest_run",
                time=end_time,
                run_id=result.run_id,
                mode="backtest",
                symbol=symbol,
                interval=interval,
                strategy=bt.strategy.name,
                metrics=metrics,
            )
        )
    if args.trades_csv:
        n = outcome.write_trades_csv(args.trades_csv)
        print(f"wrote {n} round trips to {args.trades_csv}", file=sys.stderr)
    if args.json:
        print(outcome.to_json())
    else:
        print(outcome.report())
        print(f"\n  Data                 {report.summary()}")
        print(f"  Strategy check       {metrics['strategy_check']}")
    if args.plot:
        # never on stdout next to --json: `... --json --plot | jq` must get JSON only
        stream = plot_stream(json_on_stdout=args.json)
        print(plot_result(result, color=_color_ok(stream)), file=stream)
    return 0


def _color_ok(stream: object) -> bool:
    """Colours only on a terminal and only without NO_COLOR (https://no-color.org: set and not
    empty disables colour)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def symbol_of(path: str) -> str:
    """The symbol the data names (file names such as ETHUSDT-5m-2022-08.csv, or an
    .../ETHUSDT/5m/ layout: ``tradeconsole.backtest.data.data_symbol``); ETHUSDT when it names none."""
    from tradeconsole.backtest.data import data_symbol

    try:
        held, _ = data_symbol(path)
    except ValueError as exc:  # a directory mixing symbols
        raise UserError(str(exc)) from None
    return held or "ETHUSDT"
