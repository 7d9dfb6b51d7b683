"""`--symbol` repeated (and `symbols` in the config) for `run --headless` and the console: each
symbol x strategy is a session on one shared paper account; bad symbol lists and replays that
cannot say which data is whose are refused with one `error:` line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tradeconsole.backtest.data import load_candles

pytestmark = pytest.mark.timeout(240)

CLI = [sys.executable, "-m", "tradeconsole.tui.cli"]
MONTHS = ("2022-01", "2022-02", "2022-03")


@pytest.fixture(scope="module")
def market(tmp_path_factory, data_1h: Path) -> Path:
    """``<root>/ETHUSDT/1h`` (three real months) and ``<root>/BTCUSDT/1h``: ETH's market three
    hours late at 13x the price, in Binance's public-data file layout."""
    root = tmp_path_factory.mktemp("market")
    eth, btc = root / "ETHUSDT" / "1h", root / "BTCUSDT" / "1h"
    eth.mkdir(parents=True)
    btc.mkdir(parents=True)
    rows: list[list[str]] = []
    for m in MONTHS:
        src = data_1h / f"ETHUSDT-1h-{m}.csv"
        (eth / src.name).write_text(src.read_text())
        rows += [line.split(",") for line in src.read_text().splitlines() if line and line[0].isdigit()]
    lag = 3
    by_month: dict[str, list[str]] = {m: [] for m in MONTHS}
    for i in range(lag, len(rows)):
        when, what = rows[i], rows[i - lag]
        px = [repr(float(x) * 13.0) for x in what[1:5]]
        line = ",".join([when[0], *px, what[5], when[6], *what[7:]])
        by_month[_month(int(when[0]))].append(line)
    for m, lines in by_month.items():
        (btc / f"BTCUSDT-1h-{m}.csv").write_text("\n".join(lines) + "\n")
    return root


