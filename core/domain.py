"""Domain values shared by every layer: candles, sides, orders, fills, positions, round trips.

Everything here is immutable. The per-bar values (``Candle``, ``IndicatorValues`` in
``tradeconsole.core.indicators``) are ``NamedTuple`` rather than frozen dataclasses because a backtest creates
one per bar and a NamedTuple is several times cheaper to build; the rarer values (orders, fills,
positions, trades) are frozen slotted dataclasses.

Times are integers in milliseconds since the Unix epoch, UTC, exactly as Binance sends them, so
no time zone or float rounding can creep in between data sources, the journal and Kafka.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

__all__ = [
    "INTERVAL_MS",
    "Candle",
    "Fill",
    "FillReason",
    "Order",
    "OrderSide",
    "OrderType",
    "Position",
    "Side",
    "Trade",
    "interval_ms",
    "iso_ms",
    "parse_utc_ms",
]

#: Binance kline intervals and their length in milliseconds.
INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}


def interval_ms(interval: str) -> int:
    """Length of a Binance interval such as ``"5m"`` in milliseconds (ValueError if unknown)."""
    try:
        return INTERVAL_MS[interval]
    except KeyError:
        raise ValueError(f"unknown interval {interval!r}; expected one of {', '.join(INTERVAL_MS)}") from None


@functools.lru_cache(maxsize=4096)
def _iso_day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")


def iso_ms(ms: int) -> str:
    """UTC ISO-8601 string with millisecond precision for an epoch-ms timestamp.

    Events carry several timestamps each and are serialised tens of thousands of times per
    second on the way to Kafka: the date is cached per day and the time of day is plain
    arithmetic (UTC has no leap seconds in epoch time)."""
    seconds, millis = divmod(int(ms), 1000)
    day, sod = divmod(seconds, 86_400)
    hours, rest = divmod(sod, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{_iso_day(day)}T{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}Z"


def parse_utc_ms(text: str) -> int:
    """``2022-09-01``, ``2022-09-01T12:30[:00][Z]`` (UTC unless an offset is given) or epoch
    milliseconds -> epoch ms. ValueError with a usage hint otherwise."""
    s = text.strip()
    if s.isdigit():
        return int(s)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"not a date: {text!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


class Candle(NamedTuple):
    """One kline. ``closed`` is False while Binance still updates it (the open candle)."""

    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: int
    closed: bool = True

    def is_valid(self) -> bool:
        """True when prices are finite, positive and consistent (low <= open/close <= high)."""
        o, h, lo, c = self.open, self.high, self.low, self.close
        if not all(math.isfinite(x) and x > 0 for x in (o, h, lo, c)):
            return False
        if not (math.isfinite(self.volume) and self.volume >= 0):
            return False
        return lo <= min(o, c) and h >= max(o, c)


class Side(enum.Enum):
    """Direction of a position."""

    LONG = 1
    SHORT = -1

    @property
    def sign(self) -> int:
        return self.value

    @property
    def entry_order_side(self) -> OrderSide:
        return OrderSide.BUY if self is Side.LONG else OrderSide.SELL

    @property
    def exit_order_side(self) -> OrderSide:
        return OrderSide.SELL if self is Side.LONG else OrderSide.BUY


class OrderSide(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(enum.StrEnum):
    MARKET = "MARKET"
    STOP_MARKET = "STOP_MARKET"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"


class FillReason(enum.StrEnum):
    """Why a fill happened; appears in reports, fills lists and events."""

    ENTRY_LONG = "entry_long"
    ENTRY_SHORT = "entry_short"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    LIQUIDATION = "liquidation"
    FLATTEN = "flatten"
    EXIT_SIGNAL = "exit_signal"  # the strategy's exit rule, decided on a closed candle
    TIME_EXIT = "time_exit"  # held for the strategy's max_bars_in_trade


@dataclass(frozen=True, slots=True)
class Order:
    """An order the strategy/broker decided to send. ``client_id`` is stable (derived from the
    signal) so a retried submission can never double it on an exchange."""

    client_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    qty: float
    created_time: int
    stop_price: float | None = None
    reduce_only: bool = False
    reason: FillReason | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution. ``fee`` is in quote currency (USDT)."""

    time: int
    symbol: str
    side: OrderSide
    price: float
    qty: float
    fee: float
    reason: FillReason
    order_id: str

    def to_dict(self) -> dict[str, object]:
        return {
            "time": iso_ms(self.time),
            "side": self.side.value,
            "price": self.price,
            "qty": self.qty,
            "fee": self.fee,
            "reason": self.reason.value,
        }


@dataclass(frozen=True, slots=True)
class Position:
    """An open isolated-margin futures position with its protective levels."""

    symbol: str
    side: Side
    qty: float
    entry_price: float
    entry_time: int
    entry_fee: float
    leverage: float
    stop_price: float
    target_price: float
    liquidation_price: float

    @property
    def notional(self) -> float:
        return self.qty * self.entry_price

    @property
    def margin(self) -> float:
        return self.notional / self.leverage

    def unrealized_pnl(self, mark: float) -> float:
        return self.side.sign * self.qty * (mark - self.entry_price)


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed round trip. ``pnl`` is net of entry fee, exit fee and funding."""

    symbol: str
    side: Side
    qty: float
    entry_time: int
    entry_price: float
    exit_time: int
    exit_price: float
    pnl: float
    fees: float
    funding: float
    exit_reason: FillReason
    stake: float

    @property
    def return_pct(self) -> float:
        """Net PnL relative to the equity committed at entry, in percent."""
        return 100.0 * self.pnl / self.stake if self.stake else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "side": self.side.name.lower(),
            "qty": self.qty,
            "entry_time": iso_ms(self.entry_time),
            "entry_price": self.entry_price,
            "exit_time": iso_ms(self.exit_time),
            "exit_price": self.exit_price,
            "pnl": self.pnl,
            "return_pct": self.return_pct,
            "fees": self.fees,
            "funding": self.funding,
            "exit_reason": self.exit_reason.value,
            "stake": self.stake,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trade:
        """Inverse of ``to_dict`` (used to rebuild reports from the journal)."""
        from datetime import datetime

        def ms(v: object) -> int:
            return int(datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp() * 1000)

        return cls(
            symbol=str(d["symbol"]),
            side=Side[str(d["side"]).upper()],
            qty=float(d["qty"]),
            entry_time=ms(d["entry_time"]),
            entry_price=float(d["entry_price"]),
            exit_time=ms(d["exit_time"]),
            exit_price=float(d["exit_price"]),
            pnl=float(d["pnl"]),
            fees=float(d["fees"]),
            funding=float(d["funding"]),
            exit_reason=FillReason(str(d["exit_reason"])),
            stake=float(d["stake"]),
        )
