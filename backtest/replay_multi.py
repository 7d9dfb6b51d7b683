"""A replay of several symbols at once, on one market clock.

Why: sessions on several symbols share one paper account, so which symbol's candle comes first
decides which entry an account-wide limit refuses. Several ``ReplaySource`` threads would
interleave the symbols by thread scheduling, and the same data could give different fills from
run to run. ``MultiReplaySource`` plays every symbol from one thread in market order instead:
candles are grouped by open time; within a group, each open-candle update step is delivered for
every symbol (in the order the symbols were given), then every symbol's close. A symbol without
a candle at that time (its history starts later, or has a gap) simply sits the group out, as
the live stream would deliver nothing for it.

Everything else (pacing, pause, step, speed, backlog, warm-up, the final ``finished`` status)
behaves as ``ReplaySource``; ``position`` and ``step`` count groups (market times), and
``candles`` is the first symbol's history (what progress displays count against).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from tradeconsole.backtest.replay import ReplaySource, synthetic_updates
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.feed import CandleClosed, CandleUpdate, MarketSink

__all__ = ["MultiReplaySource"]

log = logging.getLogger(__name__)


class MultiReplaySource(ReplaySource):
    """Replays ``streams`` (symbol, history) through one sink in market-time order."""

    def __init__(
        self,
        streams: list[tuple[str, CandleArrays]],
        interval: str,
        speed: float | None = None,
        updates_per_candle: int = 4,
        **kwargs: Any,
    ) -> None:
        if not streams:
            raise ValueError("a multi-symbol replay needs at least one symbol")
        symbols = [s.upper() for s, _ in streams]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"duplicate symbols in the replay: {', '.join(symbols)}")
        super().__init__(streams[0][1], symbols[0], interval, speed, updates_per_candle, **kwargs)
        self.streams = [(sym, arr) for sym, (_s, arr) in zip(symbols, streams)]
        self.symbols = symbols
        # the market clock: every open time any symbol has, in order
        self.times = np.unique(np.concatenate([arr.open_time for _s, arr in self.streams]))
        self.warmup = max(0, min(self.warmup, len(self.times)))

    def _groups(self) -> Iterator[tuple[int, list[tuple[str, CandleArrays, int]]]]:
        """(index, [(symbol, candle index)]) per market time, every symbol's cursor moving on."""
        cursors = [0] * len(self.streams)
        for g, t in enumerate(self.times):
            members: list[tuple[str, CandleArrays, int]] = []
            for j, (sym, arr) in enumerate(self.streams):
                i = cursors[j]
                if i < len(arr) and int(arr.open_time[i]) == int(t):
                    members.append((sym, arr, i))
                    cursors[j] = i + 1
            yield g, members

    def _run(self, sink: MarketSink) -> None:
        iv = self.interval
        total = sum(len(arr) for _s, arr in self.streams)
        self._status(sink, "connected", f"replay of {total} candles of {', '.join(self.symbols)}")
        try:
            groups = list(self._groups())
            for g, members in groups[: self.warmup]:  # warm-up: history at once, as the live REST warm-up
                if self._stop.is_set():
                    break
                for sym, arr, i in members:
                    sink(CandleClosed(sym, iv, arr.candle(i), 0, True))
                self.position = g + 1
            self._origin, self._k0 = self._clock(), 0
            k = 0
            stopped = False
            for g, members in groups[self.warmup :]:
                if self._stop.is_set():
                    break
                limit = self._limit
                if limit is not None and g >= limit:
                    self._limit = None
                    self._running.clear()  # a step/run_to ends here: pause before this group
                candles = [(sym, arr.candle(i)) for sym, arr, i in members]
                updates = [(sym, synthetic_updates(c, self.updates_per_candle)) for sym, c in candles]
                for step in range(self.updates_per_candle):
                    k += 1
                    if not self._pace(k):
                        stopped = True
                        break
                    for sym, ups in updates:
                        sink(CandleUpdate(sym, iv, ups[step], 0))
                if stopped:
                    break
                k += 1
                if not self._pace(k):
                    break
                for sym, c in candles:
                    sink(CandleClosed(sym, iv, c, 0, False))
                self.position = g + 1
        except Exception:  # a failing sink must not leave the UI without a final status
            log.exception("replay sink raised; stopping the replay")
            self._status(sink, "stopped", "sink error")
            return
        if self._stop.is_set():
            self._status(sink, "stopped")
        else:
            self.finished = True
            self._status(sink, "finished", f"{total} candles of {len(self.symbols)} symbols replayed")
