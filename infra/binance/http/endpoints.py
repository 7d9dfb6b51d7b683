"""Binance base URLs from configuration, and python-binance clients pointed at them.

The endpoints are configuration (regional hosts, testnet, the local stand-in server the tests
run), so nothing else in the project may hard-code a Binance URL. Precedence, lowest first:
built-in defaults (or the testnet set), the ``[binance]`` table of the config file, then the
environment variables ``TRADECONSOLE_BINANCE_SPOT_REST``, ``..._FUTURES_REST``, ``..._SPOT_WS``
and ``..._FUTURES_WS``: the environment wins because it is how a single run (a test, a CI job)
overrides a shared config file.

python-binance keeps its URLs as class attributes (``API_URL``, ``FUTURES_URL``...) that its
constructor copies onto the instance (formatting in the TLD), and every request builds its URI
from the *instance* attribute. Overriding those instance attributes right after construction
is therefore the least invasive per-client override: no subclass, no global class mutation
that would leak into other clients in the same process, and no reliance on private methods.
The constructor's ``ping`` is disabled, because it would go to api.binance.com before the
override takes effect.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tradeconsole.core.config import DEFAULT_ENDPOINTS, TESTNET_ENDPOINTS, BinanceEndpoints

if TYPE_CHECKING:  # python-binance is imported lazily: importing it costs ~0.3 s
    from binance.async_client import AsyncClient
    from binance.client import Client

__all__ = [
    "ENV_VARS",
    "combined_stream_url",
    "make_async_client",
    "make_client",
    "resolve_endpoints",
]

#: endpoint field -> environment variable that overrides it
ENV_VARS: dict[str, str] = {
    "spot_rest": "TRADECONSOLE_BINANCE_SPOT_REST",
    "futures_rest": "TRADECONSOLE_BINANCE_FUTURES_REST",
    "spot_ws": "TRADECONSOLE_BINANCE_SPOT_WS",
    "futures_ws": "TRADECONSOLE_BINANCE_FUTURES_WS",
    "futures_user_ws": "TRADECONSOLE_BINANCE_FUTURES_USER_WS",
}

_SCHEMES = {"rest": ("http", "https"), "ws": ("ws", "wss")}

#: Binance's USD-M futures websocket hosts (live and testnet). Since the "Important WebSocket
#: Change Notice" (USD-M futures docs, WebSocket Market Streams; legacy routes retired
#: 2026-04-23) a connection must name its route: klines are served only under ``/market``; an
#: unrouted connection (the legacy ``wss://fstream.binance.com/stream?...``) still opens but
#: receives only ``/public`` (book) data, so a kline subscription there is silent, not an error
#: (Binance developer docs, "Market Data Streams": "This fails silently rather than erroring").
FUTURES_WS_HOSTS = frozenset({"fstream.binance.com", "fstream.binancefuture.com"})
FUTURES_MARKET_ROUTE = "/market"
FUTURES_PRIVATE_ROUTE = "/private"  # user data (python-binance >= 1.0.36 futures_user_socket)

#: endpoint field -> (the route Binance requires on its futures hosts, what it carries, the rule)
_ROUTES: dict[str, tuple[str, str, str]] = {
    "futures_ws": (FUTURES_MARKET_ROUTE, "klines", f"USD-M futures klines only under {FUTURES_MARKET_ROUTE}"),
    "futures_user_ws": (
        FUTURES_PRIVATE_ROUTE,
        "the user data stream",
        f"the USD-M futures user data stream under {FUTURES_PRIVATE_ROUTE}",
    ),
}

#: REST request timeout (seconds) for clients built here; python-binance's default is 10 s too,
#: stated explicitly because a hung request would stall a backfill.
DEFAULT_TIMEOUT_S = 10.0


def _normalise(field: str, value: object, origin: str) -> str:
    """Check the scheme (http(s) for REST, ws(s) for websockets) and normalise the trailing
    slash: REST bases have none (python-binance appends ``/v3/...``), websocket bases end in one
    (``stream?streams=...`` is appended)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{origin}: {field} must be a non-empty URL string, not {value!r}")
    url = value.strip()
    kind = "rest" if field.endswith("_rest") else "ws"
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES[kind] or not parts.netloc:
        raise ValueError(
            f"{origin}: {field} must be a {' or '.join(s + '://' for s in _SCHEMES[kind])} URL, not {url!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{origin}: {field} must not contain a query or fragment: {url!r}")
    route = _ROUTES.get(field)
    if (
        route is not None
        and (parts.hostname or "") in FUTURES_WS_HOSTS
        and not (parts.path.rstrip("/") + "/").startswith(route[0] + "/")
    ):
        # a silent feed is worse than a refusal: say so at start, with the fix
        raise ValueError(
            f"{origin}: {field} {url!r} is a retired or wrong route for {route[1]}: Binance serves "
            f"{route[2]} since 2026-04-23 (Important WebSocket Change Notice); use "
            f"{parts.scheme}://{parts.netloc}{route[0]}/"
        )
    return url.rstrip("/") if kind == "rest" else url.rstrip("/") + "/"


