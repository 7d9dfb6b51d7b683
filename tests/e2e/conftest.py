"""Fixtures for the end-to-end tests: the real ``tradeconsole`` command as a subprocess, pointed
at the two local stand-ins (market data: ``BinanceMarketServer``; USD-M trading:
``FuturesStandIn``), with helpers to read its journal and logs while it runs.

Nothing here touches the network: every endpoint the process can reach is on 127.0.0.1, set
through the ``TRADECONSOLE_BINANCE_*`` environment variables, which override both the built-in
defaults and the testnet defaults (``tradeconsole.infra.binance.http.endpoints.resolve_endpoints``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tradeconsole.core.broker import client_order_id
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.domain import Side, interval_ms
from tradeconsole.core.indicators import IncrementalIndicators, IndicatorSettings
from tradeconsole.core.strategies import make_strategy

from tests.servers.binance_futures import FuturesStandIn
from tests.servers.binance_market import BinanceMarketServer, shared_series

# Long and distinctive, so a leak anywhere (logs, journal, WAL, events) is unmistakable.
API_KEY = "e2eKEY-7QmZr4T1vXc9LpW2sN8bH5yK3dJ6fG0aU4eR7tY1iO9pQ2wE5rT8yU1iO3pA6sD9fG2hJ5kL8"
API_SECRET = "e2eSECRET-Xy8Vb3Nm6Qw1Er4Ty7Ui0Op3As6Df9Gh2Jk5Lz8Xc1Vb4Nm7Qw0Er3Ty6Ui9Op2As5Df8Gh"

SYMBOL = "ETHUSDT"
INTERVAL = "5m"
STRATEGY = "basic"
WARMUP = 1000  # BinanceKlineStream's default REST backfill on the first connect (Runtime keeps it)
LEAD = 3  # live candles streamed before the signal candle
POST = 6  # candles after the signal the scenario walks through (all inside the protective levels)
MAX_DRIFT = 0.008  # post-signal closes stay within this of the signal close (stop is 1.5%, target 3%)
CASH = 10_000.0
FEE = 0.0004


# ---------------------------------------------------------------------------- waiting


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition", proc: HeadlessProcess | None = None
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``
    seconds: a generous bound for slow machines, never an assertion about speed. If ``proc``
    ends meanwhile, fail at once with its log tail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{proc.name} exited with {proc.returncode} while waiting for {what}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            extra = f"\n{proc.tail()}" if proc is not None else ""
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(0.02)


# ---------------------------------------------------------------------------- the scenario's data


@dataclass(frozen=True)
class SignalPlan:
    """Where in the real ETHUSDT 5m series the scenario runs.

    The market server starts at ``open_time[first_live]``; the process backfills the ``WARMUP``
    candles before it over REST, then streams ``first_live .. signal`` live. The strategy fires on
    ``signal`` (and, with exactly the process's warm-up window, nowhere from ``first_live`` to
    ``signal + POST``), and the ``POST`` candles after it close within ``MAX_DRIFT`` of its close.
    """

    arrays: CandleArrays
    signal: int
    side: Side

    @property
    def first_live(self) -> int:
        return self.signal - LEAD

    def open_time(self, i: int) -> int:
        return int(self.arrays.open_time[i])

    def close(self, i: int) -> float:
        return float(self.arrays.close[i])

    @property
    def entry_id(self) -> str:
        return client_order_id(STRATEGY, SYMBOL, INTERVAL, self.open_time(self.signal), self.side)


def _signals(candles: list, start: int = 0) -> dict[int, Side]:
    ind = IncrementalIndicators(IndicatorSettings(rsi_smoothing="wilder"))  # the realistic model's RSI
    strategy = make_strategy(STRATEGY)
    out: dict[int, Side] = {}
    for i, c in enumerate(candles):
        side = strategy.entry_signal(c, ind.update(c))
        if side is not None:
            out[start + i] = side
    return out


def find_plan(arrays: CandleArrays, scan: int = 20_000) -> SignalPlan:
    """The first isolated signal after a full warm-up whose following candles stay well inside the
    protective levels, checked with exactly the candles the process will see."""
    candles = arrays.take(slice(0, min(scan, len(arrays)))).candles()
    rough = _signals(candles)
    for s, side in sorted(rough.items()):
        if s < WARMUP + LEAD or s + POST >= len(candles):
            continue
        if any(j in rough for j in range(s - LEAD, s + POST + 1) if j != s):
            continue
        lo = s - LEAD - WARMUP
        times = arrays.open_time[lo : s + POST + 1]
        if not (times[1:] - times[:-1] == interval_ms(INTERVAL)).all():
            continue  # an exchange gap in the window: keep the scenario simple
        c0 = candles[s].close
        if any(abs(candles[j].close / c0 - 1) > MAX_DRIFT for j in range(s + 1, s + POST + 1)):
            continue
        exact = _signals(candles[lo : s + POST + 1], start=lo)
        live = {j: v for j, v in exact.items() if j >= s - LEAD}
        if live == {s: side}:
            return SignalPlan(arrays, s, side)
    raise AssertionError("no usable signal in the series")


@pytest.fixture(scope="session")
def plan() -> SignalPlan:
    return find_plan(shared_series(SYMBOL, INTERVAL))


# ---------------------------------------------------------------------------- servers


@dataclass
class Servers:
    market: BinanceMarketServer
    trading: FuturesStandIn

    def env(self, data_dir: Path) -> dict[str, str]:
        """The process environment: the stand-ins' endpoints and keys, nothing inherited that could
        point elsewhere (another config file, other keys)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BINANCE_", "TRADECONSOLE_"))}
        env.update(self.market.env())  # spot + futures market data REST/WS
        env["TRADECONSOLE_BINANCE_FUTURES_REST"] = self.trading.base_url  # trading goes to the stand-in
        env["TRADECONSOLE_BINANCE_FUTURES_USER_WS"] = self.trading.user_ws_url  # and the user data stream
        env.update(
            {
                "BINANCE_API_KEY": API_KEY,
                "BINANCE_API_SECRET": API_SECRET,
                "TRADECONSOLE_CONFIG": str(data_dir / "no-such-config.toml"),
                "TRADECONSOLE_DATA_DIR": str(data_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env


@pytest.fixture
def servers(plan: SignalPlan) -> Iterator[Servers]:
    market = BinanceMarketServer({(SYMBOL, INTERVAL): plan.arrays}, start_time_ms=plan.open_time(plan.first_live))
    trading = FuturesStandIn(API_KEY, API_SECRET, balance=CASH, price=plan.close(plan.first_live - 1), taker_fee=FEE)
    market.start()
    try:
        trading.start()
        try:
            yield Servers(market, trading)
        finally:
            trading.stop()
    finally:
        market.stop()


# ---------------------------------------------------------------------------- the process


def tradeconsole_command() -> list[str]:
    """The installed console script (what a user runs), else the same entry point via -m."""
    script = Path(sys.executable).with_name("tradeconsole")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tradeconsole.tui.cli"]


class HeadlessProcess:
    """One ``tradeconsole run --headless`` subprocess; stdout and stderr go to files (never a pipe
    that could fill up and block it)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.args = args
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*tradeconsole_command(), "run", "--headless", *args],
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    # -------------------------------------------------------------- state
    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def stdout(self) -> str:
        return self.stdout_path.read_bytes().decode("utf-8", "replace")

    def stderr(self) -> str:
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (a line still being written is skipped)."""
        out = []
        for line in self.stderr().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def log_events(self, message: str) -> list[dict[str, Any]]:
        return [x.get("event") or {} for x in self.logs() if x.get("message") == message]

    def tail(self, n: int = 4000) -> str:
        return f"--- {self.name} stderr (tail) ---\n{self.stderr()[-n:]}"

    # -------------------------------------------------------------- ending
    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (a clean shutdown) and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not stop within {timeout:g} s of SIGTERM\n{self.tail()}")

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not exit within {timeout:g} s\n{self.tail()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., HeadlessProcess]]:
    """Start headless processes; any still running at the end of the test is killed."""
    procs: list[HeadlessProcess] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> HeadlessProcess:
        p = HeadlessProcess(name, args, env, tmp_path)
        procs.append(p)
        return p

    try:
        yield start
    finally:
        for p in procs:
            if p.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
                try:
                    p.proc.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


# ---------------------------------------------------------------------------- the journal


class JournalReader:
    """Read-only look at the journal a running process writes (SQLite WAL allows a reader beside
    the writer). Each call opens and closes its own connection."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        if not self.path.exists():
            return []
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        except sqlite3.Error:
            return []
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.Error:  # schema not created yet
            return []
        finally:
            db.close()

    def events(self, *types: str, after_seq: int = 0) -> list[dict[str, Any]]:
        sql = "SELECT seq, payload FROM events WHERE seq > ?"
        args: tuple = (after_seq,)
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            args += types
        return [{**json.loads(p), "_seq": s} for s, p in self._query(sql + " ORDER BY seq", args)]

    def max_seq(self) -> int:
        rows = self._query("SELECT MAX(seq) FROM events")
        return int(rows[0][0] or 0) if rows else 0

    def session(self, key: str) -> tuple[int, dict[str, Any]] | None:
        """(last processed candle's open time, broker snapshot) of a session."""
        rows = self._query("SELECT last_open_time, snapshot FROM sessions WHERE session_key=?", (key,))
        return (int(rows[0][0]), json.loads(rows[0][1])) if rows else None

    def last_open_time(self, key: str) -> int | None:
        s = self.session(key)
        return None if s is None else s[0]

    def files(self) -> dict[str, bytes]:
        """The database and its -wal/-shm files as they are on disk now, by suffix."""
        out = {}
        for suffix in ("", "-wal", "-shm", "-journal"):
            p = self.path.with_name(self.path.name + suffix)
            if p.exists():
                out[suffix] = p.read_bytes()
        return out

    def file_bytes(self) -> bytes:
        return b"".join(self.files().values())
