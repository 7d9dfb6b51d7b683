"""``--plot``: a heatmap of the objective over two parameters (the best score over the others).

With colour (a terminal without NO_COLOR, https://no-color.org) it is a plotext matrix plot;
without, the same grid as numbers, so nothing depends on colour to be read.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["heatmap"]


def heatmap(
    dims: list[Any], points: list[dict[str, float]], rows: list[dict[str, Any]], which: str | None, *, color: bool
) -> str:
    """The heatmap as text; ``which`` = "X,Y" parameter names (default: the first two searched)."""
    names = [d.name for d in dims]
    if which:
        pick = [s.strip() for s in which.split(",")]
        if len(pick) != 2 or any(p not in names for p in pick):
            return f"--plot-params {which!r}: name two searched parameters ({', '.join(names)})"
    else:
        if len(names) < 2:
            return "--plot needs two searched parameters"
        pick = names[:2]
    x, y = pick
    xs = sorted({p[x] for p in points})
    ys = sorted({p[y] for p in points})
    if len(xs) * len(ys) > 4000:
        return f"--plot: {len(xs)} x {len(ys)} distinct values is too many for a heatmap (use --search grid)"
    best: dict[tuple[float, float], float] = {}
    for p, r in zip(points, rows, strict=True):
        s = r["score"]
        if s is None:
            continue
        k = (p[x], p[y])
        if k not in best or s > best[k]:
            best[k] = s
    title = f"best score by {x} (columns) and {y} (rows); '-' = no feasible combination"
    if not color:
        w = max(9, *(len(f"{v:g}") + 1 for v in xs))
        out = [title, f"{y:>12} \\ {x}", " " * 14 + "".join(f"{v:>{w}g}" for v in xs)]
        for yv in reversed(ys):
            cells = "".join(f"{best[(xv, yv)]:>{w}.3g}" if (xv, yv) in best else " " * (w - 1) + "-" for xv in xs)
            out.append(f"{yv:>12g}  {cells}")
        return "\n".join(out)
    import plotext as plt

    vals = [v for v in best.values() if math.isfinite(v)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    span = (hi - lo) or 1.0
    matrix = [
        [(int(40 + 215 * (best[(xv, yv)] - lo) / span),) * 3 if (xv, yv) in best else (0, 0, 0) for xv in xs]
        for yv in reversed(ys)
    ]
    plt.clf()
    plt.matrix_plot(matrix)
    plt.title(f"{title}; brighter = higher ({lo:.3g}..{hi:.3g})")
    plt.xticks(list(range(1, len(xs) + 1)), [f"{v:g}" for v in xs])
    plt.yticks(list(range(1, len(ys) + 1)), [f"{v:g}" for v in reversed(ys)])
    plt.plotsize(min(120, 8 * len(xs) + 20), min(40, 2 * len(ys) + 8))
    text: str = plt.build()  # plotext has no stubs
    return text
