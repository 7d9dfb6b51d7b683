"""End to end: the real ``tradeconsole run --headless --testnet`` process trading against the
local stand-ins, with no network.

Market data: ``--market spot`` streams ETHUSDT 5m klines (the real 2022 public data) from
``BinanceMarketServer``, whose clock moves only when the test advances it. Trading:
``TRADECONSOLE_BINANCE_FUTURES_REST`` points the ``BinanceFuturesBroker`` at ``FuturesStandIn``,
whose price the test keeps at each candle's close (so the market entry fills at the price the
strategy saw), then moves through the take-profit level.

The scenario, in one process lifetime after another on the same journal:

1. start (testnet mode), warm up on 1000 REST candles, stream a few live candles, enter on the
   signal candle with a MARKET order whose client id is ``client_order_id(...)`` of that candle,
   then place the STOP_MARKET and TAKE_PROFIT_MARKET protective orders; SIGTERM with the
   position open;
2. one more candle closes while nothing runs;
3. restart: the position is restored, reconcile finds nothing to fix, the backfilled candle and
   the live ones send no order; the price crosses the target, the next candle records the exit
   (fill with its round trip), the stop is cancelled; SIGTERM, and ``--json`` reports the round
   trip.

Throughout, the API key and secret must appear nowhere the process writes. A second test checks
the live gate: ``--live`` alone is refused, ``--live --confirm ETHUSDT`` starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tradeconsole.core.domain import Side
from tradeconsole.core.domain import iso_ms as _iso

from tests.e2e.conftest import (
    API_KEY,
    API_SECRET,
    INTERVAL,
    STRATEGY,
    SYMBOL,
    WARMUP,
    HeadlessProcess,
    JournalReader,
    Servers,
    SignalPlan,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

KEY = f"{SYMBOL}:{INTERVAL}:{STRATEGY}"
ARGS = ["--strategy", STRATEGY, "--interval", INTERVAL, "--symbol", SYMBOL, "--market", "spot"]
SECRETS = {
    "api key": API_KEY,
    "api secret": API_SECRET,
    # fragments too, in case something truncates or splits a value
    "api key fragment": API_KEY[20:52],
    "api secret fragment": API_SECRET[20:52],
}


def leaks(blob: str | bytes, servers: Servers | None = None) -> list[str]:
    """Names of the secrets found in ``blob``: the API key and secret, and (with ``servers``)
    every listenKey the trading stand-in handed out: a listenKey lets anyone read the account's
    user data stream, so it is a secret too."""
    if isinstance(blob, bytes):
        blob = blob.decode("latin-1")
    secrets = dict(SECRETS)
    if servers is not None:
        for n, key in enumerate(servers.trading.issued_listen_keys):
            secrets[f"listenKey {n}"] = key
            secrets[f"listenKey {n} fragment"] = key[16:48]
    return [name for name, value in secrets.items() if value in blob]


def posts(servers: Servers, path: str) -> list:
    return [r for r in servers.trading.requests if r.method == "POST" and r.path == path]


def algo(servers: Servers, client_algo_id: str) -> dict:
    found = [o for o in servers.trading.algo_orders if o["clientAlgoId"] == client_algo_id]
    assert len(found) == 1, f"{len(found)} conditional orders {client_algo_id} on the stand-in"
    return found[0]


class Driver:
    """Moves both stand-ins one candle at a time, in step, and waits for the process to have
    processed (and journalled) each closed candle."""

    def __init__(self, plan: SignalPlan, servers: Servers, journal: JournalReader) -> None:
        self.plan, self.servers, self.journal = plan, servers, journal

    def close_candle(self, i: int, proc: HeadlessProcess | None, *, move_price: bool = True) -> None:
        """Let candle ``i`` trade and close; the trading stand-in's price follows to its close."""
        assert self.servers.market.current_candle(SYMBOL, INTERVAL).open_time == self.plan.open_time(i)
        if move_price:
            self.servers.trading.jump(self.plan.close(i))
        self.servers.market.advance(1)
        if proc is not None:
            self.wait_processed(i, proc)

    def wait_processed(self, i: int, proc: HeadlessProcess) -> None:
        t = self.plan.open_time(i)
        wait_until(
            lambda: (self.journal.last_open_time(KEY) or -1) >= t,
            30,
            f"candle #{i} ({t}) processed and journalled",
            proc,
        )

    def wait_streaming(self, proc: HeadlessProcess, after_seq: int, last_backfilled: int) -> None:
        """The process is connected to the stream and has processed its REST backfill: candles
        closed from now on reach it over the websocket."""
        wait_until(
            lambda: any(
                e["state"] == "connected" and e["source"] == "binance-spot"
                for e in self.journal.events("connection", after_seq=after_seq)
            ),
            45,
            "the spot stream connected after its backfill",
            proc,
        )
        self.wait_processed(last_backfilled, proc)
        wait_until(lambda: self.servers.market.active_connections() >= 1, 10, "a websocket client", proc)


