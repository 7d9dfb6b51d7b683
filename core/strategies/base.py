"""The strategy API: everything a user writes to define a strategy (see docs/strategies.md).

A strategy is a small class. It *declares* what it needs and *decides* on closed candles only:

* ``Params``: a frozen dataclass of its parameters, each declared with ``param(default, low,
  high)`` so every value typed by a user is range-checked (``--param NAME=VALUE``);
* ``indicators``: ``{"name": ta("bbands", length=20, std=2.0), "mine": custom(fn, window=50)}``,
  any pandas-ta indicator by name and keyword arguments, or a function of the candle history (a
  DataFrame of open/high/low/close/volume). ``rsi``, ``macd`` and ``cci`` are O(1) per candle
  live; the rest are recomputed over a bounded window of recent candles (``window``, default
  ``startup_candle_count`` or derived), so live and backtest run the same function on the same
  candles. The base values (``rsi``, ``macd``, ``macd_signal``, ``macd_hist``, ``cci``, ``bull``,
  ``engulfing``) are always there. ``plot=`` / ``levels=`` on a declaration and ``base_panes``
  say how the dashboard charts them (``chart_layout``; see ``tradeconsole.core.strategies.charts``);
* ``entry_signal(candle, ind)``: the side to open on this closed candle, or None;
* exits: ``stop_loss`` / ``take_profit`` (``fixed(pct)``, ``atr(mult)``, ``level(column)``, or
  ``per_side(long=..., short=...)``), ``trailing_stop`` (``trailing(pct=...)`` or
  ``trailing(atr=...)``), ``max_bars_in_trade`` (time exit) and ``exit_signal(candle, ind,
  position)``;
* ``sizing``: ``equity_fraction(f)``, ``fixed_notional(usdt)`` or ``risk_per_trade(f)``;
* ``default_interval`` / ``intervals`` and ``startup_candle_count`` (warm-up in candles).

Numbers in these declarations may be a parameter's name (``fixed("stop_loss_pct")``) so they
follow ``--param``. Protective orders (stop, target, trailing) belong to the broker, placed right
after the entry as an exchange holds them; exit signals and time exits are decided on a closed
candle and filled like an entry (seed: at that close; realistic: at the next open). Because a
strategy only ever sees closed candles and declared indicators, the same candles give the same
decisions in a backtest, a replay, paper and live trading: all call the very same methods.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, TypedDict

from tradeconsole.core.broker import ExitPlan
from tradeconsole.core.domain import Candle, Position, Side
from tradeconsole.core.indicators import (
    O1_INDICATORS,
    IndicatorPlan,
    IndicatorSettings,
    IndicatorSpec,
    IndicatorValues,
)

__all__ = [
    "ATR",
    "Fixed",
    "IndicatorLevel",
    "Param",
    "PerSide",
    "Sizing",
    "Strategy",
    "StrategyDefinitionError",
    "StrategyParams",
    "Trailing",
    "atr",
    "custom",
    "equity_fraction",
    "fixed",
    "fixed_notional",
    "level",
    "param",
    "param_ranges",
    "per_side",
    "risk_per_trade",
    "ta",
    "trailing",
]


@dataclass(frozen=True, slots=True)
class Param:
    """The declared range of one strategy parameter: the one place a value typed by the user
    (``--param``, ``--stop-loss``) is checked against, so ``nan`` or ``rsi_overbought=-5`` cannot
    silently disable or invert a strategy."""

    default: float
    low: float
    high: float
    low_open: bool = False  # True: ``low`` itself is not allowed
    high_open: bool = False
    doc: str = ""

    def allowed(self, name: str) -> str:
        return f"{self.low:g} {'<' if self.low_open else '<='} {name} {'<' if self.high_open else '<='} {self.high:g}"

    def check(self, name: str, value: object) -> None:
        """ValueError naming the allowed range unless ``value`` is a finite number inside it."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, not {type(value).__name__}")
        v = float(value)
        ok = (
            math.isfinite(v)
            and (self.low < v if self.low_open else self.low <= v)
            and (v < self.high if self.high_open else v <= self.high)
        )
        if not ok:
            raise ValueError(
                f"{name}={v:g} is out of range: allowed {self.allowed(name)}" + (f" ({self.doc})" if self.doc else "")
            )


