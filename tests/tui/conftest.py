"""Helpers for the console tests: replay options over real data and a polling wait for pilots.

The replay used most is January 2022 of ETHUSDT 1h (744 candles): the ``engulfing`` strategy
trades it (two round trips) and ends the month holding a short, so the dashboard has fills,
markers, a position with stop/target and working protective orders to show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tradeconsole.tui.runtime import RuntimeOptions

JAN = "ETHUSDT-1h-2022-01.csv"


@pytest.fixture
def jan_1h(data_1h: Path) -> Path:
    path = data_1h / JAN
    if not path.is_file():
        pytest.fail(f"real market data missing: {path}")
    return path


@pytest.fixture
def replay_opts(jan_1h: Path) -> Callable[..., RuntimeOptions]:
    def make(**overrides: object) -> RuntimeOptions:
        base = dict(strategies=[("engulfing", "1h")], symbol="ETHUSDT", replay=str(jan_1h), speed=None)
        base.update(overrides)
        return RuntimeOptions(**base)  # type: ignore[arg-type]

    return make


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No API keys and no user config file leak into a test."""
    for var in (
        "BINANCE_API_KEY",
        "BINANCE_API_SECRET",
        "TRADECONSOLE_BINANCE_API_KEY",
        "TRADECONSOLE_BINANCE_API_SECRET",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRADECONSOLE_CONFIG", str(tmp_path / "no-config.toml"))


def unreachable(_opts: RuntimeOptions) -> str:
    """Network probe for tests: Binance is never reachable."""
    return "cannot reach fapi.binance.com:443 (test)"


async def wait_for(pilot, predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Let the app run until ``predicate()`` is true (the engine works in its own thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)
    if pilot.app.is_running:
        await pilot.pause(0.05)  # let a screen that just appeared paint


def screen_text(app) -> str:
    """Plain text of what the terminal shows now."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        record=True,
        force_terminal=True,
        color_system="truecolor",
        legacy_windows=False,
    )
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()
