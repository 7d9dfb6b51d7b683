"""Configuration values shared across layers (no file or environment access here: that is
``tradeconsole.infra.settings``, which builds these from the config file and environment)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BinanceEndpoints", "DEFAULT_ENDPOINTS", "TESTNET_ENDPOINTS"]


@dataclass(frozen=True, slots=True)
class BinanceEndpoints:
    """Base URLs. REST bases include the API prefix path (``/api`` for spot, ``/fapi`` for
    USD-M futures); websocket bases end before the stream path (``.../ws`` or ``.../stream``
    is appended by the stream client).

    ``futures_ws`` is the USD-M futures *market* route: Binance's "Important WebSocket Change
    Notice" (USD-M futures docs, WebSocket Market Streams) split fstream.binance.com into
    ``/public`` (book streams), ``/market`` (klines, trades, mark price...) and ``/private``
    (user data), and retired the legacy unrouted ``/ws``/``/stream`` routes on 2026-04-23. Klines
    belong to ``/market`` (binance-connector-python subscribes ``<symbol>@kline_<interval>``
    with ``stream_url="market"``; python-binance routes it to ``market/``); the testnet has the
    same routes on fstream.binancefuture.com. Spot is unchanged."""

    spot_rest: str = "https://api.binance.com/api"
    futures_rest: str = "https://fapi.binance.com/fapi"
    spot_ws: str = "wss://stream.binance.com:9443/"
    futures_ws: str = "wss://fstream.binance.com/market/"
    #: user data stream base (same notice, ``/private``): ``ws?listenKey=`` is appended
    futures_user_ws: str = "wss://fstream.binance.com/private/"


DEFAULT_ENDPOINTS = BinanceEndpoints()
TESTNET_ENDPOINTS = BinanceEndpoints(
    spot_rest="https://testnet.binance.vision/api",
    futures_rest="https://testnet.binancefuture.com/fapi",
    spot_ws="wss://stream.testnet.binance.vision/",
    futures_ws="wss://fstream.binancefuture.com/market/",
    futures_user_ws="wss://fstream.binancefuture.com/private/",
)
