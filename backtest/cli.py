"""``tradeconsole backtest``: load history, run, report."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "parse_params"]


def parse_params(pairs: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --param expects NAME=VALUE, got {pair!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"error: --param {name}: {value!r} is not a number") from None
    return out


def main(args: argparse.Namespace) -> int:
    from backtest.data import DataError, load_candles, window_with_warmup
    from backtest.runner import run_backtest, tty_progress
    from core.broker import BrokerSettings
    from core.strategies import STRATEGIES, make_strategy

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
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.data:
        source, symbol = args.data, _symbol_from_path(args.data)
    else:
        from infra.paths import history_cache_dir

        symbol = args.symbol.upper()
        source = str(history_cache_dir(symbol, interval, args.market))
    try:
        expected_by = (f"--interval is {interval}" if args.interval
                       else f"the strategy {args.strategy!r} runs on {interval}")
        candles, report = load_candles(source, interval=interval, skip_bad_rows=args.skip_bad_rows,
                                       expected_by=expected_by)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if not args.data:
            print(f"hint: fill the cache with `tradeconsole data download {symbol} {interval} --from DATE "
                  f"--market {args.market}`", file=sys.stderr)
        return 2
    from core.domain import parse_utc_ms

    try:
        start = parse_utc_ms(args.date_from) if args.date_from else None
        end = parse_utc_ms(args.date_to) if args.date_to else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warmup = 0
    if start is not None or end is not None:
        # --from/--to select the traded window; earlier candles warm the indicators up
        candles, warmup = window_with_warmup(candles, start, end)
        if len(candles) <= warmup:
            print("error: no candles in the requested date range", file=sys.stderr)
            return 2
    for line in report.skipped_rows[:20]:
        print(f"warning: skipped {line}", file=sys.stderr)
    for after, nxt, missing in report.gaps[:20]:
        from core.domain import iso_ms

        print(f"warning: gap of {missing} candle(s) between {iso_ms(after)} and {iso_ms(nxt)}", file=sys.stderr)

    publish = sink = None
    if getattr(args, "kafka", None):
        from infra.kafka_sink import KafkaSink

        sink = KafkaSink(args.kafka)
        publish = sink.publish
    progress = tty_progress() if len(candles) > 20_000 else None
    result = run_backtest(candles, strategy, symbol=symbol, interval=interval, model=args.mode,
                          settings=settings, publish=publish, progress=progress, warmup=warmup)
    from backtest.metrics import compute_metrics
    from backtest.report import plot_result, text_report, to_json, write_trades_csv

    metrics = compute_metrics(result)
    metrics["data"] = report.summary()
    if sink is not None:
        from core.events import BacktestRunEvent

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
    if args.plot:
        print(plot_result(result))
    return 0


def _symbol_from_path(path: str) -> str:
    """Best guess of the symbol from a public-data path such as .../ETHUSDT/5m/ (default ETHUSDT)."""
    import re
    from pathlib import Path

    for part in reversed(Path(path).resolve().parts):
        m = re.match(r"^([A-Z0-9]{5,20})(?:-|$)", part)
        if m and not m.group(1).isdigit():
            return m.group(1)
    return "ETHUSDT"