def param(
    default: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False, doc: str = ""
) -> Any:
    """A dataclass field with its declared range (see ``Param``)."""
    return field(default=default, metadata={"param": Param(default, low, high, low_open, high_open, doc)})


def param_ranges(params_cls: type[StrategyParams]) -> dict[str, Param]:
    """Name -> declared range of every parameter of a strategy's ``Params`` class."""
    return {f.name: f.metadata["param"] for f in fields(params_cls) if "param" in f.metadata}


class _Range(TypedDict):
    """The keyword arguments of ``param`` that a family of parameters shares."""

    low: float
    high: float
    doc: str


#: RSI is bounded by definition
RSI: _Range = {"low": 0.0, "high": 100.0, "doc": "RSI is between 0 and 100"}
#: CCI(20) = (TP - SMA) / (0.015 * mean deviation) cannot leave +-n/0.03 = +-666.7 for n = 20
CCI: _Range = {"low": -1000.0, "high": 1000.0, "doc": "CCI(20) never leaves about +-667"}


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Parameters every strategy has: protective levels and position size.

    ``stop_loss_pct`` and ``take_profit_pct`` are fractions of the entry price (0.015 = 1.5%),
    the same for longs and shorts. ``stake_fraction`` is the share of equity committed per trade
    (1.0 = whole equity, as the original research ran it). Every field is declared with
    ``param`` and checked against its range on construction.
    """

    stop_loss_pct: float = param(0.015, 0.0, 1.0, low_open=True, high_open=True, doc="0.015 = 1.5%")
    take_profit_pct: float = param(0.03, 0.0, 10.0, low_open=True, high_open=True, doc="0.03 = 3%")
    stake_fraction: float = param(1.0, 0.0, 1.0, low_open=True, doc="1.0 = whole equity")

    def __post_init__(self) -> None:
        for name, spec in param_ranges(type(self)).items():
            spec.check(name, getattr(self, name))


class StrategyDefinitionError(ValueError):
    """A strategy class declares something that cannot work (bad indicator, exit rule or sizing)."""


Number = float | int | str  # a number, or the name of a parameter holding it


def _num(strategy: Strategy, x: Number) -> float:
    return float(getattr(strategy.params, x)) if isinstance(x, str) else float(x)


# ---------------------------------------------------------------------------- indicators


def ta(
    name: str,
    *,
    window: int | None = None,
    columns: dict[str, str] | None = None,
    plot: str = "auto",
    levels: tuple[float, ...] | list[float] = (),
    **kwargs: Any,
) -> IndicatorSpec:
    """A pandas-ta indicator by name, e.g. ``ta("bbands", length=20, std=2.0)``. A multi-column
    result is read as ``ind.<key>_<suffix>``: by default the suffix is pandas-ta's column prefix
    lowercased (``bb_bbl``, ``bb_bbu``), or name them with ``columns={"lower": "BBL", ...}``.
    ``rsi``, ``macd`` and ``cci`` use the project's definitions and are O(1) live. ``window``:
    closed candles the live path recomputes it over (default: the strategy's
    ``startup_candle_count``, else 10x its longest length, at least 50).

    ``plot`` says how the dashboard charts it, so a user strategy is charted without touching the
    console: ``"overlay"`` draws its price-valued columns over the candles (bands, MAs,
    Supertrend), ``"pane"`` gives it a pane of its own, ``"none"`` leaves it off the screen, and
    ``"auto"`` (default) overlays it when its values lie in the price range and gives it a pane
    otherwise. ``levels``: reference lines drawn with it (``levels=(30, 70)`` for an RSI)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise StrategyDefinitionError(f"ta(): indicator name must be a pandas-ta function name, not {name!r}")
    plot, levels_t = _chart_args(f"ta({name!r})", plot, levels)
    if name in O1_INDICATORS:
        bad = set(kwargs) - set(O1_INDICATORS[name])
        if bad:
            raise StrategyDefinitionError(
                f"ta({name!r}): unknown argument(s) {', '.join(sorted(bad))}; allowed: {', '.join(O1_INDICATORS[name])}"
            )
        return IndicatorSpec("", "o1", name, tuple(sorted(kwargs.items())), plot=plot, levels=levels_t)
    import pandas_ta

    if not callable(getattr(pandas_ta, name, None)):
        raise StrategyDefinitionError(f"ta({name!r}): pandas-ta has no indicator {name!r}")
    return IndicatorSpec(
        "",
        "ta",
        name,
        tuple(sorted(kwargs.items())),
        window=_window(window),
        columns=tuple((columns or {}).items()),
        plot=plot,
        levels=levels_t,
    )