def start_event(proc: HeadlessProcess) -> dict:
    return wait_until(lambda: (proc.log_events("starting") or [None])[0], 30, f"{proc.name} 'starting' log line", proc)


def summaries(proc: HeadlessProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout().splitlines() if line.strip().startswith("{")]


def test_testnet_entry_protection_restart_and_exit(plan: SignalPlan, servers: Servers, launch, tmp_path: Path):
    journal_path = tmp_path / "journal-testnet.sqlite"
    journal = JournalReader(journal_path)
    drive = Driver(plan, servers, journal)
    env = servers.env(tmp_path / "data")
    args = [*ARGS, "--testnet", "--journal", str(journal_path), "--json"]
    s = plan.signal
    oid = plan.entry_id
    exit_side = "BUY" if plan.side is Side.SHORT else "SELL"
    while_running: list[dict[str, bytes]] = []  # journal files read while a process had them open

    # ------------------------------------------------------------------ 1. first run: warm-up, live, entry
    p1: HeadlessProcess = launch("run1", args, env)
    ev = start_event(p1)
    assert ev["mode"] == "testnet" and ev["resumed"] is False and ev["sessions"] == [KEY], ev
    run_id = ev["run_id"]
    drive.wait_streaming(p1, 0, plan.first_live - 1)
    candles = journal.events("candle")
    assert len(candles) == WARMUP, f"warm-up should be the {WARMUP} REST candles, got {len(candles)}"
    assert not journal.events("signal"), "no signal may be taken during the warm-up"
    assert servers.trading.position_amt() == 0 and not posts(servers, "/fapi/v1/order")
    assert any(r.path == "/fapi/v1/leverage" and r.status == 200 for r in servers.trading.requests), (
        "the broker should have started against the trading stand-in (signed requests accepted)"
    )

    sent_before = servers.market.messages_sent
    for i in range(plan.first_live, s):  # live candles before the signal: nothing to do
        drive.close_candle(i, p1)
    assert not posts(servers, "/fapi/v1/order")
    assert servers.market.messages_sent > sent_before, "the live candles should have come over the websocket"
    seq_before_signal = journal.max_seq()
    drive.close_candle(s, p1)  # the signal candle: the entry and its protection happen now

    # the signal was acted on (a backfilled candle would have been refused as too old)
    signals = journal.events("signal", after_seq=seq_before_signal)
    assert [(x["candle_time"], x["side"], x["acted"]) for x in signals] == [
        (plan.open_time(s), plan.side.name.lower(), True)
    ], signals
    # the entry: one MARKET order with the signal's id, then the two protective orders
    entries = servers.trading.orders_with_client_id(oid)
    assert len(entries) == 1, f"expected exactly one entry order {oid}, found {len(entries)}"
    entry = entries[0]
    assert entry["type"] == "MARKET" and entry["status"] == "FILLED"
    assert entry["side"] == plan.side.entry_order_side.value and not entry["reduceOnly"]
    assert float(entry["avgPrice"]) == pytest.approx(plan.close(s)), "entry should fill at the signal close"
    order_posts = posts(servers, "/fapi/v1/order")
    assert [r.params.get("newClientOrderId") for r in order_posts] == [oid], "one entry request, no retry"
    reqs = servers.trading.requests
    i_entry = next(k for k, r in enumerate(reqs) if r.method == "POST" and r.path == "/fapi/v1/order")
    protective = [
        (r.params["type"], r.params["clientAlgoId"], r.params["side"], r.params["closePosition"])
        for r in reqs[i_entry + 1 :]
        if r.method == "POST" and r.path == "/fapi/v1/algoOrder"
    ]
    assert protective == [
        ("STOP_MARKET", oid + "sl", exit_side, "true"),
        ("TAKE_PROFIT_MARKET", oid + "tp", exit_side, "true"),
    ], protective
    assert {o["clientAlgoId"]: o["orderType"] for o in servers.trading.open_algo_orders()} == {
        oid + "sl": "STOP_MARKET",
        oid + "tp": "TAKE_PROFIT_MARKET",
    }
    qty = abs(servers.trading.position_amt())
    assert qty > 0 and (servers.trading.position_amt() > 0) == (plan.side is Side.LONG)
    # journalled: the entry fill and the open position with the levels placed on the exchange
    fills = journal.events("fill")
    assert [(f["order_id"], f["reason"]) for f in fills] == [
        (oid, "entry_short" if plan.side is Side.SHORT else "entry_long")
    ], fills
    assert fills[0]["qty"] == pytest.approx(qty) and fills[0]["mode"] == "testnet"
    _, snap = journal.session(KEY)
    stop_level, target_level = snap["position"]["stop_price"], snap["position"]["target_price"]
    assert float(algo(servers, oid + "sl")["triggerPrice"]) == pytest.approx(stop_level)
    assert float(algo(servers, oid + "tp")["triggerPrice"]) == pytest.approx(target_level)
    assert any(x.get("order_id") == oid for x in p1.log_events("fill")), "the fill should be logged"

    for i in (s + 1, s + 2):  # the position is held: no new orders
        drive.close_candle(i, p1)
    assert len(posts(servers, "/fapi/v1/order")) == 1
    while_running.append(journal.files())
    assert p1.terminate() == 0, p1.tail()
    assert '"message": "signal SIGTERM: shutting down"' in p1.stderr()
    (sum1,) = summaries(p1)
    assert sum1["run_id"] == run_id and sum1["trades"] == 0 and sum1["open_position"]["side"] == plan.side.name.lower()
    assert sum1["open_position"]["qty"] == pytest.approx(qty)
    algo_posts_before_restart = len(posts(servers, "/fapi/v1/algoOrder"))
    requests_before_restart = len(servers.trading.requests)

    # ------------------------------------------------------------------ 2. a candle closes while nothing runs
    drive.close_candle(s + 3, None)

    # ------------------------------------------------------------------ 3. restart on the same journal
    seq_restart = journal.max_seq()
    p2 = launch("run2", args, env)
    ev2 = start_event(p2)
    assert ev2["mode"] == "testnet" and ev2["resumed"] is True and ev2["run_id"] == run_id, ev2
    drive.wait_streaming(p2, seq_restart, s + 3)  # includes the candle that closed while down (REST)
    # the position was restored and matched the exchange: no finding, nothing re-placed or re-sent
    after = journal.events("error", after_seq=seq_restart)
    assert not [e for e in after if e["source"] in ("reconcile", "broker", "engine")], after
    _, snap2 = journal.session(KEY)
    assert snap2["position"]["qty"] == pytest.approx(qty) and snap2["entry_order_id"] == oid
    new_reqs = servers.trading.requests[requests_before_restart:]
    assert any(r.path in ("/fapi/v2/positionRisk", "/fapi/v3/positionRisk") for r in new_reqs), (
        "the restarted broker should have reconciled against the exchange"
    )
    assert not [r for r in new_reqs if r.method in ("POST", "DELETE") and "order" in r.path.lower()], (
        "a clean restart must not send, re-place or cancel any order"
    )
    drive.close_candle(s + 4, p2)  # live again, still in the position
    assert servers.trading.orders_with_client_id(oid) == [entry], "no second entry for the same signal"
    assert len(posts(servers, "/fapi/v1/order")) == 1
    assert len(posts(servers, "/fapi/v1/algoOrder")) == algo_posts_before_restart
    assert not [x for x in journal.events("signal", "fill", after_seq=seq_restart)]

    # the market crosses the target: the stand-in fires the take-profit at its level, and the
    # user data stream reports it: the exit is journalled without waiting for the next candle
    wait_until(lambda: servers.trading.user_connections() >= 1, 30, "the user data stream connected", p2)
    beyond = target_level * (0.995 if plan.side is Side.SHORT else 1.005)
    seq_exit = journal.max_seq()
    servers.trading.walk(beyond)
    assert servers.trading.position_amt() == 0
    assert algo(servers, oid + "tp")["algoStatus"] == "FINISHED"
    exits = wait_until(
        lambda: [f for f in journal.events("fill", after_seq=seq_exit) if f.get("trade")],
        30,
        "the exit fill in the journal (from the user data stream)",
        p2,
    )
    drive.close_candle(s + 5, p2, move_price=False)  # the next close finds nothing more to record
    assert len(exits) == 1, exits
    x = exits[0]
    assert x["order_id"] == oid + "tp" and x["reason"] == "take_profit" and x["side"] == exit_side
    assert x["price"] == pytest.approx(target_level) and x["qty"] == pytest.approx(qty)
    assert x["trade"]["exit_reason"] == "take_profit" and x["pnl"] > 0
    assert algo(servers, oid + "sl")["algoStatus"] == "CANCELED", "the sibling stop must be cancelled"
    assert servers.trading.open_algo_orders() == []
    assert journal.session(KEY)[1]["position"] is None
    assert len(posts(servers, "/fapi/v1/order")) == 1, "the exit was the exchange's, no order of ours"
    while_running.append(journal.files())
    assert p2.terminate() == 0, p2.tail()
    (sum2,) = summaries(p2)
    assert sum2["run_id"] == run_id and sum2["trades"] == 1 and sum2["open_position"] is None
    assert (sum2["short_trades"], sum2["long_trades"]) == ((1, 0) if plan.side is Side.SHORT else (0, 1))
    assert sum2["wins"] == 1 and sum2["buys"] == 1 and sum2["sells"] == 1
    assert [f["reason"] for f in sum2["fills"]] == [fills[0]["reason"], "take_profit"]

    # nothing went wrong anywhere in either run, and every event says testnet
    all_events = journal.events()
    assert [e for e in all_events if e["type"] == "error"] == []
    assert {e["mode"] for e in all_events} == {"testnet"}
    candle_times = [c["open_time"] for c in journal.events("candle")]
    assert len(candle_times) == WARMUP + s + 6 - plan.first_live, "every candle processed exactly once"
    assert candle_times[WARMUP:] == [_iso(plan.open_time(i)) for i in range(plan.first_live, s + 6)]

    # ------------------------------------------------------------------ 4. the secrets went nowhere
    blobs: dict[str, str | bytes] = {
        "run1 stdout": p1.stdout(),
        "run1 stderr": p1.stderr(),
        "run2 stdout": p2.stdout(),
        "run2 stderr": p2.stderr(),
        "journal files after the runs": journal.file_bytes(),
        **{
            f"journal{suffix} while run{k + 1} was running": b
            for k, files in enumerate(while_running)
            for suffix, b in files.items()
        },
        "event payloads": json.dumps(journal.events()),
    }
    assert all(files.get("-wal") for files in while_running), "the WAL should have been read while in use"
    for path in tmp_path.rglob("*"):  # the data dir and anything else the processes wrote
        if path.is_file():
            blobs[str(path)] = path.read_bytes()
    assert servers.trading.issued_listen_keys, "the user data stream should have been opened (its key is checked)"
    assert {name: leaks(b, servers) for name, b in blobs.items() if leaks(b, servers)} == {}
    assert b'"keys_configured": true' in journal.file_bytes(), "the run config (where a leak would be) is journalled"
    # ...while the stand-in did authenticate them (so they really were in use)
    assert servers.trading.requests and all(r.status != 401 for r in servers.trading.requests)


