"""History download into the Parquet cache, against the local server: paging, rate limits,
resumability, idempotency, continuity, atomic writes, and the CLI entry point."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tradeconsole.backtest.data import load_candles
from tradeconsole.core.paths import history_cache_dir
from tradeconsole.infra.binance.http.endpoints import make_client
from tradeconsole.infra.binance.http.errors import RateLimited, RestError
from tradeconsole.infra.binance.http.rest import KlineRestClient
from tradeconsole.infra.binance.market.download import CacheError, Progress, cli_main, download_history, parse_date
from tradeconsole.infra.retry import RetryPolicy

from tests.servers.binance_market import BinanceMarketServer, generated_series

pytestmark = pytest.mark.timeout(60)

STEP = 300_000
OCT_3 = parse_date("2022-10-03T10:00")


@pytest.fixture
def server():
    with BinanceMarketServer(start_time_ms=OCT_3) as s:
        yield s


def _rest(server, market="spot", sleeps=None, **kwargs) -> KlineRestClient:
    """A REST client whose waits are recorded instead of slept."""
    record = sleeps if sleeps is not None else []
    return KlineRestClient(make_client(server.endpoints()), market, sleep=record.append, seed=1, **kwargs)


def _klines(server, market="spot") -> int:
    return server.request_counts["/api/v3/klines" if market == "spot" else "/fapi/v1/klines"]


def _assert_cache_is_truth(directory: Path, server, start: int, end: int) -> None:
    arrays, report = load_candles(directory, interval="5m")
    truth = [c for c in server.closed_candles("ETHUSDT", "5m", start) if c.open_time < end]
    assert arrays.candles() == truth
    assert report.gaps == [] and report.duplicates_dropped == 0


@pytest.mark.parametrize("market, page", [("spot", 1000), ("futures", 1500)])
def test_download_spanning_months_is_continuous_and_readable(server, market, page):
    start, end = parse_date("2022-08-28"), parse_date("2022-10-02")
    result = download_history(_rest(server, market), "ethusdt", "5m", start, end)
    directory = history_cache_dir("ETHUSDT", "5m", market)  # TRADECONSOLE_DATA_DIR from tests/conftest.py
    assert result.directory == directory and result.complete
    n = (end - start) // STEP
    assert result.new_candles == n
    assert result.kline_requests == _klines(server, market) == -(-n // page)
    assert sorted(p.name for p in directory.iterdir()) == [
        "ETHUSDT-5m-2022-08.parquet",
        "ETHUSDT-5m-2022-09.parquet",
        "ETHUSDT-5m-2022-10.parquet",
    ]
    table = pq.read_table(directory / "ETHUSDT-5m-2022-09.parquet")
    assert table.column_names == ["open_time", "open", "high", "low", "close", "volume", "close_time"]
    assert [str(t) for t in table.schema.types] == ["int64"] + ["double"] * 5 + ["int64"]
    assert table.num_rows == 30 * 288
    _assert_cache_is_truth(directory, server, start, end)
    limits = {q["limit"] for path, q in server.request_log if path.endswith("/klines")}
    assert limits == {str(page)}


def test_rate_limit_mid_download_is_honoured_and_the_cache_continuous(server):
    sleeps: list[float] = []
    server.fail_rest(429, count=1, retry_after=7, after=3)
    start, end = parse_date("2022-09-01"), parse_date("2022-10-01")
    rest = _rest(server, sleeps=sleeps)
    result = download_history(rest, "ETHUSDT", "5m", start, end)
    assert result.complete and result.new_candles == 30 * 288
    assert sleeps == [pytest.approx(7.0, abs=0.5)]  # Retry-After honoured, no other wait
    assert rest.stats.rate_limited == 1 and result.kline_requests == 9
    assert _klines(server) == 10  # 9 pages + the refused attempt
    _assert_cache_is_truth(result.directory, server, start, end)


def test_interrupted_download_resumes_and_a_rerun_makes_no_kline_request(server):
    start, end = parse_date("2022-09-01"), parse_date("2022-10-01")
    server.fail_rest(429, count=100, retry_after=1, after=4)
    with pytest.raises(RateLimited):
        download_history(_rest(server, retry=RetryPolicy(max_attempts=3)), "ETHUSDT", "5m", start, end)
    directory = history_cache_dir("ETHUSDT", "5m", "spot")
    kept, _ = load_candles(directory, interval="5m")
    assert len(kept) == 4000  # the four pages that made it are safely on disk
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    server.clear_rest_faults()
    server.reset_counts()
    result = download_history(_rest(server), "ETHUSDT", "5m", start, end)
    assert result.complete and result.new_candles == 30 * 288 - 4000
    assert _klines(server) == 5  # only the missing 4640 candles: ceil(4640 / 1000)
    _assert_cache_is_truth(directory, server, start, end)
    server.reset_counts()
    again = download_history(_rest(server), "ETHUSDT", "5m", start, end)
    assert again.complete and again.new_candles == 0 and again.kline_requests == 0
    assert _klines(server) == 0 and server.request_counts["/api/v3/time"] == 1


def test_only_closed_candles_are_cached_and_later_runs_fetch_only_new_ones(server, tmp_path):
    server.advance_ms(STEP // 2)  # the exchange is in the middle of a candle
    start = parse_date("2022-10-02")
    first = download_history(_rest(server), "ETHUSDT", "5m", start, directory=tmp_path)
    arrays, _ = load_candles(tmp_path, interval="5m")
    assert int(arrays.close_time[-1]) < server.now_ms
    assert int(arrays.open_time[-1]) == server.current_candle("ETHUSDT", "5m").open_time - STEP
    assert first.complete and first.end_ms == server.current_candle("ETHUSDT", "5m").open_time
    server.advance(3)
    server.reset_counts()
    second = download_history(_rest(server), "ETHUSDT", "5m", start, directory=tmp_path)
    assert second.new_candles == 3 and second.kline_requests == 1
    _assert_cache_is_truth(tmp_path, server, start, server.now_ms)


def test_exchange_gaps_and_prelisting_time_are_verified_once(tmp_path):
    listing = parse_date("2023-03-01")
    series = generated_series("5m", listing, 3000, seed=5, missing=range(1000, 1012))  # a 1 h outage
    with BinanceMarketServer({("NEWUSDT", "5m"): series}, start_time_ms=listing + 3000 * STEP) as server:
        start = parse_date("2023-02-20")  # before the listing
        result = download_history(_rest(server), "NEWUSDT", "5m", start, directory=tmp_path)
        assert result.complete and result.new_candles == 2988
        outage = (listing + 1000 * STEP, listing + 1012 * STEP)
        assert result.exchange_gaps == [(start, listing), outage]
        _, report = load_candles(tmp_path, interval="5m")
        assert report.gaps == [(outage[0] - STEP, outage[1], 12)]  # the outage is real, nothing else missing
        server.reset_counts()
        again = download_history(_rest(server), "NEWUSDT", "5m", start, directory=tmp_path)
        assert again.complete and again.kline_requests == 0 and again.exchange_gaps == result.exchange_gaps


def test_write_is_atomic(server, tmp_path, monkeypatch):
    start = parse_date("2022-09-01")
    download_history(_rest(server), "ETHUSDT", "5m", start, start + 500 * STEP, directory=tmp_path)
    month = tmp_path / "ETHUSDT-5m-2022-09.parquet"
    before = month.read_bytes()

    def crash(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError):
        download_history(_rest(server), "ETHUSDT", "5m", start, start + 900 * STEP, directory=tmp_path)
    assert month.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ETHUSDT-5m-2022-09.parquet"]


def test_unreadable_cache_file_is_reported(server, tmp_path):
    (tmp_path / "ETHUSDT-5m-2022-09.parquet").write_bytes(b"garbage")
    with pytest.raises(CacheError, match=r"ETHUSDT-5m-2022-09\.parquet"):
        download_history(_rest(server), "ETHUSDT", "5m", parse_date("2022-09-01"), directory=tmp_path)


def test_weight_header_near_the_limit_pauses_until_the_next_minute(server, tmp_path):
    sleeps: list[float] = []
    server.used_weight = 5500  # of 6000 for spot
    rest = _rest(server, sleeps=sleeps, wall=lambda: 960_000_015.0)  # 15 s into a minute
    rest.klines_page("ETHUSDT", "5m", parse_date("2022-09-01"), limit=10)
    assert sleeps == [45.5] and rest.stats.last_used_weight == 5500
    server.used_weight = 100
    rest.klines_page("ETHUSDT", "5m", parse_date("2022-09-01"), limit=10)
    assert sleeps == [45.5]


def test_rest_error_handling(server):
    sleeps: list[float] = []
    rest = _rest(server, sleeps=sleeps)
    with pytest.raises(RestError, match="Invalid symbol"):
        rest.klines_page("NOPE", "5m", 0)
    assert rest.stats.retries == 0  # a 400 is not retried
    server.fail_rest(503, count=2)
    assert len(rest.klines_page("ETHUSDT", "5m", parse_date("2022-09-01"), limit=5)) == 5
    assert rest.stats.retries == 2 and len(sleeps) == 2  # backoff between attempts
    server.fail_rest(418, count=1, retry_after=7200)  # banned for two hours: do not sit it out
    with pytest.raises(RateLimited) as info:
        rest.klines_page("ETHUSDT", "5m", 0, limit=5)
    assert info.value.retry_after == 7200
    with pytest.raises(ValueError):
        rest.klines_page("ETHUSDT", "5m", 0, limit=1001)


def test_unreachable_server_gives_up_after_the_retries(server):
    rest = _rest(server, retry=RetryPolicy(initial_s=0.01, max_attempts=3))
    server.stop()
    with pytest.raises(RestError, match="after 3 attempts"):
        rest.server_time_ms()


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    bar = Progress(200, "ETHUSDT 5m", stream=out)
    bar.advance(50)
    bar.advance(150)
    bar.close()
    assert "100.0%" in out.getvalue() and "200/200 candles" in out.getvalue()
    silent = io.StringIO()
    quiet = Progress(10, "x", stream=silent)
    quiet.advance(10)
    quiet.close()
    assert silent.getvalue() == ""


def test_cli_download(server, monkeypatch, capsys):
    from tradeconsole.tui.cli import build_parser

    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    args = build_parser().parse_args(
        ["data", "download", "ETHUSDT", "5m", "--from", "2022-10-01", "--to", "2022-10-02T12:00", "--market", "futures"]
    )
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "432 new candle(s) in 1 request(s)" in out and "continuous" in out
    arrays, _ = load_candles(history_cache_dir("ETHUSDT", "5m", "futures"), interval="5m")
    assert len(arrays) == 432 and server.request_counts["/fapi/v1/klines"] == 1
    assert cli_main(args) == 0
    assert "0 new candle(s) in 0 request(s)" in capsys.readouterr().out
    from tradeconsole.tui.cli import main

    assert main(["data", "download", "ETHUSDT", "5m", "--from", "yesterday"]) == 2
    assert main(["data", "download", "ETHUSDT", "5m", "--from", "2022-10-02", "--to", "2022-10-01"]) == 2


def test_cli_reports_failure_and_keeps_progress(server, monkeypatch, capsys):

    monkeypatch.setenv("TRADECONSOLE_BINANCE_SPOT_REST", server.endpoints().spot_rest)
    server.fail_rest(418, count=1, retry_after=3600, after=1)  # ban after the first page
    from tradeconsole.tui.cli import main

    assert main(["data", "download", "ETHUSDT", "5m", "--from", "2022-09-20"]) == 1
    err = capsys.readouterr().err
    assert "1000 new candle(s) in 1 month file(s) were cached" in err and "run the same command again" in err
    kept, _ = load_candles(history_cache_dir("ETHUSDT", "5m", "spot"), interval="5m")
    assert len(kept) == 1000 and np.all(np.diff(kept.open_time) == STEP)