def custom(
    fn: Any, *, window: int | None = None, plot: str = "auto", levels: tuple[float, ...] | list[float] = ()
) -> IndicatorSpec:
    """A user function of the candle history: ``fn(df)`` gets a DataFrame with columns open, high,
    low, close, volume (oldest first) and returns a Series/array with one value per row, or a
    DataFrame (read as ``ind.<key>_<column prefix>``). It must only look backwards:
    ``tradeconsole strategy check`` proves it. ``window``, ``plot`` and ``levels`` as in ``ta``
    (default window 200 candles)."""
    if not callable(fn):
        raise StrategyDefinitionError(f"custom(): {fn!r} is not a function")
    plot, levels_t = _chart_args("custom()", plot, levels)
    return IndicatorSpec(
        "", "custom", getattr(fn, "__name__", "custom"), fn=fn, window=_window(window), plot=plot, levels=levels_t
    )


#: how a declared indicator may be charted (see ``ta``)
PLOTS = ("auto", "overlay", "pane", "none")


def _chart_args(what: str, plot: object, levels: object) -> tuple[str, tuple[float, ...]]:
    """``plot`` and ``levels`` checked at declaration time: a typo must not silently hide a pane."""
    if plot not in PLOTS:
        raise StrategyDefinitionError(f"{what}: plot must be one of {', '.join(map(repr, PLOTS))}, not {plot!r}")
    if not isinstance(levels, (tuple, list)):
        raise StrategyDefinitionError(f"{what}: levels must be a tuple of numbers, not {type(levels).__name__}")
    out = []
    for v in levels:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise StrategyDefinitionError(f"{what}: levels must be finite numbers, not {v!r}")
        out.append(float(v))
    return str(plot), tuple(out)


def _window(window: int | None) -> int:
    if window is None:
        return 0  # filled in from the strategy at class creation
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise StrategyDefinitionError(f"window must be a whole number of candles >= 2, not {window!r}")
    return window


# ---------------------------------------------------------------------------- exits and sizing


@dataclass(frozen=True, slots=True)
class Fixed:
    """Stop/target at a fixed fraction of the entry price (0.015 = 1.5%)."""

    pct: Number

    def resolve(self, s: Strategy, side: Side, ind: Any) -> tuple[str, float] | None:
        return ("pct", _num(s, self.pct))


@dataclass(frozen=True, slots=True)
class ATR:
    """Stop/target ``mult`` times an indicator column (an ATR, typically) away from the entry,
    read on the signal candle."""

    mult: Number
    column: str = "atr"

    def resolve(self, s: Strategy, side: Side, ind: Any) -> tuple[str, float] | None:
        return ("distance", _num(s, self.mult) * float(getattr(ind, self.column)))


@dataclass(frozen=True, slots=True)
class IndicatorLevel:
    """Stop/target at the price an indicator column holds on the signal candle (e.g. the lower
    Bollinger band). A level on the wrong side of the fill price drops the entry (counted)."""

    column: str

    def resolve(self, s: Strategy, side: Side, ind: Any) -> tuple[str, float] | None:
        return ("price", float(getattr(ind, self.column)))


@dataclass(frozen=True, slots=True)
class PerSide:
    """Different rules for longs and shorts (either may be None: no such order on that side)."""

    long: Any
    short: Any

    def resolve(self, s: Strategy, side: Side, ind: Any) -> tuple[str, float] | None:
        rule = self.long if side is Side.LONG else self.short
        return None if rule is None else rule.resolve(s, side, ind)


@dataclass(frozen=True, slots=True)
class Trailing:
    """A trailing stop: ``pct`` of the best price reached, or ``atr`` times an indicator column
    (read on the signal candle) behind it. The level moves once per closed candle."""

    pct: Number | None = None
    atr: Number | None = None
    column: str = "atr"

    def resolve(self, s: Strategy, side: Side, ind: Any) -> tuple[str, float]:
        if self.pct is not None:
            return ("pct", _num(s, self.pct))
        # self.atr is set whenever self.pct is None: trailing() requires exactly one of them
        return ("distance", _num(s, self.atr) * float(getattr(ind, self.column)))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Sizing:
    """How big an entry is: ``fraction`` of equity committed as margin, a ``notional`` in USDT, or
    ``risk``: the fraction of equity lost if the stop is hit (needs a stop-loss)."""

    kind: str
    value: Number


