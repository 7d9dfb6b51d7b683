"""Finding strategies: files given with ``--strategy-path``, the strategies directory in the user
data directory (``tradeconsole.core.paths.strategies_dir``) and the ``tradeconsole.strategies`` entry-point
group of installed packages. Every strategy found is registered in ``tradeconsole.core.strategies`` (which
does no I/O itself), so the CLI, the engine and the console see them by name.

A strategy file is plain Python importing the API from ``tradeconsole.core.strategies``; every non-abstract
``Strategy`` subclass defined in it is a strategy. Loading a file runs it, so a broken one is
reported as ``StrategyLoadError`` with the file and line that failed (a syntax error, an
exception while importing, or a declaration the API refuses, pointed at the class), never a
traceback. Files given explicitly fail the command; broken files in the user directory and
broken entry points are skipped and reported (``LoadReport.skipped``), so one bad file there
does not stop every command.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradeconsole.core.broker import FILL_MODELS
from tradeconsole.core.strategies import SOURCES, STRATEGIES, Strategy, register_strategy

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadReport",
    "StrategyLoadError",
    "available",
    "load_file",
    "load_strategies",
    "strategy_fingerprint",
]

ENTRY_POINT_GROUP = "tradeconsole.strategies"


class StrategyLoadError(ValueError):
    """A strategy file or entry point that cannot be used; the message names file and line."""


@dataclass(slots=True)
class LoadReport:
    loaded: list[tuple[str, str]] = field(default_factory=list)  # (strategy name, source)
    skipped: list[str] = field(default_factory=list)  # one message per broken file / entry point


def _where(exc: BaseException, path: Path) -> int | None:
    """The last line of ``path`` in ``exc``'s traceback."""
    line = None
    for fr in traceback.extract_tb(exc.__traceback__):
        try:
            if Path(fr.filename).resolve() == path:
                line = fr.lineno
        except OSError:
            continue
    return line


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return f"tradeconsole_user_strategies.{path.stem.replace('-', '_')}_{digest}"


def load_file(path: str | Path) -> list[type[Strategy]]:
    """Import one strategy file and return its strategy classes (validated: parameters build,
    declared indicators compute under both fill models). Raises ``StrategyLoadError``."""
    p = Path(path).resolve()
    if p.suffix != ".py":
        raise StrategyLoadError(f"{path}: a strategy file must be a Python file (.py)")
    try:
        source = p.read_bytes()
    except OSError as exc:
        raise StrategyLoadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        code = compile(source, str(p), "exec")
    except SyntaxError as exc:
        raise StrategyLoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except ValueError as exc:  # e.g. NUL bytes
        raise StrategyLoadError(f"{path}: not a Python source file ({exc})") from None
    name = _module_name(p)
    spec = importlib.util.spec_from_file_location(name, p)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code (even sys.exit()): report where it failed
        sys.modules.pop(name, None)
        line = _where(exc, p)
        raise StrategyLoadError(f"{path}{f':{line}' if line else ''}: {type(exc).__name__}: {exc}") from None
    classes = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, Strategy) and c.__module__ == name and not inspect.isabstract(c)
    ]
    if not classes:
        raise StrategyLoadError(f"{path}: defines no Strategy subclass (class MyStrategy(Strategy): ...)")
    for cls in classes:
        _validate(cls, str(path), p)
    return classes


def _class_line(cls: type) -> int | None:
    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return None


def _validate(cls: type[Strategy], label: str, path: Path | None) -> None:
    """Build the strategy with its defaults and its indicator plans, so a bad declaration is
    reported now (pointing at the class) instead of in the middle of a run."""
    try:
        strategy = cls()
        for fm in FILL_MODELS.values():
            cls.indicator_plan(fm.indicator_settings())
        strategy.exit_plan  # noqa: B018 - exists
    except Exception as exc:  # noqa: BLE001
        line = (_where(exc, path) if path is not None else None) or _class_line(cls)
        raise StrategyLoadError(
            f"{label}{f':{line}' if line else ''}: strategy {cls.__name__}: {type(exc).__name__}: {exc}"
        ) from None


def strategy_fingerprint(cls: type[Strategy]) -> str:
    """sha256 of the file that defines ``cls`` plus its name: a strategy check is valid for
    exactly this code (built-ins: their module file)."""
    try:
        data = Path(inspect.getfile(cls)).read_bytes()
    except (OSError, TypeError):
        data = b""
    return hashlib.sha256(data + b"\0" + cls.name.encode()).hexdigest()


def _register(classes: list[type[Strategy]], source: str, report: LoadReport) -> None:
    for cls in classes:
        try:
            register_strategy(cls, source)
        except ValueError as exc:
            raise StrategyLoadError(str(exc)) from None
        report.loaded.append((cls.name, source))


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(f for f in path.iterdir() if f.suffix == ".py" and not f.name.startswith(("_", ".")))
    return [path]


def load_strategies(
    paths: list[str] | tuple[str, ...] = (), *, user_dir: bool = True, entry_points: bool = True
) -> LoadReport:
    """Register every strategy found. Explicit ``paths`` (files or directories) must load;
    the user directory and entry points are best effort (``skipped``)."""
    report = LoadReport()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise StrategyLoadError(f"--strategy-path {raw}: no such file or directory")
        files = _files(p)
        if p.is_dir() and not files:
            raise StrategyLoadError(f"--strategy-path {raw}: no .py strategy files in this directory")
        for f in files:
            _register(load_file(f), str(f), report)
    if user_dir:
        from tradeconsole.core.paths import strategies_dir

        d = strategies_dir()
        if d.is_dir():
            for f in _files(d):
                try:
                    _register(load_file(f), str(f), report)
                except StrategyLoadError as exc:
                    report.skipped.append(str(exc))
    if entry_points:
        from importlib.metadata import entry_points as eps

        for ep in eps(group=ENTRY_POINT_GROUP):
            label = f"entry point {ep.name} ({ep.value})"
            try:
                obj = ep.load()
                classes = (
                    [obj]
                    if isinstance(obj, type)
                    else [
                        c
                        for c in vars(obj).values()
                        if isinstance(c, type)
                        and issubclass(c, Strategy)
                        and c.__module__ == obj.__name__
                        and not inspect.isabstract(c)
                    ]
                )
                for cls in classes:
                    _validate(cls, label, None)
                _register(classes, label, report)
            except Exception as exc:  # noqa: BLE001 - a broken installed package must not stop the CLI
                report.skipped.append(f"{label}: {type(exc).__name__}: {exc}")
    return report


def _summary(cls: type) -> str:
    """The first paragraph of the class's own docstring (not the base class's)."""
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    return " ".join(doc.split("\n\n")[0].split())


def available() -> list[dict[str, Any]]:
    """Every registered strategy with where it came from, its intervals and parameter ranges
    (for ``strategy list``, the console's strategy switcher and the backtest form)."""
    from dataclasses import fields

    from tradeconsole.core.strategies import param_ranges

    out = []
    for name, cls in STRATEGIES.items():
        ranges = param_ranges(cls.Params)
        params = [
            {
                "name": f.name,
                "default": f.default,
                **({"low": ranges[f.name].low, "high": ranges[f.name].high} if f.name in ranges else {}),
            }
            for f in fields(cls.Params)
        ]
        out.append(
            {
                "name": name,
                "source": SOURCES.get(name, "?"),
                "default_interval": cls.default_interval,
                "intervals": list(cls.intervals),
                "params": params,
                "indicators": sorted(cls.indicators),
                "doc": _summary(cls),
            }
        )
    return out