def test_live_needs_confirmation(plan: SignalPlan, servers: Servers, launch, tmp_path: Path):
    env = servers.env(tmp_path / "data")
    refused = launch("live-unconfirmed", [*ARGS, "--live", "--journal", str(tmp_path / "refused.sqlite")], env)
    assert refused.wait(60) == 2, refused.tail()
    assert "confirmation" in refused.stderr() and not leaks(refused.stderr() + refused.stdout(), servers)
    assert not servers.trading.requests and not servers.market.request_counts, (
        "a refused start must not reach the exchange"
    )

    journal_path = tmp_path / "live.sqlite"
    live = launch("live-confirmed", [*ARGS, "--live", "--confirm", SYMBOL, "--journal", str(journal_path)], env)
    ev = start_event(live)
    assert ev["mode"] == "live" and ev["sessions"] == [KEY]
    # it really runs: the broker starts against the (local) exchange and the stream connects
    wait_until(
        lambda: any(r.path == "/fapi/v1/leverage" for r in servers.trading.requests),
        30,
        "the live broker's start-up requests",
        live,
    )
    wait_until(
        lambda: any(e["state"] == "connected" for e in JournalReader(journal_path).events("connection")),
        30,
        "the live market stream connected",
        live,
    )
    assert live.terminate() == 0, live.tail()
    assert not posts(servers, "/fapi/v1/order") and not posts(servers, "/fapi/v1/algoOrder")
    blob = live.stdout() + live.stderr()
    assert not leaks(blob, servers) and not leaks(JournalReader(journal_path).file_bytes(), servers)
