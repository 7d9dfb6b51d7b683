"""The user data stream applied to the broker, on the engine thread.

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
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from tradeconsole.core.domain import Fill, FillReason, Side, Trade
from tradeconsole.core.domain import iso_ms as _iso
from tradeconsole.infra.binance.execution.rules import _dec, _fmt, _truthy

log = logging.getLogger(__name__)


class StreamEvents:
    """User data stream events.

    One part of ``BinanceFuturesBroker`` (a mixin: it shares the broker's state, set up in
    ``BinanceFuturesBroker.__init__``, and calls the other parts through ``self``)."""

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
                    log.info(
                        "ignoring a %s wallet balance from %s: older than the last applied one (%s)",
                        self.symbol,
                        _iso(when),
                        _iso(self._cash_time),
                    )
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
                    self._note_dead(
                        {"algoId": self._algo_by_order.get(oid, 0), "clientAlgoId": cid},
                        f"its market order {oid} ended {status} without a trade",
                    )
                    return self._reprotect_if_open()
            return None
        exch = self._exchange_position()
        cid = str(o.get("c") or "")
        if exch.amt != 0 and (exch.amt > 0) == (p.side is Side.LONG):
            if _dec(p.qty) - abs(exch.amt) > self._rules().step / 2:  # partly closed: record it, protect the rest
                log.warning("%s order %s closed part of the position (%s left)", self.symbol, cid, _fmt(abs(exch.amt)))
                trades = self._order_trades(o)
                closed = sum((_dec(t["qty"]) for t in trades), Decimal(0))
                if 0 < closed < _dec(p.qty):
                    reason = self._exit_reason(
                        int(o["i"]),
                        cid,
                        str(o.get("ot") or ""),
                        _truthy(o.get("cp")) or _truthy(o.get("R")),
                        o.get("o") == "LIQUIDATION",
                    )
                    # queued at once: delivered with this event, or later if what follows raises
                    self._queued.append(self._finish_exit(trades, reason, partial=True))
                final = self._reprotect_if_open()  # the rest, protected (or closed if impossible)
                if final is not None:
                    self._queued.append(final)
            return None
        trades = self._order_trades(o)
        reason = self._exit_reason(
            int(o["i"]),
            cid,
            str(o.get("ot") or ""),
            _truthy(o.get("cp")) or _truthy(o.get("R")),
            o.get("o") == "LIQUIDATION",
        )
        if reason is FillReason.STOP_LOSS:
            return self._exit_by_protective(self._entry_order_id + "sl", trades)
        if reason is FillReason.TAKE_PROFIT:
            return self._exit_by_protective(self._entry_order_id + "tp", trades)
        self._cancel_all_orders()
        return self._finish_exit(trades, reason)

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
