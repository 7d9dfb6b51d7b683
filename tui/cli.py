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

One error path for the whole command line (``main``): handlers raise ``UserError`` for a
mistake in what the user asked (bad option, missing file, unsafe config: exit 2) and
``EnvironmentFailure`` for what the machine or the network refused (exit 1). ``main`` turns
either, and the known error types of the layers below (config, data, OS), into exactly one
``error: ...`` line on stderr; a traceback is printed only with ``--debug``. Values the user
typed are shortened in messages (``clip``), so a 20 MB token is never echoed back in full.
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from tradeconsole.backtest.inputs import check_data_files, check_input_path
from tradeconsole.core.errors import EnvironmentFailure, UserError, clip

__all__ = [
    "EnvironmentFailure",
    "UserError",
    "build_parser",
    "check_data_files",
    "check_engine_args",
    "check_input_path",
    "clip",
    "main",
    "number",
]


def package_version() -> str:
    """The installed distribution's version, looked up only when asked (``--version``):
    ``importlib.metadata`` and its scan of the installed packages cost every command ~40 ms."""
    try:
        from importlib.metadata import version as _pkg_version

        return _pkg_version("tradeconsole")
    except Exception:  # noqa: BLE001 - running from a checkout that was never installed
        return "0+unknown"


class _VersionAction(argparse.Action):
    """``--version``: argparse's version action with the version read at use, not at start-up."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        sys.stdout.write(f"tradeconsole {package_version()}\n")  # stdout, as argparse's own action
        parser.exit()


_LONG_TOKEN = re.compile(r"\S{121,}")


def _clip_message(msg: str) -> str:
    """Shorten every whitespace-free run over 120 characters (a token somebody else's message
    quoted in full) and cap the line: the last line of defence for ``clip``."""
    msg = _LONG_TOKEN.sub(lambda m: m.group() if "…(" in m.group() else clip(m.group()), " ".join(msg.split()))
    return clip(msg, 2000)


# ---------------------------------------------------------------------- argument types


def number(
    what: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Callable[[str], float]:
    """An argparse ``type`` that accepts only finite numbers inside the given range, so ``nan``,
    ``inf`` and nonsense like a negative cash balance are refused by the parser (exit 2) with the
    allowed range in the message, before any work starts."""
    lo_sym, hi_sym = ("<" if low_open else "<="), ("<" if high_open else "<=")
    allowed = " ".join(
        p
        for p in (
            f"{low:g} {lo_sym}" if low is not None else "",
            what,
            f"{hi_sym} {high:g}" if high is not None else "",
        )
        if p
    )

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, not {clip(text)!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{what} must be a finite number, not {clip(text)!r}")
        if integer and v != int(v):
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, not {clip(text)!r}")
        if (low is not None and (v < low or (low_open and v == low))) or (
            high is not None and (v > high or (high_open and v == high))
        ):
            raise argparse.ArgumentTypeError(f"{what}={clip(text)} is out of range: allowed {allowed}")
        return int(v) if integer else v

    parse.__name__ = what
    return parse


def _speed(value: str) -> float | None:
    """Replay speed: a positive finite multiple (``60``, ``600x``) or ``max``."""
    if value.lower() in ("max", "inf", "0"):
        return None
    try:
        v = float(value.rstrip("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a number like 60 or 'max', not {clip(value)!r}") from None
    if not math.isfinite(v) or not 0 < v <= 1e9:
        raise argparse.ArgumentTypeError(f"speed must be a finite number in (0, 1e9] or 'max', not {clip(value)!r}")
    return v


def _interval(value: str) -> str:
    """A Binance kline interval (``5m``, ``1h``...): refused by the parser when unknown."""
    from tradeconsole.core.domain import INTERVAL_MS

    if value not in INTERVAL_MS:
        raise argparse.ArgumentTypeError(f"unknown interval {clip(value)!r}; expected one of {', '.join(INTERVAL_MS)}")
    return value


def _date(value: str) -> str:
    """A UTC date or time (checked here, converted by the handler)."""
    from tradeconsole.core.domain import parse_utc_ms

    try:
        parse_utc_ms(value)
    except (ValueError, OverflowError, OSError):
        raise argparse.ArgumentTypeError(
            f"not a date: {clip(value)!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)"
        ) from None
    return value


def _symbol(value: str) -> str:
    """A Binance symbol such as ETHUSDT (letters and digits)."""
    if not re.fullmatch(r"[A-Za-z0-9]{2,30}", value):
        raise argparse.ArgumentTypeError(f"not a symbol: {clip(value)!r} (letters and digits, e.g. ETHUSDT)")
    return value.upper()


def _journal_path(value: str) -> str:
    """A journal file the user named: not a directory, and in a folder that exists (the default
    journal's folder is created for the user; a typed path with a missing folder is a typo)."""
    import os

    if os.path.isdir(value):
        raise argparse.ArgumentTypeError(
            f"{clip(value)!r} is a directory; give a file, e.g. {clip(value)}/journal.sqlite"
        )
    parent = os.path.dirname(value) or "."
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{clip(value)!r}: directory {clip(parent)!r} does not exist")
    return value


_CASH = number("cash", 0, 1e12, low_open=True)

#: the simulated broker's fill models (``tradeconsole.core.broker.FILL_MODELS``)
FILL_MODEL_CHOICES = ("seed", "realistic")


class _DeprecatedAlias(argparse.Action):
    """An old option name kept working (``--mode`` for ``--fill-model``): it stores into the new
    option's dest and records itself, so ``main`` prints one ``warning:`` line naming the new
    flag once the command line parsed (never in front of a parse error)."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, **kw: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        used = vars(namespace).setdefault("deprecated_options", [])
        if (option_string, self.new) not in used:
            used.append((option_string, self.new))


def _add_fill_model(add: Callable[..., None]) -> None:
    """``--fill-model {seed,realistic}`` (default realistic) and its deprecated alias ``--mode``.
    The trading mode (paper/testnet/live) is ``--live``/``--testnet``; ``mode`` in events means only that."""
    add(
        "--fill-model",
        dest="fill_model",
        choices=FILL_MODEL_CHOICES,
        default="realistic",
        help="fill model of the simulated broker: seed or realistic (default realistic)",
    )
    add(
        "--mode",
        dest="fill_model",
        choices=FILL_MODEL_CHOICES,
        action=_DeprecatedAlias,
        new="--fill-model",
        alias=True,
        help="deprecated alias of --fill-model (prints a warning)",
    )


# ---------------------------------------------------------------------- parsers


class _Parser(argparse.ArgumentParser):
    """argparse whose errors go through ``main``'s single error path instead of printing usage
    and exiting from inside the parser."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see `{self.prog} --help`)")


