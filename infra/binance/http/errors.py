"""Typed errors for every Binance REST call (the live USD-M futures broker and the market-data
client): the one error map of the Binance adapter.

Binance answers a failed request with an HTTP status and a JSON body ``{"code": -2019, "msg":
"Margin is insufficient."}``. The raw messages are terse and some codes mean very different things
for an operator ("your clock drifts" vs "your stake is too small" vs "the order may or may not
have executed"), so every failure the broker raises is one of the classes below, carrying the
Binance code, the HTTP status, the operation that failed and a human explanation of what it means
and what to do.

Nothing here ever formats an API key or secret: the messages are built only from the code, the
server's ``msg`` and the operation name. ``redact`` is applied anyway as a last line of defence
because a server (or a proxy in front of it) could echo request headers back.

``error_from_exception`` turns what python-binance and requests raise into these types, so the
broker and the kline client classify failures the same way (a 5xx and a timeout are
``ExchangeUnavailable``, a 429/418 is ``RateLimited`` with the server's Retry-After, ...).
"""

from __future__ import annotations

from collections.abc import Iterable

import requests
from binance.exceptions import BinanceAPIException, BinanceRequestException
from tradeconsole.infra.retry import parse_retry_after

__all__ = [
    "AMBIGUOUS_CODES",
    "DUPLICATE_ID_CODES",
    "AccountModeUnsupported",
    "AuthenticationFailed",
    "BinanceError",
    "ExchangeUnavailable",
    "FeedRefused",
    "FilterRejected",
    "InsufficientMargin",
    "OrderRejected",
    "ProtectionFailed",
    "RateLimited",
    "ReduceOnlyRejected",
    "RestError",
    "TimestampOutOfSync",
    "describe",
    "error_from_exception",
    "error_from_response",
    "redact",
]

#: Human explanations of the Binance USD-M futures error codes the console can meet.
_DESCRIPTIONS: dict[int, str] = {
    -1000: "unknown error on the exchange; whether the request was executed is unknown",
    -1001: "the exchange disconnected internally; whether the request was executed is unknown",
    -1003: "rate limit exceeded (too many requests or too much request weight); back off before retrying",
    -1006: "unexpected response from the exchange's message bus; execution status unknown",
    -1007: "the exchange timed out waiting for its backend; the order may or may not have been executed",
    -1008: "the exchange is overloaded; retry later",
    -1013: "rejected by a symbol filter (quantity, price or notional rules)",
    -1015: "too many new orders; slow down",
    -1021: "request timestamp outside recvWindow: the local clock drifts from the exchange clock",
    -1022: "invalid request signature: check the API secret",
    -1102: "a mandatory parameter was not sent, was empty or malformed",
    -1106: "a parameter was sent that this order type does not accept",
    -1111: "precision over the maximum: quantity or price has more decimals than the symbol allows",
    -1116: "invalid order type",
    -1121: "invalid symbol",
    -1125: "this listenKey does not exist (expired or closed): create a new one with POST /fapi/v1/listenKey",
    -1127: "the time window between startTime and endTime is too long (userTrades: at most 7 days)",
    -1128: "invalid combination of optional parameters (e.g. fromId sent with startTime/endTime)",
    -2010: "new order rejected by the exchange",
    -2011: "cancel rejected: the exchange does not know this order (already filled or canceled?)",
    -2013: "order does not exist",
    -2014: "API key format invalid",
    -2015: "API key rejected: invalid key, IP not whitelisted, or no futures trading permission",
    -2018: "balance is insufficient",
    -2019: "insufficient margin: the wallet cannot cover this order's initial margin; "
    "lower the stake or raise leverage",
    -2021: "the stop/take-profit trigger price is already crossed, the order would trigger immediately",
    -2022: "reduce-only order rejected: there is no position to reduce (it may already be closed)",
    -2024: "position is not sufficient for this reduce order",
    -2025: "maximum number of open orders reached",
    -4003: "quantity must be greater than zero",
    -4004: "quantity below the symbol's minimum quantity (LOT_SIZE/MARKET_LOT_SIZE minQty)",
    -4005: "quantity above the symbol's maximum quantity",
    -4013: "price below the symbol's minimum price",
    -4014: "price is not a multiple of the symbol's tick size (PRICE_FILTER)",
    -4015: "client order id is not valid (at most 36 characters from [.A-Z:/a-z0-9_-])",
    -4023: "quantity is not a multiple of the symbol's step size (LOT_SIZE)",
    -4024: "price above the symbol's maximum price",
    -4028: "leverage value is not valid for this symbol",
    -4046: "margin type already set (no change needed)",
    -4048: "margin type cannot be changed while a position or open orders exist",
    -4061: "the order's position side does not match the account's position mode (hedge mode needs "
    "positionSide LONG/SHORT, one-way mode BOTH)",
    -4116: "client order id is duplicated: an order with this id already exists",
    -4120: "conditional order types must be sent through the algo order API",
    -4164: "order notional below the symbol's minimum notional (MIN_NOTIONAL); raise the stake",
    -4168: "ISOLATED margin is not allowed while the account is in Multi-Assets mode",
}

#: Codes whose meaning is "we do not know whether it executed": query before re-sending.
AMBIGUOUS_CODES: frozenset[int] = frozenset({-1000, -1001, -1006, -1007, -1008})
#: Codes that can mean "an order with this client id already exists": look it up and adopt it.
#: -4015 is an *invalid* id on futures; it is listed because some gateways report duplicates with
#: it, and adoption only happens when the lookup really finds the order.
DUPLICATE_ID_CODES: frozenset[int] = frozenset({-4116, -2010, -4015})
_FILTER_CODES = frozenset({-1013, -1111, -4003, -4004, -4005, -4013, -4014, -4023, -4024, -4164})
_AUTH_CODES = frozenset({-1022, -2014, -2015})


