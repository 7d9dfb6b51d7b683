"""Entries and exits as the exchange recorded them: the entry fill with its levels, closing a
position (ours or one we do not know), finding out how a vanished position was closed, and the
round trip made of the closing trades (true price, fee and funding; partial closes).
"""

from __future__ import annotations

import hashlib
import logging
import time as _time
from decimal import Decimal
from typing import Any

from tradeconsole.core.domain import Fill, FillReason, OrderSide, Position, Side, Trade
from tradeconsole.infra.binance.execution.exchange import _ExchangePosition
from tradeconsole.infra.binance.execution.rules import _dec, _fmt, _truthy
from tradeconsole.infra.binance.http.errors import BinanceError, ReduceOnlyRejected

log = logging.getLogger(__name__)


class Exits:
    """Recording entries and exits.

    One part of ``BinanceFuturesBroker`` (a mixin: it shares the broker's state, set up in
    ``BinanceFuturesBroker.__init__``, and calls the other parts through ``self``)."""

    def _record_entry(
        self,
        order: dict[str, Any],
        side: Side,
        order_id: str,
        sl_pct: float,
        tp_pct: float,
        stake: float,
        exch: _ExchangePosition,
    ) -> Fill:
        rules = self._rules()
        qty = float(order["executedQty"])
        px = float(order["avgPrice"])
        t = int(order.get("updateTime") or order.get("time") or 0)
        fee = self._order_fee(int(order["orderId"]), qty, px)
        sign = side.sign
        stop = float(rules.round_price(px * (1 - sl_pct) if sign > 0 else px * (1 + sl_pct)))
        target = float(rules.round_price(px * (1 + tp_pct) if sign > 0 else px * (1 - tp_pct)))
        mmr = self.settings.maintenance_margin_rate
        liq = exch.liquidation_price or (
            px * (1 - 1 / self.leverage + mmr) if sign > 0 else px * (1 + 1 / self.leverage - mmr)
        )
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

    def _close_position(self, reason: FillReason, suffix: str) -> tuple[Fill, Trade] | None:
        """Cancel open orders, close the exchange position reduce-only, record the round trip."""
        p = self.position
        assert p is not None
        self._cancel_all_orders()
        exch = self._exchange_position()
        if exch.amt == 0 or (exch.amt > 0) != (p.side is Side.LONG):
            return self._resolve_vanished()
        cid = self._entry_order_id + suffix
        params = {
            "symbol": self.symbol,
            "side": p.side.exit_order_side.value,
            "type": "MARKET",
            "quantity": _fmt(abs(exch.amt)),
            "reduceOnly": "true",
            "newClientOrderId": cid,
            "newOrderRespType": "RESULT",
        }
        try:
            order = self._submit(
                f"closing {self.symbol} ({cid})",
                self._client.futures_create_order,
                params,
                lambda: self._lookup_order(cid),
            )
        except ReduceOnlyRejected:
            return self._resolve_vanished()
        order = self._await_filled(order, cid)
        trades = self._trades(orderId=int(order["orderId"]))
        if not trades:  # not visible yet: the order itself says qty and price; estimate the fee
            est = float(order["executedQty"]) * float(order["avgPrice"]) * self.settings.fee_rate
            trades = [
                {
                    "qty": order["executedQty"],
                    "price": order["avgPrice"],
                    "commission": str(est),
                    "time": order.get("updateTime", 0),
                }
            ]
        return self._finish_exit(trades, reason, suffix)

    def _close_untracked(self, exch: _ExchangePosition) -> Fill:
        """Close a position the broker does not own (no round trip to record)."""
        self._cancel_all_orders()
        side = OrderSide.SELL if exch.amt > 0 else OrderSide.BUY
        key = f"{self.symbol}|{exch.amt}|{exch.entry_price}|{exch.update_time}"
        cid = "tcrx" + hashlib.sha1(key.encode()).hexdigest()[:24]
        params = {
            "symbol": self.symbol,
            "side": side.value,
            "type": "MARKET",
            "quantity": _fmt(abs(exch.amt)),
            "reduceOnly": "true",
            "newClientOrderId": cid,
            "newOrderRespType": "RESULT",
        }
        order = self._submit(
            f"closing untracked {self.symbol} position",
            self._client.futures_create_order,
            params,
            lambda: self._lookup_order(cid),
        )
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
            [
                t
                for t in self._trades_between(p.entry_time, self._now_ms())
                if t.get("side") == exit_side and int(t["orderId"]) != self._entry_exchange_id
            ],
            p.qty,
        )
        if trades:
            last_id = int(trades[-1]["orderId"])
            last = self._lookup_order_by_id(last_id) or {}
            reason = self._exit_reason(
                last_id,
                str(last.get("clientOrderId") or ""),
                str(last.get("origType") or ""),
                _truthy(last.get("closePosition")) or _truthy(last.get("reduceOnly")),
            )
            self._cancel_all_orders()
            return self._finish_exit(trades, reason)
        mark = self._mark if self._mark is not None else p.entry_price
        log.warning("no closing trade found for the vanished %s position; recording its exit at %g", self.symbol, mark)
        self._cancel_all_orders()
        return self._finish_exit(
            [{"qty": p.qty, "price": mark, "commission": "0", "time": int(_time.time() * 1000)}], FillReason.FLATTEN
        )

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

    def _exit_reason(
        self, order_id: int, client_id: str, orig_type: str = "", closing: bool = False, liquidation: bool = False
    ) -> FillReason:
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

    def _order_trades(self, o: dict[str, Any]) -> list[dict[str, Any]]:
        """The account trades of the order in an ORDER_TRADE_UPDATE (true price and fee); if not
        visible over REST yet, the event itself (cumulative qty ``z``, average ``ap``, fee ``n``)."""
        trades = self._trades(orderId=int(o["i"]))
        if not trades:
            trades = [
                {
                    "qty": o.get("z"),
                    "price": o.get("ap"),
                    "commission": o.get("n") or "0",
                    "time": int(o.get("T") or self._now_ms()),
                }
            ]
        return trades

    def _finish_exit(
        self, trades: list[dict[str, Any]], reason: FillReason, suffix: str | None = None, *, partial: bool = False
    ) -> tuple[Fill, Trade]:
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
        suffix = (
            "px"
            if partial
            else suffix
            or {FillReason.STOP_LOSS: "sl", FillReason.TAKE_PROFIT: "tp", FillReason.LIQUIDATION: "lq"}.get(
                reason, "fx"
            )
        )
        fill = Fill(when, self.symbol, p.side.exit_order_side, px, qty, fee, reason, self._entry_order_id + suffix)
        trade = Trade(
            symbol=self.symbol,
            side=p.side,
            qty=qty,
            entry_time=p.entry_time,
            entry_price=p.entry_price,
            exit_time=when,
            exit_price=px,
            pnl=gross - entry_fee - fee - funding,
            fees=entry_fee + fee,
            funding=funding,
            exit_reason=reason,
            stake=stake,
        )
        if partial:
            self.position = Position(
                p.symbol,
                p.side,
                float(_dec(p.qty) - dqty),
                p.entry_price,
                p.entry_time,
                p.entry_fee - entry_fee,
                p.leverage,
                p.stop_price,
                p.target_price,
                p.liquidation_price,
            )
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
        log.info(
            "%s %s %s %g at %g (%s), pnl %.4f",
            "partial exit" if partial else "exit",
            p.side.name.lower(),
            self.symbol,
            qty,
            px,
            reason.value,
            trade.pnl,
        )
        try:
            self._refresh_cash()
        except BinanceError as e:
            log.warning("could not refresh the wallet balance after an exit: %s", e)
        return fill, trade
