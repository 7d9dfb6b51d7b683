"""Live Binance USD-M futures broker: the ``tradeconsole.core.broker_protocol.Broker`` Protocol, as
the simulated broker implements it, trading for real through python-binance (REST only).

Where each job lives, and what it guarantees (each module's docstring says how); the broker is one
class composed of parts (mixins) that share its state:

``rules``           symbol filters, rounding, minimum notional (``SymbolRules``)
``exchange``        every REST read and the one request policy (clock drift, rate limits, 5xx)
``orders``          idempotent submission by client order id, market fills, cancels
``protection``      protective (algo) orders, their statuses and re-placement
``exits``           entry and exit records, closing positions, round trips from account trades
``stream_events``   the user data stream applied on the engine thread
``reconcile``       reconciliation with the exchange and adoption (``Finding``, ``FindingKind``)
``broker``          this module: the class, start-up and account modes, the ``Broker`` surface,
                    feed provenance, ``snapshot``/``restore``, alerts

Account modes (read by ``start()``)
    Hedge position mode (``GET /fapi/v1/positionSide/dual``) is refused with a one-line
    ``AccountModeUnsupported`` before anything is sent. Multi-Assets mode
    (``GET /fapi/v1/multiAssetsMargin``) refuses ISOLATED margin (-4168): CROSSED is used there,
    with an alert.

Feed provenance
    ``check_feed`` refuses candles not tagged as coming from the exchange (a replay): the engine
    calls it before any candle reaches this broker.

Secrets
    The API key and secret live only inside the python-binance client. They are never logged, never
    put in exception text (errors are built from codes and server messages, then redacted), never
    in ``snapshot()`` and not in ``repr()``.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from binance.client import Client
from tradeconsole.core.broker import BrokerSettings
from tradeconsole.core.broker_protocol import Broker
from tradeconsole.core.config import DEFAULT_ENDPOINTS, TESTNET_ENDPOINTS, BinanceEndpoints
from tradeconsole.core.domain import Candle, Fill, FillReason, OrderSide, Position, Side, Trade
from tradeconsole.core.feed import CANDLE_SOURCE_EXCHANGE
from tradeconsole.infra.binance.execution.exchange import ExchangeReads
from tradeconsole.infra.binance.execution.exits import Exits
from tradeconsole.infra.binance.execution.orders import OrderSubmission
from tradeconsole.infra.binance.execution.protection import Protection
from tradeconsole.infra.binance.execution.reconcile import Finding, FindingKind, Reconcile
from tradeconsole.infra.binance.execution.rules import SymbolRules, _fmt, _truthy
from tradeconsole.infra.binance.execution.stream_events import StreamEvents
from tradeconsole.infra.binance.http.errors import AccountModeUnsupported, BinanceError, FeedRefused, redact

__all__ = ["BinanceFuturesBroker", "Finding", "FindingKind", "SymbolRules"]

log = logging.getLogger(__name__)

_WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")
_SNAPSHOT_VERSION = 1


class BinanceFuturesBroker(StreamEvents, Reconcile, Protection, Exits, OrderSubmission, ExchangeReads, Broker):
    """One symbol, isolated margin (CROSSED in Multi-Assets mode), one-way mode, one position at
    a time, market entries."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        symbol: str,
        *,
        endpoints: BinanceEndpoints | None = None,
        testnet: bool = False,
        leverage: int | None = None,
        settings: BrokerSettings = BrokerSettings(),
        working_type: str = "MARK_PRICE",
        size_buffer: float = 0.002,
        request_timeout: float = 10.0,
        max_retries: int = 2,
        max_retry_wait: float = 5.0,
        retry_backoff: float = 0.25,
        sleep: Callable[[float], None] = _time.sleep,
        on_alert: Callable[[str], None] | None = None,
        trigger_grace_ms: int = 15_000,
    ) -> None:
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

    def start(self) -> None:
        """Sync the clock, read the symbol's filters, set leverage and ISOLATED margin, read the
        wallet. Idempotent; other methods call it lazily."""
        self.sync_time()
        info = self._request("reading exchange info", self._client.futures_exchange_info)
        self.rules = SymbolRules.from_exchange_info(info, self.symbol)
        self._check_account_modes()
        self._request(
            "setting leverage", self._client.futures_change_leverage, symbol=self.symbol, leverage=self.leverage
        )
        try:
            self._request(
                f"setting {self.margin_type.lower()} margin",
                self._client.futures_change_margin_type,
                symbol=self.symbol,
                marginType=self.margin_type,
            )
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
                operation="reading the position mode",
            )
        multi = self._request("reading the Multi-Assets mode", self._client.futures_get_multi_assets_mode)
        self.multi_assets = _truthy(multi.get("multiAssetsMargin"))
        if self.multi_assets and self.margin_type == "ISOLATED":
            self.margin_type = "CROSSED"
            self._alert(
                f"the account is in Multi-Assets mode, where Binance refuses ISOLATED margin (-4168): "
                f"{self.symbol} is traded with CROSSED margin (the whole wallet backs the position)"
            )

    def _ensure_started(self) -> SymbolRules:
        if not self._started or self.rules is None:
            self.start()
        assert self.rules is not None
        return self.rules

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

    @property
    def entry_order_id(self) -> str:
        """The open position's entry client order id ("" when flat)."""
        return self._entry_order_id

    def take_stop_move(self) -> tuple[float, float] | None:
        """The live broker does not trail its exchange stop: never a move to publish."""
        return None

    #: managed exits are refused for live trading at start: never one pending
    pending_exit: str | None = None

    def submit_exit(self, candle: Candle, reason: FillReason) -> tuple[Fill, Trade] | None:
        """Exit signals and time exits are not traded live (the runtime refuses such strategies
        before start); reaching this is a bug, and it must not pass silently."""
        raise NotImplementedError(f"{reason.value} exits are not supported by the live Binance broker")

    def fill_pending_exit(self, candle: Candle) -> None:
        """Nothing is ever pending (see ``pending_exit``)."""
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

    def submit_entry(
        self,
        side: Side,
        candle: Candle,
        order_id: str,
        stop_loss_pct: float,
        take_profit_pct: float,
        stake_fraction: float = 1.0,
        plan: Any = None,
    ) -> Fill | None:
        """Enter at market now (right after ``candle`` closed), then protect the position on the
        exchange. Sized like the realistic simulation (margin plus fee equals the stake) from
        ``candle.close``, rounded down to the step. Returns the entry fill; None when already in a
        position (one at a time) or when ``order_id`` was already executed and its position is
        gone. Raises ``OrderRejected`` subclasses on filter/margin rejects. A declared exit
        ``plan`` is refused: the runtime refuses such strategies before start, so reaching it is a
        bug that must not trade with exits nobody places."""
        if plan is not None:
            raise NotImplementedError("declared exit plans are not supported by the live Binance broker")
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
            params = {
                "symbol": self.symbol,
                "side": side.entry_order_side.value,
                "type": "MARKET",
                "quantity": _fmt(qty),
                "newClientOrderId": order_id,
                "newOrderRespType": "RESULT",
            }
            order = self._submit(
                f"placing entry {order_id}",
                self._client.futures_create_order,
                params,
                lambda: self._lookup_order(order_id),
            )
        else:
            log.warning(
                "entry %s already exists on the exchange (status %s); not sending it again",
                order_id,
                existing.get("status"),
            )
            stake = 0.0
            order = existing
        order = self._await_filled(order, order_id)
        exch = self._exchange_position()
        if existing is not None and (exch.amt == 0 or (exch.amt > 0) != (side is Side.LONG)):
            self._alert(
                f"entry {order_id} was executed earlier and its position on {self.symbol} is already "
                "closed; not entering again"
            )
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

    def check_feed(self, source: str) -> None:
        """Refuse candles that are not from the exchange's live feed (its websocket stream or its
        REST backfill): a replay of history must never drive real orders. The engine calls this
        with each candle's ``source`` tag before the candle reaches ``on_candle``/``submit_entry``."""
        if source != CANDLE_SOURCE_EXCHANGE:
            raise FeedRefused(
                f"the {'testnet' if self.testnet else 'live'} broker for {self.symbol} refuses a candle from "
                f"{source or 'an untagged source'!s}: only candles from the Binance live feed may drive real orders"
            )

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
            "queued": [
                {"fill": _fill_to_dict(f), "trade": None if t is None else _trade_to_dict(t)} for f, t in self._queued
            ],
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
        self._queued = [
            (_fill_from_dict(q["fill"]), None if q["trade"] is None else _trade_from_dict(q["trade"]))
            for q in state.get("queued", [])
        ]

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


def _fill_to_dict(f: Fill) -> dict[str, Any]:
    return {**asdict(f), "side": f.side.value, "reason": f.reason.value}


def _fill_from_dict(d: dict[str, Any]) -> Fill:
    return Fill(**{**d, "side": OrderSide(d["side"]), "reason": FillReason(d["reason"])})


def _trade_to_dict(t: Trade) -> dict[str, Any]:
    return {**asdict(t), "side": t.side.name, "exit_reason": t.exit_reason.value}


def _trade_from_dict(d: dict[str, Any]) -> Trade:
    return Trade(**{**d, "side": Side[d["side"]], "exit_reason": FillReason(d["exit_reason"])})
