"""A backtest's engine events, made from the array loop's record, for a consumer that asked.

``run_backtest(publish=...)`` (``--kafka``) must publish what the live engine would: every candle
with its indicators, signals, orders, fills, positions and equity. The broker itself runs as the
array loop (``tradeconsole.core.broker_step.simulate``, compiled for long histories); this module
plays its record back through the calls ``StrategySession.on_closed_candle`` makes on a broker,
so the session's own code builds and orders the events. One implementation of the events, one of
the broker's rules; nothing is simulated twice and nothing is decided here.

The session still asks the strategy for its entry signal on every candle, as live. The replay
checks each entry it is asked for against the record (same signal candle, same side) and that
the record holds no entry the session never asked for, so a vectorised signal that disagreed
with the strategy's ``entry_signal`` stops the run (``ReplayMismatch``) instead of publishing
events no broker made. ``tests/backtest/test_events_from_arrays.py`` checks the events equal
those of the per-candle path, event for event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tradeconsole.core.broker import BrokerSettings, DroppedEntry, FillModel
from tradeconsole.core.domain import Candle, Fill, FillReason, Position, Side, Trade, iso_ms

__all__ = ["RecordedBroker", "ReplayMismatch"]

_ENTRY_REASONS = (FillReason.ENTRY_LONG, FillReason.ENTRY_SHORT)


class ReplayMismatch(RuntimeError):
    """The strategy's per-candle decisions and the array loop's record disagree."""


class RecordedBroker:
    """The simulated broker's answers to a backtest session, read from a ``simulate`` record.

    Answers the calls a backtest session makes (``on_candle``, ``take_stop_move``,
    ``take_dropped``, ``submit_entry``, ``equity``, ``is_flat``, ``position``, ``cash``,
    ``pending_exit``, ``entry_order_id``) with the recorded fills, round trips, dropped entries
    and cash; the strategies it serves have fixed percentage exits (no trailing stop, no exit
    signal), the only ones the array loop runs."""

    def __init__(
        self,
        *,
        symbol: str,
        settings: BrokerSettings,
        fill_model: FillModel,
        fills: Sequence[Fill],
        levels: Sequence[Sequence[float]],
        signal_times: Sequence[int],
        trades: Sequence[Trade],
        dropped: Sequence[DroppedEntry],
        cash: Sequence[float],
        pending_at_end: tuple[Side, int] | None,
    ) -> None:
        if not len(levels) == len(signal_times) == len(fills):
            raise ValueError("one (stop, target, liquidation) row and one signal time per fill")
        self.symbol = symbol
        self.settings = settings
        self.fill_model = fill_model
        self.position: Position | None = None
        self.pending: tuple[Side, int] | None = None  # (side, signal candle's open time)
        self.pending_exit: str | None = None  # exit signals are not replayed: always None
        self.cash = settings.initial_cash
        self._fills, self._levels, self._sig, self._trades = fills, levels, signal_times, trades
        self._dropped, self._cash = dropped, cash
        self._pending_at_end = pending_at_end
        self._k = self._t = self._d = self._bar = 0  # next fill, round trip, dropped entry, bar
        self._new_dropped: list[DroppedEntry] = []
        self._entry_order_id = ""

    # ------------------------------------------------------------------ what the session asks
    @property
    def is_flat(self) -> bool:
        return self.position is None and self.pending is None

    @property
    def entry_order_id(self) -> str:
        return self._entry_order_id

    def equity(self, mark: float) -> float:
        p = self.position
        return self.cash if p is None else self.cash + p.side.sign * p.qty * (mark - p.entry_price)

    def take_stop_move(self) -> None:
        return None  # fixed stops never move

    def take_dropped(self) -> list[DroppedEntry]:
        out, self._new_dropped = self._new_dropped, []
        return out

    def on_candle(self, candle: Candle) -> list[tuple[Fill, Trade | None]]:
        """The recorded fills of this closed candle (a pending entry at its open, a protective
        exit), or the pending entry it dropped after a gap."""
        if self._bar >= len(self._cash):
            raise ReplayMismatch(f"candle {iso_ms(candle.open_time)} is beyond the recorded run")
        self.cash = self._cash[self._bar]  # the cash at this close: all an equity event reads
        self._bar += 1
        out: list[tuple[Fill, Trade | None]] = []
        while self._d < len(self._dropped) and self._dropped[self._d].next_open_time <= candle.open_time:
            d = self._dropped[self._d]
            self._d += 1
            self._take_pending(d.side, d.signal_time)
            self._new_dropped.append(d)
        seed = not self.fill_model.fill_at_next_open
        while self._k < len(self._fills) and self._fills[self._k].time <= candle.close_time:
            fill = self._fills[self._k]
            if fill.reason in _ENTRY_REASONS:
                if seed:
                    break  # a seed entry fills at this close, in submit_entry
                self._take_pending(_entry_side(fill), self._sig[self._k])
                self._open(fill)
                out.append((fill, None))
            else:
                out.append((fill, self._close(fill)))
        return out

    def submit_entry(
        self,
        side: Side,
        candle: Candle,
        order_id: str,
        stop_loss_pct: float,
        take_profit_pct: float,
        stake_fraction: float = 1.0,
        plan: object = None,
    ) -> Fill | None:
        """The session takes a signal: seed fills now (the next recorded fill must be this
        entry), realistic waits for the next open (the record must hold this entry's fill, drop
        or end-of-run pending order next)."""
        if not self.is_flat:
            return None
        if self.fill_model.fill_at_next_open:
            nxt = self._next_entry()
            if nxt != (side, candle.open_time):
                raise self._mismatch(side, candle, nxt)
            self.pending = (side, candle.open_time)
            return None
        k = self._k
        if k < len(self._fills) and self._fills[k].reason in _ENTRY_REASONS:
            fill = self._fills[k]
            if (_entry_side(fill), self._sig[k], fill.time) == (side, candle.open_time, candle.close_time):
                self._open(fill)
                return fill
        raise self._mismatch(side, candle, self._next_entry())

    def finish(self) -> None:
        """After the last candle: every recorded fill and dropped entry was asked for."""
        if self._k < len(self._fills) or self._d < len(self._dropped):
            left = self._sig[self._k] if self._k < len(self._fills) else self._dropped[self._d].signal_time
            raise ReplayMismatch(
                f"the array loop recorded an entry at {iso_ms(left)} that the strategy's entry_signal "
                "never gave: its vectorised signal disagrees with it"
            )

    # ------------------------------------------------------------------ internals
    def _open(self, fill: Fill) -> None:
        stop, target, liq = self._levels[self._k]
        self._k += 1
        side = _entry_side(fill)
        self.position = Position(
            self.symbol,
            side,
            fill.qty,
            fill.price,
            fill.time,
            fill.fee,
            self.settings.leverage,
            stop,
            target,
            liq,
        )
        self._entry_order_id = fill.order_id

    def _close(self, fill: Fill) -> Trade:
        if self.position is None or self._t >= len(self._trades):
            raise ReplayMismatch(f"an exit fill at {iso_ms(fill.time)} without an open position")
        self._k += 1
        trade = self._trades[self._t]
        self._t += 1
        self.position = None
        return trade

    def _take_pending(self, side: Side, signal_time: int) -> None:
        if self.pending != (side, signal_time):
            raise ReplayMismatch(
                f"the array loop recorded a {side.name.lower()} entry on the candle of {iso_ms(signal_time)} "
                "that the strategy's entry_signal never gave: its vectorised signal disagrees with it"
            )
        self.pending = None

    def _next_entry(self) -> tuple[Side, int] | None:
        """(side, signal open time) of the next entry in the record, for a flat account: the
        next fill (flat, it is an entry) or the next dropped entry, whichever signal came first,
        else the order still pending at the end."""
        cands: list[tuple[int, Side]] = []
        if self._k < len(self._fills):
            cands.append((self._sig[self._k], _entry_side(self._fills[self._k])))
        if self._d < len(self._dropped):
            d = self._dropped[self._d]
            cands.append((d.signal_time, d.side))
        if not cands:
            return self._pending_at_end
        t, side = min(cands, key=lambda c: c[0])
        return side, t

    def _mismatch(self, side: Side, candle: Candle, expected: Any) -> ReplayMismatch:
        return ReplayMismatch(
            f"the strategy's entry_signal gave {side.name.lower()} on the candle of {iso_ms(candle.open_time)}, "
            f"which the array loop's record does not hold (next recorded entry: {expected}): "
            "its vectorised signal disagrees with it"
        )


def _entry_side(fill: Fill) -> Side:
    return Side.LONG if fill.reason is FillReason.ENTRY_LONG else Side.SHORT
