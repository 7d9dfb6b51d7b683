"""Rebuild a run's report from the journal alone.

A headless replay (and any paper or live run) can be summarised exactly like a backtest, with
the same metric code, from what the engine journalled: candle events give the bars, equity
events the equity curve, fill events the fills and round trips, and the session state the
position still open. Because it reads only the journal, the summary also covers runs that were
interrupted and resumed.

Streaming: the journal is read in chunks and only what the metrics need is kept, in compact
typed arrays (8 bytes a bar for times, closes and equity), so a multi-year run is summarised in
a few tens of MB, not the run's whole event payloads.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
from tradeconsole.backtest.runner import BacktestResult
from tradeconsole.core.broker import FILL_MODELS
from tradeconsole.core.domain import Fill, FillReason, OrderSide, Trade
from tradeconsole.core.engine import SessionSpec
from tradeconsole.core.store import SessionState
from tradeconsole.core.strategies import make_strategy

__all__ = ["JournalReader", "result_from_journal"]


class JournalReader(Protocol):
    """What this module reads of a journal (``tradeconsole.infra.persistence.journal.Journal``
    implements it). A protocol, so that ``backtest`` never imports ``infra``."""

    def events(
        self,
        run_id: str | None = None,
        types: Iterable[str] | None = None,
        after_seq: int = 0,
        session: tuple[str, str, str] | None = None,
    ) -> Iterator[tuple[int, dict[str, Any]]]: ...

    def session_state(self, session_key: str) -> SessionState | None: ...


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _ms(iso: str) -> int:
    """Epoch ms of an ISO time, in integers (``timestamp() * 1000`` can round .999 down)."""
    return (datetime.fromisoformat(iso.replace("Z", "+00:00")) - _EPOCH) // _MS


def result_from_journal(journal: JournalReader, run_id: str, spec: SessionSpec) -> BacktestResult:
    """The run's ``BacktestResult`` for one session, rebuilt by streaming the journal."""
    key = (spec.symbol, spec.interval, spec.strategy)
    open_time = array("q")
    close = array("d")
    equity = array("d")
    in_pos = array("b")
    fills: list[Fill] = []
    trades: list[Trade] = []
    for _, e in journal.events(run_id=run_id, types=("candle", "equity", "fill"), session=key):
        t = e["type"]
        if t == "candle":
            open_time.append(_ms(e["open_time"]))
            close.append(float(e["close"]))
        elif t == "equity" and len(equity) < len(open_time):  # one equity point per closed candle
            equity.append(float(e["equity"]))
            in_pos.append(1 if e.get("in_position") else 0)
        elif t == "fill":
            fills.append(
                Fill(
                    _ms(e["fill_time"]),
                    e["symbol"],
                    OrderSide(e["side"]),
                    float(e["price"]),
                    float(e["qty"]),
                    float(e["fee"]),
                    FillReason(e["reason"]),
                    e["order_id"],
                )
            )
            if e.get("trade"):
                trades.append(Trade.from_dict(e["trade"]))
    state = journal.session_state(spec.key)
    open_position: dict[str, Any] | None = None
    funding = sum(t.funding for t in trades)
    if state is not None and state.snapshot.get("position"):
        p = state.snapshot["position"]
        sign = 1 if p["side"] == "LONG" else -1
        open_position = {
            "side": p["side"].lower(),
            "qty": p["qty"],
            "entry_price": p["entry_price"],
            "entry_time": p["entry_time"],
            "unrealized_pnl": sign * p["qty"] * (close[-1] - p["entry_price"]) if close else 0.0,
        }
        funding += float(state.snapshot.get("position_funding", 0.0))
    fm = FILL_MODELS[spec.fill_model]
    return BacktestResult(
        symbol=spec.symbol,
        interval=spec.interval,
        strategy=make_strategy(spec.strategy, **spec.params),
        fill_model=fm,
        settings=spec.broker,
        run_id=run_id,
        open_time=np.frombuffer(open_time, dtype=np.int64).copy(),
        close=np.frombuffer(close, dtype=np.float64).copy(),
        equity=np.frombuffer(equity, dtype=np.float64).copy(),
        in_position=np.frombuffer(in_pos, dtype=np.int8).astype(bool),
        fills=fills,
        trades=trades,
        fees_paid=sum(f.fee for f in fills),
        funding_paid=funding,
        open_position=open_position,
        indicator_settings=fm.indicator_settings(),
    )
