"""Wiring: command-line options -> settings, journal, engine, market-data source and event sinks.

Shared by the Textual console (``tradeconsole.tui.app``) and the headless runner (``tradeconsole.tui.headless``) so both
run exactly the same engine the same way; only how events are shown differs.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tradeconsole.core.account import SharedAccount
from tradeconsole.core.broker import BrokerSettings
from tradeconsole.core.engine import Engine, SessionSpec, paper_broker
from tradeconsole.core.events import Event
from tradeconsole.core.feed import MarketDataSource
from tradeconsole.core.strategies import STRATEGIES
from tradeconsole.infra.sinks.protocol import ELASTICSEARCH, KAFKA, Sink

__all__ = [
    "RuntimeOptions",
    "Runtime",
    "SinkTargets",
    "options_from_args",
    "parse_strategy_specs",
    "parse_symbols",
    "replay_paths",
]

log = logging.getLogger("tradeconsole.runtime")


@dataclass(slots=True)
class RuntimeOptions:
    strategies: list[tuple[str, str]] = field(default_factory=lambda: [("basic", "5m")])
    symbol: str = "ETHUSDT"
    #: every symbol to trade (``--symbol`` repeated); empty: the config's ``symbols``, else ``symbol``.
    #: Each symbol runs every strategy spec as its own session.
    symbols: list[str] = field(default_factory=list)
    market: str = "futures"
    replay: str | None = None
    speed: float | None = None  # None = as fast as possible
    fill_model: str = "realistic"
    cash: float = 10_000.0
    journal: str | None = None
    config: str | None = None
    live: bool = False
    testnet: bool = False
    kafka: str | None = None
    elasticsearch: str | None = None
    updates_per_candle: int = 4
    #: candles delivered at once as history before a paced replay starts (indicators ready at
    #: once, like the live stream's REST warm-up; they are never traded). 0 for headless replays,
    #: which must give exactly the backtest's fills from the first candle.
    replay_warmup: int = 0
    #: open-candle ticks kept per run in the journal (older ones are deleted once shipped);
    #: None keeps every tick
    keep_candle_updates: int | None = 20_000
    #: a replay waits while the engine has more than this many inputs queued (None: no limit,
    #: the headless default). The console keeps it small so a pause stops the market at once.
    replay_max_backlog: int | None = None


def parse_strategy_specs(values: list[str] | None, interval: str | None) -> list[tuple[str, str]]:
    """``["basic", "engulfing:1h"]`` -> [("basic", "5m"), ("engulfing", "1h")]; ``--interval``
    applies to entries without their own."""
    out: list[tuple[str, str]] = []
    for v in values or ["basic"]:
        name, _, iv = v.partition(":")
        if name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}")
        out.append((name, iv or interval or STRATEGIES[name].default_interval))
    return out


_SYMBOL = r"[A-Z0-9]{2,30}"

#: streams one Binance websocket connection carries at most ("WebSocket Market Streams": "A
#: single connection can listen to a maximum of 1024 streams"); every (symbol, interval) is one
MAX_STREAMS = 1024


def parse_symbols(values: list[str] | str | None) -> list[str]:
    """``--symbol`` values (repeatable) or the config's ``symbols``: upper-cased, each a Binance
    symbol (letters and digits), no duplicates. A duplicate would run every session twice on one
    account; it is refused rather than silently merged. [] when none are given."""
    import re

    if values is None:
        return []
    raw = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for v in raw:
        if not isinstance(v, str) or not re.fullmatch(_SYMBOL, v.upper()):
            raise ValueError(f"not a symbol: {str(v)[:40]!r} (letters and digits, e.g. ETHUSDT)")
        sym = v.upper()
        if sym in out:
            raise ValueError(f"symbol {sym} given twice: each symbol runs once (its sessions are one per strategy)")
        out.append(sym)
    return out


def replay_paths(replay: str, symbols: list[str], interval: str) -> dict[str, str]:
    """The history to replay for each symbol. One symbol: ``replay`` itself. Several: ``replay``
    must say which symbol it holds (file names ``ETHUSDT-5m-...`` or a ``.../ETHUSDT/5m/``
    directory, the layout of Binance public data and of the download cache), and every other
    symbol's history is looked up at the same place in that layout (``.../BTCUSDT/5m/``).
    Anything else is refused: replaying one symbol's prices as another's would trade on numbers
    that mean nothing."""
    from tradeconsole.tui.startup import data_symbol, data_symbol_problem, retarget_replay

    if len(symbols) <= 1:
        return {symbols[0]: replay} if symbols else {}
    try:
        held, how = data_symbol(replay)
    except ValueError as exc:
        raise ValueError(f"a replay of several symbols needs one symbol per directory: {exc}") from None
    if held is None:
        raise ValueError(
            f"a replay of several symbols ({', '.join(symbols)}) needs data that names its symbol "
            f"(files like ETHUSDT-{interval}-2024-01.csv, or a directory .../ETHUSDT/{interval}/): "
            f"{how}"
        )
    if held not in symbols:
        raise ValueError(
            f"{Path(replay).name} holds {held} data (from its {how}), which is not one of the symbols "
            f"{', '.join(symbols)}"
        )
    out: dict[str, str] = {}
    for sym in symbols:
        path = replay if sym == held else retarget_replay(replay, held, sym, interval, interval)
        if path is None or not Path(path).exists():
            raise ValueError(
                f"no {sym} {interval} history next to the {held} replay {replay}: a replay of several "
                f"symbols reads each symbol's data from the same layout (e.g. .../{sym}/{interval}/)"
            )
        problem = data_symbol_problem(path, sym)
        if problem:
            raise ValueError(problem)
        out[sym] = path
    return out


def options_from_args(args: argparse.Namespace) -> RuntimeOptions:
    """The one place parsed engine options (the console's and ``run --headless``'s, see
    ``tradeconsole.tui.cli._add_engine_options``) become ``RuntimeOptions``: every field read by
    name, so a renamed or missing option fails here, at start, instead of being defaulted
    silently by a ``getattr``."""
    symbols = parse_symbols(args.symbol)
    strategies = parse_strategy_specs(args.strategies, args.interval)
    if len(symbols) * len({iv for _, iv in strategies}) > MAX_STREAMS:
        raise ValueError(
            f"{len(symbols)} symbols x {len({iv for _, iv in strategies})} intervals is more than the "
            f"{MAX_STREAMS} streams one Binance websocket connection carries"
        )
    if len(symbols) > 1 and args.replay:
        ivs = {iv for _, iv in strategies}
        if len(ivs) == 1:
            replay_paths(args.replay, symbols, ivs.pop())  # refuse at once, before any window opens
    return RuntimeOptions(
        strategies=strategies,
        symbol=symbols[0] if symbols else "ETHUSDT",
        symbols=symbols,
        market=args.market,
        replay=args.replay,
        speed=args.speed,
        fill_model=args.fill_model,
        cash=args.cash,
        journal=args.journal,
        config=args.config,
        live=args.live,
        testnet=args.testnet,
        kafka=args.kafka,
        elasticsearch=args.elasticsearch,
    )


@dataclass(frozen=True, slots=True)
class SinkTargets:
    """Where events go: a Kafka bootstrap and an Elasticsearch URL (either may be None; an
    ``[elasticsearch]`` ``cloud_id`` counts as a target too), with the config's ``[kafka]`` and
    ``[elasticsearch]`` tables (topic/index prefix, security). One builder for every journal-fed
    sink: the runtime's, and the optimisation journal's (``tradeconsole.tui.optimize_command``)."""

    kafka: str | None = None
    elasticsearch: str | None = None
    kafka_settings: Mapping[str, Any] = field(default_factory=dict)
    elasticsearch_settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.kafka or self.elasticsearch or self.elasticsearch_settings.get("cloud_id"))

    def names(self) -> list[str]:
        """The sinks ``build`` makes, by kind (for messages)."""
        out = [KAFKA] if self.kafka else []
        if self.elasticsearch or self.elasticsearch_settings.get("cloud_id"):
            out.append(ELASTICSEARCH)
        return out

    def build(
        self, journal_path: str | Path, *, on_stats: Callable[[dict[str, Any], str], None] | None = None
    ) -> list[Sink]:
        """Journal-fed sinks (the shipper of ``journal_path`` is their only feeder and the journal
        their only spool: exactly once across restarts, see ``tradeconsole.infra.persistence.shipper``).
        ``on_stats(stats, kind)`` receives their delivery counts."""
        sinks: list[Sink] = []
        if self.kafka:
            from tradeconsole.infra.sinks.kafka import KafkaSink

            security = {
                k: (v.reveal() if hasattr(v, "reveal") else v)
                for k, v in self.kafka_settings.items()
                if k not in ("bootstrap", "topic_prefix")
            }
            sinks.append(
                KafkaSink(
                    self.kafka,
                    topic_prefix=self.kafka_settings.get("topic_prefix", "tradeconsole"),
                    security=security or None,
                    on_stats=None if on_stats is None else (lambda st: on_stats(st, KAFKA)),
                    journal_fed=True,
                )
            )
        if self.elasticsearch or self.elasticsearch_settings.get("cloud_id"):
            from tradeconsole.infra.sinks.elastic import ElasticsearchSink

            # no disk spool (a full disk cannot stop it): the journal cursor is the only record of
            # what is unsent, and a shutdown never waits for Elasticsearch
            sinks.append(
                ElasticsearchSink.from_settings(
                    self.elasticsearch,
                    self.elasticsearch_settings,
                    on_stats=None if on_stats is None else (lambda st: on_stats(st, ELASTICSEARCH)),
                    journal_fed=True,
                    deadletter_path=Path(f"{journal_path}.es-deadletter.ndjson"),
                )
            )
        return sinks


class Runtime:
    """Everything a running console or headless process owns. ``start``/``stop`` are idempotent."""

    def __init__(
        self,
        opts: RuntimeOptions,
        *,
        confirm: Callable[[str], str] | None = None,
        extra_subscribers: list[Callable[[Event], None]] | None = None,
    ) -> None:
        from tradeconsole.infra.settings import check_live_allowed, load_settings

        self.settings = load_settings(opts.config)
        #: the symbols traded: ``--symbol`` (repeatable), else the config's ``symbols``, else the default
        self.symbols = parse_symbols(opts.symbols) or list(self.settings.symbols) or [opts.symbol.upper()]
        opts = replace(opts, symbol=self.symbols[0], symbols=self.symbols)
        self.opts = opts
        # live: the operator types every symbol traded, comma-separated, to confirm
        self.trading_mode = check_live_allowed(
            live=opts.live, testnet=opts.testnet, settings=self.settings, symbol=",".join(self.symbols), confirm=confirm
        )
        cash = opts.cash if opts.cash != 10_000.0 or self.settings.paper_cash is None else self.settings.paper_cash
        self.replay_candles = None
        #: a replay's history per symbol (``replay_candles`` is the first symbol's)
        self.replay_sets: dict[str, Any] = {}
        if opts.replay:
            self._load_replay()
        if self.trading_mode in ("live", "testnet"):
            self._refuse_unsupported_exits()
        n_sessions = len(self.symbols) * len(opts.strategies)
        # paper, several sessions: one shared account; each session trades an equal allocation of
        # its cash and the risk limits hold for the account (tradeconsole.core.account)
        self.account: SharedAccount | None = None
        allocation = cash
        if self.trading_mode == "paper" and n_sessions > 1:
            self.account = SharedAccount(cash, self.settings.risk)
            allocation = cash / n_sessions
        self.specs = [
            SessionSpec(
                sym,
                iv,
                name,
                fill_model=opts.fill_model,
                broker=BrokerSettings(initial_cash=allocation),
                risk=self.settings.risk,
            )
            for sym in self.symbols
            for name, iv in opts.strategies
        ]
        if self.trading_mode != "paper":
            by_symbol: dict[str, list[str]] = {}
            for spec in self.specs:
                by_symbol.setdefault(spec.symbol, []).append(spec.key)
            crowded = next((keys for keys in by_symbol.values() if len(keys) > 1), None)
            if crowded is not None:
                # one Binance account holds one position per symbol (one-way mode): two sessions on
                # one symbol would cancel each other's protective orders and both read its fills
                from tradeconsole.infra.settings import LiveTradingRefused

                sym = crowded[0].split(":")[0]
                raise LiveTradingRefused(
                    f"{self.trading_mode} trading runs one strategy per symbol, got {', '.join(crowded)}: the "
                    f"exchange keeps one {sym} position for the account; run the others in paper mode"
                )
        # what makes a run the same run: resuming with any of these changed would silently ignore it
        identity: dict[str, Any] = {
            "symbol": opts.symbol,
            "sessions": sorted(s.key for s in self.specs),
            "fill_model": opts.fill_model,
            "cash": cash,
        }
        if self.account is not None:
            identity["account"] = "shared"
        self.journal = self._open_journal()
        try:
            restored = next(
                (st.run_id for s in self.specs if (st := self.journal.session_state(s.key)) is not None), None
            )
            if restored is not None:
                self.journal.check_resume(restored, self.trading_mode, identity)
            self.engine = Engine(
                self.specs,
                mode=self.trading_mode,
                journal=self.journal,
                broker_factory=self._broker_factory(),
                config={**self.public_config(), "identity": identity},
                account=self.account,
            )
            self._check_live_account()
            self.user_stream: Any = None
            self.sinks: list[Sink] = []
            self._viewers = list(extra_subscribers or [])
            for fn in self._viewers:
                self.engine.subscribe(fn)
            self._add_sinks()
            # ticks are deleted only once every sink configured here has acknowledged them
            self.journal.set_retention(opts.keep_candle_updates, hold_for=[s.kind for s in self.sinks])
            self.source: MarketDataSource = self._make_source()
        except BaseException:
            self.journal.close()  # a refused start must not keep the writer lock
            raise
        self._started = False

    def public_config(self) -> dict[str, Any]:
        """The run's configuration as stored in the journal (``runs.config``): options and
        settings with every secret redacted here, before the engine (and so the journal, events
        and logs) ever sees it; e.g. ``--elasticsearch https://user:pw@host`` is kept as
        ``https://user:***@host``."""
        from tradeconsole.infra.settings import redact_url

        options = {k: (redact_url(v) if isinstance(v, str) and "@" in v else v) for k, v in vars_of(self.opts).items()}
        return {"options": options, "settings": self.settings.public_view()}

    def _refuse_unsupported_exits(self) -> None:
        """The live Binance broker places fixed-percentage stop and target orders and sizes by
        equity fraction only; a strategy declaring more (trailing stops, time exits, exit
        signals, ATR/indicator levels, other sizing) is refused before anything is sent, rather
        than traded live without the exits its backtest assumed."""
        from tradeconsole.core.strategies import make_strategy

        for name, _iv in self.opts.strategies:
            missing = make_strategy(name).live_unsupported()
            if missing:
                from tradeconsole.infra.settings import LiveTradingRefused

                raise LiveTradingRefused(
                    f"the strategy {name!r} declares {', '.join(missing)}, which the live "
                    f"Binance broker does not support yet: paper-trade or backtest it instead"
                )

    # ------------------------------------------------------------------ building blocks
    def _load_replay(self) -> None:
        from tradeconsole.backtest.data import load_candles
        from tradeconsole.tui.startup import data_symbol_problem

        problem = data_symbol_problem(self.opts.replay, self.opts.symbol) if len(self.symbols) == 1 else None
        if problem:
            raise ValueError(problem)
        intervals = {iv for _, iv in self.opts.strategies}
        if len(intervals) != 1:
            raise ValueError(
                f"a replay feeds one interval: run strategies on the same interval (got {', '.join(sorted(intervals))})"
            )
        interval = intervals.pop()
        # the same interval check as a backtest: 1h data replayed as 5m is refused at start
        why = ", ".join(f"the strategy {name!r} runs on {iv}" for name, iv in self.opts.strategies)
        for sym, path in replay_paths(self.opts.replay, self.symbols, interval).items():
            candles, report = load_candles(path, interval=interval, expected_by=why)
            self.replay_sets[sym] = candles
            if self.replay_candles is None:
                self.replay_candles, self.replay_report = candles, report

    def _open_journal(self):
        from tradeconsole.core.paths import journal_path
        from tradeconsole.infra.persistence.journal import Journal

        if self.opts.journal:
            path = Path(self.opts.journal)
        elif self.opts.replay:
            # a replay without --journal is a throwaway demo: never mix it into the paper journal
            self._tmpdir = tempfile.TemporaryDirectory(prefix="tradeconsole-replay-")
            path = Path(self._tmpdir.name) / "journal.sqlite"
        else:
            path = journal_path(f"journal-{self.trading_mode}.sqlite")
        sync = "full" if self.trading_mode in ("live", "testnet") else "normal"
        return Journal(path, sync=sync)

    def _broker_factory(self):
        if self.trading_mode == "paper":
            return paper_broker
        from tradeconsole.infra.binance.execution.broker import BinanceFuturesBroker
        from tradeconsole.infra.binance.http.endpoints import resolve_endpoints

        endpoints = resolve_endpoints(self.settings.binance, testnet=self.trading_mode == "testnet")
        key, secret = self.settings.api_key, self.settings.api_secret
        assert key is not None and secret is not None

        def factory(spec: SessionSpec):
            return BinanceFuturesBroker(
                api_key=key.reveal(),
                api_secret=secret.reveal(),
                symbol=spec.symbol,
                endpoints=endpoints,
                leverage=spec.broker.leverage,
                settings=spec.broker,
            )

        return factory

    def _check_live_account(self) -> None:
        """Live/testnet: start each broker now (clock, filters, position mode, Multi-Assets mode,
        leverage, margin), so an account the broker refuses (hedge mode) stops the start with its
        one-line reason instead of failing on the first order. Other start errors (exchange
        unreachable) are retried lazily by the broker, as before."""
        if self.trading_mode == "paper":
            return
        from tradeconsole.infra.binance.http.errors import AccountModeUnsupported, AuthenticationFailed, BinanceError
        from tradeconsole.infra.settings import LiveTradingRefused

        for session in self.engine.sessions.values():
            try:
                session.broker.start()
            except AccountModeUnsupported as e:  # the account must change: a refusal, exit 2
                self.journal.close()
                raise LiveTradingRefused(str(e)) from None
            except AuthenticationFailed as e:  # a wrong or revoked key never heals by retrying
                self.journal.close()
                raise LiveTradingRefused(
                    f"the exchange refused the API key: {e} (check BINANCE_API_KEY/"
                    "BINANCE_API_SECRET, the key's futures permission and IP whitelist)"
                ) from None
            except BinanceError as e:
                log.warning("could not prepare the %s broker yet (%s); it retries on the first candle", session.key, e)

    def _start_user_stream(self) -> None:
        """Live/testnet: follow the user data stream so exits reach the journal the moment the
        exchange reports them; its events go through the engine's input queue."""
        if self.trading_mode == "paper":
            return
        from tradeconsole.infra.binance.execution.user_stream import UserDataStream
        from tradeconsole.infra.binance.http.endpoints import make_client, resolve_endpoints

        endpoints = resolve_endpoints(self.settings.binance, testnet=self.trading_mode == "testnet")
        key, secret = self.settings.api_key, self.settings.api_secret
        assert key is not None and secret is not None
        self.user_stream = UserDataStream(make_client(endpoints, key.reveal(), secret.reveal()), endpoints)
        self.user_stream.start(self.engine.feed)

    def _tagged_feed(self) -> Callable[[Any], None]:
        """The market source's sink, with each candle tagged by where it comes from: the Binance
        stream (and its REST backfill) is ``exchange``, a replay is ``replay``. Live brokers refuse
        anything but ``exchange`` (``BinanceFuturesBroker.check_feed``)."""
        import dataclasses

        from tradeconsole.core.feed import CANDLE_SOURCE_EXCHANGE, CANDLE_SOURCE_REPLAY, CandleClosed, CandleUpdate

        tag = CANDLE_SOURCE_REPLAY if self.replay_candles is not None else CANDLE_SOURCE_EXCHANGE
        feed = self.engine.feed

        def sink(ev: Any) -> None:
            if isinstance(ev, (CandleClosed, CandleUpdate)):
                ev = dataclasses.replace(ev, source=tag)
            feed(ev)

        return sink

    def sink_targets(self) -> SinkTargets:
        """Where this runtime ships events (command line first, then the config): also what the
        console's optimise screen ships its optimisation journal to."""
        return SinkTargets(
            kafka=self.opts.kafka or self.settings.kafka.get("bootstrap"),
            elasticsearch=self.opts.elasticsearch or self.settings.elasticsearch.get("url"),
            kafka_settings=self.settings.kafka,
            elasticsearch_settings=self.settings.elasticsearch,
        )

    def _add_sinks(self) -> None:
        self.sinks.extend(self.sink_targets().build(self.journal.path, on_stats=self._sink_stats))

    def _sink_stats(self, stats: dict[str, Any], source: str) -> None:
        """Delivery counts and lag of a sink, as a connection event for the viewers (UI, logs).
        Called on the sink's own thread; viewers are thread-safe and non-blocking. These status
        events are not journalled or shipped: they describe the shipping itself."""
        from tradeconsole.infra.sinks.status import delivery_event

        ev = delivery_event(stats, run_id=self.engine.run_id, mode=self.trading_mode, source=source)
        for fn in self._viewers:
            try:
                fn(ev)
            except Exception:  # a viewer's failure must not stop delivery
                log.exception("viewer failed on delivery stats")

    def _make_source(self) -> MarketDataSource:
        if self.replay_candles is not None and len(self.replay_sets) > 1:
            from tradeconsole.backtest.replay_multi import MultiReplaySource

            return MultiReplaySource(
                list(self.replay_sets.items()),
                self.specs[0].interval,
                speed=self.opts.speed,
                updates_per_candle=self.opts.updates_per_candle,
                warmup=min(self.opts.replay_warmup, max(0, len(self.replay_candles) - 1)),
                backlog=self.engine.backlog if self.opts.replay_max_backlog else None,
                max_backlog=self.opts.replay_max_backlog or 64,
            )
        if self.replay_candles is not None:
            from tradeconsole.backtest.replay import ReplaySource

            return ReplaySource(
                self.replay_candles,
                self.opts.symbol,
                self.specs[0].interval,
                speed=self.opts.speed,
                updates_per_candle=self.opts.updates_per_candle,
                warmup=min(self.opts.replay_warmup, max(0, len(self.replay_candles) - 1)),
                backlog=self.engine.backlog if self.opts.replay_max_backlog else None,
                max_backlog=self.opts.replay_max_backlog or 64,
            )
        from tradeconsole.core.broker import FILL_MODELS
        from tradeconsole.core.strategies import STRATEGIES
        from tradeconsole.infra.binance.http.endpoints import resolve_endpoints
        from tradeconsole.infra.binance.market.stream import BinanceKlineStream

        pairs = sorted({(s.symbol, s.interval) for s in self.specs})
        # REST warm-up: at least each strategy's declared/derived warm-up (strategy check (c))
        backfill = max(
            [1000]
            + [STRATEGIES[s.strategy].warmup_bars(FILL_MODELS[s.fill_model].indicator_settings()) for s in self.specs]
        )
        return BinanceKlineStream(
            pairs,
            market=self.opts.market,
            backfill=backfill,
            endpoints=resolve_endpoints(self.settings.binance, testnet=self.trading_mode == "testnet"),
        )

    # ------------------------------------------------------------------ lifecycle
    @property
    def failure(self) -> str | None:
        """Why the engine ended on its own (one line), or None: runners exit non-zero on it."""
        return self.engine.failure

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        from tradeconsole.infra.persistence.shipper import JournalShipper

        # sinks are fed from the journal, not from the engine: a crash cannot lose what the
        # journal holds, and a restart resumes shipping at the acknowledged cursor
        self.shippers = [JournalShipper(self.journal.path, sink, name=sink.kind).start() for sink in self.sinks]
        self.engine.start()
        self._start_user_stream()
        self.source.start(self._tagged_feed())

    def stop(self, timeout: float = 10.0, sink_timeout: float | None = None) -> None:
        """Stop the source, let the engine finish what it has, flush sinks, close the journal.

        ``sink_timeout`` bounds the wait for Kafka/Elasticsearch acknowledgements (default: up
        to 30 s). Nothing is lost by a short one: the journal holds every event and the next
        start resends from the shipper's acknowledged cursor; the console quits with ~1 s so an
        unreachable broker can never hold the operator's terminal."""
        if not self._started:
            return
        self._started = False
        ship_wait = max(timeout, 30.0) if sink_timeout is None else sink_timeout
        # a replay that ran to its end (not a quit) may drain the sinks while they acknowledge
        replay_done = bool(getattr(self.source, "finished", False))
        try:
            self.source.stop()
            if self.user_stream is not None:
                self.user_stream.stop()
        finally:
            self.engine.stop(timeout)
            shippers = getattr(self, "shippers", [])
            # one deadline for all of it: a shipper's stop can take twice its timeout (thread
            # join, then the acknowledgement wait), the sinks' close gets what is left
            deadline = time.monotonic() + ship_wait
            for shipper in shippers:
                share = max(0.0, deadline - time.monotonic()) / 2 / max(1, len(shippers))
                try:
                    if shipper.sink.kind == ELASTICSEARCH:
                        # a quit ends in seconds whatever Elasticsearch does: what it has not
                        # acknowledged stays in the journal and is sent (deduplicated by id) next
                        # run; a finished replay drains while it acknowledges (1 s grace when not)
                        es_wait = share if sink_timeout is not None else (ship_wait if replay_done else 2.0)
                        done = shipper.stop(es_wait, unreachable_grace_s=1.0)
                    else:
                        done = shipper.stop(share if sink_timeout is not None else ship_wait)
                except Exception as exc:  # noqa: BLE001 - e.g. the cursor write hit a full disk
                    log.warning(
                        "%s: stopping the shipper failed (%s); the next start resends from the journal cursor",
                        shipper.name,
                        exc,
                    )
                    continue
                if not done:
                    log.warning(
                        "%s: not every event was acknowledged before shutdown; the next start resends from the journal",
                        shipper.name,
                    )
            for i, sink in enumerate(self.sinks):
                try:
                    if sink_timeout is not None:
                        sink.close(max(0.05, deadline - time.monotonic()) / (len(self.sinks) - i))
                    elif sink.kind == ELASTICSEARCH:
                        sink.close(2.0)  # journal-fed: never waits for Elasticsearch itself
                    else:
                        sink.close()
                except Exception:  # shutting down: report and continue
                    log.exception("closing %r failed", sink)
            self.journal.close()


def vars_of(opts: RuntimeOptions) -> dict[str, Any]:
    return {f: getattr(opts, f) for f in opts.__slots__}  # type: ignore[attr-defined]
