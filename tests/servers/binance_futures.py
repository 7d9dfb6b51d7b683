"""A stand-in for the Binance USD-M futures *trading* REST API, for tests (no internet needed).

It runs an aiohttp server on 127.0.0.1 (a free port) in a background thread and answers the
documented endpoints the live broker uses, through python-binance's real ``Client``:

==========================================  =================================================
``GET  /fapi/v1/ping`` ``/time``            connectivity, server clock (with a settable skew)
``GET  /fapi/v1/exchangeInfo``              symbols with realistic filters (ETHUSDT, BTCUSDT)
``POST /fapi/v1/leverage`` ``/marginType``  per-symbol settings (-4046 when unchanged)
``POST|GET|DELETE /fapi/v1/order``          MARKET orders (conditional types answer -4120)
``GET /fapi/v1/openOrders``                 open regular orders
``DELETE /fapi/v1/allOpenOrders``           cancel regular orders of a symbol
``POST|GET|DELETE /fapi/v1/algoOrder``      STOP_MARKET / TAKE_PROFIT_MARKET (algo service)
``GET /fapi/v1/openAlgoOrders``             open conditional orders
``DELETE /fapi/v1/algoOpenOrders``          cancel conditional orders of a symbol
``GET /fapi/v2|v3/positionRisk``            one-way positions
``GET /fapi/v2|v3/balance`` ``/account``    USDT wallet
``GET /fapi/v1/userTrades``                 executions; 7-day windows, 500/1000 rows (-1127/-1128)
``GET /fapi/v1/income``                     income history (funding fees)
``GET /fapi/v1/positionSide/dual``          position mode (``dual_side``; -4061 on orders)
``GET /fapi/v1/multiAssetsMargin``          Multi-Assets mode (``multi_assets``; -4168 on ISOLATED)
``POST|PUT|DELETE /fapi/v1/listenKey``      user data stream key (60 min; -1125 when gone)
``WS /private/ws?listenKey=``               user data stream: ORDER_TRADE_UPDATE, ALGO_UPDATE,
                                            ACCOUNT_UPDATE, listenKeyExpired (legacy ``/ws/`` 404)
==========================================  =================================================

Each behaviour added for the 2026 API carries, next to its code, the documented rule it models
and where it is documented (Binance USD-M docs page and section, the error codes page, or
python-binance's file). What the stand-in does NOT model: hedge-mode positions (a hedge account
refuses every order, as it refuses ours), the 6-month limit of userTrades, the 24-hour connection
limit of the user data stream, partial fills.

Since December 2025 Binance routes conditional orders through the algo order service
(``/fapi/v1/algoOrder``, ids ``algoId``/``clientAlgoId``); python-binance 1.0.37 does the same,
so the stand-in does too and rejects them on ``/fapi/v1/order`` with -4120.

Like Binance it checks the ``X-MBX-APIKEY`` header and the HMAC-SHA256 signature over the query
string concatenated with the body, the ``timestamp``/``recvWindow`` rule (against its own clock,
which ``clock_skew_ms`` shifts to provoke -1021), symbol filters (-1111 precision, -4004 min
quantity, -4014 tick, -4164 min notional), duplicate client ids among open orders (-4116),
reduce-only rules (-2022), initial margin (-2019) and conditional orders that would trigger
immediately (-2021).

Market model: one price (``last``; ``mark`` follows unless set separately). MARKET orders fill
completely at it, taker fee on notional. ``jump(p)`` moves the price discontinuously (a gap:
triggered orders fill at ``p``); ``walk(p1, p2, ...)`` moves continuously (triggered orders fill
at their trigger price). Isolated margin, one-way mode; wallet balance changes by realised PnL
minus commissions, exactly like the simulated broker's cash.

Fault injection, each one-shot and matched by method and path: ``reject_next`` (answer an error
code without executing), ``delay_next`` (execute, then hold the response longer than the client
waits: the order exists but the client timed out), ``http_error_next`` (5xx, before or after
executing), ``rate_limit_next`` (429/418 with Retry-After); for triggered conditional orders
``cancel_next_trigger`` (FINISHED, market order EXPIRED without a trade), ``reject_next_trigger``
(REJECTED), ``stall_next_trigger`` (stays TRIGGERING), ``expire_algo_externally`` (EXPIRED); for
the user data stream ``expire_listen_key`` and ``drop_user_connections``. ``requests`` records every request
(method, path, parameters without the signature, status, code) for assertions. The API secret is
only used to verify signatures: it is never logged or recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

__all__ = ["DEFAULT_SYMBOLS", "Fault", "FuturesStandIn", "RequestRecord", "SymbolSpec"]


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """Trading rules of one symbol, as exchangeInfo publishes them."""

    symbol: str
    base: str
    tick: str
    min_price: str
    max_price: str
    step: str
    min_qty: str
    max_qty: str
    market_step: str
    market_min_qty: str
    market_max_qty: str
    min_notional: str
    price_precision: int
    quantity_precision: int


DEFAULT_SYMBOLS: dict[str, SymbolSpec] = {
    "ETHUSDT": SymbolSpec(
        "ETHUSDT",
        "ETH",
        tick="0.01",
        min_price="39.86",
        max_price="306177",
        step="0.001",
        min_qty="0.001",
        max_qty="10000",
        market_step="0.001",
        market_min_qty="0.001",
        market_max_qty="2000",
        min_notional="20",
        price_precision=2,
        quantity_precision=3,
    ),
    "BTCUSDT": SymbolSpec(
        "BTCUSDT",
        "BTC",
        tick="0.10",
        min_price="556.80",
        max_price="4529764",
        step="0.001",
        min_qty="0.001",
        max_qty="1000",
        market_step="0.001",
        market_min_qty="0.001",
        market_max_qty="120",
        min_notional="100",
        price_precision=2,
        quantity_precision=3,
    ),
}


class ApiError(Exception):
    def __init__(self, code: int | None, msg: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status, self.headers = code, msg, status, headers or {}


@dataclass(slots=True)
class Fault:
    """One injected failure. ``kind``: ``reject`` (error ``code`` without executing), ``delay``
    (execute, then wait ``seconds`` before answering), ``http`` (answer ``status`` either before
    executing or, with ``after_execute``, after), ``rate_limit`` (429/418 + Retry-After).
    Faults for the same method and path fire in the order they were added; ``skip`` lets that
    many matching requests pass before this one fires."""

    method: str
    path: str
    kind: str
    code: int | None = None
    msg: str = ""
    status: int = 400
    seconds: float = 0.0
    after_execute: bool = False
    retry_after: float | None = None
    skip: int = 0  # let this many matching requests through first


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    params: dict[str, str]
    status: int
    code: int | None


@dataclass(slots=True)
class _Position:
    amt: Decimal = Decimal(0)
    entry: Decimal = Decimal(0)
    update_time: int = 0


@dataclass(slots=True)
class _SymbolState:
    leverage: int = 20
    margin_type: str = "CROSSED"
    position: _Position = field(default_factory=_Position)


_SIG_FREE = {"signature"}
_PUBLIC = {"/fapi/v1/ping", "/fapi/v1/time", "/fapi/v1/exchangeInfo"}
# USER_STREAM endpoints need the API key header but no signature (USD-M "User Data Streams":
# Start/Keepalive/Close User Data Stream, security type USER_STREAM)
_KEY_ONLY = {"/fapi/v1/listenKey"}
_LISTEN_KEY_MS = 60 * 60 * 1000  # "valid for 60 minutes after creation"; a PUT extends it by 60 min
_WEEK_MS = 7 * 24 * 3600 * 1000
_CONDITIONAL = {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}


def _d(x: str | float | Decimal) -> Decimal:
    return x if isinstance(x, Decimal) else Decimal(str(x))


def _s(x: Decimal, places: int | None = None) -> str:
    if places is not None:
        x = x.quantize(Decimal(1).scaleb(-places))
    return format(x, "f")


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1].rstrip("0")) if "." in text else 0


class FuturesStandIn:
    """The stand-in server. Use as a context manager or call ``start()``/``stop()``."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        balance: float = 10_000.0,
        price: float = 2000.0,
        symbols: dict[str, SymbolSpec] | None = None,
        taker_fee: float = 0.0004,
        clock_skew_ms: int = 0,
    ) -> None:
        self._api_key = api_key
        self._secret = api_secret.encode()
        self.symbols = dict(symbols or DEFAULT_SYMBOLS)
        self.taker_fee = _d(taker_fee)
        self.clock_skew_ms = clock_skew_ms
        self.wallet = _d(balance)
        self.last: dict[str, Decimal] = {s: _d(price) for s in self.symbols}
        self.mark: dict[str, Decimal] = dict(self.last)
        self.state: dict[str, _SymbolState] = {s: _SymbolState() for s in self.symbols}
        self.orders: list[dict[str, Any]] = []  # regular orders, oldest first
        self.algo_orders: list[dict[str, Any]] = []
        self.trades: list[dict[str, Any]] = []
        self.income: list[dict[str, Any]] = []
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        #: account settings (GET /fapi/v1/positionSide/dual, GET /fapi/v1/multiAssetsMargin)
        self.dual_side = False
        self.multi_assets = False
        #: one-shot behaviours of the next triggered conditional orders ("cancel", "reject", "stall")
        self.trigger_faults: list[str] = []
        #: user data stream: listenKey -> expiry (server ms); connected websockets per key
        self.listen_keys: dict[str, int] = {}
        #: every listenKey ever handed out (kept after expiry/close): tests check none leaks
        self.issued_listen_keys: list[str] = []
        self.user_events: list[dict[str, Any]] = []  # every event pushed, in order
        self._user_conns: dict[str, list[asyncio.Queue]] = {}
        self._ids = itertools.count(8_389_765_000)
        self._algo_ids = itertools.count(3_000_000)
        self._trade_ids = itertools.count(698_759_000)
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        """The futures REST base (what ``BinanceEndpoints.futures_rest`` expects)."""
        return f"http://127.0.0.1:{self.port}/fapi"

    @property
    def user_ws_url(self) -> str:
        """The user data websocket base (``BinanceEndpoints.futures_user_ws``): ``/private/``."""
        return f"ws://127.0.0.1:{self.port}/private/"

    def start(self) -> FuturesStandIn:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # noqa: BLE001  # pragma: no cover - surfaced to start()
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="binance-futures-standin", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/private/ws", self._user_ws)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._expiry_task = asyncio.get_running_loop().create_task(self._expire_keys())

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    async def _shutdown(self) -> None:
        """Close the listener, then cancel handlers still holding a delayed response."""
        if self._runner is not None:
            await self._runner.cleanup()
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> FuturesStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls
    def now_ms(self) -> int:
        """The server clock: wall clock plus ``clock_skew_ms``."""
        return int(time.time() * 1000) + self.clock_skew_ms

    def reject_next(
        self, path: str, code: int, msg: str, *, method: str = "POST", status: int = 400, skip: int = 0
    ) -> None:
        """Answer the next matching request with this Binance error, without executing it."""
        self.faults.append(Fault(method, path, "reject", code=code, msg=msg, status=status, skip=skip))

    def delay_next(self, path: str, seconds: float, *, method: str = "POST", skip: int = 0) -> None:
        """Execute the next matching request, then hold its response for ``seconds``."""
        self.faults.append(Fault(method, path, "delay", seconds=seconds, after_execute=True, skip=skip))

    def http_error_next(
        self,
        path: str,
        status: int = 503,
        *,
        method: str = "POST",
        after_execute: bool = False,
        code: int | None = -1007,
        msg: str = "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        skip: int = 0,
    ) -> None:
        """Answer the next matching request with a 5xx, before or after executing it (``code=None``
        sends a plain-text body, as a load balancer in front of Binance would)."""
        self.faults.append(
            Fault(method, path, "http", code=code, msg=msg, status=status, after_execute=after_execute, skip=skip)
        )

    def rate_limit_next(self, path: str, *, method: str = "GET", status: int = 429, retry_after: float = 1) -> None:
        """Answer the next matching request with 429 (or 418, banned) and a Retry-After header."""
        self.faults.append(
            Fault(
                method,
                path,
                "rate_limit",
                status=status,
                retry_after=retry_after,
                code=-1003,
                msg="Too many requests; current limit of IP is 2400 requests per minute.",
            )
        )

    def cancel_next_trigger(self) -> None:
        """The next triggered conditional order's market order is canceled by the matching engine
        without a trade: the algo order ends FINISHED with an actualOrderId and no fill."""
        self.trigger_faults.append("cancel")

    def reject_next_trigger(self) -> None:
        """The next triggered conditional order is REJECTED by the matching engine."""
        self.trigger_faults.append("reject")

    def stall_next_trigger(self) -> None:
        """The next triggered conditional order stays TRIGGERING (never reaches the book)."""
        self.trigger_faults.append("stall")

    def expire_algo_externally(self, client_algo_id: str) -> None:
        """The system cancels an open conditional order (algo status EXPIRED)."""
        with self._lock:
            for o in self.algo_orders:
                if o["clientAlgoId"] == client_algo_id and o["algoStatus"] == "NEW":
                    self._set_algo_status(o, "EXPIRED")

    def jump(self, price: float, symbol: str = "ETHUSDT", mark: float | None = None) -> None:
        """Move the price discontinuously (a gap): triggered conditional orders fill at ``price``."""
        with self._lock:
            self.last[symbol] = _d(price)
            self.mark[symbol] = _d(price if mark is None else mark)
            self._check_triggers(symbol, gap=True)

    set_price = jump

    def walk(self, *prices: float, symbol: str = "ETHUSDT") -> None:
        """Move the price continuously through ``prices``: a conditional order whose trigger is
        crossed fills at its trigger price (a continuous market has traded there)."""
        with self._lock:
            for p in prices:
                start = self.last[symbol]
                target = _d(p)
                self._walk_to(symbol, start, target)

    def open_position_externally(self, side: str, qty: float, symbol: str = "ETHUSDT") -> dict[str, Any]:
        """Someone traded on the account outside the console (web UI): a filled MARKET order."""
        with self._lock:
            return self._new_market_order(
                symbol, side, _d(qty), reduce_only=False, client_id=f"web_{next(self._ids)}", resp_type="RESULT"
            )

    def close_position_externally(self, symbol: str = "ETHUSDT", client_id: str | None = None) -> dict[str, Any] | None:
        """Close the whole position at the current price outside the console."""
        with self._lock:
            pos = self.state[symbol].position
            if pos.amt == 0:
                return None
            side = "SELL" if pos.amt > 0 else "BUY"
            return self._new_market_order(
                symbol,
                side,
                abs(pos.amt),
                reduce_only=True,
                client_id=client_id or f"web_{next(self._ids)}",
                resp_type="RESULT",
            )

    def liquidate(self, symbol: str = "ETHUSDT") -> dict[str, Any] | None:
        """Force-close the position at the current price as Binance's liquidation engine does
        (client order id ``autoclose-...``)."""
        return self.close_position_externally(symbol, client_id=f"autoclose-{next(self._ids)}")

    def charge_funding(self, rate: float, symbol: str = "ETHUSDT") -> float:
        """A funding settlement at the mark price: longs pay ``rate`` of their notional when it is
        positive, shorts receive it. Returns the income booked (negative = paid)."""
        with self._lock:
            pos = self.state[symbol].position
            income = (-pos.amt * self.mark[symbol] * _d(rate)).quantize(Decimal("0.00000001"))
            if pos.amt == 0:
                return 0.0
            self.wallet += income
            self.income.append(
                {
                    "symbol": symbol,
                    "incomeType": "FUNDING_FEE",
                    "income": _s(income),
                    "asset": "USDT",
                    "info": "FUNDING_FEE",
                    "time": self.now_ms(),
                    "tranId": next(self._trade_ids),
                    "tradeId": "",
                }
            )
            return float(income)

    def cancel_algo_externally(self, client_algo_id: str) -> None:
        with self._lock:
            for o in self.algo_orders:
                if o["clientAlgoId"] == client_algo_id and o["algoStatus"] == "NEW":
                    self._set_algo_status(o, "CANCELED")

    def position_amt(self, symbol: str = "ETHUSDT") -> float:
        return float(self.state[symbol].position.amt)

    def orders_with_client_id(self, client_id: str) -> list[dict[str, Any]]:
        return [o for o in self.orders if o["clientOrderId"] == client_id]

    def open_algo_orders(self, symbol: str = "ETHUSDT") -> list[dict[str, Any]]:
        return [o for o in self.algo_orders if o["symbol"] == symbol and o["algoStatus"] == "NEW"]

    # ------------------------------------------------------------------ HTTP plumbing
    async def _dispatch(self, request: web.Request) -> web.Response:
        method, path = request.method, request.path
        raw_query = request.rel_url.raw_query_string
        raw_body = (await request.read()).decode()
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        params.update({k: v for k, v in parse_qsl(raw_body, keep_blank_values=True) if k not in params})
        logged = {k: v for k, v in params.items() if k not in _SIG_FREE}
        fault = self._take_fault(method, path)
        status, payload, headers, delay = 200, None, {}, 0.0
        try:
            if fault is not None and not fault.after_execute and fault.kind != "delay":
                raise self._fault_error(fault)
            if path in _KEY_ONLY:
                self._check_key(request)
            elif path not in _PUBLIC:
                self._authenticate(request, raw_query, raw_body, params)
            with self._lock:
                payload = self._route(method, path, params)
            if fault is not None and fault.after_execute:
                if fault.kind == "delay":
                    delay = fault.seconds
                else:
                    raise self._fault_error(fault)
        except ApiError as e:
            status, headers = e.status, e.headers
            payload = {"code": e.code, "msg": e.msg}
        code = payload.get("code") if isinstance(payload, dict) and status != 200 else None
        self.requests.append(RequestRecord(method, path, logged, status, code))
        if delay:
            await asyncio.sleep(delay)
        if status >= 500 and code is None:
            return web.Response(status=status, text="Service Unavailable", headers=headers)
        return web.Response(status=status, text=json.dumps(payload), content_type="application/json", headers=headers)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for i, f in enumerate(self.faults):
            if f.method == method and f.path == path:
                if f.skip > 0:
                    f.skip -= 1
                    return None
                return self.faults.pop(i)
        return None

    @staticmethod
    def _fault_error(f: Fault) -> ApiError:
        if f.kind == "rate_limit":
            headers = {"Retry-After": f"{f.retry_after:g}"} if f.retry_after is not None else {}
            msg = f.msg if f.status == 429 else "Way too much request weight used; IP banned."
            return ApiError(f.code, msg, f.status, headers)
        return ApiError(f.code, f.msg, f.status)

    def _check_key(self, request: web.Request) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise ApiError(-2014, "API-key format invalid.", 401)
        if not hmac.compare_digest(key, self._api_key):
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)

    def _authenticate(self, request: web.Request, raw_query: str, raw_body: str, params: dict[str, str]) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise ApiError(-2014, "API-key format invalid.", 401)
        if not hmac.compare_digest(key, self._api_key):
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        sig = params.get("signature")
        if not sig:
            raise ApiError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")

        def strip(raw: str) -> str:
            return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))

        total = strip(raw_query) + strip(raw_body)
        want = hmac.new(self._secret, total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sig.lower()):
            raise ApiError(-1022, "Signature for this request is not valid.")
        if "timestamp" not in params:
            raise ApiError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        ts = int(params["timestamp"])
        window = int(params.get("recvWindow", "5000"))
        if window > 60_000:
            raise ApiError(-1131, "recvWindow must be less than 60000")
        now = self.now_ms()
        if ts >= now + 1000:
            raise ApiError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - ts > window:
            raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _route(self, method: str, path: str, p: dict[str, str]) -> Any:
        table: dict[tuple[str, str], Callable[[dict[str, str]], Any]] = {
            ("GET", "/fapi/v1/ping"): lambda p: {},
            ("GET", "/fapi/v1/time"): lambda p: {"serverTime": self.now_ms()},
            ("GET", "/fapi/v1/exchangeInfo"): self._exchange_info,
            ("POST", "/fapi/v1/leverage"): self._leverage,
            ("POST", "/fapi/v1/marginType"): self._margin_type,
            ("POST", "/fapi/v1/order"): self._post_order,
            ("GET", "/fapi/v1/order"): self._get_order,
            ("DELETE", "/fapi/v1/order"): self._cancel_order,
            ("GET", "/fapi/v1/openOrders"): self._open_orders,
            ("DELETE", "/fapi/v1/allOpenOrders"): self._cancel_all,
            ("POST", "/fapi/v1/algoOrder"): self._post_algo,
            ("GET", "/fapi/v1/algoOrder"): self._get_algo,
            ("DELETE", "/fapi/v1/algoOrder"): self._cancel_algo,
            ("GET", "/fapi/v1/openAlgoOrders"): self._open_algo,
            ("DELETE", "/fapi/v1/algoOpenOrders"): self._cancel_all_algo,
            ("GET", "/fapi/v2/positionRisk"): self._position_risk,
            ("GET", "/fapi/v3/positionRisk"): self._position_risk,
            ("GET", "/fapi/v2/balance"): self._balance,
            ("GET", "/fapi/v3/balance"): self._balance,
            ("GET", "/fapi/v2/account"): self._account,
            ("GET", "/fapi/v3/account"): self._account,
            ("GET", "/fapi/v1/userTrades"): self._user_trades,
            ("GET", "/fapi/v1/income"): self._income,
            ("GET", "/fapi/v1/positionSide/dual"): lambda p: {"dualSidePosition": self.dual_side},
            ("GET", "/fapi/v1/multiAssetsMargin"): lambda p: {"multiAssetsMargin": self.multi_assets},
            ("POST", "/fapi/v1/listenKey"): self._new_listen_key,
            ("PUT", "/fapi/v1/listenKey"): self._keepalive_listen_key,
            ("DELETE", "/fapi/v1/listenKey"): self._close_listen_key,
        }
        fn = table.get((method, path))
        if fn is None:
            raise ApiError(-5000, f"Path {path}, Method {method} is invalid", 404)
        return fn(p)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _need(p: dict[str, str], name: str) -> str:
        v = p.get(name)
        if v is None or v == "":
            raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        return v

    def _spec(self, p: dict[str, str]) -> SymbolSpec:
        sym = self._need(p, "symbol")
        if sym not in self.symbols:
            raise ApiError(-1121, "Invalid symbol.")
        return self.symbols[sym]

    def _check_qty(self, spec: SymbolSpec, text: str) -> Decimal:
        try:
            qty = Decimal(text)
        except ArithmeticError:
            raise ApiError(
                -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."
            ) from None
        if _decimals(text) > spec.quantity_precision:
            raise ApiError(-1111, "Precision is over the maximum defined for this asset.")
        if qty <= 0:
            raise ApiError(-4003, "Quantity less than or equal to zero.")
        if qty < _d(spec.market_min_qty):
            raise ApiError(-4004, "Quantity less than min quantity.")
        if qty > _d(spec.market_max_qty):
            raise ApiError(-4005, "Quantity greater than max quantity.")
        if (qty - _d(spec.market_min_qty)) % _d(spec.market_step):
            raise ApiError(-4023, "Qty not increased by step size.")
        return qty

    def _check_price(self, spec: SymbolSpec, text: str, name: str) -> Decimal:
        try:
            price = Decimal(text)
        except ArithmeticError:
            raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.") from None
        if _decimals(text) > spec.price_precision:
            raise ApiError(-1111, "Precision is over the maximum defined for this asset.")
        if price < _d(spec.min_price):
            raise ApiError(-4013, "Price less than min price.")
        if price > _d(spec.max_price):
            raise ApiError(-4024, "Price greater than max price.")
        if (price - _d(spec.min_price)) % _d(spec.tick):
            raise ApiError(-4014, "Price not increased by tick size.")
        return price

    def _check_position_side(self, p: dict[str, str]) -> None:
        """New Order / New Algo Order: ``positionSide`` defaults to BOTH (one-way mode) and "must be
        sent with LONG or SHORT in Hedge Mode"; Binance answers -4061 "Order's position side does
        not match user's setting." otherwise (error codes page). This stand-in trades one-way
        positions only, so a hedge-mode account refuses every order, as it would refuse ours."""
        ps = p.get("positionSide", "BOTH").upper()
        if (ps in ("LONG", "SHORT")) != self.dual_side:
            raise ApiError(-4061, "Order's position side does not match user's setting.")
        if self.dual_side:  # accepted by Binance, but hedge positions are not modelled here
            raise ApiError(-1000, "stand-in: hedge-mode positions are not modelled")

    @staticmethod
    def _flag(p: dict[str, str], name: str) -> bool:
        return p.get(name, "false").lower() == "true"

    # ------------------------------------------------------------------ endpoints
    def _exchange_info(self, p: dict[str, str]) -> dict[str, Any]:
        def sym(s: SymbolSpec) -> dict[str, Any]:
            return {
                "symbol": s.symbol,
                "pair": s.symbol,
                "contractType": "PERPETUAL",
                "status": "TRADING",
                "baseAsset": s.base,
                "quoteAsset": "USDT",
                "marginAsset": "USDT",
                "pricePrecision": s.price_precision,
                "quantityPrecision": s.quantity_precision,
                "baseAssetPrecision": 8,
                "quotePrecision": 8,
                "underlyingType": "COIN",
                "triggerProtect": "0.0500",
                "liquidationFee": "0.012500",
                "marketTakeBound": "0.05",
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": s.min_price,
                        "maxPrice": s.max_price,
                        "tickSize": s.tick,
                    },
                    {"filterType": "LOT_SIZE", "minQty": s.min_qty, "maxQty": s.max_qty, "stepSize": s.step},
                    {
                        "filterType": "MARKET_LOT_SIZE",
                        "minQty": s.market_min_qty,
                        "maxQty": s.market_max_qty,
                        "stepSize": s.market_step,
                    },
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": s.min_notional},
                    {
                        "filterType": "PERCENT_PRICE",
                        "multiplierUp": "1.0500",
                        "multiplierDown": "0.9500",
                        "multiplierDecimal": "4",
                    },
                ],
                "orderTypes": [
                    "LIMIT",
                    "MARKET",
                    "STOP",
                    "STOP_MARKET",
                    "TAKE_PROFIT",
                    "TAKE_PROFIT_MARKET",
                    "TRAILING_STOP_MARKET",
                ],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            }

        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True}],
            "symbols": [sym(s) for s in self.symbols.values()],
        }

    def _leverage(self, p: dict[str, str]) -> dict[str, Any]:
        spec = self._spec(p)
        lev = int(self._need(p, "leverage"))
        if not 1 <= lev <= 125:
            raise ApiError(-4028, f"Leverage {lev} is not valid")
        self.state[spec.symbol].leverage = lev
        return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": spec.symbol}

    def _margin_type(self, p: dict[str, str]) -> dict[str, Any]:
        spec = self._spec(p)
        mt = self._need(p, "marginType").upper()
        if mt == "CROSS":
            mt = "CROSSED"
        if mt not in ("ISOLATED", "CROSSED"):
            raise ApiError(-1102, "Mandatory parameter 'marginType' was not sent, was empty/null, or malformed.")
        st = self.state[spec.symbol]
        if mt == "ISOLATED" and self.multi_assets:
            # Error codes page: -4168 "Unable to adjust to isolated-margin mode under the Multi-Assets mode."
            raise ApiError(-4168, "Unable to adjust to isolated-margin mode under the Multi-Assets mode.")
        if st.margin_type == mt:
            raise ApiError(-4046, "No need to change margin type.")
        if st.position.amt != 0 or any(o["symbol"] == spec.symbol and o["status"] == "NEW" for o in self.orders):
            raise ApiError(-4048, "Margin type cannot be changed if there exists position.")
        st.margin_type = mt
        return {"code": 200, "msg": "success"}

    def _post_order(self, p: dict[str, str]) -> dict[str, Any]:
        spec = self._spec(p)
        side = self._need(p, "side").upper()
        otype = self._need(p, "type").upper()
        if otype in _CONDITIONAL:
            raise ApiError(
                -4120, "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
            )
        if otype != "MARKET":
            raise ApiError(-1116, "Invalid orderType.")
        if side not in ("BUY", "SELL"):
            raise ApiError(-1117, "Invalid side.")
        self._check_position_side(p)
        cid = p.get("newClientOrderId") or f"standin{next(self._ids)}"
        if len(cid) > 36:
            raise ApiError(-4015, "Client order id is not valid.")
        if any(o["clientOrderId"] == cid and o["status"] == "NEW" for o in self.orders):
            raise ApiError(-4116, "ClientOrderId is duplicated.")
        qty = self._check_qty(spec, self._need(p, "quantity"))
        return self._new_market_order(
            spec.symbol,
            side,
            qty,
            reduce_only=self._flag(p, "reduceOnly"),
            client_id=cid,
            resp_type=p.get("newOrderRespType", "ACK").upper(),
        )

    def _new_market_order(
        self,
        symbol: str,
        side: str,
        qty: Decimal,
        *,
        reduce_only: bool,
        client_id: str,
        resp_type: str,
        price: Decimal | None = None,
        orig_type: str = "MARKET",
        close_position: bool = False,
        before_execute: Callable[[dict[str, Any]], Any] | None = None,
    ) -> dict[str, Any]:
        spec = self.symbols[symbol]
        st = self.state[symbol]
        px = self.last[symbol] if price is None else price
        amt = st.position.amt
        signed = qty if side == "BUY" else -qty
        if reduce_only:
            if amt == 0 or (amt > 0) == (signed > 0):
                raise ApiError(-2022, "ReduceOnly Order is rejected.")
            qty = min(qty, abs(amt))
            signed = qty if side == "BUY" else -qty
        else:
            notional = qty * px
            if notional < _d(spec.min_notional):
                raise ApiError(
                    -4164,
                    f"Order's notional must be no smaller than {spec.min_notional} (unless you choose reduce only).",
                )
            opening = qty if amt == 0 or (amt > 0) == (signed > 0) else max(Decimal(0), qty - abs(amt))
            required = opening * px / st.leverage + notional * self.taker_fee
            if required > self._available():
                raise ApiError(-2019, "Margin is insufficient.")
        now = self.now_ms()
        order = {
            "orderId": next(self._ids),
            "symbol": symbol,
            "status": "FILLED",
            "clientOrderId": client_id,
            "price": "0",
            "avgPrice": _s(px),
            "origQty": _s(qty),
            "executedQty": _s(qty),
            "cumQty": _s(qty),
            "cumQuote": _s(qty * px),
            "timeInForce": "GTC",
            "type": "MARKET",
            "reduceOnly": reduce_only,
            "closePosition": close_position,
            "side": side,
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": orig_type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": now,
            "updateTime": now,
        }
        self.orders.append(order)
        if before_execute is not None:
            before_execute(order)
        self._execute(symbol, order, side, qty, px, now)
        if resp_type == "RESULT":
            return dict(order)
        return {**order, "status": "NEW", "executedQty": "0", "cumQty": "0", "cumQuote": "0", "avgPrice": "0.00"}

    def _available(self) -> Decimal:
        used = Decimal(0)
        for st in self.state.values():
            if st.position.amt:
                used += abs(st.position.amt) * st.position.entry / st.leverage
        return self.wallet - used

    def _execute(self, symbol: str, order: dict[str, Any], side: str, qty: Decimal, px: Decimal, now: int) -> None:
        pos = self.state[symbol].position
        signed = qty if side == "BUY" else -qty
        realized = Decimal(0)
        if pos.amt != 0 and (pos.amt > 0) != (signed > 0):
            closed = min(abs(signed), abs(pos.amt))
            realized = (px - pos.entry) * closed * (1 if pos.amt > 0 else -1)
            new_amt = pos.amt + signed
            if new_amt == 0:
                pos.entry = Decimal(0)
            elif (new_amt > 0) != (pos.amt > 0):
                pos.entry = px
            pos.amt = new_amt
        else:
            total = abs(pos.amt) + qty
            pos.entry = (abs(pos.amt) * pos.entry + qty * px) / total
            pos.amt += signed
        pos.update_time = now
        commission = (qty * px * self.taker_fee).quantize(Decimal("0.00000001"))
        self.wallet += realized - commission
        trade = {
            "buyer": side == "BUY",
            "commission": _s(commission),
            "commissionAsset": "USDT",
            "id": next(self._trade_ids),
            "maker": False,
            "orderId": order["orderId"],
            "price": _s(px),
            "qty": _s(qty),
            "quoteQty": _s(qty * px),
            "realizedPnl": _s(realized),
            "side": side,
            "positionSide": "BOTH",
            "symbol": symbol,
            "time": now,
        }
        self.trades.append(trade)
        self._push_order_update(order, "TRADE", "FILLED", qty, px, commission, trade, realized)
        self._push_account_update(symbol, "ORDER")

    def _find_order(self, p: dict[str, str]) -> dict[str, Any]:
        spec = self._spec(p)
        oid, cid = p.get("orderId"), p.get("origClientOrderId")
        if oid is None and cid is None:
            raise ApiError(-1102, "Either orderId or origClientOrderId must be sent.")
        for o in reversed(self.orders):
            if o["symbol"] == spec.symbol and (str(o["orderId"]) == oid or o["clientOrderId"] == cid):
                return o
        raise ApiError(-2013, "Order does not exist.")

    def _get_order(self, p: dict[str, str]) -> dict[str, Any]:
        return dict(self._find_order(p))

    def _cancel_order(self, p: dict[str, str]) -> dict[str, Any]:
        try:
            o = self._find_order(p)
        except ApiError:
            raise ApiError(-2011, "Unknown order sent.") from None
        if o["status"] != "NEW":
            raise ApiError(-2011, "Unknown order sent.")
        o["status"] = "CANCELED"
        return dict(o)

    def _open_orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        sym = p.get("symbol")
        return [dict(o) for o in self.orders if o["status"] == "NEW" and (sym is None or o["symbol"] == sym)]

    def _cancel_all(self, p: dict[str, str]) -> dict[str, Any]:
        spec = self._spec(p)
        for o in self.orders:
            if o["symbol"] == spec.symbol and o["status"] == "NEW":
                o["status"] = "CANCELED"
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ------------------------------------------------------------------ conditional (algo) orders
    def _post_algo(self, p: dict[str, str]) -> dict[str, Any]:
        spec = self._spec(p)
        if self._need(p, "algoType").upper() != "CONDITIONAL":
            raise ApiError(-1102, "Mandatory parameter 'algoType' was not sent, was empty/null, or malformed.")
        side = self._need(p, "side").upper()
        otype = self._need(p, "type").upper()
        if otype not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise ApiError(-1116, "Invalid orderType.")
        self._check_position_side(p)
        trigger = self._check_price(spec, self._need(p, "triggerPrice"), "triggerPrice")
        close_position = self._flag(p, "closePosition")
        reduce_only = self._flag(p, "reduceOnly")
        if close_position and ("quantity" in p or reduce_only):
            raise ApiError(-1106, "Parameter 'quantity' or 'reduceOnly' sent when not required.")
        qty = Decimal(0) if close_position else self._check_qty(spec, self._need(p, "quantity"))
        working = p.get("workingType", "CONTRACT_PRICE").upper()
        if working not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise ApiError(-1102, "Mandatory parameter 'workingType' was not sent, was empty/null, or malformed.")
        cid = p.get("clientAlgoId") or f"standinalgo{next(self._algo_ids)}"
        if len(cid) > 36:
            raise ApiError(-4015, "Client order id is not valid.")
        # "New Algo Order": clientAlgoId is "a unique id among open orders"; a second open order
        # with the same id is refused (error list: -4116 "ClientOrderId is duplicated."), a dead
        # one's id may be used again.
        if any(o["clientAlgoId"] == cid and o["algoStatus"] == "NEW" for o in self.algo_orders):
            raise ApiError(-4116, "ClientOrderId is duplicated.")
        ref = self.mark[spec.symbol] if working == "MARK_PRICE" else self.last[spec.symbol]
        if self._crossed(side, otype, trigger, ref):
            raise ApiError(-2021, "Order would immediately trigger.")
        now = self.now_ms()
        algo = {
            "algoId": next(self._algo_ids),
            "clientAlgoId": cid,
            "algoType": "CONDITIONAL",
            "orderType": otype,
            "symbol": spec.symbol,
            "side": side,
            "positionSide": "BOTH",
            "timeInForce": "GTC",
            "quantity": _s(qty),
            "algoStatus": "NEW",
            "actualOrderId": "",
            "actualPrice": "0.00000",
            "triggerPrice": _s(trigger),
            "price": "0",
            "icebergQuantity": None,
            "tpTriggerPrice": "0.000",
            "tpPrice": "0.000",
            "slTriggerPrice": "0.000",
            "slPrice": "0.000",
            "tpOrderType": "",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": working,
            "priceMatch": "NONE",
            "closePosition": close_position,
            "priceProtect": self._flag(p, "priceProtect"),
            "reduceOnly": reduce_only,
            "createTime": now,
            "updateTime": now,
            "triggerTime": 0,
            "goodTillDate": 0,
        }
        self.algo_orders.append(algo)
        self._push_algo_update(algo)
        return dict(algo)

    @staticmethod
    def _crossed(side: str, otype: str, trigger: Decimal, price: Decimal) -> bool:
        """Has ``price`` reached ``trigger`` for this conditional order?"""
        if otype == "STOP_MARKET":
            return price <= trigger if side == "SELL" else price >= trigger
        return price >= trigger if side == "SELL" else price <= trigger

    def _find_algo(self, p: dict[str, str]) -> dict[str, Any]:
        """USD-M "Query Algo Order" / "Cancel Algo Order" (GET|DELETE /fapi/v1/algoOrder):
        "Either algoId or clientAlgoId must be sent." An algoId names one order (it is the order's
        id; "self-increment for each specific symbol"), so it wins when both are sent.
        A clientAlgoId is only "a unique id among open orders" ("New Algo Order", parameter
        clientAlgoId): once an order is dead its id may be used again, and Binance documents no
        rule for which order a query by such an id returns. Here: the open one if there is one,
        otherwise the OLDEST (deliberately not the newest), so a client that needs a particular
        dead or triggered order must ask by its algoId."""
        aid, cid = p.get("algoId"), p.get("clientAlgoId")
        if aid is None and cid is None:
            raise ApiError(-1102, "Either algoId or clientAlgoId must be sent.")
        if aid is not None:
            for o in self.algo_orders:
                if str(o["algoId"]) == aid:
                    return o
            raise ApiError(-2013, "Order does not exist.")
        same = [o for o in self.algo_orders if o["clientAlgoId"] == cid]
        for o in same:
            if o["algoStatus"] == "NEW":
                return o
        if same:
            return same[0]
        raise ApiError(-2013, "Order does not exist.")

    def _get_algo(self, p: dict[str, str]) -> dict[str, Any]:
        return dict(self._find_algo(p))

    def _cancel_algo(self, p: dict[str, str]) -> dict[str, Any]:
        try:
            o = self._find_algo(p)
        except ApiError:
            raise ApiError(-2011, "Unknown order sent.") from None
        if o["algoStatus"] != "NEW":
            raise ApiError(-2011, "Unknown order sent.")
        self._set_algo_status(o, "CANCELED")
        return {"algoId": o["algoId"], "clientAlgoId": o["clientAlgoId"], "code": "200", "msg": "success"}

    def _open_algo(self, p: dict[str, str]) -> list[dict[str, Any]]:
        sym = p.get("symbol")
        return [dict(o) for o in self.algo_orders if o["algoStatus"] == "NEW" and (sym is None or o["symbol"] == sym)]

    def _cancel_all_algo(self, p: dict[str, str]) -> dict[str, Any]:
        spec = self._spec(p)
        now = self.now_ms()
        for o in self.algo_orders:
            if o["symbol"] == spec.symbol and o["algoStatus"] == "NEW":
                self._set_algo_status(o, "CANCELED", now)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ------------------------------------------------------------------ the market
    def _walk_to(self, symbol: str, start: Decimal, target: Decimal) -> None:
        """Move continuously from ``start`` to ``target``, firing triggers in the order the path
        meets them, each at its own trigger price."""
        while True:
            lo, hi = min(start, target), max(start, target)
            hits = [
                o
                for o in self.algo_orders
                if o["symbol"] == symbol
                and o["algoStatus"] == "NEW"
                and lo <= _d(o["triggerPrice"]) <= hi
                and self._crossed(o["side"], o["orderType"], _d(o["triggerPrice"]), target)
            ]
            if not hits:
                break
            first = min(hits, key=lambda o: abs(_d(o["triggerPrice"]) - start))
            level = _d(first["triggerPrice"])
            self.last[symbol] = self.mark[symbol] = level
            self._fire(first, level)
            start = level
        self.last[symbol] = self.mark[symbol] = target
        self._check_triggers(symbol, gap=True)

    def _check_triggers(self, symbol: str, gap: bool) -> None:
        for o in list(self.algo_orders):
            if o["symbol"] != symbol or o["algoStatus"] != "NEW":
                continue
            ref = self.mark[symbol] if o["workingType"] == "MARK_PRICE" else self.last[symbol]
            if self._crossed(o["side"], o["orderType"], _d(o["triggerPrice"]), ref):
                self._fire(o, self.last[symbol])

    def _fire(self, algo: dict[str, Any], price: Decimal) -> None:
        """A trigger was reached. Binance ("Algo Order Update", status list): TRIGGERING (sent to
        the matching engine), TRIGGERED (placed there), then FINISHED ("filled or canceled in the
        matching engine"); REJECTED when the matching engine refuses it (e.g. a margin check);
        EXPIRED when the system cancels it (a closePosition/reduce-only order with nothing left
        to close). ``cancel_next_trigger`` makes the matching engine cancel the market order
        without a trade (FINISHED with an ``actualOrderId`` and no fill); ``reject_next_trigger``
        rejects it; ``stall_next_trigger`` leaves it TRIGGERING."""
        now = self.now_ms()
        algo["triggerTime"] = now
        symbol = algo["symbol"]
        amt = self.state[symbol].position.amt
        closes = amt != 0 and (amt > 0) == (algo["side"] == "SELL")
        if algo["closePosition"] or algo["reduceOnly"]:
            if not closes:
                self._set_algo_status(algo, "EXPIRED", now)
                return
            qty = abs(amt) if algo["closePosition"] else min(_d(algo["quantity"]), abs(amt))
        else:
            qty = _d(algo["quantity"])
        self._set_algo_status(algo, "TRIGGERING", now)
        mode = self.trigger_faults.pop(0) if self.trigger_faults else None
        if mode == "stall":
            return
        if mode == "reject":
            self._set_algo_status(algo, "REJECTED", now)
            return
        if mode == "cancel":
            order = self._dead_market_order(symbol, algo, qty, now)
            algo["actualOrderId"] = str(order["orderId"])
            self._set_algo_status(algo, "TRIGGERED", now)
            self._push_order_update(order, "EXPIRED", "EXPIRED", Decimal(0), Decimal(0), Decimal(0), None)
            self._set_algo_status(algo, "FINISHED", now)
            return
        try:
            order = self._new_market_order(
                symbol,
                algo["side"],
                qty,
                reduce_only=closes,
                resp_type="RESULT",
                client_id=self._triggered_client_id(),
                price=price,
                orig_type=algo["orderType"],
                close_position=algo["closePosition"],
                before_execute=lambda o: (
                    algo.__setitem__("actualOrderId", str(o["orderId"])),
                    self._set_algo_status(algo, "TRIGGERED", now),
                ),
            )
        except ApiError:
            self._set_algo_status(algo, "REJECTED", now)
            return
        algo["actualPrice"] = order["avgPrice"]
        self._set_algo_status(algo, "FINISHED", now)

    def _triggered_client_id(self) -> str:
        """The client order id of the market order a triggered conditional order creates.
        Binance documents the link from the algo order to that order only by order id: Query
        Algo Order's ``actualOrderId`` and ALGO_UPDATE's ``ai`` ("Event: Algo Order Update");
        nothing documents that the order inherits the clientAlgoId. So it gets an id of its own
        here, and a client must follow ``actualOrderId``/``ai``, never the client id."""
        return f"standintrig{next(self._ids)}"

    def _dead_market_order(self, symbol: str, algo: dict[str, Any], qty: Decimal, now: int) -> dict[str, Any]:
        """The market order of a triggered conditional order, canceled by the matching engine
        before any trade (e.g. price protection): status EXPIRED, executedQty 0, no trade rows."""
        order = {
            "orderId": next(self._ids),
            "symbol": symbol,
            "status": "EXPIRED",
            "clientOrderId": self._triggered_client_id(),
            "price": "0",
            "avgPrice": "0.00",
            "origQty": _s(qty),
            "executedQty": "0",
            "cumQty": "0",
            "cumQuote": "0",
            "timeInForce": "GTC",
            "type": "MARKET",
            "reduceOnly": True,
            "closePosition": algo["closePosition"],
            "side": algo["side"],
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": algo["workingType"],
            "priceProtect": False,
            "origType": algo["orderType"],
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": now,
            "updateTime": now,
        }
        self.orders.append(order)
        return order

    def _set_algo_status(self, algo: dict[str, Any], status: str, now: int | None = None) -> None:
        algo["algoStatus"] = status
        algo["updateTime"] = self.now_ms() if now is None else now
        self._push_algo_update(algo)

    # ------------------------------------------------------------------ account
    def _position_risk(self, p: dict[str, str]) -> list[dict[str, Any]]:
        sym = p.get("symbol")
        out = []
        for s, st in self.state.items():
            if sym is not None and s != sym:
                continue
            pos = st.position
            if pos.amt == 0 and not any(o["symbol"] == s and o["algoStatus"] == "NEW" for o in self.algo_orders):
                continue  # v3 lists only symbols with a position or open orders
            mark = self.mark[s]
            upnl = (mark - pos.entry) * pos.amt if pos.amt else Decimal(0)
            margin = abs(pos.amt) * pos.entry / st.leverage
            if pos.amt > 0:
                liq = pos.entry * (1 - Decimal(1) / st.leverage + Decimal("0.004"))
            elif pos.amt < 0:
                liq = pos.entry * (1 + Decimal(1) / st.leverage - Decimal("0.004"))
            else:
                liq = Decimal(0)
            out.append(
                {
                    "symbol": s,
                    "positionSide": "BOTH",
                    "positionAmt": _s(pos.amt),
                    "entryPrice": _s(pos.entry),
                    "breakEvenPrice": _s(pos.entry),
                    "markPrice": _s(mark),
                    "unRealizedProfit": _s(upnl),
                    "liquidationPrice": _s(liq, 8),
                    "isolatedMargin": _s(margin + upnl, 8),
                    "notional": _s(pos.amt * mark),
                    "marginAsset": "USDT",
                    "isolatedWallet": _s(margin, 8),
                    "initialMargin": _s(margin, 8),
                    "maintMargin": _s(abs(pos.amt) * mark * Decimal("0.004"), 8),
                    "positionInitialMargin": _s(margin, 8),
                    "openOrderInitialMargin": "0",
                    "adl": 0,
                    "bidNotional": "0",
                    "askNotional": "0",
                    "updateTime": pos.update_time,
                    "leverage": str(st.leverage),
                    "marginType": "isolated" if st.margin_type == "ISOLATED" else "cross",
                }
            )
        return out

    def _unrealized(self) -> Decimal:
        return sum(
            ((self.mark[s] - st.position.entry) * st.position.amt for s, st in self.state.items() if st.position.amt),
            Decimal(0),
        )

    def _balance(self, p: dict[str, str]) -> list[dict[str, Any]]:
        avail = self._available()
        return [
            {
                "accountAlias": "SgsR",
                "asset": "USDT",
                "balance": _s(self.wallet),
                "crossWalletBalance": _s(avail),
                "crossUnPnl": "0",
                "availableBalance": _s(avail),
                "maxWithdrawAmount": _s(avail),
                "marginAvailable": True,
                "updateTime": self.now_ms(),
            }
        ]

    def _account(self, p: dict[str, str]) -> dict[str, Any]:
        upnl = self._unrealized()
        return {
            "totalWalletBalance": _s(self.wallet),
            "totalUnrealizedProfit": _s(upnl),
            "totalMarginBalance": _s(self.wallet + upnl),
            "availableBalance": _s(self._available()),
            "maxWithdrawAmount": _s(self._available()),
            "assets": [
                {
                    "asset": "USDT",
                    "walletBalance": _s(self.wallet),
                    "unrealizedProfit": _s(upnl),
                    "marginBalance": _s(self.wallet + upnl),
                    "availableBalance": _s(self._available()),
                    "updateTime": self.now_ms(),
                }
            ],
            "positions": [
                {
                    "symbol": r["symbol"],
                    "positionAmt": r["positionAmt"],
                    "entryPrice": r["entryPrice"],
                    "unrealizedProfit": r["unRealizedProfit"],
                    "isolatedWallet": r["isolatedWallet"],
                    "positionSide": "BOTH",
                    "updateTime": r["updateTime"],
                }
                for r in self._position_risk({})
            ],
        }

    def _income(self, p: dict[str, str]) -> list[dict[str, Any]]:
        out = [
            r
            for r in self.income
            if p.get("symbol") in (None, r["symbol"])
            and p.get("incomeType") in (None, r["incomeType"])
            and r["time"] >= int(p.get("startTime", 0))
            and r["time"] <= int(p.get("endTime", 2**62))
        ]
        limit = min(int(p.get("limit", "100")), 1000)
        return [dict(r) for r in out[:limit]]

    def _user_trades(self, p: dict[str, str]) -> list[dict[str, Any]]:
        """USD-M "Account Trade List" (GET /fapi/v1/userTrades), as documented:
        - without startTime and endTime, the last 7 days are returned;
        - the time between startTime and endTime cannot be longer than 7 days (a single bound
          selects the 7 days after startTime / before endTime);
        - ``fromId`` cannot be sent with startTime or endTime;
        - ``limit`` defaults to 500, at most 1000; rows come oldest first from the cursor.
        The error codes for the refusals are the generic ones of the error list (-1127 "More than
        %s hours between startTime and endTime.", -1128 "Combination of optional parameters
        invalid.", -1130 "Data sent for parameter 'limit' is not valid.")."""
        spec = self._spec(p)
        limit = int(p.get("limit", "500"))
        if not 1 <= limit <= 1000:
            raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        out = [t for t in self.trades if t["symbol"] == spec.symbol]
        if "orderId" in p:
            return [dict(t) for t in out if str(t["orderId"]) == p["orderId"]][:limit]
        has_time = "startTime" in p or "endTime" in p
        if "fromId" in p:
            if has_time:
                raise ApiError(-1128, "Combination of optional parameters invalid.")
            return [dict(t) for t in out if t["id"] >= int(p["fromId"])][:limit]
        if "startTime" in p and "endTime" in p:
            lo, hi = int(p["startTime"]), int(p["endTime"])
            if hi < lo:
                raise ApiError(-1128, "Combination of optional parameters invalid.")
            if hi - lo > _WEEK_MS:
                raise ApiError(-1127, "More than 168 hours between startTime and endTime.")
        elif "startTime" in p:
            lo = int(p["startTime"])
            hi = lo + _WEEK_MS
        elif "endTime" in p:
            hi = int(p["endTime"])
            lo = hi - _WEEK_MS
        else:
            hi = self.now_ms()
            lo = hi - _WEEK_MS
            rows = [t for t in out if lo <= t["time"] <= hi]
            return [dict(t) for t in rows[-limit:]]  # the most recent ones
        rows = [t for t in out if lo <= t["time"] <= hi]
        return [dict(t) for t in rows[:limit]]

    def add_past_trade(
        self,
        *,
        side: str,
        qty: float,
        price: float,
        time_ms: int,
        order_id: int | None = None,
        commission: float | None = None,
        realized: float = 0.0,
        symbol: str = "ETHUSDT",
    ) -> dict[str, Any]:
        """Book a historical execution (e.g. the entry of a position opened 10 days ago, or
        filler trades) directly into the account's trade list."""
        with self._lock:
            qd, pd = _d(qty), _d(price)
            fee = (qd * pd * self.taker_fee).quantize(Decimal("0.00000001")) if commission is None else _d(commission)
            trade = {
                "buyer": side == "BUY",
                "commission": _s(fee),
                "commissionAsset": "USDT",
                "id": next(self._trade_ids),
                "maker": False,
                "orderId": order_id if order_id is not None else next(self._ids),
                "price": _s(pd),
                "qty": _s(qd),
                "quoteQty": _s(qd * pd),
                "realizedPnl": _s(_d(realized)),
                "side": side,
                "positionSide": "BOTH",
                "symbol": symbol,
                "time": time_ms,
            }
            self.trades.append(trade)
            self.trades.sort(key=lambda t: (t["time"], t["id"]))
            return trade

    # ------------------------------------------------------------------ user data stream
    # USD-M "User Data Streams" > Connect / Start / Keepalive / Close User Data Stream:
    # POST /fapi/v1/listenKey creates a key valid for 60 minutes (an account with an active key
    # gets that key back, extended); PUT extends it by 60 minutes (-1125 "This listenKey does not
    # exist." once it is gone); DELETE closes it. When a key expires the stream sends
    # ``listenKeyExpired`` ("Event: User Data Stream Expired") and stops. Since Binance's 2026
    # websocket change notice the stream is served under ``/private/`` (python-binance >= 1.0.36,
    # ``futures_user_socket``: ``wss://fstream.binance.com/private/ws?listenKey=<key>``); the
    # legacy ``/ws/<listenKey>`` route is closed (answers 404 here).
    def _new_listen_key(self, p: dict[str, str]) -> dict[str, Any]:
        now = self.now_ms()
        live = [k for k, exp in self.listen_keys.items() if exp > now]
        key = live[0] if live else hashlib.sha256(f"{now}:{next(self._ids)}".encode()).hexdigest()[:64]
        self.listen_keys[key] = now + _LISTEN_KEY_MS
        if key not in self.issued_listen_keys:
            self.issued_listen_keys.append(key)
        return {"listenKey": key}

    def _keepalive_listen_key(self, p: dict[str, str]) -> dict[str, Any]:
        key = p.get("listenKey") or next(iter(self.listen_keys), "")
        if self.listen_keys.get(key, 0) <= self.now_ms():
            raise ApiError(-1125, "This listenKey does not exist.")
        self.listen_keys[key] = self.now_ms() + _LISTEN_KEY_MS
        return {"listenKey": key}

    def _close_listen_key(self, p: dict[str, str]) -> dict[str, Any]:
        key = p.get("listenKey") or next(iter(self.listen_keys), "")
        self.listen_keys.pop(key, None)
        return {}

    def expire_listen_key(self, key: str | None = None) -> None:
        """Let a key run out now (as if 60 minutes passed without a keepalive)."""
        with self._lock:
            for k in [key] if key else list(self.listen_keys):
                if k in self.listen_keys:
                    self.listen_keys[k] = self.now_ms()

    def drop_user_connections(self) -> None:
        """Close every user data websocket (a network blip; the key stays valid)."""
        with self._lock:
            for queues in self._user_conns.values():
                for q in queues:
                    self._post(q, None)

    def user_connections(self) -> int:
        return sum(len(v) for v in self._user_conns.values())

    async def _user_ws(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("listenKey", "")
        with self._lock:
            valid = self.listen_keys.get(key, 0) > self.now_ms()
        if not valid:
            return web.Response(
                status=400,
                text=json.dumps({"code": -1125, "msg": "This listenKey does not exist."}),
                content_type="application/json",
            )
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        q: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._user_conns.setdefault(key, []).append(q)
        try:
            while True:
                msg = await q.get()
                if msg is None:
                    break
                await ws.send_str(json.dumps(msg))
        finally:
            with self._lock:
                conns = self._user_conns.get(key, [])
                if q in conns:
                    conns.remove(q)
            await ws.close()
        return ws

    async def _expire_keys(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            with self._lock:
                now = self.now_ms()
                for key, exp in list(self.listen_keys.items()):
                    if exp <= now:
                        del self.listen_keys[key]
                        for q in self._user_conns.get(key, []):
                            self._post(q, {"e": "listenKeyExpired", "E": str(now), "listenKey": key})
                            self._post(q, None)

    def _post(self, q: asyncio.Queue, msg: dict[str, Any] | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(q.put_nowait, msg)

    def _push(self, event: dict[str, Any]) -> None:
        """Send one event to every connected user data stream with a valid key."""
        self.user_events.append(event)
        now = self.now_ms()
        for key, queues in self._user_conns.items():
            if self.listen_keys.get(key, 0) > now:
                for q in queues:
                    self._post(q, event)

    def _push_order_update(
        self,
        order: dict[str, Any],
        exec_type: str,
        status: str,
        last_qty: Decimal,
        last_px: Decimal,
        commission: Decimal,
        trade: dict[str, Any] | None,
        realized: Decimal = Decimal(0),
    ) -> None:
        """``ORDER_TRADE_UPDATE`` ("Event: Order Update"), fields as documented."""
        now = self.now_ms()
        self._push(
            {
                "e": "ORDER_TRADE_UPDATE",
                "E": now,
                "T": now,
                "o": {
                    "s": order["symbol"],
                    "c": order["clientOrderId"],
                    "S": order["side"],
                    "o": order["type"],
                    "f": "GTC",
                    "q": order["origQty"],
                    "p": "0",
                    "ap": order["avgPrice"],
                    "sp": "0",
                    "x": exec_type,
                    "X": status,
                    "i": order["orderId"],
                    "l": _s(last_qty),
                    "z": order["executedQty"],
                    "L": _s(last_px),
                    "N": "USDT",
                    "n": _s(commission),
                    "T": now,
                    "t": trade["id"] if trade else 0,
                    "b": "0",
                    "a": "0",
                    "m": False,
                    "R": order["reduceOnly"],
                    "wt": order["workingType"],
                    "ot": order["origType"],
                    "ps": "BOTH",
                    "cp": order["closePosition"],
                    "rp": _s(realized),
                    "pP": False,
                    "si": 0,
                    "ss": 0,
                    "V": "EXPIRE_MAKER",
                    "pm": "NONE",
                    "gtd": 0,
                    "er": "0",
                },
            }
        )

    def _push_algo_update(self, algo: dict[str, Any]) -> None:
        """``ALGO_UPDATE`` ("Event: Algo Order Update"): caid, aid, X (algo status), ai (the
        order id in the matching engine once triggered), tp (trigger price)..."""
        now = self.now_ms()
        self._push(
            {
                "e": "ALGO_UPDATE",
                "T": now,
                "E": now,
                "o": {
                    "caid": algo["clientAlgoId"],
                    "aid": algo["algoId"],
                    "at": "CONDITIONAL",
                    "o": algo["orderType"],
                    "s": algo["symbol"],
                    "S": algo["side"],
                    "ps": "BOTH",
                    "f": "GTC",
                    "q": algo["quantity"],
                    "X": algo["algoStatus"],
                    "ai": algo["actualOrderId"],
                    "ap": algo["actualPrice"],
                    "aq": "0",
                    "act": "0",
                    "tp": algo["triggerPrice"],
                    "p": "0",
                    "V": "EXPIRE_MAKER",
                    "wt": algo["workingType"],
                    "pm": "NONE",
                    "cp": algo["closePosition"],
                    "pP": algo["priceProtect"],
                    "R": algo["reduceOnly"],
                    "tt": algo["triggerTime"],
                    "gtd": 0,
                },
            }
        )

    def _push_account_update(self, symbol: str, reason: str) -> None:
        """``ACCOUNT_UPDATE`` ("Event: Balance and Position Update"): m (reason), B (balances:
        a, wb, cw, bc), P (positions: s, pa, ep, bep, cr, up, mt, iw, ps)."""
        now = self.now_ms()
        st = self.state[symbol]
        pos = st.position
        self._push(
            {
                "e": "ACCOUNT_UPDATE",
                "E": now,
                "T": now,
                "a": {
                    "m": reason,
                    "B": [{"a": "USDT", "wb": _s(self.wallet), "cw": _s(self.wallet), "bc": "0"}],
                    "P": [
                        {
                            "s": symbol,
                            "pa": _s(pos.amt),
                            "ep": _s(pos.entry),
                            "bep": _s(pos.entry),
                            "cr": "0",
                            "up": _s((self.mark[symbol] - pos.entry) * pos.amt if pos.amt else Decimal(0)),
                            "mt": "isolated" if st.margin_type == "ISOLATED" else "cross",
                            "iw": "0",
                            "ps": "BOTH",
                        }
                    ],
                },
            }
        )
