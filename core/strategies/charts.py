"""What the dashboard draws for a strategy, derived from what the strategy declares.

The console must chart a user's strategy without anyone editing ``tui/``: so the strategy's
declarations (its ``indicators`` with ``plot=`` / ``levels=``, and ``base_panes`` for the seven
base values) are turned here, in core and without any UI code, into a tuple of ``Chart``: one per
pane of its own and one per group of lines over the price chart. The console only draws them.

``plot="auto"`` is decided on the same deterministic synthetic history the indicator plan is
validated on (``tradeconsole.core.indicators``): a column whose every defined value lies within
the history's price range (widened by half of it) is price-valued. An indicator with a
price-valued column overlays the price chart with those columns (Bollinger Bands without their
bandwidth and %B, Supertrend without its direction); one without gets a pane with every column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from tradeconsole.core.indicators import IndicatorSettings, IndicatorSpec, _column, _probe_frame

if TYPE_CHECKING:
    from tradeconsole.core.strategies.base import Strategy

__all__ = ["BASE_CHARTS", "Chart", "chart_layout"]


@dataclass(frozen=True, slots=True)
class Chart:
    """One thing the dashboard draws: ``lines`` (``ind`` field names) as lines and ``bars`` as a
    histogram, either in a pane of its own titled ``title`` or, with ``overlay``, over the price
    chart. ``levels`` are horizontal reference lines; ``bounds`` a fixed y-range (RSI 0..100),
    else the range of the values and levels shown."""

    key: str
    title: str
    overlay: bool
    lines: tuple[str, ...]
    bars: tuple[str, ...] = ()
    levels: tuple[float, ...] = ()
    bounds: tuple[float, float] | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return self.lines + self.bars


#: the base values' panes, as the console has always drawn them
BASE_CHARTS: dict[str, Chart] = {
    "rsi": Chart("rsi", "RSI", False, ("rsi",), (), (30.0, 70.0), (0.0, 100.0)),
    "macd": Chart("macd", "MACD", False, ("macd", "macd_signal"), ("macd_hist",), (0.0,)),
    "cci": Chart("cci", "CCI", False, ("cci",), (), (-100.0, 100.0)),
}


def chart_layout(cls: type[Strategy]) -> tuple[Chart, ...]:
    """The strategy's charts: its ``base_panes`` first (in that order), then each declared
    indicator in declaration order. Raises what ``indicator_plan`` raises for a declaration that
    cannot be computed."""
    plan = cls.indicator_plan(IndicatorSettings())
    out = [BASE_CHARTS[name] for name in cls.base_panes]
    probe = None
    for spec in cls.indicators.values():
        if spec.plot == "none":
            continue
        names = [n for n, (sp, _) in plan.outputs.items() if sp.key == spec.key]
        if not names:
            continue
        if spec.kind == "o1":
            out.append(_o1_chart(spec, names))
            continue
        if probe is None:
            probe = _probe_frame(max(300, plan.window + 50))
        priced = _price_valued(spec, plan, names, probe)
        overlay = spec.plot == "overlay" or (spec.plot == "auto" and bool(priced))
        lines = tuple(priced or names) if overlay else tuple(names)
        out.append(Chart(spec.key, spec.key, overlay, lines, (), spec.levels))
    return tuple(out)


def _o1_chart(spec: IndicatorSpec, names: list[str]) -> Chart:
    """A declared ``rsi``/``macd``/``cci`` drawn like the base pane of the same name (its own
    reference lines unless ``levels`` says otherwise); as an overlay it makes no sense, so it is
    always a pane."""
    base = BASE_CHARTS[spec.name]
    levels = spec.levels or base.levels
    if spec.name == "macd":
        k = spec.key
        return Chart(k, k, False, (k, f"{k}_signal"), (f"{k}_hist",), levels)
    return Chart(spec.key, spec.key, False, tuple(names), (), levels, base.bounds)


def _price_valued(spec: IndicatorSpec, plan: Any, names: list[str], probe: Any) -> list[str]:
    """The outputs of ``spec`` whose every defined value on the probe history lies within its
    price range widened by half of it (at least one defined value)."""
    lo, hi = float(probe["low"].min()), float(probe["high"].max())
    pad = (hi - lo) * 0.5
    try:
        res = spec.evaluate(probe)
    except Exception:  # noqa: BLE001 - the plan already evaluated it; a flaky function is not charted over price
        return []
    out = []
    for name in names:
        col = plan.outputs[name][1]
        try:
            arr = _column(res, col, len(probe), spec)
        except Exception:  # noqa: BLE001 - same as above
            continue
        arr = arr[np.isfinite(arr)]
        if arr.size and float(arr.min()) >= lo - pad and float(arr.max()) <= hi + pad:
            out.append(name)
    return out
