"""The Binance USD-M user data stream: order, algo order and account events pushed the moment
they happen, so a stop or target fill is journalled within a second instead of at the next
closed candle.

How it follows Binance's documentation (USD-M "User Data Streams"):

* ``POST /fapi/v1/listenKey`` (API key, no signature) creates the key; it is valid for 60
  minutes and ``PUT /fapi/v1/listenKey`` extends it by 60 minutes. We send the keepalive every
  ``keepalive_s`` (30 minutes by default, inside the 30-60 minutes Binance recommends). A PUT
  answered -1125 ("This listenKey does not exist") means the key is gone: a new one is created
  and the stream reconnects.
* The stream is served under the 2026 ``/private/`` route (Binance's websocket change notice;
  python-binance >= 1.0.36 ``futures_user_socket``):
  ``wss://fstream.binance.com/private/ws?listenKey=<key>`` (testnet
  ``wss://fstream.binancefuture.com/private/ws?listenKey=<key>``).
* ``listenKeyExpired`` ends the stream: a new key, a new connection. A connection lives at most
  24 hours; any close is followed by a reconnect with exponential back-off (with jitter), by the reconnect
  loop the kline stream uses too (``tradeconsole.infra.binance.reconnect``).
* After every connect, events may have been missed (while disconnected, or before the first
  connect): an ``AccountStreamEvent(gap=True)`` asks the broker to reconcile over REST (the
  fallback), before newer events are applied.

Thread model: one daemon thread runs an asyncio loop for the websocket; every event goes to
``sink`` (the engine's input queue) as an ``AccountStreamEvent``. The broker is never touched
here: it runs on the engine thread. The API key lives in the python-binance client only and is
never logged; the listenKey (a bearer secret for the stream) is logged only as its first 6
characters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from tradeconsole.core.config import BinanceEndpoints
from tradeconsole.core.feed import AccountStreamEvent
from tradeconsole.infra.binance.reconnect import ReconnectLoop, SessionOutcome
from tradeconsole.infra.retry import RetryPolicy

__all__ = ["UserDataStream", "user_stream_url"]

log = logging.getLogger(__name__)

Sink = Callable[[Any], None]


def user_stream_url(endpoints: BinanceEndpoints, listen_key: str) -> str:
    """``<futures_user_ws>ws?listenKey=<key>`` (the base ends in ``/private/``)."""
    return f"{endpoints.futures_user_ws.rstrip('/')}/ws?listenKey={listen_key}"


def _symbol_of(event: dict[str, Any]) -> str:
    o = event.get("o")
    return str(o.get("s") or "") if isinstance(o, dict) else ""


class UserDataStream:
    """Supervised user data stream. ``start(sink)`` returns at once; ``stop()`` is idempotent.

    ``client`` is a python-binance ``Client`` pointed at the futures REST base (used only for the
    three listenKey calls, from this object's thread)."""

    def __init__(
        self,
        client: Any,
        endpoints: BinanceEndpoints,
        *,
        keepalive_s: float = 1800.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        source: str = "binance-user",
    ) -> None:
        if not 0 < keepalive_s < 3600:
            # Binance: the key lives 60 minutes; a keepalive later than that loses it
            raise ValueError("keepalive_s must be between 0 and 3600 seconds (Binance keys live 60 minutes)")
        self._client = client
        self.endpoints = endpoints
        self.keepalive_s = keepalive_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.source = source
        self._sink: Sink | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._ws: Any = None
        self.listen_key: str | None = None
        self.state = "connecting"
        # counters (shown in tests and status)
        self.connects = 0
        self.events = 0
        self.keepalives = 0
        self.expired = 0
        self.bad_messages = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, sink: Sink) -> None:
        if self._thread is not None:
            return
        self._sink = sink
        self._thread = threading.Thread(target=self._run, name="binance-user-stream", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, close the socket and the listenKey (best effort)."""
        self._stop.set()
        loop, ws = self._loop, self._ws
        if loop is not None and ws is not None:
            try:
                asyncio.run_coroutine_threadsafe(ws.close(), loop)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        key, self.listen_key = self.listen_key, None
        if key:
            try:
                self._client.futures_stream_close(listenKey=key)
            except Exception as e:  # noqa: BLE001 - shutting down; the key expires by itself
                log.info("closing the user data stream key failed (%s); it expires within 60 min", type(e).__name__)

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._supervise())
        finally:
            loop.close()
            self._loop = None

    def _status(self, state: str, detail: str = "") -> None:
        """Logged, not sent to the engine: connection events there describe the market feed (the
        UI shows the latest one as the feed's state)."""
        self.state = state
        (log.info if state in ("connected", "stopped") else log.warning)("%s %s: %s", self.source, state, detail)

    def _emit(self, ev: Any) -> None:
        assert self._sink is not None
        self._sink(ev)

    async def _supervise(self) -> None:
        """The shared reconnect loop (``tradeconsole.infra.binance.reconnect``) around
        ``_session``: never gives up, backs off from ``backoff_s`` to ``max_backoff_s``."""
        policy = RetryPolicy(initial_s=self.backoff_s, max_s=max(self.backoff_s, self.max_backoff_s), jitter=0.25)
        loop = ReconnectLoop("user data stream", self._stop, policy, logger=log, on_reconnect=self._on_reconnect)
        await loop.run(self._session)
        self._status("stopped", "user data stream stopped")

    def _on_reconnect(self, outcome: SessionOutcome, delay: float) -> None:
        self._status("reconnecting", f"user data stream reconnects in {delay:.1f}s ({outcome.reason})")

    async def _session(self) -> SessionOutcome:
        """One connection: a new listenKey, connect, announce the gap, read until it ends. Never
        raises for network or exchange trouble (that is a ``SessionOutcome``)."""
        from websockets.asyncio.client import connect

        connected = False
        try:
            key = await asyncio.to_thread(self._new_key)
            async with connect(
                user_stream_url(self.endpoints, key),
                open_timeout=10,
                ping_interval=20,
                ping_timeout=20,
                close_timeout=2,
                max_size=2**20,
            ) as ws:
                self._ws = ws
                self.connects += 1
                connected = True
                self._status("connected", f"user data stream (key {key[:6]}...)")
                # events may have been missed before this connection (while disconnected, or
                # between the engine's start-up reconcile and the first connect): reconcile
                self._emit(AccountStreamEvent("", {}, int(time.time() * 1000), gap=True))
                keepalive = asyncio.ensure_future(self._keepalive(ws, key))
                try:
                    await self._read(ws)
                finally:
                    keepalive.cancel()
                    self._ws = None
            return SessionOutcome(True, False, "connection closed")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure: back off and reconnect
            text = str(e)[:200]
            if self.listen_key:  # the key is a bearer secret for the stream: never log it
                text = text.replace(self.listen_key, "***")
            if not self._stop.is_set():
                log.warning("user data stream: %s: %s", type(e).__name__, text)
            return SessionOutcome(connected, False, f"{type(e).__name__}: {text}")

    def _new_key(self) -> str:
        key = self._client.futures_stream_get_listen_key()
        if not isinstance(key, str) or not key:
            raise RuntimeError("POST /fapi/v1/listenKey returned no listenKey")
        self.listen_key = key
        return key

    async def _keepalive(self, ws: Any, key: str) -> None:
        """PUT the key every ``keepalive_s``; if Binance says it no longer exists, drop the
        connection (the supervisor creates a new key and reconnects)."""
        while True:
            await asyncio.sleep(self.keepalive_s)
            try:
                await asyncio.to_thread(self._client.futures_stream_keepalive, listenKey=key)
                self.keepalives += 1
            except Exception as e:  # noqa: BLE001
                code = getattr(e, "code", None)
                log.warning(
                    "user data stream keepalive failed (%s%s)", type(e).__name__, f" {code}" if code is not None else ""
                )
                if code == -1125:
                    await ws.close()
                    return

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            if self._stop.is_set():
                return
            received = int(time.time() * 1000)
            try:
                msg = json.loads(raw)
            except (TypeError, ValueError):
                self.bad_messages += 1
                log.warning("user data stream: unparsable message skipped (%d so far)", self.bad_messages)
                continue
            if isinstance(msg, dict) and isinstance(msg.get("data"), dict) and "stream" in msg:
                msg = msg["data"]  # combined-stream wrapper
            if not isinstance(msg, dict) or not isinstance(msg.get("e"), str):
                self.bad_messages += 1
                log.warning("user data stream: message without an event type skipped (%d so far)", self.bad_messages)
                continue
            if msg["e"] == "listenKeyExpired":
                self.expired += 1
                log.warning("user data stream: listenKey expired; creating a new one")
                await ws.close()
                return
            self.events += 1
            self._emit(AccountStreamEvent(_symbol_of(msg), msg, received))
