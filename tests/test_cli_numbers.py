"""Numbers finite and in range (issue 10 item 7 / defect 8): strategy parameters against their
declared ranges, risk limits, and the defaults still valid and unchanged."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
from tradeconsole.core.risk import RiskLimits
from tradeconsole.core.strategies import STRATEGIES, make_strategy
from tradeconsole.core.strategies.base import param_ranges


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_parameter_of_every_strategy_declares_a_range(name):
    cls = STRATEGIES[name]
    ranges = param_ranges(cls.Params)
    assert set(ranges) == {f.name for f in fields(cls.Params)}
    defaults = cls.Params()
    for pname, spec in ranges.items():
        assert getattr(defaults, pname) == spec.default  # the declaration is the default
        spec.check(pname, spec.default)


def test_defaults_are_the_documented_ones():
    b = make_strategy("basic").params
    e = make_strategy("engulfing").params
    assert (b.rsi_oversold, b.rsi_overbought, b.cci_long_min, b.cci_short_max) == (30, 70, -100, 100)
    assert (e.rsi_oversold, e.rsi_overbought) == (25, 70)
    assert (b.stop_loss_pct, b.take_profit_pct, b.stake_fraction) == (0.015, 0.03, 1.0)


@pytest.mark.parametrize(
    ("strategy", "name", "value", "allowed"),
    [
        ("basic", "rsi_overbought", -5.0, "0 <= rsi_overbought <= 100"),
        ("basic", "rsi_oversold", math.nan, "0 <= rsi_oversold <= 100"),
        ("engulfing", "rsi_oversold", math.inf, "0 <= rsi_oversold <= 100"),
        ("engulfing", "rsi_overbought", 101.0, "0 <= rsi_overbought <= 100"),
        ("basic", "cci_long_min", -5000.0, "-1000 <= cci_long_min <= 1000"),
        ("basic", "stop_loss_pct", 0.0, "0 < stop_loss_pct < 1"),
        ("basic", "take_profit_pct", -0.03, "0 < take_profit_pct < 10"),
        ("engulfing", "stake_fraction", 1.5, "0 < stake_fraction <= 1"),
    ],
)
def test_out_of_range_parameters_are_refused_with_the_range(strategy, name, value, allowed):
    with pytest.raises(ValueError, match="allowed " + allowed.replace("+", r"\+")):
        make_strategy(strategy, **{name: value})


def test_edges_and_types():
    assert make_strategy("basic", rsi_oversold=0.0, rsi_overbought=100.0).params.rsi_overbought == 100
    with pytest.raises(ValueError, match="must be a number"):
        make_strategy("basic", rsi_oversold="30")
    with pytest.raises(ValueError, match="must be a number"):
        make_strategy("basic", rsi_oversold=True)


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"max_notional": -5.0}, "max_notional=-5 is out of range"),
        ({"max_notional": 0.0}, "max_notional=0 is out of range"),
        ({"max_daily_loss": math.nan}, "max_daily_loss=nan is out of range"),
        ({"max_daily_loss": math.inf}, "max_daily_loss=inf is out of range"),
        ({"max_orders_per_minute": -5}, "max_orders_per_minute=-5 is out of range"),
        ({"max_orders_per_minute": 0}, "max_orders_per_minute=0 is out of range"),
        ({"max_orders_per_minute": 2.5}, "whole number"),
        ({"max_notional": "x"}, "must be a number"),
    ],
)
def test_risk_limits_are_validated(kw, fragment):
    with pytest.raises(ValueError, match=fragment):
        RiskLimits(**kw)


def test_valid_risk_limits_and_disabled_ones():
    assert RiskLimits().max_orders_per_minute == 10
    lim = RiskLimits(max_notional=5000, max_daily_loss=250.5, max_orders_per_minute=None)
    assert lim.max_notional == 5000 and lim.max_orders_per_minute is None
