"""One way to run a backtest: ``Backtest(data, strategy, ...).run()``.

Before this module the same run was assembled by hand in three places (the ``tradeconsole
backtest`` command, the console's backtest screen and the optimiser's self-check), each loading,
windowing and building the broker settings its own way, so a fix in one could silently miss the
others. ``Backtest`` is that assembly, once, in the spirit of backtesting.py's
``Backtest(data, strategy, cash=..., commission=...)``::

    from tradeconsole import Backtest

    bt = Backtest("../shared/data/binance/spot/ETHUSDT/5m/", "basic", fill_model="seed")
    outcome = bt.run()
    outcome.metrics["final_equity"], len(outcome.trades), outcome.equity.iloc[-1]
    print(outcome.report())

What it takes: the data (a CSV/Parquet path or ``CandleArrays``), the strategy (a registered name
with ``params``, or an instance), the fill model (``seed`` or ``realistic``), the costs (cash, fee,
slippage, funding, leverage, or one ``BrokerSettings``) and the traded window (``start``/``end``:
the candles before ``start`` only warm the indicators up, exactly as ``window_with_warmup``
slices them). ``run`` takes the progress/cancel callback and an event writer, and calls the one
simulation, ``tradeconsole.backtest.runner.run_backtest``; nothing here decides a trade.

Mistakes in what was asked surface before any work: the strategy's parameter checks and the
broker settings' ranges raise ``ValueError`` in the constructor; data problems raise
``DataError`` when the data is first needed (``prepare``, ``bars``, ``run``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeconsole.backtest.data import DataError, DataReport, load_candles, window_with_warmup
from tradeconsole.backtest.runner import BacktestResult, ProgressFn, run_backtest
from tradeconsole.core.broker import FILL_MODELS, BrokerSettings, FillModel
from tradeconsole.core.candles import CandleArrays
from tradeconsole.core.strategies import make_strategy
from tradeconsole.core.strategies.base import Strategy

if TYPE_CHECKING:
    import pandas as pd
    from tradeconsole.core.domain import Trade
    from tradeconsole.core.events import Event

__all__ = ["Backtest", "BacktestOutcome"]

#: when to use, for a date given as text: what ``tradeconsole backtest --from/--to`` accept
When = int | str | None


def _ms(when: When, name: str) -> int | None:
    """Epoch ms UTC from ms or an ISO date/time (UTC unless it says otherwise)."""
    if when is None or isinstance(when, int):
        return when
    from tradeconsole.core.domain import parse_utc_ms

    try:
        return parse_utc_ms(when)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{name}: {when!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)") from None


class Backtest:
    """A backtest as data: what to run on what, with which fills and costs, over which window.

    ``strategy`` is a registered name (built with ``params``, checked against its declared
    ranges) or a ready ``Strategy`` instance (``params`` must then be empty). ``interval``
    defaults to the strategy's own. ``settings`` replaces the individual cost keywords when the
    caller already holds a ``BrokerSettings`` (the optimiser does). ``start``/``end`` select the
    traded window [start, end) and keep what precedes it as indicator warm-up; ``warmup`` says
    instead how many leading candles of ``data`` are warm-up only (the optimiser's folds).
    ``expected_by`` words the interval check's message ("--interval is 1h").
    """

    def __init__(
        self,
        data: str | os.PathLike[str] | CandleArrays,
        strategy: str | Strategy,
        *,
        params: Mapping[str, float] | None = None,
        fill_model: str | FillModel = "realistic",
        cash: float = 10_000.0,
        fee: float = 0.0004,
        slippage_bps: float = 0.0,
        funding_rate_8h: float = 0.0,
        leverage: float = 1.0,
        settings: BrokerSettings | None = None,
        symbol: str | None = None,
        interval: str | None = None,
        start: When = None,
        end: When = None,
        warmup: int = 0,
        skip_bad_rows: bool = False,
        expected_by: str | None = None,
        cache: bool = True,
    ) -> None:
        if isinstance(strategy, Strategy):
            if params:
                raise ValueError("params apply to a strategy given by name; this one is already built")
            self.strategy = strategy
        else:
            self.strategy = make_strategy(strategy, **dict(params or {}))
        if isinstance(fill_model, str) and fill_model not in FILL_MODELS:
            raise ValueError(f"unknown fill model {fill_model!r}; expected one of {', '.join(FILL_MODELS)}")
        self.fill_model: FillModel = FILL_MODELS[fill_model] if isinstance(fill_model, str) else fill_model
        self.settings = (
            settings
            if settings is not None
            else BrokerSettings(
                initial_cash=cash,
                leverage=leverage,
                fee_rate=fee,
                slippage_bps=slippage_bps,
                funding_rate_8h=funding_rate_8h,
            )
        )
        self.interval = interval or type(self.strategy).default_interval
        self.start_ms, self.end_ms = _ms(start, "start"), _ms(end, "end")
        if self.start_ms is not None and self.end_ms is not None and self.end_ms <= self.start_ms:
            raise ValueError("end must be after start")
        if warmup and (self.start_ms is not None or self.end_ms is not None):
            raise ValueError("give either a warm-up count or a start/end window, not both")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        self._data = data
        self._warmup = int(warmup)
        self._symbol = symbol
        self.skip_bad_rows = skip_bad_rows
        #: read a CSV directory through the Parquet cache (``load_candles(cache=)``)
        self.cache = cache
        self.expected_by = expected_by
        self._prepared: tuple[CandleArrays, int, DataReport | None] | None = None

    # ------------------------------------------------------------------ the data
    @property
    def symbol(self) -> str:
        """The symbol given, else the one the data's file names or layout hold, else ETHUSDT."""
        if self._symbol is None:
            held = None
            if not isinstance(self._data, CandleArrays):
                from tradeconsole.backtest.data import data_symbol

                try:
                    held, _ = data_symbol(Path(self._data))
                except ValueError as exc:  # a directory mixing symbols
                    raise DataError(str(exc)) from None
            self._symbol = held or "ETHUSDT"
        return self._symbol

    def prepare(self) -> tuple[CandleArrays, int, DataReport | None]:
        """Load (once) and window the data: (candles up to the window's end, warm-up bars before
        its start, the load report or None for ``CandleArrays``). ``DataError`` when the window
        holds no candle to trade."""
        if self._prepared is not None:
            return self._prepared
        report: DataReport | None = None
        if isinstance(self._data, CandleArrays):
            candles = self._data
        else:
            candles, report = load_candles(
                self._data,
                interval=self.interval,
                skip_bad_rows=self.skip_bad_rows,
                cache=self.cache,
                expected_by=self.expected_by,
            )
        warmup = self._warmup
        if self.start_ms is not None or self.end_ms is not None:
            first = int(candles.open_time[0]) if len(candles) else None
            last = int(candles.open_time[-1]) if len(candles) else None
            candles, warmup = window_with_warmup(candles, self.start_ms, self.end_ms)
            if len(candles) <= warmup:
                from tradeconsole.core.domain import iso_ms

                covers = (
                    f": the data covers {iso_ms(first)[:16]} to {iso_ms(last)[:16]} UTC"
                    if first is not None and last is not None
                    else ""
                )
                raise DataError(f"no candles in the requested date range{covers}")
        elif warmup >= len(candles):
            raise DataError(f"warm-up of {warmup} candles leaves none of the {len(candles)} to trade")
        self._prepared = (candles, warmup, report)
        return self._prepared

    @property
    def data_report(self) -> DataReport | None:
        """What loading the data found (files, skipped rows, gaps); None for ``CandleArrays``."""
        return self.prepare()[2]

    @property
    def bars(self) -> int:
        """Candles in the traded window (after the warm-up)."""
        candles, warmup, _ = self.prepare()
        return len(candles) - warmup

    # ------------------------------------------------------------------ the run
    def run(
        self,
        *,
        progress: ProgressFn | None = None,
        publish: Callable[[Event], None] | None = None,
        run_id: str | None = None,
    ) -> BacktestOutcome:
        """Replay the window through the strategy with the simulated broker.

        ``progress(done, total)`` is called every few thousand bars and may return False to
        cancel (the outcome then covers the bars run so far, ``cancelled`` set). ``publish``
        receives every engine event in order (an event writer: a journal, a UI); None is the
        fastest run."""
        candles, warmup, report = self.prepare()
        result = run_backtest(
            candles,
            self.strategy,
            symbol=self.symbol,
            interval=self.interval,
            fill_model=self.fill_model,
            settings=self.settings,
            publish=publish,
            progress=progress,
            run_id=run_id,
            warmup=warmup,
        )
        return BacktestOutcome(result, report)


class BacktestOutcome:
    """A finished run: ``metrics`` (``tradeconsole.backtest.metrics.compute_metrics``, plus the
    data summary when ``Backtest`` loaded the data itself), ``trades``, ``equity`` and
    ``report()``; ``result`` is the runner's full record (fills, equity arrays, settings)."""

    def __init__(self, result: BacktestResult, data_report: DataReport | None = None) -> None:
        self.result = result
        self.data_report = data_report

    @cached_property
    def metrics(self) -> dict[str, Any]:
        from tradeconsole.backtest.metrics import compute_metrics

        m = compute_metrics(self.result)
        if self.data_report is not None:
            m["data"] = self.data_report.summary()
        return m

    @property
    def trades(self) -> list[Trade]:
        """Round trips, in the order they closed."""
        return self.result.trades

    @property
    def equity(self) -> pd.Series:
        """Equity at every traded bar's close, indexed by the bar's open time (UTC)."""
        import pandas as pd

        index = pd.to_datetime(self.result.open_time, unit="ms", utc=True)
        return pd.Series(self.result.equity, index=index, name="equity")

    @property
    def cancelled(self) -> bool:
        return self.result.cancelled

    def report(self) -> str:
        """The text report ``tradeconsole backtest`` prints."""
        from tradeconsole.backtest.report import text_report

        return text_report(self.metrics)

    def to_json(self) -> str:
        """The metrics as ``tradeconsole backtest --json`` prints them."""
        from tradeconsole.backtest.report import to_json

        return to_json(self.metrics)

    def write_trades_csv(self, path: str | os.PathLike[str]) -> int:
        """Write the round trips to ``path``; returns how many."""
        from tradeconsole.backtest.report import write_trades_csv

        return write_trades_csv(self.result, Path(path))
