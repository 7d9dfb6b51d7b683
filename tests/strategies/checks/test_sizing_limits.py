"""The risk limit's max notional and the leverage cap bind every sizing rule (fraction of equity,
fixed notional, risk per trade), in both fill models, through the one session code path the
engine runs. Hand-made candles: entry at 100, so quantities can be worked out by hand."""

from __future__ import annotations

import pytest
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, SimulatedFuturesBroker
from tradeconsole.core.domain import Candle, Side
from tradeconsole.core.indicators import IncrementalIndicators
from tradeconsole.core.risk import RiskGuard, RiskLimits
from tradeconsole.core.session import StrategySession
from tradeconsole.core.strategies import Strategy, equity_fraction, fixed, fixed_notional, risk_per_trade

H = 3_600_000
CASH = 10_000.0


def _strategy(sizing, stop=0.001):
    class Once(Strategy):
        """Long on the first candle, a tight stop (risk sizing then wants a huge position)."""

        name = f"t_size_{sizing.kind}"
        default_interval = "1h"
        stop_loss = fixed(stop)
        take_profit = None

        def entry_signal(self, candle, ind):
            return Side.LONG if candle.open_time == 0 else None

    Once.sizing = sizing
    return Once()


def _entry_qty(strategy, model: str, limits: RiskLimits | None, leverage: float = 1.0) -> float:
    fm = FILL_MODELS[model]
    broker = SimulatedFuturesBroker("ETHUSDT", BrokerSettings(fee_rate=0.0, leverage=leverage), fm)
    session = StrategySession(
        symbol="ETHUSDT",
        interval="1h",
        strategy=strategy,
        broker=broker,
        run_id="t",
        mode="paper",
        initial_cash=CASH,
        reenter_on_exit_candle=False,
        risk=None if limits is None else RiskGuard(limits),
        leverage=leverage,
    )
    ind = IncrementalIndicators(fm.indicator_settings())
    for i in range(3):
        c = Candle(i * H, 100.0, 100.0, 100.0, 100.0, 1.0, (i + 1) * H - 1)
        session.on_closed_candle(c, ind.update(c))
    (entry,) = [f for f in broker.fills if f.reason.value.startswith("entry")]
    assert entry.price == 100.0
    return entry.qty


@pytest.mark.parametrize("model", ["seed", "realistic"])
@pytest.mark.parametrize(
    "sizing",
    [risk_per_trade(0.05), fixed_notional(50_000.0), equity_fraction(1.0)],
    ids=["risk", "notional", "fraction"],
)
def test_max_notional_caps_every_sizing(model, sizing):
    # risk 5% with a 0.1% stop wants 5,000 ETH; notional wants 500; fraction wants 100 ETH:
    # the 2,000 USDT limit is 20 ETH at 100, for every rule
    qty = _entry_qty(_strategy(sizing), model, RiskLimits(max_notional=2_000.0))
    assert qty * 100.0 == pytest.approx(2_000.0)


@pytest.mark.parametrize("model", ["seed", "realistic"])
def test_risk_per_trade_is_capped_by_leverage(model):
    # without a risk limit, the margin cap: 10,000 USDT at 3x is 30,000 notional = 300 ETH
    # (the rule alone would want 500 / 0.1 = 5,000 ETH)
    assert _entry_qty(_strategy(risk_per_trade(0.05)), model, None, leverage=3.0) == pytest.approx(300.0)
    # a loose stop wants less than the margin allows: 5% of 10,000 over a 10% stop = 50 ETH
    assert _entry_qty(_strategy(risk_per_trade(0.05), stop=0.10), model, None, leverage=3.0) == pytest.approx(50.0)


@pytest.mark.parametrize("model", ["seed", "realistic"])
def test_fraction_above_one_is_capped_by_leverage(model):
    """A literal equity_fraction(3.0) cannot commit three wallets of margin."""
    assert _entry_qty(_strategy(equity_fraction(3.0)), model, None, leverage=2.0) == pytest.approx(200.0)


def test_a_limit_below_the_rule_leaves_the_rule_alone():
    qty = _entry_qty(_strategy(risk_per_trade(0.05), stop=0.10), "realistic", RiskLimits(max_notional=1e6))
    assert qty == pytest.approx(50.0)
