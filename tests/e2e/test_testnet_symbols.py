"""Testnet with several symbols: one Binance account, one broker per symbol. Each broker reads
its own symbol's filters from exchangeInfo and sets its own symbol's leverage and margin type
(``POST /fapi/v1/leverage`` and ``/marginType`` are per symbol, Binance USD-M "Change Initial
Leverage"), so BTCUSDT orders are rounded to BTCUSDT's tick, never ETHUSDT's. The shared paper
account does not apply: the exchange keeps the account."""

from __future__ import annotations

from pathlib import Path

import pytest
from tradeconsole.tui.runtime import Runtime, RuntimeOptions

from tests.e2e.conftest import API_KEY, API_SECRET, INTERVAL, STRATEGY
from tests.servers.binance_futures import FuturesStandIn

pytestmark = pytest.mark.timeout(60)


def test_each_symbol_gets_its_own_filters_leverage_and_margin(tmp_path: Path, monkeypatch) -> None:
    trading = FuturesStandIn(API_KEY, API_SECRET).start()
    try:
        for var in ("BINANCE_API_KEY", "BINANCE_API_SECRET"):
            monkeypatch.delenv(f"TRADECONSOLE_{var}", raising=False)
        monkeypatch.setenv("BINANCE_API_KEY", API_KEY)
        monkeypatch.setenv("BINANCE_API_SECRET", API_SECRET)
        monkeypatch.setenv("TRADECONSOLE_BINANCE_FUTURES_REST", trading.base_url)
        monkeypatch.setenv("TRADECONSOLE_CONFIG", str(tmp_path / "no-config.toml"))
        opts = RuntimeOptions(
            strategies=[(STRATEGY, INTERVAL)],
            symbol="ETHUSDT",
            symbols=["ETHUSDT", "BTCUSDT"],
            testnet=True,
            journal=str(tmp_path / "j.sqlite"),
        )
        rt = Runtime(opts)
        try:
            assert rt.trading_mode == "testnet" and rt.account is None
            brokers = {k.split(":")[0]: s.broker for k, s in rt.engine.sessions.items()}
            assert set(brokers) == {"ETHUSDT", "BTCUSDT"}
            assert {sym: b.symbol for sym, b in brokers.items()} == {"ETHUSDT": "ETHUSDT", "BTCUSDT": "BTCUSDT"}
            # each broker has its own symbol's rules (ticks differ: 0.01 vs 0.10 on the stand-in)
            assert (str(brokers["ETHUSDT"].rules.tick), str(brokers["BTCUSDT"].rules.tick)) == ("0.01", "0.10")
            for path in ("/fapi/v1/leverage", "/fapi/v1/marginType"):
                symbols = sorted(r.params.get("symbol", "") for r in trading.requests if r.path == path)
                assert symbols == ["BTCUSDT", "ETHUSDT"], path
            # and each session's cash is the account's: no split across symbols on the exchange
            assert {s.broker.initial_cash for s in rt.specs} == {opts.cash}
        finally:
            rt.journal.close()
    finally:
        trading.stop()
