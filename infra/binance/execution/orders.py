"""Orders that exist exactly once: idempotent submission by client order id, waiting for a market
fill, and cancels.

No doubled orders
    Every order carries a client id derived from the signal (``tradeconsole.core.broker.client_order_id``) or
    from the entry id plus a suffix (``sl``, ``tp``, ``fx``). Binance only rejects a duplicate id
    while the first order is *open*, and a MARKET order is never open for long, so the exchange
    alone cannot stop a double entry. Hence: before an entry is sent the id is looked up; after a
    timeout, a 5xx or an "execution status unknown" code the id is looked up again and the order
    is re-sent only when the exchange says it does not exist; a duplicate-id reject (-4116, -2010)
    is resolved by the same lookup. If the lookup itself cannot be answered the broker raises
    ``ExchangeUnavailable`` rather than re-send blind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tradeconsole.infra.binance.http.errors import DUPLICATE_ID_CODES, BinanceError, ExchangeUnavailable
from tradeconsole.infra.retry import Backoff

log = logging.getLogger(__name__)


class OrderSubmission:
    """Idempotent order submission and cancels.

    One part of ``BinanceFuturesBroker`` (a mixin: it shares the broker's state, set up in
    ``BinanceFuturesBroker.__init__``, and calls the other parts through ``self``)."""

    def _submit(
        self, op: str, fn: Callable[..., Any], params: dict[str, Any], lookup: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Send an order so that it exists exactly once. After an ambiguous failure (timeout, 5xx,
        execution-status-unknown codes) or a duplicate-id reject, look the client id up; re-send only
        when the exchange says it does not exist."""
        backoff = Backoff(op, self._retry_policy(), logger=log, sleep=self._sleep)
        while True:
            try:
                return self._request(op, fn, idempotent=False, **params)
            except ExchangeUnavailable as e:
                log.warning("%s: outcome unknown (%s); checking the exchange before re-sending", op, e)
                found = self._verify_absent(op, lookup)
                if found is not None:
                    log.info("%s: the order was placed despite the error; not re-sending", op)
                    return found
                delay = backoff.failed(f"verified absent after: {e}")
                if backoff.exhausted:
                    raise ExchangeUnavailable(
                        f"{op}: not placed after {backoff.failures} attempts ({e}); verified absent",
                        code=e.code,
                        http_status=e.http_status,
                        operation=op,
                    ) from None
                backoff.wait(delay)
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
            raise ExchangeUnavailable(
                f"{op}: outcome unknown and the order could not be looked up ({e}); not re-sending blind",
                code=e.code,
                http_status=e.http_status,
                operation=op,
            ) from None

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
        raise BinanceError(
            f"market order {client_id} on {self.symbol} did not fill (status {order.get('status')})",
            operation="waiting for a market fill",
        )

    def _cancel_all_orders(self) -> None:
        self._request("canceling open orders", self._client.futures_cancel_all_open_orders, symbol=self.symbol)
        self._request(
            "canceling open conditional orders", self._client.futures_cancel_all_algo_open_orders, symbol=self.symbol
        )

    def _cancel_algo(self, client_algo_id: str, algo_id: int | None = None) -> None:
        ref = {"algoId": algo_id} if algo_id else self._algo_ref(client_algo_id)
        self._lookup("canceling conditional order " + client_algo_id, self._client.futures_cancel_algo_order, **ref)

    def _cancel_regular(self, order: dict[str, Any]) -> None:
        self._lookup(
            f"canceling order {order.get('clientOrderId')}",
            self._client.futures_cancel_order,
            symbol=self.symbol,
            orderId=order["orderId"],
        )