def fixed(pct: Number) -> Fixed:
    """Stop/target at a fixed fraction of the entry price, e.g. ``fixed(0.02)`` or ``fixed("stop_loss_pct")``."""
    return Fixed(pct)


def atr(mult: Number, column: str = "atr") -> ATR:
    """Stop/target ``mult`` x ``ind.<column>`` from the entry (declare e.g. ``"atr": ta("atr", length=14)``)."""
    return ATR(mult, column)


def level(column: str) -> IndicatorLevel:
    """Stop/target at the price ``ind.<column>`` holds on the signal candle."""
    return IndicatorLevel(column)


def per_side(long: Any = None, short: Any = None) -> PerSide:
    """Separate rules per side: ``per_side(long=level("bb_bbl"), short=level("bb_bbu"))``."""
    return PerSide(long, short)


def trailing(pct: Number | None = None, *, atr: Number | None = None, column: str = "atr") -> Trailing:
    """A trailing stop ``pct`` (fraction) or ``atr`` x ``ind.<column>`` behind the best price."""
    if (pct is None) == (atr is None):
        raise StrategyDefinitionError("trailing(): give exactly one of pct= or atr=")
    return Trailing(pct, atr, column)


def equity_fraction(f: Number) -> Sizing:
    """Commit ``f`` of equity as margin per trade (1.0 = whole equity)."""
    return Sizing("fraction", f)


def fixed_notional(usdt: Number) -> Sizing:
    """A fixed position notional in USDT (capped by what the equity can margin)."""
    return Sizing("notional", usdt)


def risk_per_trade(f: Number) -> Sizing:
    """Size so that a stop-loss hit loses ``f`` of equity (before fees; capped by the equity)."""
    return Sizing("risk", f)