#: engine options of the bare console: given before a subcommand they would be silently
#: overridden by the subcommand's own defaults, so they are refused there (see _RootParser)
_CONSOLE_PREFIX = "console__"


class _RootParser(_Parser):
    """Top-level parser: console options are stored under a prefix so that, when a subcommand is
    given too, they can be told apart from the subcommand's options and refused."""

    def parse_known_args(
        self,
        args: Sequence[str] | None = None,  # type: ignore[override]
        namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        ns, extra = super().parse_known_args(args, namespace)
        given = {k[len(_CONSOLE_PREFIX) :]: v for k, v in vars(ns).items() if k.startswith(_CONSOLE_PREFIX)}
        for k in given:
            delattr(ns, _CONSOLE_PREFIX + k)
        if ns.command is not None:
            if given:
                opts = ", ".join("--" + k.replace("_", "-").replace("strategies", "strategy") for k in sorted(given))
                raise UserError(
                    f"{opts} before `{ns.command}` would be ignored (they are console options); "
                    f"put them after the subcommand: tradeconsole {ns.command} ..."
                )
        else:
            defaults = _engine_defaults(headless=False)
            for k, v in defaults.items():
                setattr(ns, k, given.get(k, v))
        if not hasattr(ns, "debug"):
            ns.debug = False
        return ns, extra


def _engine_defaults(*, headless: bool) -> dict[str, Any]:
    p = _Parser(add_help=False)
    _add_engine_options(p, headless=headless)
    return vars(p.parse_args([]))


def _add_engine_options(p: argparse.ArgumentParser, *, headless: bool, prefix: str = "") -> None:
    """Options of the engine (console and ``run --headless``). With ``prefix`` (the bare
    console's options on the root parser) nothing is set unless given."""

    def add(*flags: str, dest: str, default: Any = None, alias: bool = False, **kw: Any) -> None:
        if prefix or alias:  # an alias never sets a default over the option it stands for
            kw["default"] = argparse.SUPPRESS
        else:
            kw["default"] = default
        if "metavar" not in kw and "choices" not in kw and kw.get("action") is None:
            kw["metavar"] = dest.upper()  # not argparse's CONSOLE__SYMBOL from the prefixed dest
        p.add_argument(*flags, dest=prefix + dest, **kw)

    add(
        "--strategy",
        dest="strategies",
        action="append",
        metavar="NAME[:INTERVAL]",
        help=f"strategy to run ({', '.join(_strategy_names())}); repeat for several, e.g. "
        "--strategy basic --strategy engulfing:1h. Default: basic",
    )
    add(
        "--strategy-path",
        dest="strategy_path",
        action="append",
        metavar="FILE_OR_DIR",
        help="also load strategies from this file or directory (repeatable)",
    )
    add(
        "--symbol",
        dest="symbol",
        action="append",
        type=_symbol,
        metavar="SYMBOL",
        help="symbol to trade; repeat for several (--symbol ETHUSDT --symbol BTCUSDT): each runs every "
        "strategy as its own session, on one shared paper account. Default: the config's symbols, else ETHUSDT",
    )
    add("--interval", dest="interval", type=_interval, help="kline interval (default: the strategy's own)")
    add(
        "--market",
        dest="market",
        choices=("spot", "futures"),
        default="futures",
        help="market data source for live candles (default futures)",
    )
    add("--replay", dest="replay", metavar="PATH", help="replay a history file/directory instead of live data")
    add(
        "--speed",
        dest="speed",
        type=_speed,
        default=None if headless else 60.0,
        metavar="N|max",
        help="replay speed: candles per real interval (60 = an hour of 1m data per minute) or 'max'",
    )
    _add_fill_model(add)
    add("--cash", dest="cash", type=_CASH, default=10_000.0, help="paper starting balance in USDT (default 10000)")
    add(
        "--journal",
        dest="journal",
        metavar="PATH",
        type=_journal_path,
        help="journal database (default: in the data directory)",
    )
    add("--config", dest="config", metavar="PATH", help="config file (TOML, mode 0600 if it holds secrets)")
    add("--live", dest="live", action="store_true", default=False, help="trade real money on Binance USD-M futures")
    add("--testnet", dest="testnet", action="store_true", default=False, help="trade on the Binance futures testnet")
    add("--kafka", dest="kafka", metavar="BOOTSTRAP", help="also publish every event to Kafka (host:port)")
    add("--elasticsearch", dest="elasticsearch", metavar="URL", help="also index events directly into Elasticsearch")


def _adder(p: argparse.ArgumentParser) -> Callable[..., None]:
    """``add_argument`` with the ``alias`` keyword of ``_add_engine_options``'s ``add``."""

    def add(*flags: str, alias: bool = False, **kw: Any) -> None:
        if alias:
            kw["default"] = argparse.SUPPRESS
        p.add_argument(*flags, **kw)

    return add


def _add_debug(p: argparse.ArgumentParser, *, root: bool) -> None:
    p.add_argument(
        "--debug",
        action="store_true",
        default=False if root else argparse.SUPPRESS,
        help="print the full traceback when something fails",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Every option has help text and a validating type, so a mistake is
    refused here, before any work starts."""
    parser = _RootParser(
        prog="tradeconsole",
        description="Keyboard-driven trading console for Binance USD-M futures (paper by default). "
        "Without a subcommand: the console (needs a terminal; use `run --headless` otherwise).",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    _add_debug(parser, root=True)
    _add_engine_options(parser, headless=False, prefix=_CONSOLE_PREFIX)
    parser.set_defaults(handler="tradeconsole.tui.app:main")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # -- backtest
    bt = sub.add_parser(
        "backtest",
        help="replay history through a strategy and report",
        description="Replay history through a strategy with the simulated futures broker.",
    )
    _add_debug(bt, root=False)
    bt.add_argument("--strategy", required=True, choices=_strategy_names(), help="strategy to test")
    bt.add_argument(
        "--strategy-path",
        action="append",
        metavar="FILE_OR_DIR",
        help="also load strategies from this file or directory (repeatable)",
    )
    src = bt.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="PATH", help="CSV/Parquet file or directory of them")
    src.add_argument(
        "--symbol", type=_symbol, help="read the local history cache for this symbol (see `data download`)"
    )
    bt.add_argument(
        "--market", choices=("spot", "futures"), default="spot", help="cache market (with --symbol; default spot)"
    )
    bt.add_argument("--interval", type=_interval, help="kline interval (default: the strategy's own)")
    bt.add_argument("--from", dest="date_from", type=_date, metavar="DATE", help="first day (UTC), e.g. 2022-09-01")
    bt.add_argument("--to", dest="date_to", type=_date, metavar="DATE", help="end (exclusive, UTC), e.g. 2022-12-01")
    _add_fill_model(_adder(bt))
    bt.add_argument("--cash", type=_CASH, default=10_000.0, help="starting balance in USDT (default 10000)")
    # ranges as tradeconsole.core.broker.BrokerSettings enforces them (Binance USD-M allows at most 125x)
    bt.add_argument("--leverage", type=number("leverage", 1, 125), default=1.0, help="leverage, 1..125 (default 1)")
    bt.add_argument(
        "--fee",
        type=number("fee", 0, 0.01, high_open=True),
        default=0.0004,
        help="taker fee as a fraction (0.0004 = 0.04%%), below 0.01",
    )
    bt.add_argument(
        "--slippage-bps",
        type=number("slippage-bps", 0, 1000),
        default=0.0,
        help="adverse slippage on every fill in basis points, 0..1000 (default 0)",
    )
    bt.add_argument(
        "--funding-rate",
        type=number("funding-rate", -0.05, 0.05),
        default=0.0,
        help="constant funding rate per 8h as a fraction, -0.05..0.05 (default 0)",
    )
    bt.add_argument(
        "--stop-loss",
        type=number("stop-loss"),
        default=None,
        help="stop-loss fraction of the entry price (default 0.015; range as stop_loss_pct)",
    )
    bt.add_argument(
        "--take-profit",
        type=number("take-profit"),
        default=None,
        help="take-profit fraction of the entry price (default 0.03; range as take_profit_pct)",
    )
    bt.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a strategy parameter within its declared range, e.g. --param rsi_oversold=25",
    )
    bt.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed rows instead of failing")
    bt.add_argument(
        "--no-cache",
        action="store_true",
        help="read and validate the CSV files even when their Parquet copy in the data directory's "
        "cache is current (the copy is not written either)",
    )
    bt.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")
    bt.add_argument("--trades-csv", metavar="FILE", help="write the closed round trips to a CSV file")
    bt.add_argument(
        "--plot", action="store_true", help="draw equity and price with fills (on stdout, or on stderr with --json)"
    )
    bt.add_argument(
        "--kafka",
        metavar="BOOTSTRAP",
        help="publish the run's events to Kafka (host:port), through a journal and its shipper",
    )
    bt.add_argument(
        "--journal",
        metavar="PATH",
        type=_journal_path,
        help="with --kafka: keep the run's events in this journal (default: a temporary one); "
        "what Kafka did not acknowledge is resent by the next run with the same journal",
    )
    bt.add_argument("--config", metavar="PATH", help="config file (with --kafka: [kafka] topic_prefix, security)")
    bt.set_defaults(handler="tradeconsole.tui.backtest_command:main")

    # -- optimize
    op = sub.add_parser(
        "optimize",
        help="search strategy parameters (walk-forward, self-checked)",
        description="Search strategy parameters over history; every reported result is the "
        "backtest's, walk-forward out-of-sample by default.",
    )
    _add_debug(op, root=False)
    op.add_argument(
        "--strategy",
        required=True,
        choices=_strategy_names(),
        help="strategy to optimise (built-in or found with --strategy-path / the user directory)",
    )
    op.add_argument(
        "--strategy-path",
        action="append",
        metavar="FILE_OR_DIR",
        help="also load strategies from this file or directory (repeatable)",
    )
    op.add_argument("--data", metavar="PATH", required=True, help="CSV/Parquet file or directory of them")
    op.add_argument("--interval", type=_interval, help="kline interval (default: the strategy's own)")
    op.add_argument("--from", dest="date_from", type=_date, metavar="DATE", help="first day (UTC)")
    op.add_argument("--to", dest="date_to", type=_date, metavar="DATE", help="end (exclusive, UTC)")
    _add_fill_model(_adder(op))
    op.add_argument("--cash", type=_CASH, default=10_000.0, help="starting balance in USDT (default 10000)")
    op.add_argument("--leverage", type=number("leverage", 1, 125), default=1.0, help="leverage, 1..125 (default 1)")
    op.add_argument("--fee", type=number("fee", 0, 0.01, high_open=True), default=0.0004, help="taker fee fraction")
    op.add_argument("--slippage-bps", type=number("slippage-bps", 0, 1000), default=0.0, help="slippage in bps")
    op.add_argument("--funding-rate", type=number("funding-rate", -0.05, 0.05), default=0.0, help="funding per 8h")
    op.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="searched parameter: values 20,25,30, range LOW:HIGH:STEP, or NAME for its declared range",
    )
    op.add_argument("--search", choices=("grid", "random", "optuna"), default="grid", help="search (default grid)")
    op.add_argument("--trials", type=number("trials", 1, 10_000_000, integer=True), help="points for random/optuna")
    op.add_argument(
        "--seed", type=number("seed", 0, 2**32 - 1, integer=True), default=0, help="random seed (default 0)"
    )
    op.add_argument(
        "--objective",
        default="sharpe",
        help="return, sharpe, sortino, calmar, profit_factor or module:function (default sharpe)",
    )
    op.add_argument(
        "--min-trades",
        type=number("min-trades", 0, 10**9, integer=True),
        default=0,
        help="constraint: at least this many round trips",
    )
    op.add_argument(
        "--max-drawdown", type=number("max-drawdown", 0, 100), default=None, help="constraint: max drawdown in percent"
    )
    op.add_argument(
        "--workers",
        type=number("workers", 1, 256, integer=True),
        default=None,
        help="local worker processes (default: CPU count)",
    )
    op.add_argument("--backend", choices=("local", "dask"), default="local", help="where to run (default local)")
    op.add_argument("--address", help="Dask scheduler address for --backend dask")
    op.add_argument(
        "--folds",
        type=number("folds", 0, 100, integer=True),
        default=None,
        help="walk-forward folds in time order (default 4; 0 = in-sample only)",
    )
    op.add_argument("--train", metavar="LEN", help="rolling training window, e.g. 60d (with --test)")
    op.add_argument("--test", metavar="LEN", help="rolling test window, e.g. 20d (with --train)")
    op.add_argument(
        "--pbo-blocks",
        type=number("pbo-blocks", 0, 16, integer=True),
        default=16,
        help="blocks for PBO/CSCV, even (default 16; 0 = off)",
    )
    op.add_argument("--top", type=number("top", 1, 1000, integer=True), default=10, help="rows in the top table")
    op.add_argument(
        "--verify-top",
        type=number("verify-top", 0, 1000, integer=True),
        default=5,
        help="re-run this many best results through backtest (default 5)",
    )
    op.add_argument("--results", metavar="FILE", help="results file (.csv or .parquet); a re-run resumes from it")
    op.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed rows instead of failing")
    op.add_argument("--json", action="store_true", help="print one JSON object")
    op.add_argument("--plot", action="store_true", help="heatmap of two parameters (stderr with --json)")
    op.add_argument("--plot-params", metavar="X,Y", help="the two parameters of --plot (default: the first two)")
    op.add_argument(
        "--journal",
        metavar="PATH",
        type=_journal_path,
        help="journal the run's events here (default: journal-optimize.sqlite in the data directory)",
    )
    op.add_argument("--no-journal", action="store_true", help="do not journal the run's events")
    op.add_argument(
        "--kafka", metavar="BOOTSTRAP", help="also ship the run's events to Kafka (host:port), from the journal"
    )
    op.add_argument(
        "--elasticsearch", metavar="URL", help="also ship the run's events to Elasticsearch, from the journal"
    )
    op.set_defaults(handler="tradeconsole.tui.cli:optimize_main")

    # -- run (headless)
    run = sub.add_parser(
        "run", help="run the engine without the UI", description="Run strategies headless, with structured logs."
    )
    _add_debug(run, root=False)
    run.add_argument("--headless", action="store_true", help="required: run without the Textual UI")
    _add_engine_options(run, headless=True)
    run.add_argument(
        "--json", action="store_true", help="with --replay: print a summary like `backtest --json` when the data ends"
    )
    run.add_argument("--confirm", metavar="SYMBOL", help="non-interactive live confirmation (type the symbol)")
    run.set_defaults(handler="tradeconsole.tui.headless:main")

    # -- strategy new / list / check
    st = sub.add_parser("strategy", help="write, list and check strategies")
    _add_debug(st, root=False)
    ssub = st.add_subparsers(dest="strategy_command", metavar="ACTION", required=True, parser_class=_Parser)
    sn = ssub.add_parser("new", help="write a commented strategy template that runs as is")
    _add_debug(sn, root=False)
    sn.add_argument("name", type=_strategy_name, help="strategy name (letters, digits, _), also the file name")
    sn.add_argument("--dir", metavar="DIR", help="where to write NAME.py (default: the user strategies directory)")
    sn.add_argument("--force", action="store_true", help="overwrite an existing file")
    sn.set_defaults(handler="tradeconsole.backtest.strategy_cli:new_main")
    sl = ssub.add_parser("list", help="strategies available, with parameters (ranges) and intervals")
    _add_debug(sl, root=False)
    sl.add_argument("--strategy-path", action="append", metavar="FILE_OR_DIR", help="also load from here")
    sl.add_argument("--json", action="store_true", help="print JSON")
    sl.set_defaults(handler="tradeconsole.backtest.strategy_cli:list_main")
    sc = ssub.add_parser("check", help="prove no look-ahead, live == backtest, and a long enough warm-up")
    _add_debug(sc, root=False)
    sc.add_argument("name", choices=_strategy_names(), help="strategy to check")
    sc.add_argument("--data", required=True, metavar="PATH", help="CSV/Parquet file or directory of them")
    sc.add_argument("--strategy-path", action="append", metavar="FILE_OR_DIR", help="also load from here")
    sc.add_argument("--interval", type=_interval, help="kline interval (default: the strategy's own)")
    _add_fill_model(_adder(sc))
    sc.add_argument(
        "--samples",
        type=number("samples", 2, 10_000),
        default=40,
        help="truncation points / warm-up windows sampled (default 40)",
    )
    sc.add_argument(
        "--live-bars",
        type=number("live-bars", 10, 1_000_000),
        default=3000,
        help="candles replayed candle by candle through the live path (default 3000)",
    )
    sc.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    sc.set_defaults(handler="tradeconsole.backtest.strategy_cli:check_main")

    # -- data download
    data = sub.add_parser("data", help="history cache")
    _add_debug(data, root=False)
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True, parser_class=_Parser)
    dl = dsub.add_parser("download", help="download klines into the local cache (resumable)")
    _add_debug(dl, root=False)
    dl.add_argument("symbol", type=_symbol, help="symbol, e.g. ETHUSDT")
    dl.add_argument("interval", type=_interval, help="kline interval, e.g. 1h")
    dl.add_argument("--from", dest="date_from", type=_date, required=True, metavar="DATE", help="first day (UTC)")
    dl.add_argument("--to", dest="date_to", type=_date, metavar="DATE", help="end (exclusive, UTC; default: now)")
    dl.add_argument("--market", choices=("spot", "futures"), default="spot", help="market (default spot)")
    dl.add_argument("--config", metavar="PATH", help="config file (for [binance] endpoints)")
    dl.set_defaults(handler="tradeconsole.infra.binance.market.download:cli_main")

    # -- forwarder
    fw = sub.add_parser(
        "forward",
        help="consume Kafka topics into Elasticsearch",
        description="Consume the tradeconsole Kafka topics into Elasticsearch: bulk requests with "
        "the event id as document id (a resend never duplicates), offsets committed "
        "only after Elasticsearch accepted the batch, poison messages to a dead-letter "
        "topic. Stops within a few seconds of SIGINT/SIGTERM.",
    )
    _add_debug(fw, root=False)
    fw.add_argument("--kafka", required=True, metavar="BOOTSTRAP", help="Kafka bootstrap servers (host:port)")
    fw.add_argument("--elasticsearch", required=True, metavar="URL", help="Elasticsearch URL, or 'cloud'")
    fw.add_argument(
        "--group", default="tradeconsole-forwarder", help="Kafka consumer group (default tradeconsole-forwarder)"
    )
    fw.add_argument("--config", metavar="PATH", help="config file ([kafka], [elasticsearch], [forwarder])")
    fw.set_defaults(handler="tradeconsole.infra.sinks.forwarder:cli_main")

    # -- kibana
    kb = sub.add_parser("kibana", help="Kibana saved objects")
    _add_debug(kb, root=False)
    ksub = kb.add_subparsers(dest="kibana_command", metavar="ACTION", required=True, parser_class=_Parser)
    ki = ksub.add_parser("import", help="import data views and the dashboard")
    _add_debug(ki, root=False)
    ki.add_argument("--kibana", required=True, metavar="URL", help="Kibana URL, or 'cloud'")
    ki.add_argument("--config", metavar="PATH", help="config file ([kibana], [elasticsearch])")
    ki.set_defaults(handler="tradeconsole.infra.sinks.kibana:cli_main")
    return parser


def _strategy_names() -> list[str]:
    """Every strategy registered so far (built-ins plus what ``preload_strategies`` found)."""
    from tradeconsole.core.strategies import STRATEGIES

    return sorted(STRATEGIES)


def _strategy_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", value):
        raise argparse.ArgumentTypeError(f"{clip(value)!r}: a strategy name is a letter then letters, digits or _")
    return value


#: subcommands that take strategies (no subcommand: the console)
_STRATEGY_COMMANDS = {"backtest", "optimize", "run", "strategy", None}
_ALL_COMMANDS = {"backtest", "optimize", "run", "strategy", "data", "forward", "kibana"}


def preload_strategies(raw: Sequence[str]) -> None:
    """Register strategy files before the parser is built, so ``--strategy`` choices list what
    is found: every ``--strategy-path`` in ``raw``, the user strategies directory and the
    ``tradeconsole.strategies`` entry points. Broken explicit files are a UserError naming file
    and line; broken ones elsewhere a ``warning:`` line each."""
    command = next((a for a in raw if a in _ALL_COMMANDS), None)
    if command not in _STRATEGY_COMMANDS:
        return
    paths: list[str] = []
    for i, a in enumerate(raw):
        if a == "--strategy-path" and i + 1 < len(raw):
            paths.append(raw[i + 1])
        elif a.startswith("--strategy-path="):
            paths.append(a.split("=", 1)[1])
    from tradeconsole.backtest.strategy_loader import StrategyLoadError, load_strategies

    try:
        report = load_strategies(paths)
    except StrategyLoadError as exc:
        raise UserError(clip(str(exc), 600)) from None
    for msg in report.skipped:
        print(f"warning: skipped {clip(msg, 600)}", file=sys.stderr)


def optimize_main(args: argparse.Namespace) -> int:
    """``tradeconsole optimize`` composed with persistence: the optimiser (backtest layer, no I/O
    beyond its data and results file) publishes its ``optimization_run``/``optimization_trial``
    events into the journal, and ``--kafka``/``--elasticsearch`` ship them from the journal with
    the same ``JournalShipper`` protocol as every run (exactly once; whatever a sink did not
    acknowledge stays in the journal and goes with the next run that ships). The composition is
    ``tradeconsole.tui.optimize_command``'s, shared with the console's optimise screen."""
    from tradeconsole.backtest.optimize.cli import main as optimize

    if args.no_journal:
        if args.kafka or args.elasticsearch:
            raise UserError("--kafka/--elasticsearch ship from the journal: drop --no-journal")
        return optimize(args)
    from tradeconsole.tui.optimize_command import journalled, ship_journal
    from tradeconsole.tui.runtime import SinkTargets

    with journalled(args.journal, args) as journal:
        code = optimize(args, publish=journal.publish)
        journal.status = {0: "finished", 130: "interrupted"}.get(code, "failed")
    if journal.run_id is not None:
        for problem in ship_journal(journal.path, SinkTargets(kafka=args.kafka, elasticsearch=args.elasticsearch)):
            print(f"warning: {problem}", file=sys.stderr)
    return code


def check_engine_args(args: argparse.Namespace) -> None:
    """Cross-option checks of the console and ``run --headless``, before anything starts.

    A replay is never live: ``--live``/``--testnet`` with ``--replay`` would send real orders
    driven by old candles, so the combination is refused here (the live broker refuses
    non-live candles on its own side as well)."""
    if getattr(args, "replay", None) and (getattr(args, "live", False) or getattr(args, "testnet", False)):
        flag = "--live" if args.live else "--testnet"
        raise UserError(
            f"{flag} cannot be combined with --replay: a replay is never traded on an exchange "
            "(drop --replay to trade the live feed, or drop the flag to paper-trade the replay)"
        )
    if getattr(args, "live", False) and getattr(args, "testnet", False):
        raise UserError("choose either --live or --testnet, not both")
    if getattr(args, "replay", None):
        check_input_path(args.replay, "--replay", "replay file or directory")
        check_data_files(args.replay)


# ---------------------------------------------------------------------- the error path


def _user_error_types() -> tuple[type[BaseException], ...]:
    """User-mistake exceptions of the layers below, looked up only in modules already imported
    (an exception of a module that was never loaded cannot have been raised)."""
    out: list[type[BaseException]] = [UserError]
    for mod, names in (
        ("tradeconsole.infra.settings", ("ConfigError", "LiveTradingRefused")),
        ("tradeconsole.backtest.data", ("DataError",)),
    ):
        m = sys.modules.get(mod)
        if m is not None:
            out += [getattr(m, n) for n in names if hasattr(m, n)]
    return tuple(out)


def _environment_error_types() -> tuple[type[BaseException], ...]:
    out: list[type[BaseException]] = [EnvironmentFailure, OSError]
    for mod, names in (
        ("sqlite3", ("OperationalError", "DatabaseError")),
        ("tradeconsole.infra.binance.http.rest", ("RestError",)),
    ):
        m = sys.modules.get(mod)
        if m is not None:
            out += [getattr(m, n) for n in names if hasattr(m, n)]
    return tuple(out)


def _describe_os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {clip(exc.filename, 200)}"
    return str(exc) or type(exc).__name__


def report_error(exc: BaseException, *, debug: bool = False) -> int:
    """Print ``exc`` as exactly one ``error: ...`` line (plus the traceback with ``debug``) and
    return the exit code: 2 for user mistakes, 1 for environment failures and internal errors."""
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, _user_error_types()):
        code, msg = 2, str(exc)
    elif isinstance(exc, _environment_error_types()):
        code = 1
        msg = _describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
    else:
        code = 1
        msg = f"internal error ({type(exc).__name__}: {exc})" + (
            "" if debug else "; rerun with --debug for the traceback"
        )
    msg = _clip_message(msg or type(exc).__name__)
    if msg.startswith("error: "):
        msg = msg[len("error: ") :]
    print(f"error: {msg}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the subcommand's handler, and map every failure to one line and an exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in raw
    try:
        preload_strategies(raw)
        args = build_parser().parse_args(raw)
        debug = bool(args.debug)
        for old, new in vars(args).pop("deprecated_options", []):
            print(f"warning: {old} is deprecated, use {new} (same values)", file=sys.stderr)
        module_name, func_name = args.handler.split(":")
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help/--version, or a library calling sys.exit
        if isinstance(exc.code, str):
            return report_error(UserError(exc.code), debug=debug)
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - the one place every failure becomes one line
        return report_error(exc, debug=debug)


if __name__ == "__main__":  # pragma: no cover
    # `python -m tradeconsole.tui.cli`: use the importable module's main so that UserError raised by the
    # handlers (imported from ``tradeconsole.tui.cli``) is the class the error path maps
    from tradeconsole.tui.cli import main as _main

    sys.exit(_main())
