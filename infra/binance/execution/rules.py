"""The exchange filters of one symbol (step, tick, min/max quantity, min notional), the rounding
they ask for, and Binance's decimal text: checked before anything is sent, so a stake too small
for the symbol is a one-line ``FilterRejected`` instead of an exchange reject.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from tradeconsole.infra.binance.http.errors import BinanceError, FilterRejected

__all__ = ["SymbolRules"]


def _truthy(x: Any) -> bool:
    """Binance sends these flags as JSON booleans; accept the string forms too."""
    return x is True or (isinstance(x, str) and x.lower() == "true")


def _dec(x: str | float | int) -> Decimal:
    return Decimal(str(x))


def _fmt(x: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros (what Binance parses)."""
    s = format(x, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


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
            raise BinanceError(
                f"symbol {symbol} is not listed in the futures exchange info", operation="reading exchange filters"
            )
        f = {x["filterType"]: x for x in s.get("filters", [])}
        lot, market = f.get("LOT_SIZE", {}), f.get("MARKET_LOT_SIZE", {})
        price = f.get("PRICE_FILTER", {})
        m_step = _dec(market.get("stepSize", "0"))
        step = m_step if m_step > 0 else _dec(lot.get("stepSize", "0"))
        min_qty = max(_dec(lot.get("minQty", "0")), _dec(market.get("minQty", "0")))
        maxes = [_dec(x["maxQty"]) for x in (lot, market) if _dec(x.get("maxQty", "0")) > 0]
        if step <= 0 or _dec(price.get("tickSize", "0")) <= 0:
            raise BinanceError(
                f"exchange info for {symbol} lacks a step size or tick size", operation="reading exchange filters"
            )
        return cls(
            symbol=symbol,
            step=step,
            min_qty=min_qty,
            max_qty=min(maxes) if maxes else Decimal("Infinity"),
            tick=_dec(price["tickSize"]),
            min_price=_dec(price.get("minPrice", "0")),
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
                f"(step {_fmt(self.step)}); raise the stake",
                operation="checking filters",
            )
        if notional < self.min_notional:
            raise FilterRejected(
                f"entry on {self.symbol} rejected before sending: notional {notional:.2f} USDT "
                f"({_fmt(qty)} at {ref_price:g}) is below the minimum notional {_fmt(self.min_notional)} "
                "USDT; raise the stake or the leverage",
                operation="checking filters",
            )
        if qty > self.max_qty:
            raise FilterRejected(
                f"entry on {self.symbol} rejected before sending: quantity {_fmt(qty)} is above the "
                f"maximum {_fmt(self.max_qty)} for a market order; lower the stake",
                operation="checking filters",
            )
