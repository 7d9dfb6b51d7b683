"""Search spaces: what ``--param NAME=SPEC`` means and how combinations are drawn.

A spec is a list of values (``20,25,30``), an inclusive range ``LOW:HIGH:STEP`` (``20:35:5`` =
20, 25, 30, 35), or the bare name, meaning the strategy's declared range (``Param.low`` ..
``Param.high``, open ends excluded) sampled at ``DEFAULT_STEPS`` evenly spaced values for a grid
or continuously for random/Optuna. Every value is checked against the declared range before
any backtest runs, so a typo never costs a whole optimisation.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from tradeconsole.core.strategies import STRATEGIES
from tradeconsole.core.strategies.base import Param, param_ranges

__all__ = ["Dimension", "SpaceError", "grid", "parse_space", "random_points"]

DEFAULT_STEPS = 5
MAX_GRID = 5_000_000


class SpaceError(ValueError):
    """A ``--param`` spec that cannot be searched (the CLI turns it into a UserError)."""


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: its grid values, and the continuous range random/Optuna may draw from
    (``None`` when the user listed explicit values: then only those are drawn)."""

    name: str
    values: tuple[float, ...]
    low: float | None = None
    high: float | None = None
    #: a declared range the strategy accepts only whole numbers of (a count such as a time
    #: exit's candles): its grid values and random/Optuna draws are whole numbers too
    integer: bool = False


