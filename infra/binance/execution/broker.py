"""Live Binance USD-M futures broker, with the same surface as ``tradeconsole.core.broker.SimulatedFuturesBroker``.

``StrategySession`` drives either broker through ``on_candle``, ``submit_entry``, ``flatten``,
``equity``, ``is_flat``, ``position`` and ``cash``; this one trades for real through python-binance
(REST only). What it guarantees, and how:

No doubled orders
    Every order carries a client id derived from the signal (``tradeconsole.core.broker.client_order_id``) or
    from the entry id plus a suffix (``sl``, ``tp``, ``fx``). Binance only rejects a duplicate id
    while the first order is *open*, and a MARKET order is never open for long, so the exchange
    alone cannot stop a double entry. Hence: before an entry is sent the id is looked up; after a
    timeout, a 5xx or an "execution status unknown" code the id is looked up again and the order
    is re-sent only when the exchange says it does not exist; a duplicate-id reject (-4116, -2010)
    is resolved by the same lookup. If the lookup itself cannot be answered the broker raises
    ``ExchangeUnavailable`` rather than re-send blind.

No unprotected position
    Right after an entry fills, a STOP_MARKET and a TAKE_PROFIT_MARKET (``closePosition=true``,
    ``workingType`` configurable, client ids ``<entry id>sl`` / ``<entry id>tp``) are placed on the
    exchange through the algo order API (Binance moved conditional orders there in December 2025),
    so the position stays protected if the console dies. Each is then named to Binance by the
    ``algoId`` its placement returned (kept in ``snapshot()``): a re-placed stop reuses its
    clientAlgoId, which Binance keeps unique only among *open* orders. If either cannot be placed, the position
    is closed at once with a reduce-only MARKET order and an alert is raised; if even that fails,
    ``ProtectionFailed`` is raised (the position is unprotected: the engine must alert loudly).

Exits
    ``apply_stream_event`` applies the user data stream (``tradeconsole.infra.binance.execution.user_stream``) the moment
    an event arrives, on the engine thread: ``ORDER_TRADE_UPDATE`` (a stop/target/liquidation/
    manual close filled), ``ALGO_UPDATE`` (a protective order changed status) and
    ``ACCOUNT_UPDATE`` (wallet balance; position gone). ``on_stream_gap`` runs the REST reconcile
    after the stream was interrupted. ``on_candle`` still polls the open conditional orders (one
    request; more only when one is gone) as the fallback. Either way a fired order becomes an
    exit ``Fill`` (STOP_LOSS / TAKE_PROFIT) with its round-trip ``Trade`` from the account's trade
    list (true price and fee; funding from the income history), and the sibling is canceled. Cash
    (the USDT wallet balance) is refreshed there too, so ``equity(mark)`` never calls the API;
    a stream balance older (transaction time) than the last one applied is ignored. An order
    that closes only part of the position is recorded as its own round trip (its share of the
    entry fee, stake and funding) and the rest stays protected. A stop/target exit is traced by
    the documented link from the algo order to its market order (``actualOrderId``, ALGO_UPDATE
    ``ai``), never by the market order's client id.
    Before a new entry every open order on the symbol is canceled: while flat, any open order is a
    leftover, and a closePosition stop left behind would close the new position.

Algo order statuses (Binance "Algo Order Update" / Query Algo Order)
    NEW: open. TRIGGERING / TRIGGERED: on its way through the matching engine, wait (at most
    ``trigger_grace_ms``, then it is canceled and treated as dead). FINISHED ("filled or canceled
    in the matching engine"): with trades on its ``actualOrderId`` it is the exit; with a market
    order that ended CANCELED/EXPIRED without a trade, or without an order at all, it is dead.
    CANCELED / EXPIRED / REJECTED: dead. A dead protective order while the position is open is
    re-placed at the recorded level with an alert; if that is impossible (e.g. the price is
    already beyond the stop: -2021), the position is closed at market. Never left bare.

Account modes (read by ``start()``)
    Hedge position mode (``GET /fapi/v1/positionSide/dual``) is refused with a one-line
    ``AccountModeUnsupported`` before anything is sent. Multi-Assets mode
    (``GET /fapi/v1/multiAssetsMargin``) refuses ISOLATED margin (-4168): CROSSED is used there,
    with an alert.

Account trades
    ``GET /fapi/v1/userTrades`` answers at most 7 days between startTime and endTime, at most
    1000 rows per call, and not fromId with a time range: an exit found afterwards (manual close,
    liquidation) of a position of any age is read in 7-day windows with paging.

Feed provenance
    ``check_feed`` refuses candles not tagged as coming from the exchange (a replay): the engine
    calls it before any candle reaches this broker.

Reconcile (``reconcile()``; call it on start after ``restore()`` and periodically)
    Compares the exchange position and open orders with what the broker believes and resolves
    each mismatch by a fixed rule, returning one ``Finding`` per mismatch:

    ``POSITION_CLOSED``  we hold a position, the exchange is flat: the exit is rebuilt from the
                         triggered protective order or the account trades (liquidation when the
                         closing order is Binance's ``autoclose-``), and delivered by the next
                         ``on_candle`` like any exit.
    ``SIDE_MISMATCH``    the exchange holds the opposite side: our position is closed as above,
                         then the exchange position is treated as unknown.
    ``QTY_MISMATCH``     same side, different size: the exchange size and entry price are adopted
                         (the protective orders close the whole position whatever its size).
    ``UNKNOWN_POSITION`` the exchange holds a position we do not know. If both of its protective
                         orders carry our ids (``tc…sl``/``tc…tp``: the console died between the
                         fill and the journal write) it is adopted with those levels; otherwise it
                         is closed with a reduce-only MARKET order, because a position with no
                         known stop and target is exactly the unprotected position we must
                         never keep.
    ``PROTECTION_MISSING`` a protective order is gone while the position is open: it is
                         re-placed at the recorded level; if that fails the position is closed.
    ``STRAY_ORDER``      an open order on the symbol that is not one of our current protective
                         orders (e.g. a leftover sibling): canceled, as a closePosition stop left
                         behind would close the *next* position.

Errors
    Binance codes become typed exceptions from ``tradeconsole.infra.binance.http.errors`` with the code and a human
    explanation. -1021 re-syncs the clock and retries once; 429 with a short Retry-After waits and
    retries, 418 and long waits raise ``RateLimited``; 5xx/timeouts on reads are retried.

Secrets
    The API key and secret live only inside the python-binance client. They are never logged, never
    put in exception text (errors are built from codes and server messages, then redacted), never
    in ``snapshot()`` and not in ``repr()``.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import re
import time as _time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException

from tradeconsole.core.broker import BrokerSettings
from tradeconsole.core.broker_protocol import Broker
from tradeconsole.core.config import DEFAULT_ENDPOINTS, TESTNET_ENDPOINTS, BinanceEndpoints
from tradeconsole.core.feed import CANDLE_SOURCE_EXCHANGE
from tradeconsole.core.domain import Candle, Fill, FillReason, OrderSide, Position, Side, Trade
from tradeconsole.core.domain import iso_ms as _iso
from tradeconsole.infra.binance.http.errors import (
    DUPLICATE_ID_CODES,
    AccountModeUnsupported,
    BinanceError,
    ExchangeUnavailable,
    FeedRefused,
    FilterRejected,
    ProtectionFailed,
    RateLimited,
    ReduceOnlyRejected,
    TimestampOutOfSync,
    error_from_response,
    redact,
)

__all__ = ["BinanceFuturesBroker", "Finding", "FindingKind", "SymbolRules"]

log = logging.getLogger(__name__)

_OWN_PROTECTIVE_ID = re.compile(r"^(tc[0-9a-f]{24})(sl|tp)$")
_WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")
_NOT_FOUND = (-2013, -2011)
_TRIGGERED = ("TRIGGERED", "FINISHED")
_SNAPSHOT_VERSION = 1
_TRADES_WINDOW_MS = 7 * 24 * 3600 * 1000  # userTrades: startTime..endTime at most 7 days
_TRADES_PAGE = 1000  # userTrades: limit default 500, max 1000
_TRADES_HISTORY_MS = 180 * 24 * 3600 * 1000  # userTrades: only the past 6 months


def _truthy(x: Any) -> bool:
    """Binance sends these flags as JSON booleans; accept the string forms too."""
    return x is True or (isinstance(x, str) and x.lower() == "true")


def _dec(x: str | float | int) -> Decimal:
    return Decimal(str(x))


def _fmt(x: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros (what Binance parses)."""
    s = format(x, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


# ---------------------------------------------------------------------------------------- filters
@dataclass(frozen=True, slots=True)
class SymbolRules:
    """The exchange filters of one symbol that orders must satisfy."""

    symbol: str
    step: Decimal  # MARKET_LOT_SIZE stepSize (LOT_SIZE when the market one is 0)
    min_qty: Decimal
    max_qty: Decimal
    tick: Decimal  # PRICE_FILTER tickSize
    min_price: Decimal
    max_price: Decimal
    min_notional: Decimal  # MIN_NOTIONAL notional

    @classmethod
    def from_exchange_info(cls, info: dict[str, Any], symbol: str) -> SymbolRules:
        for s in info.get("symbols", []):
            if s.get("symbol") == symbol:
                break
        else:
            raise BinanceError(f"symbol {symbol} is not listed in the futures exchange info",
                               operation="reading exchange filters")
        f = {x["filterType"]: x for x in s.get("filters", [])}
        lot, market = f.get("LOT_SIZE", {}), f.get("MARKET_LOT_SIZE", {})
        price = f.get("PRICE_FILTER", {})
        m_step = _dec(market.get("stepSize", "0"))
        step = m_step if m_step > 0 else _dec(lot.get("stepSize", "0"))
        min_qty = max(_dec(lot.get("minQty", "0")), _dec(market.get("minQty", "0")))
        maxes = [_dec(x["maxQty"]) for x in (lot, market) if _dec(x.get("maxQty", "0")) > 0]
        if step <= 0 or _dec(price.get("tickSize", "0")) <= 0:
            raise BinanceError(f"exchange info for {symbol} lacks a step size or tick size",
                               operation="reading exchange filters")
        return cls(
            symbol=symbol, step=step, min_qty=min_qty, max_qty=min(maxes) if maxes else Decimal("Infinity"),
            tick=_dec(price["tickSize"]), min_price=_dec(price.get("minPrice", "0")),
            max_price=_dec(price.get("maxPrice", "0")) or Decimal("Infinity"),
            min_notional=_dec(f.get("MIN_NOTIONAL", {}).get("notional", "0")),
        )

    def floor_qty(self, qty: float) -> Decimal:
        """Round a quantity DOWN to the step: never more exposure than asked for."""
        if not math.isfinite(qty) or qty <= 0:
            return Decimal(0)
        return (_dec(qty) / self.step).to_integral_value(ROUND_DOWN) * self.step

    def round_price(self, price: float) -> Decimal:
        """Round a trigger price to the nearest tick."""
        return (_dec(price) / self.tick).to_integral_value(ROUND_HALF_UP) * self.tick

    def check_entry(self, qty: Decimal, ref_price: float, stake: float) -> None:
        """Raise ``FilterRejected`` (before anything is sent) when an entry breaks a filter."""
        notional = qty * _dec(ref_price)
        if qty < self.min_qty or qty <= 0:
            raise FilterRejected(
                f"entry on {self.symbol} rejected before sending: quantity {_fmt(qty)} (from a stake of "
                f"{stake:.2f} USDT at {ref_price:g}) is below the minimum quantity {_fmt(self.min_qty)} "
                f"(step {_fmt(self.step)}); raise the stake", operation="checking filters")
        if notional < self.min_notional:
            raise FilterRejected(
                f"entry on {self.symbol} rejected before sending: notional {notional:.2f} USDT "
                f"({_fmt(qty)} at {ref_price:g}) is below the minimum notional {_fmt(self.min_notional)} "
                "USDT; raise the stake or the leverage", operation="checking filters")
        if qty > self.max_qty:
            raise FilterRejected(
                f"entry on {self.symbol} rejected before sending: quantity {_fmt(qty)} is above the "
                f"maximum {_fmt(self.max_qty)} for a market order; lower the stake", operation="checking filters")


# ---------------------------------------------------------------------------------------- findings
class FindingKind(enum.StrEnum):
    POSITION_CLOSED = "position_closed"
    SIDE_MISMATCH = "side_mismatch"
    QTY_MISMATCH = "qty_mismatch"
    UNKNOWN_POSITION = "unknown_position"
    PROTECTION_MISSING = "protection_missing"
    STRAY_ORDER = "stray_order"


@dataclass(frozen=True, slots=True)
class Finding:
    """One mismatch found by ``reconcile()``: ``problem`` (what differed) and ``action`` (how the
    documented rule resolved it); ``message`` is both in one line. ``fill``/``trade`` show the
    exit recorded for it, if any; a round trip (``trade`` set) is also delivered by the next
    ``on_candle``: record it from there, not from here, to journal it exactly once."""

    kind: FindingKind
    problem: str
    action: str
    fill: Fill | None = None
    trade: Trade | None = None

    @property
    def message(self) -> str:
        return f"{self.kind.value}: {self.problem}; {self.action}"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class _ExchangePosition:
    amt: Decimal
    entry_price: float
    liquidation_price: float
    update_time: int


# ---------------------------------------------------------------------------------------- broker
class BinanceFuturesBroker(Broker):
    """One symbol, isolated margin (CROSSED in Multi-Assets mode), one-way mode, one position at
    a time, market entries."""

    def __init__(self, api_key: str, api_secret: str, symbol: str, *,
                 endpoints: BinanceEndpoints | None = None, testnet: bool = False,
                 leverage: int | None = None, settings: BrokerSettings = BrokerSettings(),
                 working_type: str = "MARK_PRICE", size_buffer: float = 0.002,
                 request_timeout: float = 10.0, max_retries: int = 2, max_retry_wait: float = 5.0,
                 retry_backoff: float = 0.25, sleep: Callable[[float], None] = _time.sleep,
                 on_alert: Callable[[str], None] | None = None, trigger_grace_ms: int = 15_000) -> None:
        """``endpoints`` wins over ``testnet``; ``testnet=True`` alone selects TESTNET_ENDPOINTS.
        ``leverage`` defaults to ``settings.leverage``; ``settings.fee_rate`` is used for sizing
        and as a fee estimate only (real fees come from the exchange). ``size_buffer`` keeps that
        fraction of the stake unused so a price move between the signal and the fill does not turn
        the entry into a -2019. ``sleep`` is injectable so tests can observe back-off without
        waiting."""
        if not api_key or not api_secret:
            raise ValueError("live trading needs an API key and secret")
        if not hasattr(Client, "futures_create_algo_order"):  # added in python-binance 1.0.33
            raise RuntimeError("python-binance >= 1.0.33 is required: protective orders use its algo order API")
        if working_type not in _WORKING_TYPES:
            raise ValueError(f"working_type must be one of {', '.join(_WORKING_TYPES)}")
        lev = int(settings.leverage if leverage is None else leverage)
        if not 1 <= lev <= 125 or (leverage is not None and lev != leverage):
            raise ValueError("leverage must be an integer between 1 and 125")
        if not 0 <= size_buffer < 0.5:
            raise ValueError("size_buffer must be a fraction in [0, 0.5)")
        self.symbol = symbol
        self.settings = settings
        self.leverage = lev
        self.working_type = working_type
        self.size_buffer = size_buffer
        self.endpoints = endpoints or (TESTNET_ENDPOINTS if testnet else DEFAULT_ENDPOINTS)
        self.testnet = testnet or self.endpoints.futures_rest == TESTNET_ENDPOINTS.futures_rest
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.retry_backoff = retry_backoff
        self._sleep = sleep
        self._on_alert = on_alert
        # testnet=False on purpose: python-binance's testnet flag would override FUTURES_URL.
        self._client = Client(api_key, api_secret, requests_params={"timeout": request_timeout}, ping=False)
        self._client.FUTURES_URL = self.endpoints.futures_rest
        self.rules: SymbolRules | None = None
        self._started = False
        # state (what snapshot()/restore() carry)
        self.cash = 0.0
        self._cash_time = 0  # exchange time (ms) of the balance in ``cash``: older stream balances are ignored
        self.position: Position | None = None
        self.fills: list[Fill] = []
        self.trades: list[Trade] = []
        self.fees_paid = 0.0
        self.funding_paid = 0.0
        self._funding_booked = 0.0  # funding of the open position already carried by its partial closes
        self.alerts: list[str] = []
        self._entry_order_id = ""
        self._entry_exchange_id: int | None = None
        self._entry_stake = 0.0
        self._queued: list[tuple[Fill, Trade | None]] = []
        self._mark: float | None = None
        self.margin_type = "ISOLATED"
        self.multi_assets = False
        #: how long a triggered protective order may stay TRIGGERING/TRIGGERED (or FINISHED with a
        #: market order the exchange does not show yet) before it is treated as dead and replaced
        self.trigger_grace_ms = trigger_grace_ms
        self._dead_algo_ids: set[int] = set()  # terminal-without-fill algo orders already handled
        self._algo_order_cid: dict[int, str] = {}  # actual (market) order id -> clientAlgoId, from ALGO_UPDATE
        self._algo_by_order: dict[int, int] = {}  # actual (market) order id -> algoId, from ALGO_UPDATE
        #: clientAlgoId -> algoId of its *current* placement. A re-placed stop reuses its client id
        #: (Binance: clientAlgoId is "a unique id among open orders", so a dead one's id is free
        #: again) and Query Algo Order by clientAlgoId then has more than one candidate with no
        #: documented choice; the algoId returned at placement names exactly one order.
        self._algo_ids: dict[str, int] = {}
        self.stream_events = 0

    def __repr__(self) -> str:
        return f"BinanceFuturesBroker(symbol={self.symbol!r}, base_url={self.base_url!r}, leverage={self.leverage})"

    @property
    def base_url(self) -> str:
        return self.endpoints.futures_rest

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        """Sync the clock, read the symbol's filters, set leverage and ISOLATED margin, read the
        wallet. Idempotent; other methods call it lazily."""
        self.sync_time()
        info = self._request("reading exchange info", self._client.futures_exchange_info)
        self.rules = SymbolRules.from_exchange_info(info, self.symbol)
        self._check_account_modes()
        self._request("setting leverage", self._client.futures_change_leverage, symbol=self.symbol,
                      leverage=self.leverage)
        try:
            self._request(f"setting {self.margin_type.lower()} margin", self._client.futures_change_margin_type,
                          symbol=self.symbol, marginType=self.margin_type)
        except BinanceError as e:
            if e.code != -4046:  # "No need to change margin type": already set
                raise
        self._refresh_cash()
        self._started = True

    def _check_account_modes(self) -> None:
        """Read the account's position mode and Multi-Assets mode before anything is sent.

        Hedge mode (``GET /fapi/v1/positionSide/dual`` -> ``dualSidePosition: true``) is refused:
        every order would need ``positionSide`` LONG/SHORT and Binance answers -4061 without it,
        and this broker keeps exactly one one-way position per symbol. Multi-Assets mode
        (``GET /fapi/v1/multiAssetsMargin`` -> ``multiAssetsMargin: true``) forbids ISOLATED
        margin (-4168), so CROSSED is used there, explicitly and with an alert: the whole wallet
        then backs the position (the protective orders still bound the loss)."""
        mode = self._request("reading the position mode", self._client.futures_get_position_mode)
        if _truthy(mode.get("dualSidePosition")):
            raise AccountModeUnsupported(
                "the Binance futures account is in hedge mode (dual-side positions); tradeconsole trades "
                "one-way mode only: switch the account to one-way mode (futures Preferences > Position Mode, "
                "possible only with no open positions or orders), then start again",
                operation="reading the position mode")
        multi = self._request("reading the Multi-Assets mode", self._client.futures_get_multi_assets_mode)
        self.multi_assets = _truthy(multi.get("multiAssetsMargin"))
        if self.multi_assets and self.margin_type == "ISOLATED":
            self.margin_type = "CROSSED"
            self._alert(f"the account is in Multi-Assets mode, where Binance refuses ISOLATED margin (-4168): "
                        f"{self.symbol} is traded with CROSSED margin (the whole wallet backs the position)")

    def _ensure_started(self) -> SymbolRules:
        if not self._started or self.rules is None:
            self.start()
        assert self.rules is not None
        return self.rules

    def sync_time(self) -> int:
        """Measure the offset between the exchange clock and ours and sign with it from now on
        (the cure for -1021). Returns the offset in ms."""
        t0 = _time.time() * 1000
        server = int(self._request("syncing server time", self._client.futures_time)["serverTime"])
        t1 = _time.time() * 1000
        offset = int(server - (t0 + t1) / 2)
        self._client.timestamp_offset = offset
        log.debug("clock offset to Binance futures: %d ms", offset)
        return offset

    # ------------------------------------------------------------------ the Broker surface
    @property
    def is_flat(self) -> bool:
        return self.position is None

    def equity(self, mark: float) -> float:
        """Wallet balance plus unrealised PnL at ``mark``; no API call (cash is refreshed by
        ``on_candle``)."""
        p = self.position
        return self.cash if p is None else self.cash + p.side.sign * p.qty * (mark - p.entry_price)

    @property
    def pending(self) -> None:
        """Entries are MARKET orders, filled or rejected at once: there is never a pending one."""
        return None

    def cancel_pending(self) -> bool:
        """Entries are MARKET orders, filled or rejected at once: there is never a pending one."""
        return False

    def on_candle_open(self, candle: Candle) -> None:
        """Nothing fills at a candle's open: entries go to market when the signal candle closes."""
        return None

    def take_dropped(self) -> list[Any]:
        """Entries are never deferred to the next open, so none can be dropped by a data gap."""
        return []

    def on_candle(self, candle: Candle) -> list[tuple[Fill, Trade | None]]:
        """Deliver exits found since the last call (protective order fired, or resolved by
        ``reconcile``/protection failure), then refresh the wallet balance."""
        self._ensure_started()
        out = self._queued
        self._queued = []
        self._mark = candle.close
        try:
            if self.position is not None:
                res = self._poll_protection()
                if res is not None:
                    out.append(res)
            self._refresh_cash()
        except BinanceError:
            self._queued = out + self._queued  # recorded exits are never lost: next call delivers them
            raise
        return out

    def submit_entry(self, side: Side, candle: Candle, order_id: str, stop_loss_pct: float,
                     take_profit_pct: float, stake_fraction: float = 1.0) -> Fill | None:
        """Enter at market now (right after ``candle`` closed), then protect the position on the
        exchange. Sized like the realistic simulation (margin plus fee equals the stake) from
        ``candle.close``, rounded down to the step. Returns the entry fill; None when already in a
        position (one at a time) or when ``order_id`` was already executed and its position is
        gone. Raises ``OrderRejected`` subclasses on filter/margin rejects."""
        if not self.is_flat:
            return None
        rules = self._ensure_started()
        self._mark = candle.close
        existing = self._lookup_order(order_id)
        if existing is None:
            # Flat, so any open order on the symbol is a leftover (e.g. a sibling whose cancel
            # failed): a closePosition stop left open would close the position we open now.
            self._cancel_all_orders()
            stake = self.cash * stake_fraction
            ref = candle.close
            qty = rules.floor_qty(stake * (1 - self.size_buffer) / (ref * (1 / self.leverage + self.settings.fee_rate)))
            rules.check_entry(qty, ref, stake)
            params = {"symbol": self.symbol, "side": side.entry_order_side.value, "type": "MARKET",
                      "quantity": _fmt(qty), "newClientOrderId": order_id, "newOrderRespType": "RESULT"}
            order = self._submit(f"placing entry {order_id}", self._client.futures_create_order, params,
                                 lambda: self._lookup_order(order_id))
        else:
            log.warning("entry %s already exists on the exchange (status %s); not sending it again",
                        order_id, existing.get("status"))
            stake = 0.0
            order = existing
        order = self._await_filled(order, order_id)
        exch = self._exchange_position()
        if existing is not None and (exch.amt == 0 or (exch.amt > 0) != (side is Side.LONG)):
            self._alert(f"entry {order_id} was executed earlier and its position on {self.symbol} is already "
                        "closed; not entering again")
            return None
        fill = self._record_entry(order, side, order_id, stop_loss_pct, take_profit_pct, stake, exch)
        try:
            self._protect()
        except BinanceError as e:
            self._protection_failed(str(e), fill)
        return fill

    def flatten(self, price: float, time: int, reason: FillReason = FillReason.FLATTEN) -> tuple[Fill, Trade] | None:
        """Cancel every open order on the symbol and close the position with a reduce-only MARKET
        order (the kill switch). ``price``/``time`` are only a fallback: the fill carries the
        exchange's price and time. An exchange position the broker does not know is closed too
        (with an alert), but has no round trip to return."""
        self._ensure_started()
        self._mark = price
        if self.position is None:
            self._cancel_all_orders()
            exch = self._exchange_position()
            if exch.amt != 0:
                self._alert(f"flatten: closing an untracked {self.symbol} position of {_fmt(exch.amt)}")
                self._close_untracked(exch)
            return None
        return self._close_position(reason, "fx")

    # ------------------------------------------------------------------ feed provenance
    def check_feed(self, source: str) -> None:
        """Refuse candles that are not from the exchange's live feed (its websocket stream or its
        REST backfill): a replay of history must never drive real orders. The engine calls this
        with each candle's ``source`` tag before the candle reaches ``on_candle``/``submit_entry``."""
        if source != CANDLE_SOURCE_EXCHANGE:
            raise FeedRefused(
                f"the {'testnet' if self.testnet else 'live'} broker for {self.symbol} refuses a candle from "
                f"{source or 'an untagged source'!s}: only candles from the Binance live feed may drive real orders")

    # ------------------------------------------------------------------ user data stream
    def apply_stream_event(self, event: dict[str, Any]) -> list[tuple[Fill, Trade | None]]:
        """Apply one user data stream event (USD-M "User Data Streams": ``ORDER_TRADE_UPDATE``,
        ``ALGO_UPDATE``, ``ACCOUNT_UPDATE``) on the engine thread, the moment it arrives. Returns
        the exits it completed (journalled by the session at once), plus any exit queued earlier.

        The event says *that* something happened; the amounts recorded come from the same REST
        reads the poll uses (account trades for price and fee, position risk for what is left),
        so a stream exit and a polled exit are identical. Events for other symbols, or about orders
        that are not ours while we are flat, change nothing but the wallet balance."""
        self._ensure_started()
        self.stream_events += 1
        kind = event.get("e")
        when = int(event.get("T") or event.get("E") or 0)
        out = self._queued
        self._queued = []
        try:
            if self.position is not None and 0 < when < self.position.entry_time:
                res = None  # about an earlier position (queued behind the candle that replaced it)
                if kind == "ACCOUNT_UPDATE":
                    self._on_account_update({"B": (event.get("a") or {}).get("B")}, when)
            elif kind == "ACCOUNT_UPDATE":
                res = self._on_account_update(event.get("a") or {}, when)
            elif kind == "ORDER_TRADE_UPDATE":
                res = self._on_order_update(event.get("o") or {})
            elif kind == "ALGO_UPDATE":
                res = self._on_algo_update(event.get("o") or {})
            else:
                res = None
            if res is not None:
                out.append(res)
        except BaseException:
            # Recorded exits are never lost: put them back (ahead of anything queued meanwhile)
            # so the next on_candle / stream event delivers them, as on_candle does.
            self._queued = out + self._queued
            raise
        out.extend(self._queued)  # queued while handling this event (e.g. a failed re-protect)
        self._queued = []
        return out

    def on_stream_gap(self) -> list[tuple[Fill, Trade | None]]:
        """The user data stream was interrupted (reconnect, expired listenKey): events may have
        been missed, so the REST reconcile runs now, and its exits are returned for journalling."""
        self.reconcile()
        out, self._queued = self._queued, []
        return out

    def _on_account_update(self, a: dict[str, Any], when: int) -> tuple[Fill, Trade] | None:
        """``when`` is the event's transaction time ``T`` (event time ``E`` without it): a balance
        older than the last one applied (stream or REST read) is ignored, since the stream may
        deliver an event after a newer REST read and must not roll ``cash`` back."""
        for b in a.get("B") or []:
            if b.get("a") == "USDT" and b.get("wb") is not None:
                if when and when < self._cash_time:
                    log.info("ignoring a %s wallet balance from %s: older than the last applied one (%s)",
                             self.symbol, _iso(when), _iso(self._cash_time))
                    continue
                self.cash = float(b["wb"])
                self._cash_time = max(self._cash_time, when)
        p = self.position
        if p is None:
            return None
        for row in a.get("P") or []:
            if row.get("s") == self.symbol and row.get("ps", "BOTH") == "BOTH":
                amt = _dec(row.get("pa", "0"))
                if amt == 0 or (amt > 0) != (p.side is Side.LONG):
                    exch = self._exchange_position()  # confirm: never close our record on a stale event
                    if exch.amt == 0 or (exch.amt > 0) != (p.side is Side.LONG):
                        return self._resolve_vanished()
        return None

    def _on_order_update(self, o: dict[str, Any]) -> tuple[Fill, Trade] | None:
        p = self.position
        if o.get("s") != self.symbol or p is None:
            return None
        status = o.get("X")
        if status not in ("FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"):
            return None  # NEW / PARTIALLY_FILLED: the terminal update follows
        if o.get("S") != p.side.exit_order_side.value or float(o.get("z") or 0) <= 0:
            if status in ("CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"):
                oid = int(o.get("i") or 0)
                cid = self._algo_order_cid.get(oid)
                if cid in self._protective_ids():  # a triggered stop/target died in the matching engine
                    self._note_dead({"algoId": self._algo_by_order.get(oid, 0), "clientAlgoId": cid},
                                    f"its market order {oid} ended {status} without a trade")
                    return self._reprotect_if_open()
            return None
        exch = self._exchange_position()
        cid = str(o.get("c") or "")
        if exch.amt != 0 and (exch.amt > 0) == (p.side is Side.LONG):
            if _dec(p.qty) - abs(exch.amt) > self._rules().step / 2:  # partly closed: record it, protect the rest
                log.warning("%s order %s closed part of the position (%s left)", self.symbol, cid,
                            _fmt(abs(exch.amt)))
                trades = self._order_trades(o)
                closed = sum((_dec(t["qty"]) for t in trades), Decimal(0))
                if 0 < closed < _dec(p.qty):
                    reason = self._exit_reason(int(o["i"]), cid, str(o.get("ot") or ""),
                                               _truthy(o.get("cp")) or _truthy(o.get("R")),
                                               o.get("o") == "LIQUIDATION")
                    # queued at once: delivered with this event, or later if what follows raises
                    self._queued.append(self._finish_exit(trades, reason, partial=True))
                final = self._reprotect_if_open()  # the rest, protected (or closed if impossible)
                if final is not None:
                    self._queued.append(final)
            return None
        trades = self._order_trades(o)
        reason = self._exit_reason(int(o["i"]), cid, str(o.get("ot") or ""),
                                   _truthy(o.get("cp")) or _truthy(o.get("R")), o.get("o") == "LIQUIDATION")
        if reason is FillReason.STOP_LOSS:
            return self._exit_by_protective(self._entry_order_id + "sl", trades)
        if reason is FillReason.TAKE_PROFIT:
            return self._exit_by_protective(self._entry_order_id + "tp", trades)
        self._cancel_all_orders()
        return self._finish_exit(trades, reason)

    def _order_trades(self, o: dict[str, Any]) -> list[dict[str, Any]]:
        """The account trades of the order in an ORDER_TRADE_UPDATE (true price and fee); if not
        visible over REST yet, the event itself (cumulative qty ``z``, average ``ap``, fee ``n``)."""
        trades = self._trades(orderId=int(o["i"]))
        if not trades:
            trades = [{"qty": o.get("z"), "price": o.get("ap"), "commission": o.get("n") or "0",
                       "time": int(o.get("T") or self._now_ms())}]
        return trades

    def _exit_reason(self, order_id: int, client_id: str, orig_type: str = "", closing: bool = False,
                     liquidation: bool = False) -> FillReason:
        """Why the exchange order ``order_id`` closed our position (the one classifier for stream
        and REST exits). Liquidation: Binance's own closing orders (client id ``autoclose-``,
        ``adl_autoclose``; order type LIQUIDATION on the stream). Stop/target: the order is the
        ``actualOrderId`` (ALGO_UPDATE ``ai``) of one of our protective algo orders, the only
        documented link; failing that, a closing STOP*/TAKE_PROFIT* order (its ``origType``).
        Anything else was closed outside the console (web, app, another bot)."""
        if liquidation or client_id.startswith(("autoclose", "adl_autoclose")):
            return FillReason.LIQUIDATION
        mapped = self._algo_order_cid.get(order_id)
        if mapped in self._protective_ids():
            return FillReason.STOP_LOSS if mapped.endswith("sl") else FillReason.TAKE_PROFIT
        if closing and orig_type.startswith("STOP"):
            return FillReason.STOP_LOSS
        if closing and orig_type.startswith("TAKE_PROFIT"):
            return FillReason.TAKE_PROFIT
        return FillReason.FLATTEN

    def _on_algo_update(self, o: dict[str, Any]) -> tuple[Fill, Trade] | None:
        cid = str(o.get("caid") or "")
        if o.get("ai"):
            self._algo_order_cid[int(o["ai"])] = cid
            self._algo_by_order[int(o["ai"])] = int(o.get("aid") or 0)
        if o.get("s") != self.symbol or self.position is None or cid not in self._protective_ids():
            return None
        status = o.get("X")
        if status in ("NEW", "TRIGGERING", "TRIGGERED"):
            return None  # placed, or on its way through the matching engine: ORDER_TRADE_UPDATE follows
        res, in_flight = self._inspect_protective([cid])
        if res is not None or in_flight:
            return res
        return self._reprotect_if_open()

    def _reprotect_if_open(self, alert: str | None = None) -> tuple[Fill, Trade] | None:
        """A protective order is gone: if the position is still open, place it again at the
        recorded level (raising ``alert`` first, if given); if that fails, close the position. If
        the position is gone, record how. A size that differs from the exchange's is adopted."""
        p = self.position
        assert p is not None
        exch = self._exchange_position()
        if exch.amt == 0 or (exch.amt > 0) != (p.side is Side.LONG):
            return self._resolve_vanished()
        if alert is not None:
            self._alert(alert)
        if abs(abs(exch.amt) - _dec(p.qty)) > self._rules().step / 2:
            self.position = Position(p.symbol, p.side, float(abs(exch.amt)), p.entry_price, p.entry_time,
                                     p.entry_fee, p.leverage, p.stop_price, p.target_price, p.liquidation_price)
        try:
            self._protect()
        except BinanceError as e:
            res = self._protection_failed(str(e), None)
            self._queued.remove(res)
            return res
        return None

    # ------------------------------------------------------------------ reconcile
    def reconcile(self) -> list[Finding]:
        """Compare the exchange with our state and resolve every mismatch (rules in the module
        docstring). Returns the findings; an empty list means everything matched."""
        self._ensure_started()
        findings: list[Finding] = []
        exch = self._exchange_position()
        p = self.position
        if p is not None:
            same_side = exch.amt != 0 and (exch.amt > 0) == (p.side is Side.LONG)
            if exch.amt == 0:
                fill, trade = self._resolve_vanished()
                self._queued.append((fill, trade))
                findings.append(Finding(
                    FindingKind.POSITION_CLOSED,
                    f"the {p.side.name.lower()} {self.symbol} position of {p.qty:g} we hold is flat on the exchange",
                    f"recorded its exit ({trade.exit_reason.value} at {fill.price:g}) from the exchange's records",
                    fill, trade))
            elif not same_side:
                fill, trade = self._resolve_vanished()
                self._queued.append((fill, trade))
                findings.append(Finding(
                    FindingKind.SIDE_MISMATCH,
                    f"we hold a {p.side.name.lower()} {self.symbol} position but the exchange holds {_fmt(exch.amt)}",
                    f"recorded our position's exit ({trade.exit_reason.value} at {fill.price:g}); the exchange "
                    "position is handled as unknown", fill, trade))
            elif abs(abs(exch.amt) - _dec(p.qty)) > self._rules().step / 2:
                old = p.qty
                self.position = Position(p.symbol, p.side, float(abs(exch.amt)), exch.entry_price or p.entry_price,
                                         p.entry_time, p.entry_fee, p.leverage, p.stop_price, p.target_price,
                                         exch.liquidation_price or p.liquidation_price)
                findings.append(Finding(
                    FindingKind.QTY_MISMATCH,
                    f"we hold {old:g} {self.symbol} but the exchange holds {_fmt(abs(exch.amt))}",
                    "adopted the exchange quantity and entry price (protective orders close the whole position)"))
        if self.position is None and exch.amt != 0:
            findings.append(self._handle_unknown(exch))
        findings.extend(self._cancel_strays())
        if self.position is not None:
            findings.extend(self._ensure_protection())
        self._refresh_cash()
        for f in findings:
            log.warning("reconcile %s", f.message)
        return findings

    def _handle_unknown(self, exch: _ExchangePosition) -> Finding:
        side = Side.LONG if exch.amt > 0 else Side.SHORT
        desc = (f"the exchange holds a {side.name.lower()} {self.symbol} position of {_fmt(abs(exch.amt))} "
                "we do not know")
        open_algo = self._open_algo_orders()
        levels: dict[str, dict[str, Any]] = {}
        entry_id = None
        for o in open_algo:
            m = _OWN_PROTECTIVE_ID.match(o.get("clientAlgoId", ""))
            if m and (entry_id is None or m.group(1) == entry_id):
                entry_id = m.group(1)
                levels[m.group(2)] = o
        if entry_id is not None and set(levels) == {"sl", "tp"}:
            order = self._lookup_order(entry_id)
            if order is not None and order.get("side") == side.entry_order_side.value:
                self._adopt(order, side, entry_id, exch, levels)
                return Finding(FindingKind.UNKNOWN_POSITION, desc,
                               f"adopted it: traced to our entry {entry_id} and protected by our stop "
                               f"{levels['sl']['triggerPrice']} and target {levels['tp']['triggerPrice']}")
        fill = self._close_untracked(exch)
        return Finding(FindingKind.UNKNOWN_POSITION, desc,
                       f"closed it with a reduce-only market order at {fill.price:g}: it has no stop and target "
                       "we know, so keeping it would leave it unprotected", fill)

    def _adopt(self, order: dict[str, Any], side: Side, entry_id: str, exch: _ExchangePosition,
               levels: dict[str, dict[str, Any]]) -> None:
        px = float(order.get("avgPrice") or exch.entry_price)
        qty = float(abs(exch.amt))
        fee = self._order_fee(int(order["orderId"]), qty, px)
        stop, target = float(levels["sl"]["triggerPrice"]), float(levels["tp"]["triggerPrice"])
        self.position = Position(self.symbol, side, qty, exch.entry_price or px, int(order.get("updateTime", 0)),
                                 fee, float(self.leverage), stop, target, exch.liquidation_price)
        self._entry_order_id = entry_id
        self._entry_exchange_id = int(order["orderId"])
        self._algo_ids = {entry_id + k: int(o["algoId"]) for k, o in levels.items() if o.get("algoId")}
        self._funding_booked = 0.0
        self._entry_stake = qty * px / self.leverage + fee

    def _cancel_strays(self) -> list[Finding]:
        keep = self._protective_ids() if self.position is not None else set()
        out = []
        for o in self._open_regular_orders():
            self._cancel_regular(o)
            out.append(Finding(FindingKind.STRAY_ORDER,
                               f"open {o.get('type')} {o.get('side')} order {o.get('clientOrderId')} on {self.symbol} "
                               "is not ours to keep", "canceled it"))
        for o in self._open_algo_orders():
            cid = o.get("clientAlgoId", "")
            if cid in keep:
                continue
            self._cancel_algo(cid, int(o.get("algoId") or 0) or None)
            out.append(Finding(FindingKind.STRAY_ORDER,
                               f"open {o.get('orderType')} {o.get('side')} conditional order {cid} at "
                               f"{o.get('triggerPrice')} on {self.symbol} is not one of our protective orders",
                               "canceled it"))
        return out

    def _ensure_protection(self) -> list[Finding]:
        open_ids = {o.get("clientAlgoId") for o in self._open_algo_orders()}
        missing = sorted(cid for cid in self._protective_ids() if cid not in open_ids)
        if not missing:
            return []
        res, in_flight = self._inspect_protective(missing)
        if res is not None:
            self._queued.append(res)
            fill, trade = res
            return [Finding(FindingKind.POSITION_CLOSED, f"protective order {fill.order_id} fired",
                            f"recorded the exit at {fill.price:g}", fill, trade)]
        if in_flight:  # triggered, its market order is being executed: nothing to re-place
            return []
        msg = f"protective order(s) {', '.join(missing)} missing on the exchange while the position is open"
        try:
            self._protect()
        except BinanceError as e:
            fill, trade = self._protection_failed(str(e), None)
            return [Finding(FindingKind.PROTECTION_MISSING, msg,
                            f"re-placing failed ({e}); closed the position at {fill.price:g}", fill, trade)]
        return [Finding(FindingKind.PROTECTION_MISSING, msg, "re-placed them at the recorded levels")]

    # ------------------------------------------------------------------ persistence
    def snapshot(self) -> dict[str, Any]:
        """State to journal (JSON-ready, no credentials): position with its protective levels, the
        ids that trace it on the exchange, and exits not yet delivered."""
        return {
            "version": _SNAPSHOT_VERSION,
            "broker": "binance_futures",
            "symbol": self.symbol,
            "cash": self.cash,
            "fees_paid": self.fees_paid,
            "funding_paid": self.funding_paid,
            "position": None if self.position is None else {**asdict(self.position), "side": self.position.side.name},
            "entry_order_id": self._entry_order_id,
            "entry_exchange_id": self._entry_exchange_id,
            "entry_stake": self._entry_stake,
            "funding_booked": self._funding_booked,
            "algo_ids": dict(self._algo_ids),
            "queued": [{"fill": _fill_to_dict(f), "trade": None if t is None else _trade_to_dict(t)}
                       for f, t in self._queued],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a ``snapshot()``; call ``reconcile()`` afterwards to check it against the exchange."""
        if state.get("symbol", self.symbol) != self.symbol:
            raise ValueError(f"snapshot is for {state.get('symbol')}, this broker trades {self.symbol}")
        self.cash = float(state.get("cash", 0.0))
        self.fees_paid = float(state.get("fees_paid", 0.0))
        self.funding_paid = float(state.get("funding_paid", 0.0))
        pos = state.get("position")
        self.position = None if pos is None else Position(**{**pos, "side": Side[pos["side"]]})
        self._entry_order_id = state.get("entry_order_id", "")
        eid = state.get("entry_exchange_id")
        self._entry_exchange_id = None if eid is None else int(eid)
        self._entry_stake = float(state.get("entry_stake", 0.0))
        self._funding_booked = float(state.get("funding_booked", 0.0))
        self._algo_ids = {str(k): int(v) for k, v in (state.get("algo_ids") or {}).items()}
        self._queued = [(_fill_from_dict(q["fill"]), None if q["trade"] is None else _trade_from_dict(q["trade"]))
                        for q in state.get("queued", [])]

    # ------------------------------------------------------------------ entries and exits
    def _record_entry(self, order: dict[str, Any], side: Side, order_id: str, sl_pct: float, tp_pct: float,
                      stake: float, exch: _ExchangePosition) -> Fill:
        rules = self._rules()
        qty = float(order["executedQty"])
        px = float(order["avgPrice"])
        t = int(order.get("updateTime") or order.get("time") or 0)
        fee = self._order_fee(int(order["orderId"]), qty, px)
        sign = side.sign
        stop = float(rules.round_price(px * (1 - sl_pct) if sign > 0 else px * (1 + sl_pct)))
        target = float(rules.round_price(px * (1 + tp_pct) if sign > 0 else px * (1 - tp_pct)))
        mmr = self.settings.maintenance_margin_rate
        liq = exch.liquidation_price or (px * (1 - 1 / self.leverage + mmr) if sign > 0
                                         else px * (1 + 1 / self.leverage - mmr))
        self.position = Position(self.symbol, side, qty, px, t, fee, float(self.leverage), stop, target, liq)
        self._entry_order_id = order_id
        self._entry_exchange_id = int(order["orderId"])
        self._algo_ids = {}
        self._funding_booked = 0.0
        self._entry_stake = stake or (qty * px / self.leverage + fee)
        self.cash -= fee
        self.fees_paid += fee
        reason = FillReason.ENTRY_LONG if sign > 0 else FillReason.ENTRY_SHORT
        fill = Fill(t, self.symbol, side.entry_order_side, px, qty, fee, reason, order_id)
        self.fills.append(fill)
        log.info("entered %s %s %g at %g (stop %g, target %g)", side.name.lower(), self.symbol, qty, px, stop, target)
        return fill

    def _protective_ids(self) -> set[str]:
        return {self._entry_order_id + "sl", self._entry_order_id + "tp"}

    def _protect(self) -> None:
        """Place whichever protective order of the current position is not open yet."""
        p = self.position
        assert p is not None
        rules = self._rules()
        exit_side = p.side.exit_order_side.value
        # The open list, not a query by clientAlgoId: after a dead order the id exists twice on
        # the exchange (the dead one and, maybe, its replacement), and only an open one protects.
        open_ids = {o.get("clientAlgoId") for o in self._open_algo_orders()}
        for kind, otype, level in (("sl", "STOP_MARKET", p.stop_price), ("tp", "TAKE_PROFIT_MARKET", p.target_price)):
            cid = self._entry_order_id + kind
            if cid in open_ids:
                continue
            params = {"symbol": self.symbol, "side": exit_side, "type": otype, "algoType": "CONDITIONAL",
                      "triggerPrice": _fmt(rules.round_price(level)), "closePosition": "true",
                      "workingType": self.working_type, "clientAlgoId": cid}
            placed = self._submit(f"placing {otype} {cid}", self._client.futures_create_algo_order, params,
                                  lambda cid=cid: self._live_algo(cid))
            if placed.get("algoId"):
                self._algo_ids[cid] = int(placed["algoId"])

    def _live_algo(self, cid: str) -> dict[str, Any] | None:
        """The order ``cid`` if it was placed and is alive (open, or triggered just now): the
        open list first, then a query, never one already known dead."""
        for o in self._open_algo_orders():
            if o.get("clientAlgoId") == cid:
                return o
        o = self._lookup_algo(cid)
        if o is None or o.get("algoStatus") in ("CANCELED", "EXPIRED", "REJECTED", "FINISHED"):
            return None
        return None if int(o.get("algoId") or 0) in self._dead_algo_ids else o

    def _protection_failed(self, why: str, entry_fill: Fill | None) -> tuple[Fill, Trade]:
        """Protection could not be placed: close now. Raises ``ProtectionFailed`` if even that fails."""
        self._alert(f"protective orders for {self.symbol} could not be placed ({why}); closing the position now")
        try:
            res = self._close_position(FillReason.FLATTEN, "fx")
        except BinanceError as e:
            err = ProtectionFailed(
                f"{self.symbol} position is OPEN AND UNPROTECTED: protective orders failed ({why}) and closing it "
                f"failed too ({e}); reconcile() keeps retrying", code=e.code, http_status=e.http_status,
                operation="protecting a new position")
            err.fill = entry_fill  # type: ignore[attr-defined]
            self._alert(str(err))
            raise err from None
        if res is None:  # already closed by the exchange in the meantime
            raise ProtectionFailed(f"{self.symbol} position vanished while protecting it", operation="protecting")
        self._queued.append(res)
        return res

    def _poll_protection(self) -> tuple[Fill, Trade] | None:
        """Cheap per-candle check: one request while both protective orders are still open."""
        open_ids = {o.get("clientAlgoId") for o in self._open_algo_orders()}
        missing = sorted(cid for cid in self._protective_ids() if cid not in open_ids)
        if not missing:
            return None
        res, in_flight = self._inspect_protective(missing)
        if res is not None or in_flight:
            return res
        return self._reprotect_if_open(
            f"protective order(s) {', '.join(missing)} on {self.symbol} disappeared; re-placing them")

    def _inspect_protective(self, ids: list[str]) -> tuple[tuple[Fill, Trade] | None, bool]:
        """Classify the protective orders ``ids`` by their documented algo status (Binance, "Algo
        Order Update" / Query Algo Order: NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED,
        EXPIRED). If one fired and filled, record that exit (true price and fee from the account
        trades) and cancel the sibling. Returns ``(exit, in_flight)``; ``in_flight`` says one is
        triggered and its market order is still being executed (come back later). Anything else
        that is not open is *dead* (canceled, expired, rejected, or FINISHED whose market order was
        canceled/expired in the matching engine without a trade, or stuck triggering longer than
        ``trigger_grace_ms``): the caller re-protects, or flattens when that is impossible."""
        in_flight = False
        now = self._now_ms()
        for cid in ids:
            algo = self._lookup_algo(cid)
            if algo is None:
                continue  # never placed or unknown: dead
            status = algo.get("algoStatus")
            if status == "NEW" or status in ("CANCELED", "EXPIRED", "REJECTED"):
                continue  # open after all (the open list lagged), or dead
            triggered_at = int(algo.get("triggerTime") or algo.get("updateTime") or 0)
            fresh = now - triggered_at < self.trigger_grace_ms
            actual = algo.get("actualOrderId")
            if actual:  # the documented link from the algo order to its market order
                self._algo_order_cid[int(actual)] = cid
            if status in ("TRIGGERING", "TRIGGERED") or (status == "FINISHED" and actual):
                if actual:
                    trades = self._trades(orderId=int(actual))
                    if trades:
                        return self._exit_by_protective(cid, trades), False
                    order = self._lookup_order_by_id(int(actual))
                    ostatus = None if order is None else order.get("status")
                    if ostatus in ("CANCELED", "EXPIRED", "REJECTED", "EXPIRED_IN_MATCH") and \
                            float(order.get("executedQty") or 0) == 0:  # type: ignore[union-attr]
                        self._note_dead(algo, f"its market order {actual} ended {ostatus} without a trade")
                        continue
                if fresh:
                    in_flight = True
                else:
                    self._note_dead(algo, f"still {status} {(now - triggered_at) / 1000:.0f} s after triggering "
                                          "with no trade on the account")
                    self._cancel_algo(cid)
                continue
            # FINISHED without an actual order: canceled in the matching engine before it existed
            self._note_dead(algo, f"{status} without an order in the matching engine")
        return None, in_flight

    def _note_dead(self, algo: dict[str, Any], why: str) -> None:
        aid = int(algo.get("algoId") or 0)
        if aid in self._dead_algo_ids:
            return
        self._dead_algo_ids.add(aid)
        self._alert(f"protective order {algo.get('clientAlgoId')} on {self.symbol} fired but did not close the "
                    f"position ({why}); re-protecting it (or closing it if that is impossible)")

    def _exit_by_protective(self, cid: str, trades: list[dict[str, Any]]) -> tuple[Fill, Trade]:
        reason = FillReason.STOP_LOSS if cid.endswith("sl") else FillReason.TAKE_PROFIT
        res = self._finish_exit(trades, reason)
        for other in self._protective_ids_of(cid):
            try:
                self._cancel_algo(other)
            except BinanceError as e:  # the exit is recorded; the leftover is canceled before
                log.warning("could not cancel %s after %s filled (%s); it is canceled before the next "
                            "entry and by reconcile()", other, cid, e)
        return res

    def _now_ms(self) -> int:
        """Exchange time (our clock plus the measured offset)."""
        return int(_time.time() * 1000) + int(getattr(self._client, "timestamp_offset", 0) or 0)

    def _protective_ids_of(self, fired: str) -> list[str]:
        base = fired[:-2]
        return [base + k for k in ("sl", "tp") if base + k != fired]

    def _close_position(self, reason: FillReason, suffix: str) -> tuple[Fill, Trade] | None:
        """Cancel open orders, close the exchange position reduce-only, record the round trip."""
        p = self.position
        assert p is not None
        self._cancel_all_orders()
        exch = self._exchange_position()
        if exch.amt == 0 or (exch.amt > 0) != (p.side is Side.LONG):
            return self._resolve_vanished()
        cid = self._entry_order_id + suffix
        params = {"symbol": self.symbol, "side": p.side.exit_order_side.value, "type": "MARKET",
                  "quantity": _fmt(abs(exch.amt)), "reduceOnly": "true", "newClientOrderId": cid,
                  "newOrderRespType": "RESULT"}
        try:
            order = self._submit(f"closing {self.symbol} ({cid})", self._client.futures_create_order, params,
                                 lambda: self._lookup_order(cid))
        except ReduceOnlyRejected:
            return self._resolve_vanished()
        order = self._await_filled(order, cid)
        trades = self._trades(orderId=int(order["orderId"]))
        if not trades:  # not visible yet: the order itself says qty and price; estimate the fee
            est = float(order["executedQty"]) * float(order["avgPrice"]) * self.settings.fee_rate
            trades = [{"qty": order["executedQty"], "price": order["avgPrice"], "commission": str(est),
                       "time": order.get("updateTime", 0)}]
        return self._finish_exit(trades, reason, suffix)

    def _close_untracked(self, exch: _ExchangePosition) -> Fill:
        """Close a position the broker does not own (no round trip to record)."""
        self._cancel_all_orders()
        side = OrderSide.SELL if exch.amt > 0 else OrderSide.BUY
        key = f"{self.symbol}|{exch.amt}|{exch.entry_price}|{exch.update_time}"
        cid = "tcrx" + hashlib.sha1(key.encode()).hexdigest()[:24]
        params = {"symbol": self.symbol, "side": side.value, "type": "MARKET", "quantity": _fmt(abs(exch.amt)),
                  "reduceOnly": "true", "newClientOrderId": cid, "newOrderRespType": "RESULT"}
        order = self._submit(f"closing untracked {self.symbol} position", self._client.futures_create_order,
                             params, lambda: self._lookup_order(cid))
        order = self._await_filled(order, cid)
        qty, px = float(order["executedQty"]), float(order["avgPrice"])
        fee = self._order_fee(int(order["orderId"]), qty, px)
        fill = Fill(int(order.get("updateTime", 0)), self.symbol, side, px, qty, fee, FillReason.FLATTEN, cid)
        self._refresh_cash()
        return fill

    def _resolve_vanished(self) -> tuple[Fill, Trade]:
        """Our position is gone from the exchange: find out how (protective order, liquidation,
        manual close) from the exchange records and record that exit."""
        p = self.position
        assert p is not None
        res, _ = self._inspect_protective(sorted(self._protective_ids()))
        if res is not None:
            return res
        exit_side = p.side.exit_order_side.value
        trades = self._closing_trades(
            [t for t in self._trades_between(p.entry_time, self._now_ms())
             if t.get("side") == exit_side and int(t["orderId"]) != self._entry_exchange_id], p.qty)
        if trades:
            last_id = int(trades[-1]["orderId"])
            last = self._lookup_order_by_id(last_id) or {}
            reason = self._exit_reason(last_id, str(last.get("clientOrderId") or ""),
                                       str(last.get("origType") or ""),
                                       _truthy(last.get("closePosition")) or _truthy(last.get("reduceOnly")))
            self._cancel_all_orders()
            return self._finish_exit(trades, reason)
        mark = self._mark if self._mark is not None else p.entry_price
        log.warning("no closing trade found for the vanished %s position; recording its exit at %g", self.symbol, mark)
        self._cancel_all_orders()
        return self._finish_exit([{"qty": p.qty, "price": mark, "commission": "0", "time": int(_time.time() * 1000)}],
                                 FillReason.FLATTEN)

    def _closing_trades(self, rows: list[dict[str, Any]], qty: float) -> list[dict[str, Any]]:
        """The exit-side trades (oldest first) that closed ``qty``: later ones belong to whatever
        was traded on the symbol after our position was gone."""
        out: list[dict[str, Any]] = []
        done = Decimal(0)
        need = _dec(qty) - (self._rules().step / 2 if self.rules is not None else Decimal(0))
        for t in rows:
            out.append(t)
            done += _dec(t["qty"])
            if done >= need:
                break
        return out

    def _finish_exit(self, trades: list[dict[str, Any]], reason: FillReason,
                     suffix: str | None = None, *, partial: bool = False) -> tuple[Fill, Trade]:
        """Record the exit made of ``trades`` (account trade rows: qty, price, commission, time).

        ``partial``: the trades closed only part of the position (e.g. a reduce-only order from
        the web): that part becomes its own round trip (fill suffix ``px``) carrying its share of
        the entry fee, the stake and the funding paid so far, and the position keeps the rest,
        so the round trips of one position always add up to its whole PnL, fees and funding."""
        p = self.position
        assert p is not None
        dqty = sum((_dec(t["qty"]) for t in trades), Decimal(0))
        qty = float(dqty)
        # Decimal: a single fill's average must be exactly its price
        notional = sum((_dec(t["qty"]) * _dec(t["price"]) for t in trades), Decimal(0))
        px = float(notional / dqty) if dqty else p.entry_price
        fee = float(sum((_dec(t.get("commission", 0)) for t in trades), Decimal(0)))
        when = max(int(t.get("time", 0)) for t in trades)
        gross = p.side.sign * qty * (px - p.entry_price)
        # funding since the entry, less what earlier partial closes already carried
        funding_open = self._funding_paid(p.entry_time, when) - self._funding_booked
        share = min(1.0, qty / p.qty) if partial and p.qty > 0 else 1.0
        entry_fee, funding, stake = p.entry_fee * share, funding_open * share, self._entry_stake * share
        suffix = "px" if partial else suffix or {FillReason.STOP_LOSS: "sl", FillReason.TAKE_PROFIT: "tp",
                                                 FillReason.LIQUIDATION: "lq"}.get(reason, "fx")
        fill = Fill(when, self.symbol, p.side.exit_order_side, px, qty, fee, reason, self._entry_order_id + suffix)
        trade = Trade(symbol=self.symbol, side=p.side, qty=qty, entry_time=p.entry_time, entry_price=p.entry_price,
                      exit_time=when, exit_price=px, pnl=gross - entry_fee - fee - funding,
                      fees=entry_fee + fee, funding=funding, exit_reason=reason, stake=stake)
        if partial:
            self.position = Position(p.symbol, p.side, float(_dec(p.qty) - dqty), p.entry_price, p.entry_time,
                                     p.entry_fee - entry_fee, p.leverage, p.stop_price, p.target_price,
                                     p.liquidation_price)
            self._entry_stake -= stake
            self._funding_booked += funding
        else:
            self.position = None
            self._funding_booked = 0.0
        self.fees_paid += fee
        self.funding_paid += funding
        self.cash += gross - fee
        self.fills.append(fill)
        self.trades.append(trade)
        log.info("%s %s %s %g at %g (%s), pnl %.4f", "partial exit" if partial else "exit", p.side.name.lower(),
                 self.symbol, qty, px, reason.value, trade.pnl)
        try:
            self._refresh_cash()
        except BinanceError as e:
            log.warning("could not refresh the wallet balance after an exit: %s", e)
        return fill, trade

    # ------------------------------------------------------------------ exchange reads
    def _rules(self) -> SymbolRules:
        assert self.rules is not None, "start() first"
        return self.rules

    def _refresh_cash(self) -> None:
        asked = self._now_ms()  # the answer reflects at least every balance change before this
        rows = self._request("reading the wallet balance", self._client.futures_account_balance)
        for r in rows:
            if r.get("asset") == "USDT":
                self.cash = float(r.get("balance", r.get("walletBalance", 0.0)))
                self._cash_time = max(self._cash_time, asked)
                return

    def _exchange_position(self) -> _ExchangePosition:
        rows = self._request("reading the position", self._client.futures_position_information, symbol=self.symbol)
        amt = Decimal(0)
        entry = liq = 0.0
        upd = 0
        for r in rows:
            if r.get("symbol") == self.symbol and r.get("positionSide", "BOTH") == "BOTH":
                amt = _dec(r.get("positionAmt", "0"))
                entry = float(r.get("entryPrice", 0) or 0)
                liq = float(r.get("liquidationPrice", 0) or 0)
                upd = int(r.get("updateTime", 0) or 0)
        return _ExchangePosition(amt, entry, liq, upd)

    def _open_regular_orders(self) -> list[dict[str, Any]]:
        return list(self._request("reading open orders", self._client.futures_get_open_orders, symbol=self.symbol))

    def _open_algo_orders(self) -> list[dict[str, Any]]:
        rows = self._request("reading open conditional orders", self._client.futures_get_open_algo_orders,
                             symbol=self.symbol)
        return [o for o in rows if o.get("symbol", self.symbol) == self.symbol]

    def _trades(self, **params: Any) -> list[dict[str, Any]]:
        return list(self._request("reading account trades", self._client.futures_account_trades,
                                  symbol=self.symbol, **params))

    def _trades_between(self, start: int, end: int) -> list[dict[str, Any]]:
        """Every account trade on the symbol with ``start <= time <= end``, oldest first.

        Binance (USD-M "Account Trade List", GET /fapi/v1/userTrades): startTime..endTime may span
        at most 7 days, ``limit`` defaults to 500 and is at most 1000, ``fromId`` cannot be combined
        with startTime/endTime, and only the past 6 months can be queried. So the range is read in
        7-day windows; a full page (1000 rows) moves the window's start to the last row's time
        (rows are deduplicated by trade id), and if a whole page shares one millisecond the rest
        is paged by ``fromId``."""
        oldest = self._now_ms() - _TRADES_HISTORY_MS
        if start < oldest:
            log.warning("userTrades only reaches back 6 months; reading %s trades from %s instead of %s",
                        self.symbol, _iso(oldest), _iso(start))
            start = oldest
        seen: set[int] = set()
        out: list[dict[str, Any]] = []

        def take(rows: list[dict[str, Any]]) -> None:
            for r in rows:
                tid = int(r.get("id", -1))
                if tid not in seen and start <= int(r.get("time", 0)) <= end:
                    seen.add(tid)
                    out.append(r)

        lo = start
        while lo <= end:
            hi = min(end, lo + _TRADES_WINDOW_MS - 1)
            cursor = lo
            while True:
                rows = self._trades(startTime=cursor, endTime=hi, limit=_TRADES_PAGE)
                take(rows)
                if len(rows) < _TRADES_PAGE:
                    break
                last = max(int(r["time"]) for r in rows)
                if last > cursor:
                    cursor = last
                    continue
                from_id = max(int(r["id"]) for r in rows) + 1  # one millisecond holds > 1000 trades
                while True:
                    more = self._trades(fromId=from_id, limit=_TRADES_PAGE)
                    take(more)
                    if len(more) < _TRADES_PAGE or max(int(r["time"]) for r in more) > hi:
                        break
                    from_id = max(int(r["id"]) for r in more) + 1
                break
            lo = hi + 1
        out.sort(key=lambda r: (int(r.get("time", 0)), int(r.get("id", 0))))
        return out

    def _funding_paid(self, start: int, end: int) -> float:
        """Funding paid (positive) or received (negative) while the position was open, from the
        income history, as the simulated broker accounts it. 0 with a warning if unreadable: the
        wallet balance (``cash``) includes funding either way."""
        try:
            rows = self._request("reading funding payments", self._client.futures_income_history,
                                 symbol=self.symbol, incomeType="FUNDING_FEE", startTime=start, endTime=end,
                                 limit=1000)
        except BinanceError as e:
            log.warning("could not read funding payments for the round trip: %s", e)
            return 0.0
        return -float(sum((_dec(r.get("income", 0)) for r in rows), Decimal(0)))

    def _order_fee(self, exchange_order_id: int, qty: float, px: float) -> float:
        trades = self._trades(orderId=exchange_order_id)
        if trades:
            return float(sum((_dec(t.get("commission", 0)) for t in trades), Decimal(0)))
        return qty * px * self.settings.fee_rate

    def _lookup_order(self, client_id: str) -> dict[str, Any] | None:
        return self._lookup("looking up order " + client_id, self._client.futures_get_order,
                            symbol=self.symbol, origClientOrderId=client_id)

    def _lookup_order_by_id(self, order_id: int) -> dict[str, Any] | None:
        return self._lookup(f"looking up order {order_id}", self._client.futures_get_order,
                            symbol=self.symbol, orderId=order_id)

    def _algo_ref(self, client_algo_id: str) -> dict[str, Any]:
        """How to name a protective order to Binance: by the algoId of its current placement when
        we have it (unambiguous), else by clientAlgoId (e.g. an order we did not place)."""
        aid = self._algo_ids.get(client_algo_id)
        return {"algoId": aid} if aid else {"clientAlgoId": client_algo_id}

    def _lookup_algo(self, client_algo_id: str) -> dict[str, Any] | None:
        return self._lookup("looking up conditional order " + client_algo_id, self._client.futures_get_algo_order,
                            **self._algo_ref(client_algo_id))

    def _lookup(self, op: str, fn: Callable[..., Any], **params: Any) -> dict[str, Any] | None:
        try:
            return self._request(op, fn, **params)
        except BinanceError as e:
            if e.code in _NOT_FOUND:
                return None
            raise

    def _await_filled(self, order: dict[str, Any], client_id: str, polls: int = 5) -> dict[str, Any]:
        """A MARKET order answered with ACK (status NEW) fills within milliseconds; poll until it
        reports its fill. Raise if it ends without filling."""
        for i in range(polls):
            status = order.get("status")
            if status == "FILLED" or (status in ("EXPIRED", "CANCELED") and float(order.get("executedQty", 0)) > 0):
                return order
            if status in ("EXPIRED", "CANCELED", "REJECTED", "EXPIRED_IN_MATCH"):
                break
            self._sleep(0.05 * (i + 1))
            found = self._lookup_order(client_id)
            if found is not None:
                order = found
        raise BinanceError(f"market order {client_id} on {self.symbol} did not fill (status {order.get('status')})",
                           operation="waiting for a market fill")

    # ------------------------------------------------------------------ cancels
    def _cancel_all_orders(self) -> None:
        self._request("canceling open orders", self._client.futures_cancel_all_open_orders, symbol=self.symbol)
        self._request("canceling open conditional orders", self._client.futures_cancel_all_algo_open_orders,
                      symbol=self.symbol)

    def _cancel_algo(self, client_algo_id: str, algo_id: int | None = None) -> None:
        ref = {"algoId": algo_id} if algo_id else self._algo_ref(client_algo_id)
        self._lookup("canceling conditional order " + client_algo_id, self._client.futures_cancel_algo_order, **ref)

    def _cancel_regular(self, order: dict[str, Any]) -> None:
        self._lookup(f"canceling order {order.get('clientOrderId')}", self._client.futures_cancel_order,
                     symbol=self.symbol, orderId=order["orderId"])

    # ------------------------------------------------------------------ request policy
    def _request(self, op: str, fn: Callable[..., Any], *, idempotent: bool = True, **params: Any) -> Any:
        """One REST call under the retry policy. Reads (``idempotent``) are retried on 5xx and
        timeouts; everything is retried once after re-syncing the clock on -1021 and after a short
        Retry-After on 429 (nothing executed in either case)."""
        resynced = False
        attempt = 0
        while True:
            err = self._attempt(op, fn, params)
            if not isinstance(err, BinanceError):
                return err
            if isinstance(err, TimestampOutOfSync) and not resynced:
                log.warning("Binance says our clock drifts (%s); re-syncing server time", err.api_message)
                self.sync_time()
                resynced = True
                continue
            if attempt >= self.max_retries:
                raise err
            if isinstance(err, RateLimited):
                if err.http_status == 418 or err.retry_after is None or err.retry_after > self.max_retry_wait:
                    raise err
                log.warning("rate limited while %s; waiting %gs", op, err.retry_after)
                self._sleep(err.retry_after)
            elif isinstance(err, ExchangeUnavailable) and idempotent:
                self._sleep(self.retry_backoff * (attempt + 1))
            else:
                raise err
            attempt += 1

    def _attempt(self, op: str, fn: Callable[..., Any], params: dict[str, Any]) -> Any:
        """Call once; return the result or the typed error (never raise python-binance types)."""
        try:
            return fn(**params)
        except BinanceAPIException as e:
            retry_after = None
            headers = getattr(getattr(e, "response", None), "headers", None) or {}
            if headers.get("Retry-After"):
                try:
                    retry_after = float(headers["Retry-After"])
                except ValueError:
                    retry_after = None
            code = e.code if isinstance(e.code, int) and e.code != 0 else None
            api_msg = self._redact(str(e.message or ""))[:300]
            return error_from_response(code, e.status_code, api_msg, op, retry_after)
        except requests.exceptions.Timeout:
            return ExchangeUnavailable(f"no answer from Binance in time while {op}; outcome unknown",
                                       code=None, operation=op)
        except (requests.exceptions.RequestException, BinanceRequestException) as e:
            return ExchangeUnavailable(f"could not reach Binance while {op}: {type(e).__name__}", operation=op)

    def _submit(self, op: str, fn: Callable[..., Any], params: dict[str, Any],
                lookup: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        """Send an order so that it exists exactly once. After an ambiguous failure (timeout, 5xx,
        execution-status-unknown codes) or a duplicate-id reject, look the client id up; re-send only
        when the exchange says it does not exist."""
        attempt = 0
        while True:
            try:
                return self._request(op, fn, idempotent=False, **params)
            except ExchangeUnavailable as e:
                log.warning("%s: outcome unknown (%s); checking the exchange before re-sending", op, e)
                found = self._verify_absent(op, lookup)
                if found is not None:
                    log.info("%s: the order was placed despite the error; not re-sending", op)
                    return found
                attempt += 1
                if attempt > self.max_retries:
                    raise ExchangeUnavailable(f"{op}: not placed after {attempt} attempts ({e}); verified absent",
                                              code=e.code, http_status=e.http_status, operation=op) from None
                self._sleep(self.retry_backoff * attempt)
            except BinanceError as e:
                if e.code not in DUPLICATE_ID_CODES:
                    raise
                found = lookup()
                if found is None:
                    raise
                log.info("%s: the exchange already has this client id; using that order", op)
                return found

    def _verify_absent(self, op: str, lookup: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
        try:
            return lookup()
        except BinanceError as e:
            raise ExchangeUnavailable(f"{op}: outcome unknown and the order could not be looked up ({e}); "
                                      "not re-sending blind", code=e.code, http_status=e.http_status,
                                      operation=op) from None

    # ------------------------------------------------------------------ misc
    def _redact(self, text: str) -> str:
        return redact(text, (self._client.API_KEY, self._client.API_SECRET))

    def _alert(self, message: str) -> None:
        message = self._redact(message)
        self.alerts.append(message)
        log.error("%s", message)
        if self._on_alert is not None:
            self._on_alert(message)

    def take_alerts(self) -> list[str]:
        """Alerts raised since the last call (protection failures, untracked positions...)."""
        out, self.alerts = self.alerts, []
        return out


# ---------------------------------------------------------------------------------------- (de)serialisation
def _fill_to_dict(f: Fill) -> dict[str, Any]:
    return {**asdict(f), "side": f.side.value, "reason": f.reason.value}


def _fill_from_dict(d: dict[str, Any]) -> Fill:
    return Fill(**{**d, "side": OrderSide(d["side"]), "reason": FillReason(d["reason"])})


def _trade_to_dict(t: Trade) -> dict[str, Any]:
    return {**asdict(t), "side": t.side.name, "exit_reason": t.exit_reason.value}


def _trade_from_dict(d: dict[str, Any]) -> Trade:
    return Trade(**{**d, "side": Side[d["side"]], "exit_reason": FillReason(d["exit_reason"])})

