"""Configuration values shared across layers (no file or environment access here: that is
``infra.settings``, which builds these from the config file and environment)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BinanceEndpoints", "DEFAULT_ENDPOINTS", "TESTNET_ENDPOINTS"]


@dataclass(frozen=True, slots=True)
class BinanceEndpoints:
    """Base URLs. REST bases include the API prefix path (``/api`` for spot, ``/fapi`` for
    USD-M futures); websocket bases end before the stream path (``.../ws`` or ``.../stream``
    is appended by the stream client)."""

    spot_rest: str = "https://api.binance.com/api"
    futures_rest: str = "https://fapi.binance.com/fapi"
    spot_ws: str = "wss://stream.binance.com:9443/"
    futures_ws: str = "wss://fstream.binance.com/"


DEFAULT_ENDPOINTS = BinanceEndpoints()
TESTNET_ENDPOINTS = BinanceEndpoints(
    spot_rest="https://testnet.binance.vision/api",
    futures_rest="https://testnet.binancefuture.com/fapi",
    spot_ws="wss://stream.testnet.binance.vision/",
    futures_ws="wss://stream.binancefuture.com/",
)
