"""``tradeconsole optimize``: search strategy parameters, honestly.

Flow: check every option before any work; load the data once; evaluate every searched
combination on the full window (the results file, the PBO blocks, the deflated Sharpe ratio,
the neighbourhood of the best) and, by default, walk forward: each fold searches its training
window alone, picks its best feasible combination and trades it on the following test window,
so the out-of-sample column was never seen by the choice. The top results of the full window
and every fold's chosen combination on its test window are re-run through ``run_backtest``
(the one path); any difference ends the run with exit 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tradeconsole.backtest.inputs import check_data_files, check_input_path
from tradeconsole.core.errors import EnvironmentFailure, UserError, clip

if TYPE_CHECKING:  # the optimiser's modules load only when `optimize` runs
    from tradeconsole.backtest.optimize.evaluate import Workspace
    from tradeconsole.backtest.optimize.objective import Objective
    from tradeconsole.backtest.optimize.run import Window
    from tradeconsole.backtest.optimize.space import Dimension
    from tradeconsole.core.broker import BrokerSettings

#: the results store's read and write callbacks for one window (see run.evaluate_points)
Lookup = Callable[[dict[str, float]], dict[str, Any] | None]
Record = Callable[[dict[str, float], dict[str, Any]], dict[str, Any]]

__all__ = ["Interrupted", "main", "parse_duration", "run_optimisation"]

TEXT_METRICS = ("return_pct", "sharpe", "sortino", "max_drawdown_pct", "profit_factor", "trades", "win_rate_pct")


def parse_duration(text: str, interval_ms: int, option: str) -> int:
    """``60d``/``12h``/``2w``/``500`` (bars) -> a number of bars of ``interval_ms``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw]?)\s*", text)
    if not m:
        raise UserError(f"{option} {clip(text)!r}: use a length such as 60d, 12h, 2w or a number of bars")
    value, unit = float(m.group(1)), m.group(2)
    ms = {"": None, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}[unit]
    bars = int(value) if ms is None else int(value * ms // interval_ms)
    if bars < 2:
        raise UserError(f"{option} {clip(text)!r}: shorter than 2 candles of this interval")
    return bars


def _windows(args: argparse.Namespace, start: int, n: int, interval_ms: int) -> list[tuple[Any, Any]]:
    from tradeconsole.backtest.optimize.run import Window

    folds: list[tuple[Any, Any]] = []
    if args.train or args.test:
        if not (args.train and args.test):
            raise UserError("--train and --test go together (e.g. --train 60d --test 20d)")
        tr = parse_duration(args.train, interval_ms, "--train")
        te = parse_duration(args.test, interval_ms, "--test")
        s = start
        while s + tr + te <= n:
            k = len(folds) + 1
            folds.append((Window(f"train{k}", s, s + tr), Window(f"test{k}", s + tr, s + tr + te)))
            s += te
        if not folds:
            raise UserError(
                f"--train {args.train} + --test {args.test} ({tr + te} candles) is longer than the data "
                f"({n - start} candles)"
            )
        return folds
    k = 4 if args.folds is None else args.folds
    if k == 0:
        return []
    seg = (n - start) // (k + 1)
    if seg < 50:
        raise UserError(f"--folds {k}: {n - start} candles give under 50 per window; use fewer folds")
    for i in range(k):
        a = start + i * seg
        end = n if i == k - 1 else a + 2 * seg
        folds.append((Window(f"train{i + 1}", a, a + seg), Window(f"test{i + 1}", a + seg, end)))
    return folds


class Interrupted(Exception):
    """Ctrl-C (or a progress callback asking to stop): ``computed`` rows were kept."""

    def __init__(self, computed: int, results: str | None) -> None:
        super().__init__(f"interrupted after {computed} computed combination(s)")
        self.computed, self.results = computed, results


#: ``on_progress(label, done, total)``; returning False stops the run (as Ctrl-C does)
ProgressHook = Callable[[str, int, int], bool | None]
#: receives every ``tradeconsole.core.events`` event of the run (the CLI composition journals them)
Publish = Callable[[Any], None]


def main(args: argparse.Namespace, publish: Publish | None = None) -> int:
    """Run the optimisation the options describe; print the report (text or ``--json``)."""
    try:
        out = run_optimisation(args, publish=publish)
    except Interrupted as exc:
        where = f" in {exc.results}" if exc.results else " (no --results file: nothing kept)"
        print(
            f"interrupted: {exc.computed} combination(s) computed this run kept{where}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    if args.json:
        print(json.dumps(_public(out), default=_json_default, allow_nan=False))
    else:
        print(_text(out))
    if args.plot:
        from tradeconsole.backtest.optimize.plot import heatmap

        stream = sys.stderr if args.json else sys.stdout
        color = bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")
        print(heatmap(out["_dims"], out["_points"], out["_rows"], args.plot_params, color=color), file=stream)
    return 0


def _public(out: dict[str, Any]) -> dict[str, Any]:
    """The report without the in-memory parts (``_dims``, ``_points``, ``_rows``)."""
    return {k: v for k, v in out.items() if not k.startswith("_")}


def run_optimisation(
    args: argparse.Namespace, *, on_progress: ProgressHook | None = None, publish: Publish | None = None
) -> dict[str, Any]:
    """The whole optimisation of ``args`` (the ``optimize`` options): the report as a dict, plus
    ``_dims``/``_points``/``_rows`` (every full-window combination, for heatmaps and tables).
    Raises ``Interrupted`` on Ctrl-C or when ``on_progress`` returns False, after keeping every
    finished row. ``publish`` receives an ``optimization_run`` start and finish event and one
    ``optimization_trial`` event per reported top trial."""
    from tradeconsole.backtest.cli import check_output_file, symbol_of
    from tradeconsole.backtest.data import DataError, load_candles, window_with_warmup
    from tradeconsole.backtest.optimize.evaluate import MismatchError, Workspace, data_hash, kernel_reason
    from tradeconsole.backtest.optimize.objective import Objective, load_objective
    from tradeconsole.backtest.optimize.run import Job, LocalExecutor, Progress, Window
    from tradeconsole.backtest.optimize.space import SpaceError, grid, grid_size, parse_space, random_points
    from tradeconsole.backtest.optimize.store import ResultsStore, combo_key
    from tradeconsole.core.broker import BrokerSettings
    from tradeconsole.core.domain import interval_ms, iso_ms, parse_utc_ms
    from tradeconsole.core.strategies import STRATEGIES

    if args.strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {clip(args.strategy)!r}; available: {', '.join(sorted(STRATEGIES))}")
    interval = args.interval or STRATEGIES[args.strategy].default_interval
    args.workers = args.workers or (os.cpu_count() or 1)
    try:
        dims = parse_space(args.strategy, args.param)
        objective = Objective(
            args.objective, load_objective(args.objective), min_trades=args.min_trades, max_drawdown=args.max_drawdown
        )
        settings = BrokerSettings(
            initial_cash=args.cash,
            leverage=args.leverage,
            fee_rate=args.fee,
            slippage_bps=args.slippage_bps,
            funding_rate_8h=args.funding_rate,
        )
    except (SpaceError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if args.search == "grid":
        total = grid_size(dims)
        if total > 5_000_000:
            raise UserError(f"the grid has {total:,} combinations; narrow it or use --search random --trials N")
    elif args.trials is None:
        raise UserError(f"--search {args.search} needs --trials N")
    if args.backend == "dask" and not args.address:
        raise UserError("--backend dask needs --address (the scheduler, e.g. tcp://127.0.0.1:8786)")
    if args.results:
        if not args.results.lower().endswith((".csv", ".parquet")):
            raise UserError(f"--results {clip(args.results, 200)}: use a .csv or .parquet file name")
        check_output_file(args.results, "--results")
    start_ms = parse_utc_ms(args.date_from) if args.date_from else None
    end_ms = parse_utc_ms(args.date_to) if args.date_to else None
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise UserError("--to must be after --from")
    check_input_path(args.data, "--data")
    check_data_files(args.data)
    symbol = symbol_of(args.data)
    expected_by = f"--interval is {interval}" if args.interval else f"the strategy {args.strategy!r} runs on {interval}"
    try:
        candles, report = load_candles(
            args.data, interval=interval, skip_bad_rows=args.skip_bad_rows, expected_by=expected_by
        )
    except UnicodeDecodeError as exc:
        raise UserError(f"{clip(args.data, 200)}: binary data in a CSV file ({exc.reason})") from None
    except DataError:
        raise
    warmup = 0
    if start_ms is not None or end_ms is not None:
        candles, warmup = window_with_warmup(candles, start_ms, end_ms)
        if len(candles) <= warmup:
            raise UserError("no candles in the requested date range")
    for line in report.skipped_rows[:20]:
        print(f"warning: skipped {clip(line, 300)}", file=sys.stderr)
    n = len(candles)
    step_ms = interval_ms(interval)
    folds = _windows(args, warmup, n, step_ms)
    full = Window("full", warmup, n)

    paths = tuple(getattr(args, "strategy_path", None) or ())
    job = Job(candles, args.strategy, args.fill_model, settings, symbol, interval, args.pbo_blocks, paths)
    plain = kernel_reason(args.strategy)
    kernel = "compiled" if plain is None else f"plain path ({plain})"
    run_id = f"opt-{uuid.uuid4().hex[:12]}"
    data_info = {
        "start": iso_ms(int(candles.open_time[warmup])),
        "end": iso_ms(int(candles.open_time[-1]) + step_ms),
        "bars": n - warmup,
        "warmup_bars": warmup,
        "summary": report.summary(),
    }
    if publish is not None:
        from tradeconsole.backtest.optimize.events import start_event

        publish(start_event(run_id, args, dims, symbol, interval, data_info, kernel))
    ctx = {
        "data": data_hash(candles),
        "strategy": args.strategy,
        "model": args.fill_model,  # a key of the results-file hash: renaming it would void every stored row
        "settings": asdict(settings),
        "symbol": symbol,
        "interval": interval,
    }
    store = ResultsStore(args.results)
    from_file = set(store.rows)  # keys already in --results before this run
    resumed = reused = computed = 0
    names = [d.name for d in dims]

    def key_of(w: Window, p: dict[str, float]) -> str:
        wctx = {**ctx, "window": [int(candles.open_time[w.start]), int(candles.open_time[w.end - 1])]}
        return combo_key(wctx, p)

    def lookup_for(w: Window) -> Lookup:
        def lookup(p: dict[str, float]) -> dict[str, Any] | None:
            nonlocal resumed, reused
            k = key_of(w, p)
            row = store.get(k)
            if row is not None:
                if k in from_file:
                    resumed += 1
                else:  # computed earlier in this run for another window (a test window = the next training one)
                    reused += 1
                row = dict(row)
                if isinstance(row.get("blocks"), str):
                    row["blocks"] = json.loads(row["blocks"])
                row["score"] = objective.score(row)  # the objective may differ from the stored run's
            return row

        return lookup

    def record_for(w: Window) -> Record:
        def record(p: dict[str, float], m: dict[str, Any]) -> dict[str, Any]:
            nonlocal computed
            computed += 1
            row = {"key": key_of(w, p), "window": w.name, **{k: p[k] for k in names}, **m}
            if "blocks" in row:
                row["blocks"] = json.dumps(row["blocks"])
            store.add(row)
            out = dict(row)
            if "blocks" in out:
                out["blocks"] = m["blocks"]
            out["score"] = objective.score(out)
            return out

        return record

    if args.backend == "dask":
        from tradeconsole.backtest.optimize.cluster import DaskExecutor

        executor: Any = DaskExecutor(job, args.address)
    else:
        executor = LocalExecutor(job, args.workers)
    t0 = time.perf_counter()
    interrupted = False
    full_points: list[dict[str, float]] = []
    full_rows: list[dict[str, Any]] = []
    fold_out: list[dict[str, Any]] = []
    test_rows: list[dict[str, Any]] = []  # each fold's chosen combination on its test window (all metrics)
    try:

        def search(w: Window, label: str) -> tuple[list[dict[str, float]], list[dict[str, Any]]]:
            from tradeconsole.backtest.optimize.run import evaluate_points

            if args.search == "grid":
                pts = list(grid(dims))
            elif args.search == "random":
                pts = random_points(dims, args.trials, args.seed)
            else:
                return _optuna(dims, args, executor, w, lookup_for(w), record_for(w), label, on_progress)
            prog = Progress(label, len(pts), on_update=on_progress)
            rows = evaluate_points(executor, w, pts, lookup_for(w), record_for(w), prog, batch=_batch(len(pts), args))
            prog.end()
            return pts, rows

        full_points, full_rows = search(full, "full window")
        for tr, te in folds:
            pts, rows = search(tr, tr.name)
            best = _best(rows)
            entry: dict[str, Any] = {
                "fold": tr.name[5:],
                "train": _span(candles, tr, step_ms),
                "test": _span(candles, te, step_ms),
            }
            if best is None:
                entry["note"] = "no feasible combination in the training window"
                fold_out.append(entry)
                continue
            from tradeconsole.backtest.optimize.run import evaluate_points

            test_row = evaluate_points(executor, te, [pts[best]], lookup_for(te), record_for(te))[0]
            test_rows.append(test_row)
            entry.update(
                params=pts[best],
                in_sample=_pick(rows[best]),
                out_of_sample=_pick(test_row),
                in_sample_score=rows[best]["score"],
                out_of_sample_score=objective.score(test_row),
            )
            fold_out.append(entry)
        # ---- the one path checks the fast path: the top results of the full window and every
        # fold's out-of-sample run are re-run through run_backtest (in parallel on the workers)
        order = sorted(
            (i for i, r in enumerate(full_rows) if r["score"] is not None),
            key=lambda i: full_rows[i]["score"],
            reverse=True,
        )
        checks = [(full, full_points[i], full_rows[i]) for i in order[: args.verify_top]]
        chosen = iter(test_rows)
        checks += [(te, f["params"], next(chosen)) for (_, te), f in zip(folds, fold_out, strict=True) if "params" in f]
        refs = executor.references([(w, p) for w, p, _ in checks])
        try:
            for (w, p, row), ref in zip(checks, refs, strict=True):
                _same_row(row, ref, p, w.name)
        except MismatchError as exc:
            raise EnvironmentFailure(f"self-check failed, results not trustworthy: {exc}") from None
        checked = len(checks)
        top_oos = _top_out_of_sample(
            executor, folds, full_points, full_rows, order[: args.top], objective, lookup_for, record_for
        )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        executor.close()
        store.close()
    if interrupted:
        if publish is not None:
            from tradeconsole.backtest.optimize.events import finish_event

            publish(finish_event(run_id, args, symbol, interval, {"status": "interrupted", "computed": computed}))
        raise Interrupted(computed, args.results)
    elapsed = time.perf_counter() - t0
    full_ws = Workspace(
        candles, args.strategy, args.fill_model, settings, warmup=warmup, symbol=symbol, interval=interval
    )

    out = _report(args, dims, objective, full_points, full_rows, order, fold_out, full_ws, settings)
    for t, oos in zip(out["top"], top_oos, strict=False):
        t["test_windows"] = oos
    out.update(
        strategy=args.strategy,
        fill_model=args.fill_model,
        symbol=symbol,
        interval=interval,
        kernel=kernel,
        data=data_info,
        search=args.search,
        evaluated=len(full_rows),
        resumed=resumed,
        reused=reused,
        computed=computed,
        verified_against_backtest=checked,
        elapsed_s=round(elapsed, 3),
        results_file=args.results,
    )
    if publish is not None:
        from tradeconsole.backtest.optimize.events import finish_event, trial_events

        for ev in trial_events(run_id, args, symbol, interval, out):
            publish(ev)
        publish(finish_event(run_id, args, symbol, interval, out))
    out.update(_dims=dims, _points=full_points, _rows=full_rows, _run_id=run_id)
    return out


def _top_out_of_sample(
    executor: Any,
    folds: list[Any],
    points: list[dict[str, float]],
    rows: list[dict[str, Any]],
    top: list[int],
    objective: Objective,
    lookup_for: Callable[[Window], Lookup],
    record_for: Callable[[Window], Record],
) -> list[dict[str, Any]]:
    """Each top trial on every walk-forward test window: its compounded return, mean score and
    trades there. The full-window ranking saw these candles, so this is how a trial held up
    window by window, not a forecast; the honest number is the walk-forward's (each fold chose
    on its training window alone)."""
    from tradeconsole.backtest.optimize.run import evaluate_points

    out: list[dict[str, Any]] = [{"windows": 0, "return_pct": None, "score_mean": None, "trades": 0} for _ in top]
    if not folds or not top:
        return out
    pts = [points[i] for i in top]
    per_window = [evaluate_points(executor, te, pts, lookup_for(te), record_for(te), batch=4) for _, te in folds]
    for j in range(len(pts)):
        comp, scores, trades = 1.0, [], 0
        for rs in per_window:
            r = rs[j]
            comp *= 1 + r["return_pct"] / 100
            scores.append(objective.score(r))
            trades += int(r["trades"])
        out[j] = {
            "windows": len(per_window),
            "return_pct": (comp - 1) * 100,
            "score_mean": _mean(scores),
            "trades": trades,
        }
    return out


def _batch(n: int, args: argparse.Namespace) -> int:
    workers: int = args.workers
    return max(1, min(32, n // max(1, 4 * workers)))


def _span(candles: Any, w: Any, step_ms: int) -> list[str]:
    from tradeconsole.core.domain import iso_ms

    return [iso_ms(int(candles.open_time[w.start])), iso_ms(int(candles.open_time[w.end - 1]) + step_ms)]


def _best(rows: list[dict[str, Any]]) -> int | None:
    best = None
    for i, r in enumerate(rows):
        if r["score"] is not None and (best is None or r["score"] > rows[best]["score"]):
            best = i
    return best


def _pick(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in TEXT_METRICS}


def _same_row(row: dict[str, Any], ref: dict[str, Any], params: dict[str, float], window: str) -> None:
    """The stored/computed row must carry exactly the one path's scalar metrics (resumed rows too)."""
    from tradeconsole.backtest.optimize.evaluate import MismatchError

    for k, v in ref.items():
        got = row.get(k)
        if isinstance(v, float) and isinstance(got, float) and (v == got or (math.isnan(v) and math.isnan(got))):
            continue
        if got != v:
            raise MismatchError(
                f"{params} ({window} window): {k} is {got!r} in the optimiser's results, {v!r} in "
                "`tradeconsole backtest`"
            )


def _optuna(
    dims: list[Dimension],
    args: argparse.Namespace,
    executor: Any,
    w: Window,
    lookup: Lookup,
    record: Record,
    label: str,
    on_progress: Callable[..., Any] | None = None,
) -> tuple[list[dict[str, float]], list[dict[str, Any]]]:
    """TPE over the space; infeasible trials (constraints, undefined objective) are pruned."""
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState
    from tradeconsole.backtest.optimize.run import Progress, evaluate_points

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed))
    # a numeric dimension has both bounds, a listed one neither (space.Dimension)
    dist: dict[str, BaseDistribution] = {
        d.name: (IntDistribution(int(d.low), int(d.high)) if d.integer else FloatDistribution(d.low, d.high))
        if d.low is not None and d.high is not None
        else CategoricalDistribution(list(d.values))
        for d in dims
    }
    prog = Progress(label, args.trials, on_update=on_progress)
    pts: list[dict[str, float]] = []
    rows: list[dict[str, Any]] = []
    batch = max(1, 2 * args.workers)
    while len(pts) < args.trials:
        trials = [study.ask(dist) for _ in range(min(batch, args.trials - len(pts)))]
        points = [
            {
                d.name: (
                    float(f"{t.params[d.name]:.6g}") if d.low is not None and not d.integer else float(t.params[d.name])
                )
                for d in dims
            }
            for t in trials
        ]
        points = [
            {
                k: min(max(v, d.low), d.high) if d.low is not None and d.high is not None else v
                for (k, v), d in zip(p.items(), dims)
            }
            for p in points
        ]
        got = evaluate_points(executor, w, points, lookup, record, prog, batch=1)
        for t, r in zip(trials, got, strict=True):
            if r["score"] is None:
                study.tell(t, state=TrialState.PRUNED)
            else:
                study.tell(t, r["score"])
        pts += points
        rows += got
    prog.end()
    return pts, rows


def _report(
    args: argparse.Namespace,
    dims: list[Dimension],
    objective: Objective,
    points: list[dict[str, float]],
    rows: list[dict[str, Any]],
    order: list[int],
    folds: list[dict[str, Any]],
    ws: Workspace,
    settings: BrokerSettings,
) -> dict[str, Any]:
    import numpy as np
    from tradeconsole.backtest.optimize.stats import deflated_sharpe, neighbourhood, pbo_cscv, returns_of

    out: dict[str, Any] = {
        "objective": objective.name,
        "constraints": {"min_trades": objective.min_trades, "max_drawdown_pct": objective.max_drawdown},
        "feasible": len(order),
    }
    out["top"] = [{"params": points[i], "score": rows[i]["score"], **_pick(rows[i])} for i in order[: args.top]]
    if not order:
        out["best"] = None
        out["note"] = "no combination met the constraints"
    else:
        b = order[0]
        out["best"] = {"params": points[b], "score": rows[b]["score"], "in_sample_full_window": _pick(rows[b])}
        nb = neighbourhood(points, [r["score"] for r in rows], b, dims)
        sc = [rows[j]["score"] for j in nb if rows[j]["score"] is not None]
        out["stability"] = {
            "neighbours": len(nb),
            "feasible_neighbours": len(sc),
            "score_best": rows[b]["score"],
            "score_mean": float(np.mean(sc)) if sc else None,
            "score_min": min(sc) if sc else None,
            "score_max": max(sc) if sc else None,
            "return_pct_mean": float(np.mean([rows[j]["return_pct"] for j in nb])) if nb else None,
        }
        if args.pbo_blocks:
            stats = np.array([r["blocks"] for r in rows], dtype=float)
            out["pbo"] = pbo_cscv(stats)
            tot = stats.sum(axis=1)
            cnt, s1, s2 = tot[:, 0], tot[:, 1], tot[:, 2]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = s1 / cnt
                sd = np.sqrt(np.maximum((s2 - cnt * mean**2) / (cnt - 1), 0))
                srs = np.where(sd > 1e-15, mean / sd, 0.0)
            best_rets = returns_of(ws.run(points[b]).equity, settings.initial_cash)
            out["deflated_sharpe"] = deflated_sharpe(srs, best_rets)
    if folds:
        oos = [f for f in folds if "params" in f]
        comp = 1.0
        for f in oos:
            comp *= 1 + f["out_of_sample"]["return_pct"] / 100
        out["walk_forward"] = {
            "folds": folds,
            "mean_in_sample_score": _mean([f["in_sample_score"] for f in oos]),
            "mean_out_of_sample_score": _mean([f["out_of_sample_score"] for f in oos]),
            "out_of_sample_return_pct_compounded": (comp - 1) * 100 if oos else None,
            "chosen": oos[-1]["params"] if oos else None,
        }
    else:
        out["walk_forward"] = None
        out["warning"] = "in-sample only (--folds 0): every number below was seen by the choice"
    return out


def _mean(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return sum(v) / len(v) if v else None


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def _text(o: dict[str, Any]) -> str:
    lines = [
        f"Optimisation  {o['strategy']} {o['symbol']} {o['interval']}  fill model {o['fill_model']}  search {o['search']}  "
        f"objective {o['objective']}",
        f"  Data                 {o['data']['start']} .. {o['data']['end']}  ({o['data']['bars']} bars)",
        f"  Combinations         {o['evaluated']} evaluated, {o['computed']} backtests computed and {o['resumed']} "
        "resumed from the results file over all windows, "
        f"{o['feasible']} feasible, {o['elapsed_s']:.1f}s",
        f"  Self-check           {o['verified_against_backtest']} result(s) re-run through `backtest`: identical",
        f"  kernel: {o['kernel']}"
        + (
            ""
            if o["kernel"] == "compiled"
            else ": the compiled kernel does not model this strategy; every combination is a run of the real engine"
        ),
    ]
    if o.get("warning"):
        lines.append(f"  WARNING              {o['warning']}")
    if o["best"] is None:
        lines.append(f"  {o.get('note')}")
        return "\n".join(lines)
    lines.append("")
    lines.append("  Top (full window, in-sample)")
    cols = list(o["top"][0]["params"])
    lines.append("    " + "  ".join(f"{c:>14}" for c in cols + ["score", *TEXT_METRICS[:5]]))
    for t in o["top"]:
        vals = [t["params"][c] for c in cols] + [t["score"]] + [t[k] for k in TEXT_METRICS[:5]]
        lines.append("    " + "  ".join(f"{_fmt(v):>14}" for v in vals))
    st = o["stability"]
    lines.append("")
    lines.append(
        f"  Stability            {st['neighbours']} neighbours of the best: score mean {_fmt(st['score_mean'])}, "
        f"min {_fmt(st['score_min'])}, max {_fmt(st['score_max'])} (best {_fmt(st['score_best'])})"
    )
    if "pbo" in o:
        p, d = o["pbo"], o["deflated_sharpe"]
        lines.append(
            f"  PBO (CSCV)           {_fmt(p.get('pbo'))}  over {p.get('splits')} splits of {p.get('blocks')} "
            "blocks: how often the in-sample best is at or below the out-of-sample median"
        )
        lines.append(f"  Deflated Sharpe      {_fmt(d.get('dsr'))}  P(true Sharpe > 0) after {d.get('trials')} trials")
    wf = o["walk_forward"]
    if wf:
        lines.append("")
        lines.append("  Walk-forward (each fold chooses on its training window only)")
        lines.append(
            f"    {'fold':>4}  {'test window':>44}  {'IS score':>10}  {'OOS score':>10}  {'IS ret%':>9}  {'OOS ret%':>9}  params"
        )
        for f in wf["folds"]:
            if "params" not in f:
                lines.append(f"    {f['fold']:>4}  {f['note']}")
                continue
            lines.append(
                f"    {f['fold']:>4}  {f['test'][0] + ' .. ' + f['test'][1]:>44}  {_fmt(f['in_sample_score']):>10}  "
                f"{_fmt(f['out_of_sample_score']):>10}  {_fmt(f['in_sample']['return_pct']):>9}  "
                f"{_fmt(f['out_of_sample']['return_pct']):>9}  {f['params']}"
            )
        lines.append(
            f"    mean score in-sample {_fmt(wf['mean_in_sample_score'])}, out-of-sample "
            f"{_fmt(wf['mean_out_of_sample_score'])}; out-of-sample return compounded "
            f"{_fmt(wf['out_of_sample_return_pct_compounded'])}%"
        )
        lines.append(f"    chosen for the next period (last training window): {wf['chosen']}")
    return "\n".join(lines)
