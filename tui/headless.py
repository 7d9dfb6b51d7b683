"""``tradeconsole run --headless``: the engine without a UI, for servers.

Logs are JSON lines on stderr (one per notable event: fills, signals, orders, positions, errors,
connection and engine state; candles at DEBUG). SIGINT and SIGTERM shut down cleanly: the source
stops, queued candles are processed and journalled, sinks are flushed. With ``--replay`` the run
ends when the data ends; ``--json`` then prints, per session, a summary with the same fields as
``tradeconsole backtest --json`` (rebuilt from the journal, so a resumed run is summarised whole).
Restarting with the same ``--journal`` resumes where the previous run stopped.

Exit codes (what a supervisor acts on): 0 a clean stop (signal, end of replay); 1 the engine
failed while running (journal write failed, e.g. disk full; a broken broker): the root cause is
the last line on stderr (``error: ...``) and restarting resumes from the journal; 2 refused to
start (bad options, live trading not confirmed, journal in use by another process, damaged, or
holding a run started with other options): restarting does not help until a person acts.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

from tradeconsole.core.events import Event

__all__ = ["JsonLogFormatter", "main"]

log = logging.getLogger("tradeconsole")

_NOTABLE = {"fill", "signal", "order", "position", "error", "connection", "engine_state", "backtest_run"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra={"event": ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ev = getattr(record, "event", None)
        if ev is not None:
            out["event"] = ev
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _log_event(e: Event) -> None:
    """Engine subscriber: structured log line per notable event (cheap, never blocks)."""
    if e.type in _NOTABLE:
        level = logging.WARNING if e.type == "error" else logging.INFO
        log.log(level, e.type, extra={"event": e.to_dict()})
    elif log.isEnabledFor(logging.DEBUG):
        log.debug(e.type, extra={"event": e.to_dict()})


def _confirm_fn(args: argparse.Namespace):
    if getattr(args, "confirm", None):
        return lambda _prompt: args.confirm
    if sys.stdin.isatty():
        return lambda prompt: input(prompt)
    return None


def main(args: argparse.Namespace) -> int:
    from tradeconsole.tui.cli import EnvironmentFailure, UserError, check_engine_args

    if not args.headless:
        raise UserError("`tradeconsole run` needs --headless (the console is plain `tradeconsole`)")
    check_engine_args(args)
    _setup_logging()
    from tradeconsole.infra.persistence.journal import JournalError, JournalWriteError
    from tradeconsole.tui.runtime import Runtime, options_from_args

    try:
        opts = options_from_args(args)
    except ValueError as exc:  # unknown strategy and the like: a mistake in the options
        raise UserError(str(exc)) from None
    # config, data and live-trading refusals are mapped to one `error:` line by tradeconsole.tui.cli.main
    try:
        runtime = Runtime(opts, confirm=_confirm_fn(args), extra_subscribers=[_log_event])
    except JournalWriteError as exc:  # e.g. disk full at start: a restart helps once there is space
        raise EnvironmentFailure(str(exc)) from None
    except JournalError as exc:  # in use, damaged, another run's options: restarting cannot help
        raise UserError(str(exc)) from None

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    engine = runtime.engine
    log.info(
        "starting",
        extra={
            "event": {
                "run_id": engine.run_id,
                "mode": runtime.trading_mode,
                "resumed": engine.resumed,
                "sessions": [s.key for s in runtime.specs],
                "journal": str(runtime.journal.path),
            }
        },
    )
    runtime.start()
    source_name = getattr(runtime.source, "name", "replay")
    try:
        while not stop.is_set():
            if opts.replay and source_name in engine.finished_sources and engine.wait_idle(0.2):
                break
            if not engine.alive:
                break  # the engine failed: runtime.failure says why
            stop.wait(0.2)
    finally:
        try:
            runtime.stop()
        except JournalError as exc:  # closing wrote to a journal that cannot take it any more
            if runtime.failure is None:
                engine.failure = str(exc)
    failure = runtime.failure
    log.info(
        "stopped",
        extra={
            "event": {
                "run_id": engine.run_id,
                "closed_candles": engine.processed_closed,
                "duplicates_skipped": engine.duplicates_skipped,
                "invalid_skipped": engine.invalid_skipped,
                "failure": failure,
            }
        },
    )
    if failure is not None:
        # one line, last on stderr, the root cause: what `systemctl status` and a person see first
        raise EnvironmentFailure(failure)  # tradeconsole.tui.cli.main prints it as one `error:` line, exit 1
    if args.json:
        _print_summaries(runtime)
    return 0


def _print_summaries(runtime: Any) -> None:
    from tradeconsole.backtest.from_journal import result_from_journal
    from tradeconsole.backtest.metrics import compute_metrics
    from tradeconsole.backtest.report import to_json
    from tradeconsole.infra.persistence.journal import Journal

    journal = Journal(runtime.journal.path, sync="normal", verify=False)  # just written and closed by this run
    try:
        for spec in runtime.specs:
            result = result_from_journal(journal, runtime.engine.run_id, spec)
            if len(result.equity) == 0:
                continue
            print(to_json(compute_metrics(result)))
    finally:
        journal.close()
