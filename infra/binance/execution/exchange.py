"""Every REST read of the live broker and the one request policy all its calls go through.

Why one place: each read names its operation once (the error text says what the broker was
doing), and every call, read or order, meets the same rules for clock drift, rate limits and
transport failures.

Errors
    Binance codes become typed exceptions from ``tradeconsole.infra.binance.http.errors`` with the code and a human
    explanation. -1021 re-syncs the clock and retries once; 429 with a short Retry-After waits and
    retries, 418 and long waits raise ``RateLimited``; 5xx/timeouts on reads are retried.

Account trades
    ``GET /fapi/v1/userTrades`` answers at most 7 days between startTime and endTime, at most
    1000 rows per call, and not fromId with a time range: an exit found afterwards (manual close,
    liquidation) of a position of any age is read in 7-day windows with paging.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradeconsole.core.domain import iso_ms as _iso
from tradeconsole.infra.binance.execution.rules import SymbolRules, _dec
from tradeconsole.infra.binance.http.errors import (
    BinanceError,
    ExchangeUnavailable,
    RateLimited,
    TimestampOutOfSync,
    error_from_exception,
)
from tradeconsole.infra.retry import RetryPolicy, retry_call

log = logging.getLogger(__name__)
_NOT_FOUND = (-2013, -2011)
_TRADES_WINDOW_MS = 7 * 24 * 3600 * 1000  # userTrades: startTime..endTime at most 7 days
_TRADES_PAGE = 1000  # userTrades: limit default 500, max 1000
_TRADES_HISTORY_MS = 180 * 24 * 3600 * 1000  # userTrades: only the past 6 months


@dataclass(frozen=True, slots=True)
class _ExchangePosition:
    amt: Decimal
    entry_price: float
    liquidation_price: float
    update_time: int


class ExchangeReads:
    """REST reads (clock, wallet, position, open orders, account trades, funding, order lookups)
    under the request policy.

    One part of ``BinanceFuturesBroker`` (a mixin: it shares the broker's state, set up in
    ``BinanceFuturesBroker.__init__``, and calls the other parts through ``self``)."""

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

    def _now_ms(self) -> int:
        """Exchange time (our clock plus the measured offset)."""
        return int(_time.time() * 1000) + int(getattr(self._client, "timestamp_offset", 0) or 0)

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
        rows = self._request(
            "reading open conditional orders", self._client.futures_get_open_algo_orders, symbol=self.symbol
        )
        return [o for o in rows if o.get("symbol", self.symbol) == self.symbol]

    def _trades(self, **params: Any) -> list[dict[str, Any]]:
        return list(
            self._request("reading account trades", self._client.futures_account_trades, symbol=self.symbol, **params)
        )

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
            log.warning(
                "userTrades only reaches back 6 months; reading %s trades from %s instead of %s",
                self.symbol,
                _iso(oldest),
                _iso(start),
            )
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
            rows = self._request(
                "reading funding payments",
                self._client.futures_income_history,
                symbol=self.symbol,
                incomeType="FUNDING_FEE",
                startTime=start,
                endTime=end,
                limit=1000,
            )
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
        return self._lookup(
            "looking up order " + client_id,
            self._client.futures_get_order,
            symbol=self.symbol,
            origClientOrderId=client_id,
        )

    def _lookup_order_by_id(self, order_id: int) -> dict[str, Any] | None:
        return self._lookup(
            f"looking up order {order_id}", self._client.futures_get_order, symbol=self.symbol, orderId=order_id
        )

    def _algo_ref(self, client_algo_id: str) -> dict[str, Any]:
        """How to name a protective order to Binance: by the algoId of its current placement when
        we have it (unambiguous), else by clientAlgoId (e.g. an order we did not place)."""
        aid = self._algo_ids.get(client_algo_id)
        return {"algoId": aid} if aid else {"clientAlgoId": client_algo_id}

    def _lookup_algo(self, client_algo_id: str) -> dict[str, Any] | None:
        return self._lookup(
            "looking up conditional order " + client_algo_id,
            self._client.futures_get_algo_order,
            **self._algo_ref(client_algo_id),
        )

    def _lookup(self, op: str, fn: Callable[..., Any], **params: Any) -> dict[str, Any] | None:
        try:
            return self._request(op, fn, **params)
        except BinanceError as e:
            if e.code in _NOT_FOUND:
                return None
            raise

    def _retry_policy(self) -> RetryPolicy:
        """The broker's share of the one retry policy (``tradeconsole.infra.retry``): at most
        ``max_retries`` retries, backing off from ``retry_backoff`` seconds."""
        return RetryPolicy(
            initial_s=self.retry_backoff,
            max_s=max(self.retry_backoff, self.max_retry_wait),
            max_attempts=self.max_retries + 1,
        )

    def _request(self, op: str, fn: Callable[..., Any], *, idempotent: bool = True, **params: Any) -> Any:
        """One REST call under the retry policy. Reads (``idempotent``) are retried on 5xx and
        timeouts; everything is retried once after re-syncing the clock on -1021 and after a short
        Retry-After on 429 (nothing executed in either case); a 418 (IP ban) or a Retry-After
        longer than ``max_retry_wait`` raises ``RateLimited`` at once."""
        resynced = False

        def once() -> Any:
            nonlocal resynced
            result = self._attempt(op, fn, params)
            if isinstance(result, TimestampOutOfSync) and not resynced:
                log.warning("Binance says our clock drifts (%s); re-syncing server time", result.api_message)
                self.sync_time()
                resynced = True
                result = self._attempt(op, fn, params)
            if isinstance(result, BinanceError):
                raise result
            return result

        def classify(exc: BaseException) -> float | bool | None:
            if isinstance(exc, RateLimited):
                if exc.http_status == 418 or exc.retry_after is None or exc.retry_after > self.max_retry_wait:
                    return None
                return exc.retry_after
            return True if isinstance(exc, ExchangeUnavailable) and idempotent else None

        return retry_call(once, name=op, classify=classify, policy=self._retry_policy(), sleep=self._sleep, logger=log)

    def _attempt(self, op: str, fn: Callable[..., Any], params: dict[str, Any]) -> Any:
        """Call once; return the result or the typed error (never raise python-binance types)."""
        try:
            return fn(**params)
        except Exception as e:
            err = error_from_exception(e, op, (self._client.API_KEY, self._client.API_SECRET))
            if err is None:
                raise
            return err
