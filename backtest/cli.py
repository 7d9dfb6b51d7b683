"""``tradeconsole backtest``: load history, run, report.

Everything the user asked for is checked before the run starts (parameters against the
strategy's declared ranges, the broker settings, the data files being text or Parquet, the
``--trades-csv`` destination being writable), so a mistake never costs a whole backtest first.
Mistakes raise ``tradeconsole.tui.cli.UserError``; ``tradeconsole.tui.cli.main`` prints them as one ``error:`` line.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from tradeconsole.backtest.inputs import check_data_files, check_input_path

from tradeconsole.core.errors import UserError, clip

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


def main(args: argparse.Namespace) -> int:
    """Run one backtest as the options describe and print its report."""
    from tradeconsole.backtest.data import DataError, load_candles, window_with_warmup
    from tradeconsole.backtest.runner import run_backtest, tty_progress
    from tradeconsole.core.broker import BrokerSettings
    from tradeconsole.core.strategies import STRATEGIES, make_strategy

    interval = args.interval or STRATEGIES[args.strategy].default_interval
    params = parse_params(args.param)
    if args.stop_loss is not None:
        params["stop_loss_pct"] = args.stop_loss
    if args.take_profit is not None:
        params["take_profit_pct"] = args.take_profit
    try:
        strategy = make_strategy(args.strategy, **params)
        settings = BrokerSettings(initial_cash=args.cash, leverage=args.leverage, fee_rate=args.fee,
                                  slippage_bps=args.slippage_bps, funding_rate_8h=args.funding_rate)
    except ValueError as exc:
        msg = str(exc)
        # name the flag the user typed, not the parameter it sets
        for flag, name in (("--stop-loss", "stop_loss_pct"), ("--take-profit", "take_profit_pct")):
            if getattr(args, flag[2:].replace("-", "_")) is not None and msg.startswith(name):
                msg = msg.replace(name, flag)
        raise UserError(msg) from None
    if args.trades_csv:
        check_output_file(args.trades_csv, "--trades-csv")
    from tradeconsole.core.domain import parse_utc_ms

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
    check_data_files(source)
    expected_by = (f"--interval is {interval}" if args.interval
                   else f"the strategy {args.strategy!r} runs on {interval}")
    try:
        candles, report = load_candles(source, interval=interval, skip_bad_rows=args.skip_bad_rows,
                                       expected_by=expected_by, cache=not getattr(args, "no_cache", False))
    except DataError as exc:
        if args.data:
            raise
        raise UserError(f"{exc}; fill the cache with `tradeconsole data download {symbol} {interval} --from DATE "
                        f"--market {args.market}`") from None
    except UnicodeDecodeError as exc:  # binary bytes past the part check_data_files looked at
        raise UserError(f"{clip(source, 200)}: binary data in a CSV file ({exc.reason} at byte {exc.start} "
                        "of a read block)") from None
    warmup = 0
    if start is not None or end is not None:
        # --from/--to select the traded window; earlier candles warm the indicators up
        first, last = int(candles.open_time[0]), int(candles.open_time[-1])
        candles, warmup = window_with_warmup(candles, start, end)
        if len(candles) <= warmup:
            from tradeconsole.core.domain import iso_ms

            raise UserError(f"no candles in the requested date range: the data covers {iso_ms(first)[:16]} "
                            f"to {iso_ms(last)[:16]} UTC")
    for line in report.skipped_rows[:20]:
        print(f"warning: skipped {clip(line, 300)}", file=sys.stderr)
    for after, nxt, missing in report.gaps[:20]:
        from tradeconsole.core.domain import iso_ms

        print(f"warning: gap of {missing} candle(s) between {iso_ms(after)} and {iso_ms(nxt)}", file=sys.stderr)

    publish = sink = None
    if getattr(args, "kafka", None):
        from tradeconsole.infra.sinks.kafka import KafkaSink

        sink = KafkaSink(args.kafka)
        publish = sink.publish
    progress = tty_progress() if len(candles) > 20_000 else None
    from tradeconsole.core.indicators import IndicatorPlanError

    try:
        result = run_backtest(candles, strategy, symbol=symbol, interval=interval, model=args.mode,
                              settings=settings, publish=publish, progress=progress, warmup=warmup)
    except IndicatorPlanError as exc:  # a declared indicator that cannot run on this data
        raise UserError(f"strategy {args.strategy!r}: {exc}") from None
    from tradeconsole.backtest.metrics import compute_metrics
    from tradeconsole.backtest.report import plot_result, plot_stream, text_report, to_json, write_trades_csv

    metrics = compute_metrics(result)
    metrics["data"] = report.summary()
    from tradeconsole.backtest.strategy_check import check_status

    # a strategy never proven free of look-ahead and equal live says so next to its numbers
    metrics["strategy_check"] = check_status(STRATEGIES[args.strategy])
    if sink is not None:
        from tradeconsole.core.events import BacktestRunEvent

        end_time = int(result.open_time[-1])
        sink.publish(BacktestRunEvent(event_id=f"{result.run_id}:backtest_run", time=end_time, run_id=result.run_id,
                                      mode="backtest", symbol=symbol, interval=interval, strategy=strategy.name,
                                      metrics=metrics))
        sink.close()
    if args.trades_csv:
        n = write_trades_csv(result, args.trades_csv)
        print(f"wrote {n} round trips to {args.trades_csv}", file=sys.stderr)
    if args.json:
        print(to_json(metrics))
    else:
        print(text_report(metrics))
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
