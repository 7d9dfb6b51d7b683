"""``tradeconsole strategy new | list | check``: write a template, show what is available, prove a
strategy free of look-ahead and equal live and in backtests (``tradeconsole.backtest.strategy_check``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tradeconsole.backtest.inputs import check_data_files, check_input_path
from tradeconsole.core.errors import UserError, clip

__all__ = ["TEMPLATE", "check_main", "list_main", "new_main"]

TEMPLATE = '''"""{name}: a strategy template written by `tradeconsole strategy new {name}`.

It runs as is:  tradeconsole backtest --strategy-path {path} --strategy {name} --data DIR
Check it:       tradeconsole strategy check {name} --strategy-path {path} --data DIR
The API is documented in docs/strategies.md (and in the docstring of tradeconsole.core.strategies.base).
"""

from dataclasses import dataclass

from tradeconsole.core.strategies import (
    Side, Strategy, StrategyParams, atr, equity_fraction, fixed, param, ta, trailing,
)


@dataclass(frozen=True, slots=True)
class Params(StrategyParams):
    # every parameter has a default and a range: --param rsi_low=25 is checked against it
    rsi_low: float = param(35.0, 0.0, 100.0, doc="go long below this RSI")
    rsi_high: float = param(65.0, 0.0, 100.0, doc="go short above this RSI")
    atr_stop: float = param(2.0, 0.1, 20.0, doc="stop-loss distance in ATRs")


class {cls}(Strategy):
    """Trend (EMA 50 vs EMA 200) pullbacks: long on RSI dips in an uptrend, short on RSI spikes
    in a downtrend. ATR stop, fixed 3% target, 2% trailing stop, out after 48 candles."""

    name = "{name}"
    default_interval = "5m"           # what `--interval` defaults to; data must match it
    startup_candle_count = 600        # warm-up: candles needed before values are trusted
    Params = Params

    # indicators: any pandas-ta indicator by name (read as ind.<name>, multi-column results as
    # ind.<name>_<column>), or custom(fn) over the candle history. rsi/macd/cci are also always
    # there as ind.rsi, ind.macd, ind.macd_signal, ind.macd_hist, ind.cci.
    indicators = {{
        "ema_fast": ta("ema", length=50),
        "ema_slow": ta("ema", length=200),
        "atr": ta("atr", length=14),
    }}

    # exits: protective orders placed with the entry, and rules decided on closed candles
    stop_loss = atr("atr_stop")       # atr_stop x ind.atr from the entry (or fixed(0.015), level("col"))
    take_profit = fixed(0.03)         # 3% from the entry
    trailing_stop = trailing(0.02)    # 2% behind the best price reached
    max_bars_in_trade = 48            # time exit: 48 candles
    sizing = equity_fraction(0.5)     # half the equity as margin per trade

    def entry_signal(self, candle, ind):
        """Called on every closed candle while flat: Side.LONG, Side.SHORT or None."""
        p = self.params
        if ind.ema_fast > ind.ema_slow and ind.rsi < p.rsi_low:
            return Side.LONG
        if ind.ema_fast < ind.ema_slow and ind.rsi > p.rsi_high:
            return Side.SHORT
        return None

    def exit_signal(self, candle, ind, position):
        """Called on every closed candle while in a position: True closes it."""
        if position.side is Side.LONG:
            return ind.ema_fast < ind.ema_slow   # the trend turned
        return ind.ema_fast > ind.ema_slow
'''


def new_main(args: argparse.Namespace) -> int:
    """Write NAME.py (refusing to overwrite unless --force) and say where."""
    from tradeconsole.core.strategies import SOURCES, STRATEGIES

    name = args.name
    if name in STRATEGIES and SOURCES.get(name) == "built-in":
        raise UserError(f"{name!r} is a built-in strategy's name: choose another")
    if args.dir:
        d = Path(args.dir)
    else:
        from tradeconsole.core.paths import strategies_dir

        d = strategies_dir()
    if d.exists() and not d.is_dir():
        raise UserError(f"--dir {clip(d, 200)}: not a directory")
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.py"
    if path.exists() and not args.force:
        raise UserError(f"{clip(path, 200)} exists; use --force to overwrite it")
    cls = "".join(part.capitalize() for part in name.split("_")) + "Strategy"
    path.write_text(TEMPLATE.format(name=name, cls=cls, path=path))
    print(path)
    print(
        f"wrote {path}: try `tradeconsole backtest --strategy-path {path} --strategy {name} --data DIR`",
        file=sys.stderr,
    )
    return 0


def list_main(args: argparse.Namespace) -> int:
    """Every strategy found, its source, intervals and parameters with their ranges."""
    from tradeconsole.backtest.strategy_loader import available

    rows = available()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(f"{r['name']}  ({r['source']})  intervals: {', '.join(r['intervals'])}")
        if r["doc"]:
            print(f"    {r['doc']}")
        if r["indicators"]:
            print(f"    indicators: {', '.join(r['indicators'])}")
        for p in r["params"]:
            rng = f"  [{p['low']:g} .. {p['high']:g}]" if "low" in p else ""
            print(f"    {p['name']} = {p['default']:g}{rng}")
    return 0


def check_main(args: argparse.Namespace) -> int:
    """Exit 0 when all three checks pass (and record it), 1 when one fails."""
    from tradeconsole.backtest.cli import parse_params
    from tradeconsole.backtest.data import load_candles
    from tradeconsole.backtest.strategy_check import check_strategy, record_pass
    from tradeconsole.core.strategies import STRATEGIES, make_strategy

    cls = STRATEGIES[args.name]
    interval = args.interval or cls.default_interval
    try:
        strategy = make_strategy(args.name, **parse_params(args.param))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    check_input_path(args.data, "--data")
    check_data_files(args.data)
    candles, _report = load_candles(
        args.data, interval=interval, expected_by=f"the strategy {args.name!r} runs on {interval}"
    )
    results = check_strategy(
        strategy,
        candles,
        fill_model=args.fill_model,
        samples=int(args.samples),
        live_bars=int(args.live_bars),
        interval=interval,
    )
    print(f"strategy check {args.name} on {len(candles)} candles of {args.data} ({args.fill_model} fill model)")
    for r in results:
        print("  " + r.line())
    ok = all(r.passed for r in results)
    if ok:
        record_pass(cls, str(args.data))
        print("all checks passed (recorded: backtests of this exact file say so)")
    else:
        print("a check FAILED: live results would not match this strategy's backtests")
    return 0 if ok else 1