class Strategy(ABC):
    """Base class of every strategy (see the module docstring for what a subclass declares).

    Subclasses set ``name``, ``default_interval`` and ``Params`` and implement ``entry_signal``;
    everything else has defaults: fixed stop/target from the ``stop_loss_pct`` /
    ``take_profit_pct`` parameters, no trailing stop, no time exit, no exit signal, the
    ``stake_fraction`` parameter's share of equity per trade."""

    name: ClassVar[str]
    default_interval: ClassVar[str]
    intervals: ClassVar[tuple[str, ...]] = ()  # the intervals it is meant for (default: default_interval)
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    indicators: ClassVar[dict[str, IndicatorSpec]] = {}
    stop_loss: ClassVar[Any] = Fixed("stop_loss_pct")
    take_profit: ClassVar[Any] = Fixed("take_profit_pct")
    trailing_stop: ClassVar[Trailing | None] = None
    max_bars_in_trade: ClassVar[int | str | None] = None  # time exit: candles held (or a parameter's name)
    sizing: ClassVar[Sizing] = Sizing("fraction", "stake_fraction")
    startup_candle_count: ClassVar[int | None] = None  # warm-up in candles (None: derived)
    #: the base values the dashboard gives a pane each, in order (any of "rsi", "macd", "cci");
    #: declared indicators are charted after them as their ``plot=`` says
    base_panes: ClassVar[tuple[str, ...]] = ("rsi", "macd", "cci")
    _plans: ClassVar[dict[IndicatorSettings, IndicatorPlan]] = {}
    _charts: ClassVar[tuple[Any, ...] | None] = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if getattr(cls, "__abstractmethods__", None):
            return
        for attr in ("name", "default_interval"):
            if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr):
                raise StrategyDefinitionError(f"strategy class {cls.__name__} must set {attr} (a string)")
        if not cls.name.replace("_", "a").replace("-", "a").isalnum():
            raise StrategyDefinitionError(f"strategy name {cls.name!r}: letters, digits, '_' and '-' only")
        if not cls.intervals:
            cls.intervals = (cls.default_interval,)
        suc = cls.startup_candle_count
        if suc is not None and (isinstance(suc, bool) or not isinstance(suc, int) or suc < 1):
            raise StrategyDefinitionError(f"{cls.name}: startup_candle_count must be a positive whole number")
        specs = {}
        for key, spec in dict(cls.indicators).items():
            if not isinstance(spec, IndicatorSpec):
                raise StrategyDefinitionError(
                    f"{cls.name}: indicator {key!r} must be declared with ta(...) or "
                    f"custom(...), not {type(spec).__name__}"
                )
            if not isinstance(key, str) or not key.isidentifier() or key in IndicatorValues._fields:
                raise StrategyDefinitionError(
                    f"{cls.name}: indicator name {key!r} must be an identifier other "
                    f"than the base values {', '.join(IndicatorValues._fields)}"
                )
            window = spec.window
            if spec.kind != "o1" and not window:
                ints = [v for _, v in spec.kwargs if isinstance(v, int) and not isinstance(v, bool)]
                window = suc or (max(50, 10 * max(ints)) if ints else 200)
            specs[key] = replace(spec, key=key, window=window)
        cls.indicators = specs
        for attr in ("stop_loss", "take_profit"):
            rule = getattr(cls, attr)
            if rule is not None and not hasattr(rule, "resolve"):
                raise StrategyDefinitionError(
                    f"{cls.name}: {attr} must be fixed(...), atr(...), level(...), per_side(...) or None"
                )
        if not isinstance(cls.sizing, Sizing) or cls.sizing.kind not in ("fraction", "notional", "risk"):
            raise StrategyDefinitionError(
                f"{cls.name}: sizing must be equity_fraction(...), fixed_notional(...) or risk_per_trade(...)"
            )
        if cls.sizing.kind == "risk" and cls.stop_loss is None:
            raise StrategyDefinitionError(f"{cls.name}: risk_per_trade sizing needs a stop_loss")
        bp = cls.base_panes
        if not isinstance(bp, tuple) or any(p not in ("rsi", "macd", "cci") for p in bp) or len(set(bp)) != len(bp):
            raise StrategyDefinitionError(
                f"{cls.name}: base_panes must be a tuple of distinct names among 'rsi', 'macd', 'cci', not {bp!r}"
            )
        cls._plans = {}
        cls._charts = None

    def __init__(self, params: StrategyParams | None = None) -> None:
        self.params = params if params is not None else self.Params()
        for attr in ("stop_loss", "take_profit", "trailing_stop"):
            rule = getattr(self, attr)
            for r in (rule.long, rule.short) if isinstance(rule, PerSide) else (rule,):
                self._check_refs(r, attr)
        self._check_refs(self.sizing, "sizing")
        mb = self.max_bars_in_trade
        if mb is not None:
            n = _num(self, mb)
            if not (n >= 1 and n == int(n)):
                raise ValueError(f"{self.name}: max_bars_in_trade must be a whole number >= 1 (got {n:g})")
        self.simple_exits = (
            type(self).stop_loss == Fixed("stop_loss_pct")
            and type(self).take_profit == Fixed("take_profit_pct")
            and self.trailing_stop is None
            and self.sizing == Sizing("fraction", "stake_fraction")
        )
        self.managed_exits = self.max_bars_in_trade is not None or type(self).exit_signal is not Strategy.exit_signal

    def _check_refs(self, rule: Any, attr: str) -> None:
        """Every parameter name an exit/sizing rule refers to must exist."""
        if rule is None:
            return
        for f in fields(rule):
            v = getattr(rule, f.name)
            if f.name in ("pct", "mult", "value", "atr") and isinstance(v, str) and not hasattr(self.params, v):
                raise StrategyDefinitionError(
                    f"{self.name}: {attr} refers to parameter {v!r}, which "
                    f"{type(self.params).__name__} does not declare"
                )
            if isinstance(v, (Fixed, ATR, IndicatorLevel, Trailing)):
                self._check_refs(v, attr)

    @classmethod
    def with_overrides(cls, **overrides: Any) -> Strategy:
        """Build with default parameters, replacing the given ones (unknown names raise)."""
        known = {f.name for f in fields(cls.Params)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(
                f"unknown parameter(s) for strategy {cls.name!r}: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(replace(cls.Params(), **overrides))

    # ------------------------------------------------------------------ decisions (user code)
    @abstractmethod
    def entry_signal(self, candle: Candle, ind: Any) -> Side | None:
        """Side to open on this closed candle, or None. ``ind`` holds the base values and every
        declared indicator on this candle (``ind.rsi``, ``ind.bb_bbu``...). Comparisons with NaN
        (warm-up) are False, so no signal is produced before the indicators are defined."""

    def exit_signal(self, candle: Candle, ind: Any, position: Position) -> bool:
        """True to close ``position`` on this closed candle (seed: at its close; realistic: at the
        next candle's open). Protective orders still act in between."""
        return False

    # ------------------------------------------------------------------ derived (the engine's side)
    def exit_plan(self, side: Side, ind: Any) -> ExitPlan:
        """The protective orders and sizing for an entry signalled on a bar with values ``ind``."""
        sl = self.stop_loss.resolve(self, side, ind) if self.stop_loss is not None else None
        tp = self.take_profit.resolve(self, side, ind) if self.take_profit is not None else None
        tr = self.trailing_stop.resolve(self, side, ind) if self.trailing_stop is not None else None
        return ExitPlan(sl, tp, tr, self.sizing.kind, _num(self, self.sizing.value))

    def max_hold(self) -> int | None:
        """Time exit in candles, or None."""
        return None if self.max_bars_in_trade is None else int(_num(self, self.max_bars_in_trade))

    @classmethod
    def indicator_plan(cls, settings: IndicatorSettings) -> IndicatorPlan:
        """The declared indicators under one fill model's definitions (built once per settings);
        raises ``IndicatorPlanError`` for a declaration that cannot be computed."""
        plan = cls._plans.get(settings)
        if plan is None:
            plan = cls._plans[settings] = IndicatorPlan(tuple(cls.indicators.values()), settings)
            for attr in ("stop_loss", "take_profit", "trailing_stop"):
                for col in _columns(getattr(cls, attr)):
                    if col not in plan.fields:
                        raise StrategyDefinitionError(
                            f"{cls.name}: {attr} reads ind.{col}, which no declared "
                            f"indicator provides (have: {', '.join(plan.fields)})"
                        )
        return plan

    @classmethod
    def chart_layout(cls) -> tuple[Any, ...]:
        """What the dashboard draws for this strategy (``tradeconsole.core.strategies.charts.Chart``
        each): the ``base_panes``, then every declared indicator as its ``plot=`` says. Built
        once per class; raises like ``indicator_plan`` for a declaration that cannot be computed."""
        if cls._charts is None:
            from tradeconsole.core.strategies.charts import chart_layout

            cls._charts = chart_layout(cls)
        return cls._charts

    @classmethod
    def warmup_bars(cls, settings: IndicatorSettings = IndicatorSettings()) -> int:
        """Candles of history the strategy needs before its values are trusted: the declared
        ``startup_candle_count``, else the longest live window and the candles after which the
        recursive (EMA-type) base indicators have forgotten where they started (10x their
        longest length)."""
        if cls.startup_candle_count is not None:
            return cls.startup_candle_count
        s = settings
        lengths = [s.rsi_length, s.macd_slow + s.macd_signal, s.cci_length]
        for spec in cls.indicators.values():
            if spec.kind == "o1":
                o = spec.settings(s)
                lengths += [o.rsi_length, o.macd_slow + o.macd_signal, o.cci_length]
        return max([10 * max(lengths)] + [spec.window for spec in cls.indicators.values()])

    def live_unsupported(self) -> list[str]:
        """What this strategy declares that the live Binance broker cannot do (it places only
        fixed-percentage stop and target orders and sizes by equity fraction)."""
        out = []
        if type(self).stop_loss != Fixed("stop_loss_pct") or type(self).take_profit != Fixed("take_profit_pct"):
            out.append("stop-loss/take-profit other than the fixed stop_loss_pct/take_profit_pct")
        if self.trailing_stop is not None:
            out.append("a trailing stop")
        if self.max_bars_in_trade is not None:
            out.append("a time exit (max_bars_in_trade)")
        if type(self).exit_signal is not Strategy.exit_signal:
            out.append("exit signals")
        if self.sizing != Sizing("fraction", "stake_fraction"):
            out.append(f"{self.sizing.kind} sizing")
        return out

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.name, **{f.name: getattr(self.params, f.name) for f in fields(self.params)}}


def _columns(rule: Any) -> list[str]:
    if rule is None:
        return []
    if isinstance(rule, PerSide):
        return _columns(rule.long) + _columns(rule.short)
    if isinstance(rule, (ATR, IndicatorLevel)):
        return [rule.column]
    if isinstance(rule, Trailing) and rule.atr is not None:
        return [rule.column]
    return []
