"""Performance metrics of a backtest, computed from its equity curve, fills and round trips.

Definitions (stated so numbers can be checked by hand):

* The window: metrics cover the traded bars only (``bars``, ``start``..``end``). Candles before
  ``--from`` that warmed the indicators up are counted in ``warmup_bars`` and nothing else.
* Equity at a bar = wallet cash + the unrealised PnL of an open position marked to that bar's
  close (mark-to-market, no exit fee). The curve has one point per traded bar, at its close.
* ``final_equity``/``return_pct``: the last point of that curve / initial cash - 1, in percent,
  so an open position at the end counts at the last close without an exit fee (like the
  original research report); ``open_position`` shows it with its unrealised PnL.
* ``trades``: closed round trips; ``wins``/``losses``: round trips with net PnL (after both
  fees and funding) > 0 / <= 0, so a break-even trade counts as a loss.
* ``buys``/``sells``: fills by order side (an entry and an exit each count).
* ``max_drawdown_pct``: largest fall of the marked equity curve (every bar's close, open
  positions included, not only closed trades) from its running peak, which starts at the
  initial cash; in percent of that peak.
* ``sharpe``/``sortino``: mean of per-bar simple equity returns over their sample standard
  deviation (ddof 1) for Sharpe, over the downside deviation sqrt(mean(min(r, 0)^2)) over all
  bars (target 0) for Sortino; annualised by sqrt(bars per 365-day year) from the run's
  interval, which the loader checked against the data's own step. Risk-free rate 0. A data gap
  makes one bar's return span the missing candles. None when undefined (under 3 bars, or no
  variation).
* ``profit_factor``: gross profit / gross loss of closed round trips. When it is undefined it is
  null and ``profit_factor_note`` says why: ``"no trades"``, ``"no losing trades"`` (every round
  trip won: the ratio would be infinite) or ``"no gains or losses"`` (all broke even). The
  text report prints the same note.
* ``avg_trade_pnl``: mean net PnL of a round trip; ``avg_trade_pct``: mean of each round trip's
  net PnL relative to the equity it committed at entry.
* ``exposure_pct``: share of traded bars that closed with a position open.
* ``fees_paid``: every fee charged, including the entry fee of a position still open.
* ``buy_and_hold_return_pct``: last close / first close of the window - 1, no fees.
* ``entries_dropped``: realistic pending entries not filled because the next candle came after
  a gap in the data (the strategy never saw the price it would have filled at).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tradeconsole.backtest.runner import BacktestResult
from tradeconsole.core.domain import OrderSide, Side, interval_ms, iso_ms

__all__ = ["compute_metrics"]

_YEAR_MS = 365 * 86_400_000


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def compute_metrics(r: BacktestResult) -> dict[str, Any]:
    """All report numbers as a JSON-ready dict (includes ``fills``)."""
    init = r.settings.initial_cash
    eq = r.equity
    final = float(eq[-1]) if len(eq) else init
    trades = r.trades
    wins = [t for t in trades if t.pnl > 0]
    longs = [t for t in trades if t.side is Side.LONG]
    shorts = [t for t in trades if t.side is Side.SHORT]
    gross_profit = sum(t.pnl for t in wins)
    gross_loss = -sum(t.pnl for t in trades if t.pnl <= 0)

    # The curve with the initial cash in front: each step below reuses its buffers in place (the
    # same operations, so the same numbers) to keep a run of millions of bars in bounded memory.
    ext = np.concatenate(([init], eq))

    # drawdown
    if len(eq):
        peak = np.maximum.accumulate(ext)[1:]
        fall = np.subtract(peak, eq)  # (peak - eq) / peak
        np.divide(fall, peak, out=fall)
        max_dd = float(np.max(fall)) * 100.0
        del peak, fall
    else:
        max_dd = 0.0

    # risk-adjusted returns on per-bar equity returns
    sharpe = sortino = None
    if len(eq) > 2:
        rets = np.subtract(ext[1:], ext[:-1])  # np.diff(ext) / ext[:-1]
        np.divide(rets, ext[:-1], out=rets)
        ann = math.sqrt(_YEAR_MS / interval_ms(r.interval))
        sd = float(np.std(rets, ddof=1))
        mean = float(np.mean(rets))
        sharpe = mean / sd * ann if sd > 0 else None
        np.minimum(rets, 0.0, out=rets)  # the downside
        np.square(rets, out=rets)
        dd = float(np.sqrt(np.mean(rets)))
        sortino = mean / dd * ann if dd > 0 else None
        del rets
    del ext

    pf: float | None = None
    pf_note: str | None = None
    if not trades:
        pf_note = "no trades"
    elif gross_loss == 0:
        pf_note = "no losing trades" if gross_profit > 0 else "no gains or losses"
    else:
        pf = gross_profit / gross_loss

    closes = r.close
    bh = (float(closes[-1]) / float(closes[0]) - 1.0) * 100.0 if len(closes) > 1 else 0.0
    win_rate = _ratio(len(wins), len(trades))
    long_wr = _ratio(sum(1 for t in longs if t.pnl > 0), len(longs))
    short_wr = _ratio(sum(1 for t in shorts if t.pnl > 0), len(shorts))

    return {
        "strategy": r.strategy.name,
        "symbol": r.symbol,
        "interval": r.interval,
        "fill_model": r.fill_model.name,
        "run_id": r.run_id,
        "start": iso_ms(int(r.open_time[0])) if len(r.open_time) else None,
        "end": iso_ms(int(r.open_time[-1]) + interval_ms(r.interval)) if len(r.open_time) else None,
        "bars": int(len(eq)),
        "warmup_bars": r.warmup_bars,
        "initial_cash": init,
        "final_equity": final,
        "return_pct": (final / init - 1.0) * 100.0,
        "trades": len(trades),
        "wins": len(wins),
        "losses": len(trades) - len(wins),
        "long_trades": len(longs),
        "short_trades": len(shorts),
        "buys": sum(1 for f in r.fills if f.side is OrderSide.BUY),
        "sells": sum(1 for f in r.fills if f.side is OrderSide.SELL),
        "win_rate_pct": None if win_rate is None else 100.0 * win_rate,
        "win_rate_long_pct": None if long_wr is None else 100.0 * long_wr,
        "win_rate_short_pct": None if short_wr is None else 100.0 * short_wr,
        "max_drawdown_pct": max_dd,
        "sharpe": sharpe,
        "sortino": sortino,
        "profit_factor": pf,
        "profit_factor_note": pf_note,
        "avg_trade_pnl": (sum(t.pnl for t in trades) / len(trades)) if trades else None,
        "avg_trade_pct": (sum(t.return_pct for t in trades) / len(trades)) if trades else None,
        "exposure_pct": float(np.mean(r.in_position)) * 100.0 if len(r.in_position) else 0.0,
        "fees_paid": r.fees_paid,
        "funding_paid": r.funding_paid,
        "buy_and_hold_return_pct": bh,
        "entries_dropped": len(r.dropped_entries),
        "open_position": r.open_position and {**r.open_position, "entry_time": iso_ms(r.open_position["entry_time"])},
        "assumptions": {
            "fill_model": r.fill_model.name,
            "leverage": r.settings.leverage,
            "fee_rate": r.settings.fee_rate,
            "slippage_bps": r.settings.slippage_bps,
            "funding_rate_8h": r.settings.funding_rate_8h,
            "rsi_smoothing": r.indicator_settings.rsi_smoothing,
            "indicator_style": r.indicator_settings.style,
            **r.strategy.describe(),
        },
        "cancelled": r.cancelled,
        "fills": [f.to_dict() for f in r.fills],
    }
