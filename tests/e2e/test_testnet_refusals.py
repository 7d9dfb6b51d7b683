"""Live/testnet starts that can never trade are refused at once, with exit 2 and one line, so a
supervisor (systemd ``RestartPreventExitStatus=2``) does not restart them forever and nothing is
sent that changes the account."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import Servers, SignalPlan
from tests.e2e.test_testnet_headless import ARGS

pytestmark = pytest.mark.timeout(120)


def _refused(proc, servers: Servers, *words: str) -> None:
    assert proc.wait(60) == 2, proc.tail()
    err = proc.stderr()
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), proc.tail()
    assert "Traceback" not in err
    assert not [
        r for r in servers.trading.requests if r.method in ("POST", "PUT", "DELETE") and "listenKey" not in r.path
    ]


def test_a_refused_api_key_stops_the_start(plan: SignalPlan, servers: Servers, launch, tmp_path: Path) -> None:
    """-2015 (invalid key, IP or permissions) never heals by retrying candle after candle."""
    env = servers.env(tmp_path / "data")
    env["BINANCE_API_KEY"] = "not-the-key-the-exchange-knows"
    proc = launch("badkey", [*ARGS, "--testnet", "--journal", str(tmp_path / "j.sqlite")], env)
    _refused(proc, servers, "refused the API key")
    assert "not-the-key" not in proc.stderr() + proc.stdout()


def test_two_strategies_on_one_live_symbol_are_refused(
    plan: SignalPlan, servers: Servers, launch, tmp_path: Path
) -> None:
    """One account keeps one position per symbol: two sessions would cancel each other's stops."""
    proc = launch(
        "two",
        [*ARGS, "--strategy", "engulfing:1h", "--testnet", "--journal", str(tmp_path / "j.sqlite")],
        servers.env(tmp_path / "data"),
    )
    _refused(proc, servers, "one strategy per symbol")