def _month(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m")


def _run(*args: str, config: Path | None = None, timeout: float = 200) -> subprocess.CompletedProcess:
    env_args = ["--config", str(config)] if config is not None else []
    return subprocess.run([*CLI, *args, *env_args], capture_output=True, text=True, timeout=timeout)


def test_headless_replay_of_two_symbols_equals_two_backtests(market, tmp_path):
    h = _run(
        "run",
        "--headless",
        "--strategy",
        "engulfing",
        "--interval",
        "1h",
        "--symbol",
        "ETHUSDT",
        "--symbol",
        "btcusdt",
        "--replay",
        str(market / "ETHUSDT" / "1h"),
        "--speed",
        "max",
        "--json",
        "--journal",
        str(tmp_path / "j.sqlite"),
    )
    assert h.returncode == 0, h.stderr[-2000:]
    summaries = {s["symbol"]: s for s in map(json.loads, h.stdout.strip().splitlines())}
    assert set(summaries) == {"ETHUSDT", "BTCUSDT"}
    for sym, s in summaries.items():
        # each session traded half of the account's 10,000: the same as a backtest with 5,000
        b = _run("backtest", "--strategy", "engulfing", "--data", str(market / sym / "1h"), "--cash", "5000", "--json")
        assert b.returncode == 0, b.stderr[-1500:]
        bt = json.loads(b.stdout)
        assert s["initial_cash"] == bt["initial_cash"] == 5000.0
        assert s["fills"] == bt["fills"] and len(bt["fills"]) >= 4, sym
        assert s["final_equity"] == pytest.approx(bt["final_equity"]), sym
    assert summaries["ETHUSDT"]["fills"] != summaries["BTCUSDT"]["fills"]
    started = next(json.loads(line) for line in h.stderr.splitlines() if '"message": "starting"' in line)
    assert started["event"]["sessions"] == ["ETHUSDT:1h:engulfing", "BTCUSDT:1h:engulfing"]


def test_config_symbols_and_an_account_limit(market, tmp_path):
    """``symbols`` in the config file when no --symbol is given, and [risk] max_positions for the
    account: never two positions at once, every refusal journalled as a risk error."""
    import sqlite3

    cfg = tmp_path / "config.toml"
    cfg.write_text('symbols = ["ETHUSDT", "BTCUSDT"]\n\n[risk]\nmax_positions = 1\n')
    journal = tmp_path / "j.sqlite"
    h = _run(
        "run",
        "--headless",
        "--strategy",
        "engulfing",
        "--interval",
        "1h",
        "--replay",
        str(market / "ETHUSDT" / "1h"),
        "--speed",
        "max",
        "--journal",
        str(journal),
        config=cfg,
    )
    assert h.returncode == 0, h.stderr[-2000:]
    db = sqlite3.connect(journal)
    events = [
        json.loads(r[0]) for r in db.execute("SELECT payload FROM events WHERE type IN ('fill', 'error') ORDER BY seq")
    ]
    assert {e["symbol"] for e in events if e["type"] == "fill"} == {"ETHUSDT", "BTCUSDT"}
    refusals = [e for e in events if e["type"] == "error" and e["source"] == "risk"]
    assert refusals and all("account position limit: 1 of 1 open" in e["message"] for e in refusals)
    open_now: set[str] = set()
    for e in events:
        if e["type"] != "fill":
            continue
        if e["reason"].startswith("entry"):
            open_now.add(e["symbol"])
            assert len(open_now) == 1, e
        else:
            open_now.discard(e["symbol"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbol", "ETHUSDT", "--symbol", "ethusdt"], "symbol ETHUSDT given twice"),
        (["--symbol", "ETH/USDT"], "not a symbol: 'ETH/USDT'"),
    ],
)
def test_bad_symbol_lists_are_refused(args, message):
    for sub in (["run", "--headless"], []):
        r = _run(*sub, *args)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("error: ") and message in r.stderr and "Traceback" not in r.stderr


def test_replay_of_several_symbols_needs_data_that_says_whose_it_is(market, tmp_path, data_1h):
    anonymous = tmp_path / "history"
    anonymous.mkdir()
    (anonymous / "prices.csv").write_text((data_1h / "ETHUSDT-1h-2022-01.csv").read_text())
    cases = [
        (anonymous / "prices.csv", "needs data that names its symbol"),
        (market / "ETHUSDT" / "1h", "no SOLUSDT 1h history next to the ETHUSDT replay"),
    ]
    for path, message in cases:
        r = _run(
            "run",
            "--headless",
            "--strategy",
            "engulfing",
            "--interval",
            "1h",
            "--symbol",
            "ETHUSDT",
            "--symbol",
            "BTCUSDT" if "prices" in str(path) else "SOLUSDT",
            "--replay",
            str(path),
            "--speed",
            "max",
        )
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("error: ") and message in r.stderr, r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('symbols = ["ETHUSDT", "ethusdt"]\n')
    r = _run("run", "--headless", "--replay", str(market / "ETHUSDT" / "1h"), config=bad)
    assert r.returncode == 2 and "symbols: ETHUSDT is listed twice" in r.stderr, r.stderr


def test_too_many_streams_for_one_connection_are_refused():
    from tradeconsole.infra.binance.market.stream import BinanceKlineStream

    pairs = [(f"S{i:04d}USDT", "1m") for i in range(1025)]
    with pytest.raises(ValueError, match=r"1025 .* more than the 1024"):
        BinanceKlineStream(pairs)
    assert BinanceKlineStream(pairs[:1024]).market == "futures"


def test_candles_of_both_symbols_are_real_files(market):
    """The synthesised symbol loads like real data (the layout the replay relies on)."""
    btc, _ = load_candles(market / "BTCUSDT" / "1h", interval="1h")
    eth, _ = load_candles(market / "ETHUSDT" / "1h", interval="1h")
    assert len(btc) == len(eth) - 3 and float(btc.close[0]) == pytest.approx(float(eth.close[0]) * 13)


def test_one_combined_connection_carries_every_symbol_and_the_stand_in_refuses_over_1024(candles_1h):
    """Both symbols' klines arrive over ONE combined-stream connection (REST warm-up per symbol);
    a handshake asking for more streams than Binance allows per connection is refused."""
    import time
    import urllib.error
    import urllib.request

    from tradeconsole.core.candles import CandleArrays
    from tradeconsole.core.feed import CandleClosed
    from tradeconsole.infra.binance.market.stream import BinanceKlineStream

    from tests.servers.binance_market import BinanceMarketServer

    c = candles_1h
    btc = CandleArrays(c.open_time, c.open * 13, c.high * 13, c.low * 13, c.close * 13, c.volume, c.close_time)
    with BinanceMarketServer({("ETHUSDT", "1h"): c, ("BTCUSDT", "1h"): btc}) as server:
        got: list = []
        stream = BinanceKlineStream(
            [("ETHUSDT", "1h"), ("BTCUSDT", "1h")],
            "futures",
            endpoints=server.endpoints(),
            backfill=20,
            silence_timeout=5,
            backoff_initial=0.02,
            backoff_max=0.2,
            seed=1,
        )
        stream.start(got.append)
        try:
            deadline = time.monotonic() + 30
            live = lambda: {e.symbol for e in got if isinstance(e, CandleClosed) and not e.backfill}  # noqa: E731
            while time.monotonic() < deadline and live() != {"ETHUSDT", "BTCUSDT"}:
                server.advance(1, "1h")
                time.sleep(0.1)
            assert live() == {"ETHUSDT", "BTCUSDT"}
            warm = {e.symbol for e in got if isinstance(e, CandleClosed) and e.backfill}
            assert warm == {"ETHUSDT", "BTCUSDT"}  # REST warm-up for each symbol
            assert server.ws_connects == 1
            assert [p for p in server.request_counts if "stream" in p] == ["/futures/market/stream"]
        finally:
            stream.stop()
        names = "/".join(f"s{i:04d}usdt@kline_1m" for i in range(1025))
        url = f"{server.base_url}/futures/market/stream?streams={names}"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=10)
        assert err.value.code == 400 and "too many streams: 1025 > 1024" in err.value.read().decode()
        assert server.refused_over_limit == 1