def _num(name: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise SpaceError(f"--param {name}: {text[:40]!r} is not a number") from None
    if not math.isfinite(v):
        raise SpaceError(f"--param {name}: {text[:40]!r} is not a finite number")
    return v


def _whole_only(strategy: str, name: str, spec: Param) -> bool:
    """The strategy accepts only whole numbers for ``name`` (e.g. a time exit's candles): asked
    of the strategy itself with a fractional value inside the range."""
    from tradeconsole.core.strategies import make_strategy

    if not all(float(v).is_integer() for v in (spec.default, spec.low, spec.high)):
        return False
    probe = float(math.floor((spec.low + spec.high) / 2)) + 0.5
    try:
        spec.check(name, probe)
        make_strategy(strategy, **{name: probe})
    except (ValueError, TypeError):
        return True
    return False


def _declared(name: str, spec: Param, whole: bool = False) -> Dimension:
    lo, hi = spec.low, spec.high
    span = hi - lo
    # open ends are not allowed values: step inside them by a small fraction of the span
    a = lo + span * 1e-3 if spec.low_open else lo
    b = hi - span * 1e-3 if spec.high_open else hi
    if whole:
        vals = tuple(dict.fromkeys(float(round(a + (b - a) * k / (DEFAULT_STEPS - 1))) for k in range(DEFAULT_STEPS)))
        return Dimension(name, vals, a, b, integer=True)
    vals = tuple(round(a + (b - a) * k / (DEFAULT_STEPS - 1), 10) for k in range(DEFAULT_STEPS))
    return Dimension(name, vals, a, b)


def parse_space(strategy: str, specs: list[str]) -> list[Dimension]:
    """``--param`` specs of ``strategy`` -> dimensions, checked against the declared ranges."""
    if strategy not in STRATEGIES:
        raise SpaceError(f"unknown strategy {strategy!r}; available: {', '.join(STRATEGIES)}")
    ranges = param_ranges(STRATEGIES[strategy].Params)
    if not specs:
        specs = default_specs(strategy)
    dims: list[Dimension] = []
    seen: set[str] = set()
    for raw in specs:
        name, sep, body = raw.partition("=")
        name = name.strip()
        if not name:
            raise SpaceError(f"--param expects NAME=SPEC or NAME, got {raw[:40]!r}")
        if name not in ranges:
            raise SpaceError(
                f"unknown parameter {name[:40]!r} for strategy {strategy!r}; known: {', '.join(sorted(ranges))}"
            )
        if name in seen:
            raise SpaceError(f"--param {name} given twice")
        seen.add(name)
        spec = ranges[name]
        if not sep:
            dims.append(_declared(name, spec, _whole_only(strategy, name, spec)))
            continue
        body = body.strip()
        if ":" in body:
            parts = body.split(":")
            if len(parts) != 3:
                raise SpaceError(f"--param {name}: a range is LOW:HIGH:STEP, got {body[:40]!r}")
            lo, hi, step = (_num(name, p) for p in parts)
            if step <= 0:
                raise SpaceError(f"--param {name}: step must be positive, got {step:g}")
            if hi < lo:
                raise SpaceError(f"--param {name}: HIGH {hi:g} is below LOW {lo:g}")
            count = int(math.floor((hi - lo) / step + 1e-9)) + 1
            if count > 100_000:
                raise SpaceError(f"--param {name}: {count} values; use a coarser step")
            vals = tuple(round(lo + k * step, 10) for k in range(count))
            low = high = None  # a stepped range is a list of values: random/Optuna draw from it
        else:
            vals = tuple(_num(name, p) for p in body.split(",") if p.strip())
            if not vals:
                raise SpaceError(f"--param {name}: no values")
            vals = tuple(dict.fromkeys(vals))
            low = high = None
        for v in vals:
            try:
                spec.check(name, v)
            except ValueError as exc:
                raise SpaceError(f"--param {exc}") from None
        dims.append(Dimension(name, vals, low, high))
    if not dims:
        raise SpaceError("nothing to optimise: give at least one --param NAME=SPEC (or NAME for its declared range)")
    _check_values(strategy, dims)
    return dims


def _check_values(strategy: str, dims: list[Dimension]) -> None:
    """Every listed value through the strategy's own checks (``make_strategy``: e.g. a time exit
    must be a whole number of candles), so a value the strategy refuses is a mistake reported
    now, not a failure in the middle of the run."""
    from tradeconsole.core.strategies import make_strategy

    for d in dims:
        for v in d.values:
            try:
                make_strategy(strategy, **{d.name: v})
            except (ValueError, TypeError) as exc:
                raise SpaceError(f"--param {d.name}={v:g}: {exc}") from None


def default_specs(strategy: str) -> list[str]:
    """The space searched when no ``--param`` is given: for a user strategy, every parameter its
    own ``Params`` declares a range for (the ranges inherited from ``StrategyParams`` - stop,
    target, stake - are the user's to add: their defaults are what the strategy was written with);
    for a built-in nothing (its ranges are the API's, far wider than anyone would search)."""
    from dataclasses import fields

    from tradeconsole.core.strategies import SOURCES
    from tradeconsole.core.strategies.base import StrategyParams

    if SOURCES.get(strategy) == "built-in":
        return []
    inherited = {f.name for f in fields(StrategyParams)}
    ranges = param_ranges(STRATEGIES[strategy].Params)
    return [name for name in ranges if name not in inherited]


def grid_size(dims: list[Dimension]) -> int:
    return math.prod(len(d.values) for d in dims)


def grid(dims: list[Dimension]) -> Iterator[dict[str, float]]:
    """Every combination, in a stable order (the first dimension varies slowest)."""
    if grid_size(dims) > MAX_GRID:
        raise SpaceError(f"the grid has {grid_size(dims):,} combinations (over {MAX_GRID:,}); use --search random")
    for combo in itertools.product(*(d.values for d in dims)):
        yield dict(zip((d.name for d in dims), combo, strict=True))


def random_points(dims: list[Dimension], trials: int, seed: int) -> list[dict[str, float]]:
    """``trials`` distinct points drawn uniformly (continuous ranges rounded to 6 significant
    digits so a results file stays readable; listed values drawn from the list)."""
    rng = random.Random(seed)
    out: list[dict[str, float]] = []
    seen: set[tuple[float, ...]] = set()
    finite = grid_size(dims) if all(d.low is None for d in dims) else None
    limit = trials if finite is None else min(trials, finite)
    attempts = 0
    while len(out) < limit and attempts < 50 * limit + 100:
        attempts += 1
        point = {}
        for d in dims:
            if d.low is None:
                point[d.name] = rng.choice(d.values)
            elif d.integer:
                assert d.high is not None  # a numeric dimension has both bounds (parse_space)
                point[d.name] = float(rng.randint(int(d.low), int(d.high)))
            else:
                assert d.high is not None  # a numeric dimension has both bounds (parse_space)
                point[d.name] = min(max(float(f"{rng.uniform(d.low, d.high):.6g}"), d.low), d.high)
        key = tuple(point.values())
        if key not in seen:
            seen.add(key)
            out.append(point)
    return out
