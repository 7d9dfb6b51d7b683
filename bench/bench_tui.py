#!/usr/bin/env python3
"""Console benchmark (issue 5): key-press latency and memory while a replay runs at maximum speed.

The real console (``tradeconsole.tui.app.TradeConsoleApp``, headless through Textual's pilot) runs the real
runtime: the six months of 5m ETHUSDT candles in ``../shared/data/binance/spot/ETHUSDT/5m/``
(52,992 candles, 4 open-candle updates each: ~265,000 market events and as many engine events,
every one journalled to SQLite) replayed as fast as the engine takes them, with ``basic``.

1. **Key-press latency.** A key event is injected the way a terminal delivers it, then the
   clock runs until the app has answered:

   * ``?`` until the help screen is on top, ``escape`` until the dashboard is back;
   * ``p`` until the header shows the new pause state (the engine command is queued as well).

   "handled" stops when the change is visible in the app's state, "settled" when the screen has
   processed everything that change queued (the frame is ready to paint). Each is measured twice
   in the same run: first with the replay paused (the **idle baseline**: same app, same data,
   nothing flowing), then during the replay at maximum speed. Printed: median, p90, p99, max and
   the loaded/idle ratio of the medians. Target: p99 "settled" under 100 ms while loaded.
2. **Memory over a long replay.** A second app replays the whole data set; RSS (from
   /proc/self/status) and Python heap (tracemalloc, traced only in this phase because tracing
   slows Python) are sampled as the replay progresses, from the idle app before the replay
   starts (baseline) to the end. Printed: each sample, and growth from 10% of the replay to the
   end relative to the baseline; the collector's buffer sizes at the end show they stay bounded.

Usage (from the repository root)::

    .venv/bin/python bench/bench_tui.py                 # ~4 minutes on two cores (memory phase traced)
    .venv/bin/python bench/bench_tui.py --quick         # one month of data, fewer presses (~1 minute)
    .venv/bin/python bench/bench_tui.py --no-memory     # latency only

The machine is shared and has two cores: absolute numbers vary between runs; the ratios compare
measurements taken in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_5M = ROOT.parent / "shared" / "data" / "binance" / "spot" / "ETHUSDT" / "5m"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def paused_factory(opts, confirm, subscribers):
    """The normal runtime, with its replay paused before it starts (the idle baseline)."""
    from tradeconsole.tui.runtime import Runtime

    rt = Runtime(opts, confirm=confirm, extra_subscribers=subscribers)
    rt.source.pause()
    return rt


def stats(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(round(q * (len(v) - 1))))]  # noqa: E731
    return {"n": len(v), "median": statistics.median(v), "p90": pick(0.90), "p99": pick(0.99), "max": v[-1]}


async def timed_key(pilot, key: str, done: Callable[[], bool]) -> tuple[float, float]:
    """(handled, settled) seconds for one key press."""
    from textual import events

    app = pilot.app
    char = {"question_mark": "?", "escape": None}.get(key, key if len(key) == 1 else None)
    t0 = time.perf_counter()
    app._driver.send_message(events.Key(key, char))  # what the terminal driver does on a key
    while not done():
        await asyncio.sleep(0.0005)
    handled = time.perf_counter() - t0
    await pilot._wait_for_screen()
    return handled, time.perf_counter() - t0


async def press_round(pilot, out: dict[str, list[tuple[float, float]]]) -> None:
    from tradeconsole.tui.screens.dashboard import DashboardScreen
    from tradeconsole.tui.screens.help import HelpScreen
    from tradeconsole.tui.widgets.header import StatusHeader

    app = pilot.app
    out["? help"].append(await timed_key(pilot, "question_mark", lambda: isinstance(app.screen, HelpScreen)))
    out["escape"].append(await timed_key(pilot, "escape", lambda: isinstance(app.screen, DashboardScreen)))
    want = not app.entries_paused
    header = app.screen.query_one(StatusHeader)
    out["p pause"].append(
        await timed_key(pilot, "p", lambda: header.state is not None and header.state.entries_paused == want)
    )


async def latency_phase(opts, presses: int, size: tuple[int, int]) -> tuple[dict, dict, dict]:
    from tradeconsole.tui.app import TradeConsoleApp

    app = TradeConsoleApp(opts, runtime_factory=paused_factory)
    idle: dict[str, list[tuple[float, float]]] = {"? help": [], "escape": [], "p pause": []}
    loaded: dict[str, list[tuple[float, float]]] = {"? help": [], "escape": [], "p pause": []}
    info: dict[str, float] = {}
    async with app.run_test(size=size) as pilot:
        while app.runtime is None:
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        for _ in range(presses):
            await press_round(pilot, idle)
            await pilot.pause(0.05)
        rt = app.runtime
        total = len(rt.replay_candles)
        rt.source.resume()
        t0 = time.perf_counter()
        # spread the presses over the replay (a few every ~100 ms) until the data ends
        while not rt.source.finished and len(loaded["? help"]) < presses * 50:
            await press_round(pilot, loaded)
            await pilot.pause(0.1)
        while not rt.source.finished:
            await pilot.pause(0.1)
        rt.engine.wait_idle(120)
        info["replay_s"] = time.perf_counter() - t0
        info["candles"] = total
        info["events"] = app.collector.snapshot().events_total
        await quit_app(pilot)
    info["engine_alive_after_quit"] = float(rt.engine.alive)
    return idle, loaded, info


async def memory_phase(opts, size: tuple[int, int], samples: int) -> tuple[list[tuple[float, float, float]], dict]:
    from tradeconsole.tui.app import TradeConsoleApp

    tracemalloc.start()  # before the app exists, so the baseline is the whole idle app's heap
    app = TradeConsoleApp(opts, runtime_factory=paused_factory)
    points: list[tuple[float, float, float]] = []  # (progress, rss MB, traced MB)
    async with app.run_test(size=size) as pilot:
        while app.runtime is None:
            await pilot.pause(0.05)
        await pilot.pause(1.0)
        gc.collect()
        points.append((0.0, rss_mb(), tracemalloc.get_traced_memory()[0] / 2**20))
        rt = app.runtime
        n = len(rt.replay_candles)
        rt.source.resume()
        marks = [k / samples for k in range(1, samples + 1)]
        while marks:
            done = rt.source.position / n
            if done >= marks[0] or rt.source.finished:
                while marks and (done >= marks[0] or rt.source.finished):
                    marks.pop(0)
                gc.collect()
                points.append((done, rss_mb(), tracemalloc.get_traced_memory()[0] / 2**20))
            await pilot.pause(0.2)
        rt.engine.wait_idle(120)
        sizes = app.collector.sizes()
        tracemalloc.stop()
        await quit_app(pilot)
    return points, sizes


async def quit_app(pilot) -> None:
    """q, and when a position is open (the quit dialog asks) leave it: the replay is throwaway."""
    from tradeconsole.tui.screens.dialogs import QuitDialog

    app = pilot.app
    await pilot.press("q")
    await pilot.pause(0.1)
    if isinstance(app.screen, QuitDialog):
        await pilot.press("l")
    while app.is_running:
        await asyncio.sleep(0.05)


def ms(x: float) -> str:
    return f"{x * 1000:7.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA_5M), help="history to replay (5m CSV directory or file)")
    ap.add_argument("--quick", action="store_true", help="one month of data and fewer presses")
    ap.add_argument("--presses", type=int, default=20, help="idle key rounds (each: ?, escape, p)")
    ap.add_argument("--size", default="120x40", help="terminal size WxH")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory phase")
    ap.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="override sys.setswitchinterval (seconds) to compare with the app's own setting",
    )
    args = ap.parse_args()
    data = args.data
    if args.quick:
        data = str(Path(data) / "ETHUSDT-5m-2022-08.csv") if Path(data).is_dir() else data
        args.presses = min(args.presses, 10)
    w, h = (int(x) for x in args.size.split("x"))
    os.environ.setdefault("TRADECONSOLE_DATA_DIR", tempfile.mkdtemp(prefix="bench-tui-"))
    os.environ.setdefault("TRADECONSOLE_CONFIG", os.path.join(os.environ["TRADECONSOLE_DATA_DIR"], "none.toml"))

    from tradeconsole.tui.runtime import RuntimeOptions

    if args.switch_interval is not None:
        import tradeconsole.tui.app

        tradeconsole.tui.app.GIL_SWITCH_INTERVAL = args.switch_interval
    opts = RuntimeOptions(strategies=[("basic", "5m")], symbol="ETHUSDT", replay=data, speed=None)
    from tradeconsole.tui.app import TradeConsoleApp
    from tradeconsole.tui.screens.dashboard import CHART_HZ

    hz = TradeConsoleApp.__init__.__kwdefaults__["refresh_hz"]
    print(
        f"console benchmark: replay of {data} at maximum speed, terminal {w}x{h}, "
        f"refresh {hz:g} Hz (charts at most {CHART_HZ:g} Hz)\n"
    )

    idle, loaded, info = asyncio.run(latency_phase(opts, args.presses, (w, h)))
    print(
        f"1. key-press latency (ms); replay of {int(info['candles']):,} candles, "
        f"{int(info['events']):,} engine events in {info['replay_s']:.1f} s "
        f"({info['events'] / info['replay_s']:,.0f} events/s reaching the UI collector)"
    )
    print(f"   {'key':8} {'phase':7} {'what':8} {'n':>4} {'median':>7} {'p90':>7} {'p99':>7} {'max':>7}  loaded/idle")
    worst = 0.0
    for key in idle:
        for j, what in enumerate(("handled", "settled")):
            base = stats([x[j] for x in idle[key]])
            load = stats([x[j] for x in loaded[key]])
            for phase, s in (("idle", base), ("loaded", load)):
                ratio = f"  x{load['median'] / base['median']:.2f}" if phase == "loaded" else ""
                print(
                    f"   {key:8} {phase:7} {what:8} {s['n']:4d} {ms(s['median'])} {ms(s['p90'])} "
                    f"{ms(s['p99'])} {ms(s['max'])}{ratio}"
                )
            if what == "settled":
                worst = max(worst, load["p99"])
    print(
        f"   worst p99 (settled, loaded): {worst * 1000:.1f} ms -> "
        f"{'within' if worst < 0.1 else 'ABOVE'} the 100 ms target"
    )
    print(f"   engine thread alive after quit: {bool(info['engine_alive_after_quit'])}\n")

    if args.no_memory:
        return 0
    points, sizes = asyncio.run(memory_phase(opts, (w, h), samples=10))
    base_rss, base_py = points[0][1], points[0][2]
    print("2. memory over the replay (idle app before the replay = baseline)")
    print(f"   {'progress':>8} {'RSS MB':>8} {'x base':>7} {'heap MB':>8} {'x base':>7}")
    for done, rss, py in points:
        print(
            f"   {done:8.0%} {rss:8.1f} {rss / base_rss:7.2f} {py:8.2f} {py / base_py if base_py else float('nan'):7.2f}"
        )
    early = next((p for p in points if p[0] >= 0.1), points[1])
    end = points[-1]
    print(
        f"   from {early[0]:.0%} to the end: RSS {end[1] - early[1]:+.1f} MB "
        f"({(end[1] - early[1]) / base_rss:+.1%} of baseline), traced heap {end[2] - early[2]:+.2f} MB"
    )
    print(f"   collector buffers at the end: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
