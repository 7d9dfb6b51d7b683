"""Backtest output: the text report, JSON, the trades CSV and a terminal plot (plotext)."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from tradeconsole.backtest.runner import BacktestResult

__all__ = ["fmt_metric", "plot_result", "plot_stream", "text_report", "to_json", "write_trades_csv"]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(metrics: dict[str, Any]) -> str:
    """One JSON object; non-finite numbers (e.g. profit factor without losses) become null."""
    return json.dumps(_clean(metrics), separators=(",", ":"))


def fmt_metric(v: Any, spec: str = ",.2f", suffix: str = "") -> str:
    """A metric for people: ``n/a`` for missing, ``inf`` for infinite, else formatted."""
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:{spec}}{suffix}"


def text_report(m: dict[str, Any]) -> str:
    a = m["assumptions"]
    lines = [
        f"{m['strategy']} on {m['symbol']} {m['interval']}  {m['start']} -> {m['end']}  ({m['bars']:,} bars)",
        f"fill model {a['fill_model']}, leverage {a['leverage']:g}x, fee {a['fee_rate'] * 100:g}%, "
        f"slippage {a['slippage_bps']:g} bps, funding {a['funding_rate_8h'] * 100:g}%/8h, RSI {a['rsi_smoothing']}, "
        f"stop {a['stop_loss_pct'] * 100:g}%, target {a['take_profit_pct'] * 100:g}%",
        "",
        f"  Initial cash         {fmt_metric(m['initial_cash'])}",
        f"  Final equity         {fmt_metric(m['final_equity'])}",
        f"  Return               {fmt_metric(m['return_pct'], '+.2f', '%')}   (buy & hold {fmt_metric(m['buy_and_hold_return_pct'], '+.2f', '%')})",
        f"  Round trips          {m['trades']}  ({m['long_trades']} long, {m['short_trades']} short)",
        f"  Buys / sells         {m['buys']} / {m['sells']}",
        f"  Wins / losses        {m['wins']} / {m['losses']}",
        f"  Win rate             {fmt_metric(m['win_rate_pct'], '.1f', '%')}  (long {fmt_metric(m['win_rate_long_pct'], '.1f', '%')}, "
        f"short {fmt_metric(m['win_rate_short_pct'], '.1f', '%')})",
        f"  Max drawdown         {fmt_metric(m['max_drawdown_pct'], '.2f', '%')}",
        f"  Sharpe / Sortino     {fmt_metric(m['sharpe'], '.2f')} / {fmt_metric(m['sortino'], '.2f')}  (annualised)",
        f"  Profit factor        {fmt_metric(m['profit_factor'], '.2f')}"
        + (f" ({m['profit_factor_note']})" if m.get("profit_factor_note") else ""),
        f"  Average trade        {fmt_metric(m['avg_trade_pnl'], ',.2f')} ({fmt_metric(m['avg_trade_pct'], '+.2f', '%')})",
        f"  Exposure             {fmt_metric(m['exposure_pct'], '.1f', '%')}",
        f"  Fees paid            {fmt_metric(m['fees_paid'])}",
    ]
    if m.get("warmup_bars"):
        lines.append(
            f"  Warm-up              {m['warmup_bars']:,} candle(s) before the window (indicators only, never traded)"
        )
    elif "warmup_bars" in m:
        lines.append("  Warm-up              0 candles (the window starts with the data: indicators start cold)")
    if m.get("entries_dropped"):
        lines.append(f"  Entries dropped      {m['entries_dropped']} (the next candle came after a data gap)")
    if m.get("funding_paid"):
        lines.append(f"  Funding paid         {fmt_metric(m['funding_paid'])}")
    op = m.get("open_position")
    if op:
        lines.append(
            f"  Open at end          {op['side']} {op['qty']:.4f} @ {op['entry_price']:.2f} "
            f"(unrealised {op['unrealized_pnl']:+,.2f})"
        )
    if m.get("cancelled"):
        lines.append("  (run cancelled before the end of the data)")
    return "\n".join(lines)


def write_trades_csv(result: BacktestResult, path: str | Path) -> int:
    """Write closed round trips; returns how many rows were written."""
    rows = [t.to_dict() for t in result.trades]
    fields = [
        "symbol",
        "side",
        "qty",
        "entry_time",
        "entry_price",
        "exit_time",
        "exit_price",
        "pnl",
        "return_pct",
        "fees",
        "funding",
        "exit_reason",
        "stake",
    ]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def plot_stream(*, json_on_stdout: bool) -> TextIO:
    """Where a plot goes: stdout, except next to ``--json`` (stdout is then JSON only, for ``jq``)."""
    return sys.stderr if json_on_stdout else sys.stdout


def _date_ticks(times: Any, x: list[int], n: int = 5) -> tuple[list[int], list[str]]:
    """About ``n`` x positions with UTC date labels (time of day too when the run spans < 3 days)."""
    from datetime import UTC, datetime

    if not x:
        return [], []
    span_ms = int(times[x[-1]]) - int(times[x[0]])
    fmt = "%Y-%m-%d %H:%M" if span_ms < 3 * 86_400_000 else "%Y-%m-%d"
    picks = sorted({x[round(i * (len(x) - 1) / max(1, n - 1))] for i in range(n)})
    return picks, [datetime.fromtimestamp(int(times[i]) / 1000, tz=UTC).strftime(fmt) for i in picks]


def plot_result(
    result: BacktestResult, width: int | None = None, height: int | None = None, *, color: bool = True
) -> str:
    """Equity and price with entries/exits, drawn with plotext; returns the text to print.
    The x axes are labelled with UTC dates; ``color=False`` (NO_COLOR, pipes) gives plain text
    without escape codes."""
    import numpy as np
    import plotext as plt

    plt.clear_figure()
    if width and height:
        plt.plotsize(width, height)
    plt.subplots(2, 1)
    step = max(1, len(result.close) // 2000)  # plotting 50k points adds nothing on a terminal
    x = list(range(0, len(result.close), step))
    times = result.open_time
    ticks, labels = _date_ticks(times, x)
    plt.subplot(1, 1)
    plt.title("Equity (USDT)")
    plt.plot(x, result.equity[::step].tolist(), marker="braille")
    plt.xticks(ticks, labels)
    plt.subplot(2, 1)
    plt.title("Price with entries (long ^, short v) and exits (x)")
    plt.plot(x, result.close[::step].tolist(), marker="braille", color="gray")
    plt.xticks(ticks, labels)
    plt.xlabel("time (UTC)")

    def idx(t: int) -> int:
        return min(len(times) - 1, int(np.searchsorted(times, t, side="right")) - 1)

    for reason, marker, colour in (("entry_long", "^", "green"), ("entry_short", "v", "red")):
        pts = [f for f in result.fills if f.reason.value == reason]
        if pts:
            plt.scatter([idx(f.time) for f in pts], [f.price for f in pts], marker=marker, color=colour)
    exits = [f for f in result.fills if not f.reason.value.startswith("entry")]
    if exits:
        plt.scatter([idx(f.time) for f in exits], [f.price for f in exits], marker="x", color="blue")
    text: str = plt.build()
    plain: str = plt.uncolorize(text)
    return text if color else plain