def resolve_endpoints(
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] = os.environ,
    testnet: bool = False,
) -> BinanceEndpoints:
    """Endpoints from defaults (or testnet defaults), then ``config``, then ``env``.

    ``config`` is the config file's ``[binance]`` table (other keys in it, such as API key
    settings, are ignored here). Raises ValueError naming the source of a malformed URL.
    """
    base = TESTNET_ENDPOINTS if testnet else DEFAULT_ENDPOINTS
    values = {f: getattr(base, f) for f in ENV_VARS}
    for field in ENV_VARS:
        if config is not None and config.get(field) is not None:
            values[field] = _normalise(field, config[field], f"config [binance] {field}")
        env_value = env.get(ENV_VARS[field])
        if env_value:
            values[field] = _normalise(field, env_value, f"environment {ENV_VARS[field]}")
    return BinanceEndpoints(**values)


def combined_stream_url(endpoints: BinanceEndpoints, market: str, streams: Iterable[str]) -> str:
    """URL of a combined (multiplexed) stream, e.g.
    ``wss://fstream.binance.com/market/stream?streams=ethusdt@kline_5m/btcusdt@kline_1h``
    (the base carries the route: ``/market`` for USD-M futures klines).

    Combined streams wrap every payload as ``{"stream": name, "data": payload}``, so one
    connection can carry several symbol/interval pairs and each message says which one it is.
    """
    base = _ws_base(endpoints, market)
    names = [s.lower() for s in streams]
    if not names:
        raise ValueError("at least one stream name is required")
    for name in names:
        if not name or any(ch in name for ch in "/?&# "):
            raise ValueError(f"invalid stream name {name!r}")
    # Binance expects the raw names joined by '/', not percent-encoded
    return f"{base}stream?streams={'/'.join(names)}"


def _ws_base(endpoints: BinanceEndpoints, market: str) -> str:
    if market == "spot":
        return endpoints.spot_ws
    if market == "futures":
        return endpoints.futures_ws
    raise ValueError(f"market must be 'spot' or 'futures', not {market!r}")


def _point_at(client: Any, endpoints: BinanceEndpoints) -> None:
    """Override the instance URL attributes python-binance builds its request URIs from."""
    client.API_URL = endpoints.spot_rest
    client.FUTURES_URL = endpoints.futures_rest
    # sibling APIs on the same hosts, so a signed call never silently goes to binance.com
    if endpoints.spot_rest.endswith("/api"):
        client.MARGIN_API_URL = endpoints.spot_rest[: -len("/api")] + "/sapi"
    if endpoints.futures_rest.endswith("/fapi"):
        client.FUTURES_DATA_URL = endpoints.futures_rest[: -len("/fapi")] + "/futures/data"
    # the testnet/demo flags make python-binance pick its own hard-coded URLs instead
    client.testnet = False
    client.demo = False


def make_client(
    endpoints: BinanceEndpoints,
    api_key: str | None = None,
    api_secret: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Client:
    """A synchronous python-binance ``Client`` whose spot and USD-M futures REST calls go to
    ``endpoints``. No request is made here (the library's constructor ping is disabled).

    Note: python-binance's constructor attaches an asyncio event loop to the calling thread if
    it has none (it needs one only for its websocket API, which we do not use); build clients in
    a thread that owns a loop, or accept that one idle loop per thread.
    """
    from binance.client import Client

    with warnings.catch_warnings():
        # python-binance asks for the thread's event loop, which Python 3.12 flags as
        # deprecated when there is none; the loop it creates is idle and harmless
        warnings.filterwarnings("ignore", "There is no current event loop", DeprecationWarning)
        client = Client(api_key, api_secret, requests_params={"timeout": timeout}, ping=False)
    _point_at(client, endpoints)
    return client


def make_async_client(
    endpoints: BinanceEndpoints,
    api_key: str | None = None,
    api_secret: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> AsyncClient:
    """An ``AsyncClient`` (aiohttp) pointed at ``endpoints``; call it from inside the event loop
    that will use it (aiohttp binds its session to that loop) and ``await
    client.close_connection()`` when done. Unlike ``AsyncClient.create`` this makes no request.
    """
    import asyncio

    from binance.async_client import AsyncClient

    client = AsyncClient(api_key, api_secret, requests_params={"timeout": timeout}, loop=asyncio.get_running_loop())
    _point_at(client, endpoints)
    return client
