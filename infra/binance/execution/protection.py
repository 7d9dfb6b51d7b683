"""Protective (algo) orders: placing the stop and target of a position, reading their statuses,
and re-placing a dead one (or closing the position when that is impossible).

No unprotected position
    Right after an entry fills, a STOP_MARKET and a TAKE_PROFIT_MARKET (``closePosition=true``,
    ``workingType`` configurable, client ids ``<entry id>sl`` / ``<entry id>tp``) are placed on the
    exchange through the algo order API (Binance moved conditional orders there in December 2025),
    so the position stays protected if the console dies. Each is then named to Binance by the
    ``algoId`` its placement returned (kept in ``snapshot()``): a re-placed stop reuses its
    clientAlgoId, which Binance keeps unique only among *open* orders. If either cannot be placed, the position
    is closed at once with a reduce-only MARKET order and an alert is raised; if even that fails,
    ``ProtectionFailed`` is raised (the position is unprotected: the engine must alert loudly).

Algo order statuses (Binance "Algo Order Update" / Query Algo Order)
    NEW: open. TRIGGERING / TRIGGERED: on its way through the matching engine, wait (at most
    ``trigger_grace_ms``, then it is canceled and treated as dead). FINISHED ("filled or canceled
    in the matching engine"): with trades on its ``actualOrderId`` it is the exit; with a market
    order that ended CANCELED/EXPIRED without a trade, or without an order at all, it is dead.
    CANCELED / EXPIRED / REJECTED: dead. A dead protective order while the position is open is
    re-placed at the recorded level with an alert; if that is impossible (e.g. the price is
    already beyond the stop: -2021), the position is closed at market. Never left bare.
"""

from __future__ import annotations

import logging
from typing import Any

from tradeconsole.core.domain import Fill, FillReason, Position, Side, Trade
from tradeconsole.infra.binance.execution.rules import _dec, _fmt
from tradeconsole.infra.binance.http.errors import BinanceError, ProtectionFailed

log = logging.getLogger(__name__)


class Protection:
    """Protective orders of the open position.

    One part of ``BinanceFuturesBroker`` (a mixin: it shares the broker's state, set up in
    ``BinanceFuturesBroker.__init__``, and calls the other parts through ``self``)."""

    def _protective_ids(self) -> set[str]:
        return {self._entry_order_id + "sl", self._entry_order_id + "tp"}

    def _protective_ids_of(self, fired: str) -> list[str]:
        base = fired[:-2]
        return [base + k for k in ("sl", "tp") if base + k != fired]

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
            params = {
                "symbol": self.symbol,
                "side": exit_side,
                "type": otype,
                "algoType": "CONDITIONAL",
                "triggerPrice": _fmt(rules.round_price(level)),
                "closePosition": "true",
                "workingType": self.working_type,
                "clientAlgoId": cid,
            }
            placed = self._submit(
                f"placing {otype} {cid}",
                self._client.futures_create_algo_order,
                params,
                lambda cid=cid: self._live_algo(cid),
            )
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
                f"failed too ({e}); reconcile() keeps retrying",
                code=e.code,
                http_status=e.http_status,
                operation="protecting a new position",
            )
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
            f"protective order(s) {', '.join(missing)} on {self.symbol} disappeared; re-placing them"
        )

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
                    if (
                        ostatus in ("CANCELED", "EXPIRED", "REJECTED", "EXPIRED_IN_MATCH")
                        and float(order.get("executedQty") or 0) == 0
                    ):  # type: ignore[union-attr]
                        self._note_dead(algo, f"its market order {actual} ended {ostatus} without a trade")
                        continue
                if fresh:
                    in_flight = True
                else:
                    self._note_dead(
                        algo,
                        f"still {status} {(now - triggered_at) / 1000:.0f} s after triggering "
                        "with no trade on the account",
                    )
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
        self._alert(
            f"protective order {algo.get('clientAlgoId')} on {self.symbol} fired but did not close the "
            f"position ({why}); re-protecting it (or closing it if that is impossible)"
        )

    def _exit_by_protective(self, cid: str, trades: list[dict[str, Any]]) -> tuple[Fill, Trade]:
        reason = FillReason.STOP_LOSS if cid.endswith("sl") else FillReason.TAKE_PROFIT
        res = self._finish_exit(trades, reason)
        for other in self._protective_ids_of(cid):
            try:
                self._cancel_algo(other)
            except BinanceError as e:  # the exit is recorded; the leftover is canceled before
                log.warning(
                    "could not cancel %s after %s filled (%s); it is canceled before the next entry and by reconcile()",
                    other,
                    cid,
                    e,
                )
        return res

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
            self.position = Position(
                p.symbol,
                p.side,
                float(abs(exch.amt)),
                p.entry_price,
                p.entry_time,
                p.entry_fee,
                p.leverage,
                p.stop_price,
                p.target_price,
                p.liquidation_price,
            )
        try:
            self._protect()
        except BinanceError as e:
            res = self._protection_failed(str(e), None)
            self._queued.remove(res)
            return res
        return None
