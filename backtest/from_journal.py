"""Rebuild a run's report from the journal alone.

A headless replay (and any paper or live run) can be summarised exactly like a backtest, with
the same metric code, from what the engine journalled: candle events give the bars, equity
events the equity curve, fill events the fills and round trips, and the session state the
position still open. Because it reads only the journal, the summary also covers runs that were
interrupted and resumed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backtest.runner import BacktestResult
from core.broker import FILL_MODELS
from core.domain import Fill, FillReason, OrderSide, Trade
from core.engine import SessionSpec
from core.indicators import IndicatorSettings
from core.strategies import make_strategy
from infra.journal import Journal

__all__ = ["result_from_journal"]


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def result_from_journal(journal: Journal, run_id: str, spec: SessionSpec) -> BacktestResult:
    key = (spec.symbol, spec.interval, spec.strategy)
    open_time: list[int] = []
    close: list[float] = []
    equity: list[float] = []
    in_pos: list[bool] = []
    fills: list[Fill] = []
    trades: list[Trade] = []
    for _, e in journal.events(run_id=run_id, types=("candle", "equity", "fill"), session=key):
        t = e["type"]
        if t == "candle":
            open_time.append(_ms(e["open_time"]))
            close.append(float(e["close"]))
        elif t == "equity" and len(equity) < len(open_time):  # one equity point per closed candle
            equity.append(float(e["equity"]))
            in_pos.append(bool(e.get("in_position")))
        elif t == "fill":
            fills.append(Fill(_ms(e["fill_time"]), e["symbol"], OrderSide(e["side"]), float(e["price"]),
                              float(e["qty"]), float(e["fee"]), FillReason(e["reason"]), e["order_id"]))
            if e.get("trade"):
                trades.append(Trade.from_dict(e["trade"]))
    state = journal.session_state(spec.key)
    open_position: dict[str, Any] | None = None
    funding = sum(t.funding for t in trades)
    if state is not None and state.snapshot.get("position"):
        p = state.snapshot["position"]
        sign = 1 if p["side"] == "LONG" else -1
        open_position = {"side": p["side"].lower(), "qty": p["qty"], "entry_price": p["entry_price"],
                         "entry_time": p["entry_time"],
                         "unrealized_pnl": sign * p["qty"] * (close[-1] - p["entry_price"]) if close else 0.0}
        funding += float(state.snapshot.get("position_funding", 0.0))
    fm = FILL_MODELS[spec.model]
    return BacktestResult(
        symbol=spec.symbol, interval=spec.interval, strategy=make_strategy(spec.strategy, **spec.params), model=fm,
        settings=spec.broker, run_id=run_id, open_time=np.asarray(open_time, dtype=np.int64),
        close=np.asarray(close), equity=np.asarray(equity), in_position=np.asarray(in_pos, dtype=bool),
        fills=fills, trades=trades, fees_paid=sum(f.fee for f in fills), funding_paid=funding,
        open_position=open_position, indicator_settings=IndicatorSettings(rsi_smoothing=fm.rsi_smoothing),
    )
