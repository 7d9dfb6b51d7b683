"""The ``tradeconsole`` command.

Every subcommand's handler is named as ``"module:function"`` and imported only when that
subcommand runs, so ``tradeconsole backtest`` never pays for Textual, Kafka or Binance imports and
the console never pays for pandas-ta until it needs it.

    tradeconsole                      the Textual console (paper trading by default)
    tradeconsole backtest ...         replay history through a strategy and report
    tradeconsole run --headless ...   the engine without UI (servers, systemd)
    tradeconsole data download ...    fill the local history cache from Binance
    tradeconsole forward ...          Kafka -> Elasticsearch forwarder
    tradeconsole kibana import ...    import the Kibana data views and dashboard
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def _speed(value: str) -> float | None:
    if value.lower() in ("max", "inf", "0"):
        return None
    try:
        v = float(value.rstrip("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a number like 60 or 'max', not {value!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("speed must be positive")
    return v


def _add_engine_options(p: argparse.ArgumentParser, *, headless: bool) -> None:
    p.add_argument("--strategy", action="append", dest="strategies", metavar="NAME",
                   help="strategy to run (basic, engulfing); repeat for several, e.g. "
                        "--strategy basic --strategy engulfing:1h. Default: basic")
    p.add_argument("--symbol", default="ETHUSDT", help="symbol (default ETHUSDT)")
    p.add_argument("--interval", default=None, help="kline interval (default: the strategy's own)")
    p.add_argument("--market", choices=("spot", "futures"), default="futures",
                   help="market data source for live candles (default futures)")
    p.add_argument("--replay", metavar="PATH", help="replay a history file/directory instead of live data")
    p.add_argument("--speed", type=_speed, default=None if headless else 60.0, metavar="N|max",
                   help="replay speed: candles per real interval (60 = an hour of 1m data per minute) "
                        "or 'max'")
    p.add_argument("--mode", choices=("seed", "realistic"), default="realistic", help="fill model")
    p.add_argument("--cash", type=float, default=10_000.0, help="paper starting balance (USDT)")
    p.add_argument("--journal", metavar="PATH", help="journal database (default: in the data directory)")
    p.add_argument("--config", metavar="PATH", help="config file (TOML, mode 0600 if it holds keys)")
    p.add_argument("--live", action="store_true", help="trade real money on Binance USD-M futures")
    p.add_argument("--testnet", action="store_true", help="trade on the Binance futures testnet")
    p.add_argument("--kafka", metavar="BOOTSTRAP", help="also publish every event to Kafka")
    p.add_argument("--elasticsearch", metavar="URL", help="also index events directly into Elasticsearch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradeconsole",
        description="Keyboard-driven trading console for Binance USD-M futures (paper by default).",
    )
    _add_engine_options(parser, headless=False)
    parser.set_defaults(handler="tui.app:main")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # -- backtest
    bt = sub.add_parser("backtest", help="replay history through a strategy and report",
                        description="Replay history through a strategy with the simulated futures broker.")
    bt.add_argument("--strategy", required=True, choices=("basic", "engulfing"))
    src = bt.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="PATH", help="CSV/Parquet file or directory of them")
    src.add_argument("--symbol", help="read the local history cache for this symbol (see `data download`)")
    bt.add_argument("--market", choices=("spot", "futures"), default="spot", help="cache market (with --symbol)")
    bt.add_argument("--interval", help="kline interval (default: the strategy's own)")
    bt.add_argument("--from", dest="date_from", metavar="DATE", help="first day (UTC), e.g. 2022-09-01")
    bt.add_argument("--to", dest="date_to", metavar="DATE", help="end (exclusive, UTC), e.g. 2022-12-01")
    bt.add_argument("--mode", choices=("seed", "realistic"), default="realistic", help="fill model (default realistic)")
    bt.add_argument("--cash", type=float, default=10_000.0)
    bt.add_argument("--leverage", type=float, default=1.0)
    bt.add_argument("--fee", type=float, default=0.0004, help="taker fee as a fraction (0.0004 = 0.04%%)")
    bt.add_argument("--slippage-bps", type=float, default=0.0)
    bt.add_argument("--funding-rate", type=float, default=0.0, help="funding rate per 8h (fraction)")
    bt.add_argument("--stop-loss", type=float, default=None, help="stop-loss fraction (default 0.015)")
    bt.add_argument("--take-profit", type=float, default=None, help="take-profit fraction (default 0.03)")
    bt.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a strategy parameter, e.g. --param rsi_oversold=25")
    bt.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed rows instead of failing")
    bt.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    bt.add_argument("--trades-csv", metavar="FILE", help="write the closed round trips to a CSV file")
    bt.add_argument("--plot", action="store_true", help="draw equity and price with fills in the terminal")
    bt.add_argument("--kafka", metavar="BOOTSTRAP", help="publish the run's events to Kafka")
    bt.set_defaults(handler="backtest.cli:main")

    # -- run (headless)
    run = sub.add_parser("run", help="run the engine without the UI",
                         description="Run strategies headless, with structured logs.")
    run.add_argument("--headless", action="store_true", help="required: run without the Textual UI")
    _add_engine_options(run, headless=True)
    run.add_argument("--json", action="store_true",
                     help="with --replay: print a summary like `backtest --json` when the data ends")
    run.add_argument("--confirm", metavar="SYMBOL", help="non-interactive live confirmation (type the symbol)")
    run.set_defaults(handler="tui.headless:main")

    # -- data download
    data = sub.add_parser("data", help="history cache")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dl = dsub.add_parser("download", help="download klines into the local cache (resumable)")
    dl.add_argument("symbol")
    dl.add_argument("interval")
    dl.add_argument("--from", dest="date_from", required=True, metavar="DATE")
    dl.add_argument("--to", dest="date_to", metavar="DATE")
    dl.add_argument("--market", choices=("spot", "futures"), default="spot")
    dl.add_argument("--config", metavar="PATH", help="config file (for [binance] endpoints)")
    dl.set_defaults(handler="infra.binance.download:cli_main")

    # -- forwarder
    fw = sub.add_parser("forward", help="consume Kafka topics into Elasticsearch")
    fw.add_argument("--kafka", required=True, metavar="BOOTSTRAP")
    fw.add_argument("--elasticsearch", required=True, metavar="URL")
    fw.add_argument("--group", default="tradeconsole-forwarder")
    fw.add_argument("--config", metavar="PATH")
    fw.set_defaults(handler="infra.forwarder:cli_main")

    # -- kibana
    kb = sub.add_parser("kibana", help="Kibana saved objects")
    ksub = kb.add_subparsers(dest="kibana_command", metavar="ACTION", required=True)
    ki = ksub.add_parser("import", help="import data views and the dashboard")
    ki.add_argument("--kibana", required=True, metavar="URL")
    ki.add_argument("--config", metavar="PATH")
    ki.set_defaults(handler="infra.kibana:cli_main")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module_name, func_name = args.handler.split(":")
    handler = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
