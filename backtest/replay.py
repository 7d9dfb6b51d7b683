"""History replay as a market-data source: the live console, offline.

``ReplaySource`` feeds a ``CandleArrays`` history through the same ``MarketDataSource``
interface as the Binance stream, so the engine and UI cannot tell the difference except by
``received_ms == 0``. Inside each candle it synthesises open-candle updates, then emits the
``CandleClosed``; at the end a ``FeedStatus(state="finished")``.

The synthetic path inside a candle is deterministic (a replay must be repeatable for tests and
demos) and never leaves the candle's range: a rising candle goes open -> low -> high -> close, a
falling one open -> high -> low -> close, each leg taking a third of the candle's time, with the
running high/low of the path so far and volume growing linearly. The last update therefore
approaches, but never reveals early, the final values.

Timing: ``speed`` is a multiple of real time (60 plays an hour of candles per minute); ``None``
runs as fast as the sink accepts. The schedule is absolute (start time + n * tick), so a slow
sink does not accumulate drift, and ``pause()`` shifts the schedule by the time spent paused.

Driving it (the console's replay keys): ``set_speed`` changes the pace from the next tick on,
``step()`` plays exactly one more candle and pauses again, ``run_to(i)`` plays until candle ``i``
is next and pauses. ``backlog`` (the consumer's queue length) lets the source wait while the
consumer is more than ``max_backlog`` inputs behind, so a pause at full speed takes effect at
once instead of after the thousands of inputs a deep queue would still hold.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradeconsole.backtest.data import load_candles
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.domain import Candle, interval_ms
from tradeconsole.core.feed import CandleClosed, CandleUpdate, FeedStatus, MarketSink

__all__ = ["ReplaySource", "partial_candle", "synthetic_updates"]

log = logging.getLogger(__name__)


def partial_candle(candle: Candle, fraction: float) -> Candle:
    """The candle as it looked ``fraction`` (0..1) of the way through its time, on the
    deterministic open -> extreme -> other extreme -> close path; ``closed`` is False."""
    o, h, lo, c = candle.open, candle.high, candle.low, candle.close
    if fraction >= 1.0:
        return candle._replace(closed=False)
    f = max(0.0, fraction)
    path = (o, lo, h, c) if c >= o else (o, h, lo, c)
    pos = f * 3.0
    leg = int(pos)
    a, b = path[leg], path[leg + 1]
    price = a + (b - a) * (pos - leg)
    seen = path[: leg + 1]
    high = max(max(seen), price)
    low = min(min(seen), price)
    return Candle(candle.open_time, o, high, low, price, candle.volume * f, candle.close_time, False)


def synthetic_updates(candle: Candle, n: int) -> list[Candle]:
    """``n`` evenly spaced open-candle states strictly inside the candle (fractions
    ``1/(n+1) .. n/(n+1)``)."""
    return [partial_candle(candle, (j + 1) / (n + 1)) for j in range(n)]


class ReplaySource:
    """Replays a history through a sink from its own thread.

    ``warmup`` leading candles are delivered at once as ``CandleClosed(backfill=True)`` without
    updates, as the live stream does with its REST warm-up, so indicators are ready when the
    paced replay starts.
    """

    def __init__(
        self,
        candles: CandleArrays,
        symbol: str,
        interval: str,
        speed: float | None = None,
        updates_per_candle: int = 4,
        *,
        warmup: int = 0,
        name: str = "replay",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        backlog: Callable[[], int] | None = None,
        max_backlog: int = 64,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError("speed must be positive or None (as fast as possible)")
        if updates_per_candle < 0:
            raise ValueError("updates_per_candle must be >= 0")
        self.candles = candles
        self.symbol = symbol.upper()
        self.interval = interval
        self.step_ms = interval_ms(interval)
        self.speed = speed
        self.updates_per_candle = updates_per_candle
        self.warmup = max(0, min(warmup, len(candles)))
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._stop = threading.Event()
        self._running = threading.Event()  # set = not paused
        self._running.set()
        self._thread: threading.Thread | None = None
        self.position = 0  # index of the next candle to finish
        self.finished = False
        self._limit: int | None = None  # pause before starting this candle index (step / run_to)
        self._rebase = False  # speed changed: restart the absolute schedule at the next tick
        self._backlog = backlog
        self._max_backlog = max(1, max_backlog)
        self._origin = 0.0
        self._k0 = 0

    @classmethod
    def from_path(
        cls, path: str | Path, symbol: str, interval: str, speed: float | None = None, **kwargs: Any
    ) -> ReplaySource:
        """Replay a CSV/Parquet file or directory (e.g. the download cache), validated by
        ``tradeconsole.backtest.data.load_candles``."""
        arrays, _report = load_candles(path, interval=interval)
        return cls(arrays, symbol, interval, speed, **kwargs)

    # ------------------------------------------------------------------ MarketDataSource
    def start(self, sink: MarketSink) -> None:
        if self._thread is not None:
            raise RuntimeError("ReplaySource can only be started once")
        self._thread = threading.Thread(target=self._run, args=(sink,), name=f"{self.name}-{self.symbol}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused replay so it can exit
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)

    # ------------------------------------------------------------------ controls
    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def set_speed(self, speed: float | None) -> None:
        """New pace (a multiple of real time, None = as fast as possible), from the next tick."""
        if speed is not None and not speed > 0:
            raise ValueError("speed must be positive or None (as fast as possible)")
        self.speed = speed
        self._rebase = True

    def run_to(self, index: int) -> None:
        """Play until candle ``index`` would start, then pause (``index`` <= position: pause now,
        before the next candle)."""
        self._limit = max(index, self.position)
        self._running.set()

    def step(self) -> None:
        """Finish the current candle (one more closed candle) and pause again."""
        self.run_to(self.position + 1)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the replay thread to end; True if it has."""
        t = self._thread
        if t is None:
            return True
        t.join(timeout)
        return not t.is_alive()

    # ------------------------------------------------------------------ internals
    def _status(self, sink: MarketSink, state: str, detail: str = "") -> None:
        sink(FeedStatus(self.name, state, None, detail, int(time.time() * 1000)))

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` on the replay clock, honouring pause/stop. Returns False if
        stopped. A pause moves the deadline by the paused time."""
        while not self._stop.is_set():
            if not self._running.is_set():
                t0 = self._clock()
                self._running.wait()
                self._origin += self._clock() - t0
                deadline += self._clock() - t0
                continue
            remaining = deadline - self._clock()
            if remaining <= 0:
                return True
            if self._sleep is not None:
                self._sleep(remaining)
            else:
                self._stop.wait(min(remaining, 0.25))
        return False

    def _run(self, sink: MarketSink) -> None:
        sym, iv = self.symbol, self.interval
        n = len(self.candles)
        self._status(sink, "connected", f"replay of {n} candles")
        try:
            for i in range(self.warmup):
                if self._stop.is_set():
                    break
                sink(CandleClosed(sym, iv, self.candles.candle(i), 0, True))
                self.position = i + 1
            self._origin, self._k0 = self._clock(), 0
            k = 0  # ticks scheduled so far
            for i in range(self.warmup, n):
                if self._stop.is_set():
                    break
                limit = self._limit
                if limit is not None and i >= limit:
                    self._limit = None
                    self._running.clear()  # a step/run_to ends here: pause before this candle
                candle = self.candles.candle(i)
                for upd in synthetic_updates(candle, self.updates_per_candle):
                    k += 1
                    if not self._pace(k):
                        break
                    sink(CandleUpdate(sym, iv, upd, 0))
                k += 1
                if not self._pace(k):
                    break
                sink(CandleClosed(sym, iv, candle, 0, False))
                self.position = i + 1
        except Exception:  # a failing sink must not leave the UI without a final status
            log.exception("replay sink raised; stopping the replay")
            self._status(sink, "stopped", "sink error")
            return
        if self._stop.is_set():
            self._status(sink, "stopped")
        else:
            self.finished = True
            self._status(sink, "finished", f"{n} candles replayed")

    def _tick_s(self) -> float:
        return 0.0 if self.speed is None else self.step_ms / 1000.0 / self.speed / (self.updates_per_candle + 1)

    def _pace(self, k: int) -> bool:
        """Wait for tick ``k`` of the schedule (returns False once stopped)."""
        if self._stop.is_set():
            return False
        if self._rebase:  # a new speed: the schedule restarts from this tick
            self._rebase = False
            self._origin, self._k0 = self._clock(), k - 1
        backlog = self._backlog
        if backlog is not None:
            while backlog() > self._max_backlog and not self._stop.is_set():
                self._stop.wait(0.001)  # consumer behind: wait, so a pause stays immediate
        tick_s = self._tick_s()
        if tick_s == 0.0:
            if not self._running.is_set():
                return self._wait_until(self._clock())
            return True
        return self._wait_until(self._origin + (k - self._k0) * tick_s)
