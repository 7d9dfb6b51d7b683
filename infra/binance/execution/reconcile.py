"""Reconciliation with the exchange, and adoption of a position the console lost track of.

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
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from typing import Any

from tradeconsole.core.domain import Fill, Position, Side, Trade
from tradeconsole.infra.binance.execution.exchange import _ExchangePosition
from tradeconsole.infra.binance.execution.rules import _dec, _fmt
from tradeconsole.infra.binance.http.errors import BinanceError

__all__ = ["Finding", "FindingKind"]

log = logging.getLogger(__name__)
_OWN_PROTECTIVE_ID = re.compile(r"^(tc[0-9a-f]{24})(sl|tp)$")


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


class Reconcile:
    """``reconcile()`` and its rules.

    One part of ``BinanceFuturesBroker`` (a mixin: it shares the broker's state, set up in
    ``BinanceFuturesBroker.__init__``, and calls the other parts through ``self``)."""

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
                findings.append(
                    Finding(
                        FindingKind.POSITION_CLOSED,
                        f"the {p.side.name.lower()} {self.symbol} position of {p.qty:g} we hold is flat on the exchange",
                        f"recorded its exit ({trade.exit_reason.value} at {fill.price:g}) from the exchange's records",
                        fill,
                        trade,
                    )
                )
            elif not same_side:
                fill, trade = self._resolve_vanished()
                self._queued.append((fill, trade))
                findings.append(
                    Finding(
                        FindingKind.SIDE_MISMATCH,
                        f"we hold a {p.side.name.lower()} {self.symbol} position but the exchange holds {_fmt(exch.amt)}",
                        f"recorded our position's exit ({trade.exit_reason.value} at {fill.price:g}); the exchange "
                        "position is handled as unknown",
                        fill,
                        trade,
                    )
                )
            elif abs(abs(exch.amt) - _dec(p.qty)) > self._rules().step / 2:
                old = p.qty
                self.position = Position(
                    p.symbol,
                    p.side,
                    float(abs(exch.amt)),
                    exch.entry_price or p.entry_price,
                    p.entry_time,
                    p.entry_fee,
                    p.leverage,
                    p.stop_price,
                    p.target_price,
                    exch.liquidation_price or p.liquidation_price,
                )
                findings.append(
                    Finding(
                        FindingKind.QTY_MISMATCH,
                        f"we hold {old:g} {self.symbol} but the exchange holds {_fmt(abs(exch.amt))}",
                        "adopted the exchange quantity and entry price (protective orders close the whole position)",
                    )
                )
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
        desc = (
            f"the exchange holds a {side.name.lower()} {self.symbol} position of {_fmt(abs(exch.amt))} we do not know"
        )
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
                return Finding(
                    FindingKind.UNKNOWN_POSITION,
                    desc,
                    f"adopted it: traced to our entry {entry_id} and protected by our stop "
                    f"{levels['sl']['triggerPrice']} and target {levels['tp']['triggerPrice']}",
                )
        fill = self._close_untracked(exch)
        return Finding(
            FindingKind.UNKNOWN_POSITION,
            desc,
            f"closed it with a reduce-only market order at {fill.price:g}: it has no stop and target "
            "we know, so keeping it would leave it unprotected",
            fill,
        )

    def _adopt(
        self,
        order: dict[str, Any],
        side: Side,
        entry_id: str,
        exch: _ExchangePosition,
        levels: dict[str, dict[str, Any]],
    ) -> None:
        px = float(order.get("avgPrice") or exch.entry_price)
        qty = float(abs(exch.amt))
        fee = self._order_fee(int(order["orderId"]), qty, px)
        stop, target = float(levels["sl"]["triggerPrice"]), float(levels["tp"]["triggerPrice"])
        self.position = Position(
            self.symbol,
            side,
            qty,
            exch.entry_price or px,
            int(order.get("updateTime", 0)),
            fee,
            float(self.leverage),
            stop,
            target,
            exch.liquidation_price,
        )
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
            out.append(
                Finding(
                    FindingKind.STRAY_ORDER,
                    f"open {o.get('type')} {o.get('side')} order {o.get('clientOrderId')} on {self.symbol} "
                    "is not ours to keep",
                    "canceled it",
                )
            )
        for o in self._open_algo_orders():
            cid = o.get("clientAlgoId", "")
            if cid in keep:
                continue
            self._cancel_algo(cid, int(o.get("algoId") or 0) or None)
            out.append(
                Finding(
                    FindingKind.STRAY_ORDER,
                    f"open {o.get('orderType')} {o.get('side')} conditional order {cid} at "
                    f"{o.get('triggerPrice')} on {self.symbol} is not one of our protective orders",
                    "canceled it",
                )
            )
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
            return [
                Finding(
                    FindingKind.POSITION_CLOSED,
                    f"protective order {fill.order_id} fired",
                    f"recorded the exit at {fill.price:g}",
                    fill,
                    trade,
                )
            ]
        if in_flight:  # triggered, its market order is being executed: nothing to re-place
            return []
        msg = f"protective order(s) {', '.join(missing)} missing on the exchange while the position is open"
        try:
            self._protect()
        except BinanceError as e:
            fill, trade = self._protection_failed(str(e), None)
            return [
                Finding(
                    FindingKind.PROTECTION_MISSING,
                    msg,
                    f"re-placing failed ({e}); closed the position at {fill.price:g}",
                    fill,
                    trade,
                )
            ]
        return [Finding(FindingKind.PROTECTION_MISSING, msg, "re-placed them at the recorded levels")]