def describe(code: int | None, http_status: int | None = None) -> str:
    """Plain-language meaning of a Binance error code (or of the HTTP status when there is none)."""
    if code is not None and code in _DESCRIPTIONS:
        return _DESCRIPTIONS[code]
    if http_status == 418:
        return "the IP is banned for repeatedly exceeding rate limits; wait for Retry-After"
    if http_status == 429:
        return "rate limit exceeded; back off before retrying"
    if http_status is not None and http_status >= 500:
        return "exchange-side failure; whether the request was executed is unknown"
    return "unexpected exchange error"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each secret in ``text`` (defence in depth for messages)."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


class BinanceError(Exception):
    """A Binance request failed. ``code`` is Binance's error code (None for transport failures),
    ``http_status`` the HTTP status (None when no response arrived), ``operation`` what the broker
    was doing, ``api_message`` the server's own text. ``str()`` gives one readable line."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        operation: str = "",
        api_message: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.operation = operation
        self.api_message = api_message


#: What the market-data client (``tradeconsole.infra.binance.http.rest``) raises when a call failed
#: for good: the same hierarchy as the broker's (one error map), under the name its callers know.
RestError = BinanceError


class OrderRejected(BinanceError):
    """The exchange (or the broker's own pre-check against exchange filters) refused an order."""


class FilterRejected(OrderRejected):
    """Quantity/price/notional violate the symbol's filters (step, tick, min qty, min notional)."""


class InsufficientMargin(OrderRejected):
    """-2019: the wallet cannot cover the order's initial margin."""


class ReduceOnlyRejected(OrderRejected):
    """-2022: a reduce-only order found nothing to reduce."""


class RateLimited(BinanceError):
    """429/418 or -1003. ``retry_after`` is the server's Retry-After in seconds (None if absent)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class TimestampOutOfSync(BinanceError):
    """-1021 persisted after re-syncing with the server clock."""


class AuthenticationFailed(BinanceError):
    """The API key or signature was refused (-2014, -2015, -1022)."""


class ExchangeUnavailable(BinanceError):
    """5xx, timeouts or network failures that persisted after the retry budget. For an order this
    means its outcome could not be established; the broker looks it up before giving up."""


class AccountModeUnsupported(BinanceError):
    """The account is configured in a way this broker refuses to trade (e.g. hedge position mode):
    raised by ``start()`` before any order is sent, with a one-line fix in the message."""


class FeedRefused(BinanceError):
    """A live or testnet broker was handed a candle that is not from the exchange's live feed (a
    replay): nothing is sent."""


class ProtectionFailed(BinanceError):
    """A position could neither be protected nor flattened: it is open and unprotected on the
    exchange. The engine must alert loudly; ``reconcile()`` keeps trying to resolve it."""


def error_from_response(
    code: int | None, http_status: int | None, api_message: str, operation: str, retry_after: float | None = None
) -> BinanceError:
    """Build the typed error for one failed response."""
    text = describe(code, http_status)
    where = f" while {operation}" if operation else ""
    tag = f"Binance error {code}" if code is not None else f"HTTP {http_status}"
    msg = f"{tag}{where}: {text}"
    if api_message and api_message.rstrip(".") not in text:
        msg += f" (exchange said: {api_message})"
    kw = {"code": code, "http_status": http_status, "operation": operation, "api_message": api_message}
    if http_status in (418, 429) or code == -1003:
        if retry_after is not None:
            msg += f"; retry after {retry_after:g}s"
        return RateLimited(msg, retry_after=retry_after, **kw)
    if code == -1021:
        return TimestampOutOfSync(msg, **kw)
    if code in _AUTH_CODES:
        return AuthenticationFailed(msg, **kw)
    if code == -2019:
        return InsufficientMargin(msg, **kw)
    if code == -2022:
        return ReduceOnlyRejected(msg, **kw)
    if code in _FILTER_CODES:
        return FilterRejected(msg, **kw)
    if code in AMBIGUOUS_CODES or (http_status is not None and http_status >= 500):
        return ExchangeUnavailable(msg, **kw)
    if code is not None and code <= -2000:
        return OrderRejected(msg, **kw)
    return BinanceError(msg, **kw)


def error_from_exception(exc: BaseException, operation: str, secrets: Iterable[str | None] = ()) -> BinanceError | None:
    """The typed error for a failure raised by python-binance or requests while ``operation``, or
    None when ``exc`` is neither (a bug: let it propagate). The server's text is redacted with
    ``secrets`` and clipped; a timeout says the outcome is unknown (an order may exist)."""
    if isinstance(exc, BinanceAPIException):
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        retry_after = parse_retry_after(headers.get("Retry-After"))
        code = exc.code if isinstance(exc.code, int) and exc.code != 0 else None
        api_msg = redact(str(exc.message or ""), secrets)[:300]
        return error_from_response(code, exc.status_code, api_msg, operation, retry_after)
    if isinstance(exc, requests.exceptions.Timeout):
        return ExchangeUnavailable(
            f"no answer from Binance in time while {operation}; outcome unknown", code=None, operation=operation
        )
    if isinstance(exc, (requests.exceptions.RequestException, BinanceRequestException)):
        return ExchangeUnavailable(
            f"could not reach Binance while {operation}: {type(exc).__name__}", operation=operation
        )
    return None
