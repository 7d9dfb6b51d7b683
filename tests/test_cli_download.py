"""Offline-aware downloads (issue 12 item 7): losing name resolution ends the run at once with
one line that says truthfully what was cached."""

from __future__ import annotations

import socket
import time

import pytest
from tradeconsole.infra.binance.market.download import parse_date
from tradeconsole.tui.cli import main

from tests.servers.binance_market import BinanceMarketServer

pytestmark = pytest.mark.timeout(60)


def test_name_resolution_lost_mid_download_ends_at_once_and_counts_what_was_cached(monkeypatch, capsys):
    with BinanceMarketServer(start_time_ms=parse_date("2022-10-03T10:00")) as server:
        monkeypatch.setenv("TRADECONSOLE_BINANCE_SPOT_REST", server.endpoints().spot_rest)
        real = socket.getaddrinfo

        def dns(host, *args, **kwargs):  # DNS goes away once the first page was served
            if server.request_counts["/api/v3/klines"] >= 1:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", dns)
        server.fail_rest(500, count=100, after=1)  # and the connection fails from then on
        t0 = time.monotonic()
        code = main(["data", "download", "ETHUSDT", "5m", "--from", "2022-09-20"])
        elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == 1 and err.count("error:") == 1 and "Traceback" not in err
    assert "cannot resolve 127.0.0.1" in err and "1000 new candle(s) in 1 month file(s) were cached" in err
    assert elapsed < 10  # the retry policy alone would keep going for about a minute (0.5 s doubling to 30 s)
