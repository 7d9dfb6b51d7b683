"""Issue 12, item 4: the metrics JSON tells "no trades" from "no losses", the same way as the text
report, and the documented definitions (marks, drawdown on marks, annualisation) hold."""

from __future__ import annotations

import json
import math
from typing import ClassVar

import numpy as np
from tradeconsole.backtest.metrics import compute_metrics
from tradeconsole.backtest.report import text_report, to_json
from tradeconsole.backtest.runner import run_backtest
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.domain import Candle, Side
from tradeconsole.core.indicators import IndicatorValues
from tradeconsole.core.strategies.base import Strategy

H = 3_600_000


class LongOnce(Strategy):
    """Goes long on the candle opening at ``at`` (test helper)."""

    name: ClassVar[str] = "long_once"
    default_interval: ClassVar[str] = "1h"

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def entry_signal(self, candle: Candle, ind: IndicatorValues) -> Side | None:
        return Side.LONG if candle.open_time == self.at else None


def history(closes: list[float]) -> CandleArrays:
    out, prev = [], closes[0]
    for i, c in enumerate(closes):
        o = prev
        out.append(Candle(i * H, o, max(o, c) + 0.1, min(o, c) - 0.1, c, 1.0, i * H + H - 1))
        prev = c
    return CandleArrays.from_candles(out)


def test_no_trades_is_null_with_its_note_in_json_and_text():
    r = run_backtest(history([100.0] * 30), LongOnce(at=-1), interval="1h")
    m = compute_metrics(r)
    j = json.loads(to_json(m))
    assert j["trades"] == 0 and j["profit_factor"] is None and j["profit_factor_note"] == "no trades"
    assert "Profit factor        n/a (no trades)" in text_report(m)


def test_no_losses_is_null_with_a_different_note_in_json_and_text():
    closes = [100.0] * 5 + [100.0 + 0.5 * k for k in range(1, 20)]  # rises through the 3% target
    r = run_backtest(history(closes), LongOnce(at=4 * H), interval="1h")
    m = compute_metrics(r)
    assert m["trades"] == 1 and m["wins"] == 1 and m["losses"] == 0
    j = json.loads(to_json(m))
    assert j["profit_factor"] is None and j["profit_factor_note"] == "no losing trades"
    assert "Profit factor        n/a (no losing trades)" in text_report(m)


def test_a_defined_profit_factor_has_no_note(candles_1h):
    from tradeconsole.core.strategies import make_strategy

    m = compute_metrics(run_backtest(candles_1h, make_strategy("engulfing"), interval="1h"))
    assert m["profit_factor"] > 0 and m["profit_factor_note"] is None
    assert f"Profit factor        {m['profit_factor']:.2f}\n" in text_report(m) + "\n"


def test_documented_definitions_hold_by_hand():
    # long at 100, the price dips to 99 (above the 98.5 stop) and the run ends with it open at 101
    closes = [100.0] * 5 + [99.5, 99.0, 99.2, 100.0, 100.5, 101.0]
    r = run_backtest(history(closes), LongOnce(at=4 * H), interval="1h")
    m = compute_metrics(r)
    pos = r.open_position
    assert pos is not None and m["trades"] == 0
    # final equity marks the open position to the last close, without an exit fee
    assert m["final_equity"] == r.settings.initial_cash - m["fees_paid"] + pos["qty"] * (101.0 - pos["entry_price"])
    # drawdown on the marked curve (the open position's dip counts), peak starting at the cash
    eq = r.equity
    peak = np.maximum.accumulate(np.concatenate(([10_000.0], eq)))[1:]
    assert m["max_drawdown_pct"] == max((peak - eq) / peak) * 100 > 0.9
    # Sharpe annualised from the 1h interval: sqrt(365 * 24) bars per year
    rets = np.diff(np.concatenate(([10_000.0], eq))) / np.concatenate(([10_000.0], eq[:-1]))
    assert math.isclose(m["sharpe"], rets.mean() / rets.std(ddof=1) * math.sqrt(365 * 24), rel_tol=1e-12)
