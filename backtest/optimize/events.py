"""The events of an optimisation run: ``optimization_run`` (start / finish / interrupted) and one
``optimization_trial`` per reported top trial (``--top``, so a 10,000-trial search publishes a
bounded handful, not 10,000 documents; every trial is in ``--results``).

Built here from the report, published through a callable the caller gives
(``run_optimisation(publish=...)``): this layer never imports the journal or a sink; the CLI
composition in ``tradeconsole.tui.cli`` journals the events and ships them like every run.
Event ids are derived from the run id and what the event is about, so a re-shipped journal
never duplicates a document.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from tradeconsole.core.events import OptimizationRunEvent, OptimizationTrialEvent

__all__ = ["finish_event", "start_event", "trial_events"]

_HEADLINE = ("return_pct", "sharpe", "sortino", "max_drawdown_pct", "profit_factor", "trades", "win_rate_pct")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _plain(v: Any) -> Any:
    """numpy scalars -> Python numbers (the event's JSON form knows only Python types)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _envelope(run_id: str, args: argparse.Namespace, symbol: str, interval: str, kind: str) -> dict[str, Any]:
    return {
        "event_id": f"{run_id}:{kind}",
        "time": _now_ms(),
        "run_id": run_id,
        "mode": "backtest",
        "symbol": symbol,
        "interval": interval,
        "strategy": args.strategy,
    }


def _space(dims: list[Any]) -> dict[str, Any]:
    return {d.name: {"values": list(d.values), "low": d.low, "high": d.high} for d in dims}


def start_event(
    run_id: str,
    args: argparse.Namespace,
    dims: list[Any],
    symbol: str,
    interval: str,
    data: dict[str, Any],
    kernel: str,
) -> OptimizationRunEvent:
    """What is about to be searched, on which data, with which objective."""
    return OptimizationRunEvent(
        **_envelope(run_id, args, symbol, interval, "optimization_run:start"),
        phase="start",
        fill_model=args.fill_model,
        search=args.search,
        objective=args.objective,
        kernel=kernel,
        space=_plain(_space(dims)),
        constraints={"min_trades": args.min_trades, "max_drawdown_pct": args.max_drawdown},
        start=data["start"],
        end=data["end"],
        bars=int(data["bars"]),
    )


def finish_event(
    run_id: str, args: argparse.Namespace, symbol: str, interval: str, out: dict[str, Any]
) -> OptimizationRunEvent:
    """The end of the run: the report's best trial with its honest numbers, or (``out`` holding
    ``status: interrupted``) how much was computed before the interruption."""
    base = dict(
        phase="finish",
        fill_model=args.fill_model,
        search=args.search,
        objective=args.objective,
        constraints={"min_trades": args.min_trades, "max_drawdown_pct": args.max_drawdown},
    )
    if out.get("status") == "interrupted":
        return OptimizationRunEvent(
            **_envelope(run_id, args, symbol, interval, "optimization_run:interrupted"),
            **{**base, "phase": "interrupted"},
            computed=int(out["computed"]),
            note="interrupted: finished rows kept in the results file, a re-run resumes",
        )
    best = out.get("best")
    wf = out.get("walk_forward")
    oos = None
    if wf:
        oos = {
            "folds": len([f for f in wf["folds"] if "params" in f]),
            "mean_in_sample_score": wf["mean_in_sample_score"],
            "mean_out_of_sample_score": wf["mean_out_of_sample_score"],
            "return_pct_compounded": wf["out_of_sample_return_pct_compounded"],
            "chosen": wf["chosen"],
        }
    data = out["data"]
    return OptimizationRunEvent(
        **_envelope(run_id, args, symbol, interval, "optimization_run:finish"),
        **base,
        kernel=out.get("kernel", ""),
        start=data["start"],
        end=data["end"],
        bars=int(data["bars"]),
        trials=int(out["evaluated"]),
        computed=int(out["computed"]),
        resumed=int(out["resumed"]),
        best_params=_plain(best["params"]) if best else None,
        best_score=_plain(best["score"]) if best else None,
        in_sample=_plain(best["in_sample_full_window"]) if best else None,
        out_of_sample=_plain(oos),
        pbo=_plain((out.get("pbo") or {}).get("pbo")),
        deflated_sharpe=_plain((out.get("deflated_sharpe") or {}).get("dsr")),
        elapsed_s=float(out["elapsed_s"]),
        note=out.get("note") or out.get("warning") or "",
    )


def trial_events(
    run_id: str, args: argparse.Namespace, symbol: str, interval: str, out: dict[str, Any]
) -> list[OptimizationTrialEvent]:
    """One event per reported top trial (at most ``--top``), best first."""
    evs = []
    for rank, t in enumerate(out.get("top") or [], start=1):
        evs.append(
            OptimizationTrialEvent(
                **_envelope(run_id, args, symbol, interval, f"optimization_trial:{rank}"),
                rank=rank,
                objective=args.objective,
                params=_plain(t["params"]),
                score=_plain(t["score"]),
                in_sample=_plain({k: t.get(k) for k in _HEADLINE}),
                test_windows=_plain(t.get("test_windows")),
            )
        )
    return evs
