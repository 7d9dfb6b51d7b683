"""A sink's delivery status as a UI event: the one translation for every sink.

Why here and not in a sink: the Kafka and the Elasticsearch sink report the same ``stats()``
keys (``state``, ``acked``, ``lag_ms``, ``journal_fed``...), and the console shows both the same
way. The helper used to live in the Kafka sink, so showing Elasticsearch's status imported the
Kafka adapter; it belongs to neither.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tradeconsole.core.events import ConnectionEvent

__all__ = ["delivery_event"]


def delivery_event(
    stats: Mapping[str, Any], *, run_id: str, mode: str, source: str = "kafka", time_ms: int | None = None
) -> ConnectionEvent:
    """A status event for the UI from a sink's ``stats()`` (Kafka or Elasticsearch): delivery
    counts and lag.

    ``connected`` only while the destination acknowledges; ``stalled``/``down``/``connecting``
    show as ``reconnecting`` (it will come back by itself); ``refused`` (Elasticsearch refuses
    this client for good: compatible-with mismatch, 401/403, another permanent 4xx) shows as
    ``refused`` with the one-line reason first in ``detail``, because retrying will not help and an
    operator must act; a standalone sink whose spool disk is full shows as ``degraded``."""
    t = int(time.time() * 1000) if time_ms is None else time_ms
    raw = str(stats.get("state"))
    state = {"connected": "connected", "closed": "disconnected", "refused": "refused", "degraded": "degraded"}.get(
        raw, "reconnecting"
    )
    if stats.get("journal_fed"):
        detail = f"sent {stats.get('acked', 0)} acked, {stats.get('inflight', 0)} in flight"
        if state == "refused":
            detail = (
                f"{_one_line(stats.get('error')) or 'refused'}; events wait in the journal until the "
                f"cause is fixed and the console restarted ({detail})"
            )
        elif state != "connected" and state != "disconnected":
            detail += f" ({raw}); shipping from the journal when the broker is back"
    else:
        detail = (
            f"sent {stats.get('acked', 0)} acked, {stats.get('queued', 0)} queued, "
            f"{stats.get('spooled', 0)} spooled, {stats.get('failed', 0)} retried"
        )
        if state == "refused":
            detail = f"{_one_line(stats.get('error')) or 'refused'}; events are kept in the spool ({detail})"
        elif stats.get("spool_full"):
            state = "degraded"
            detail = f"spool disk full; {stats.get('held', 0)} held in memory, {stats.get('lost', 0)} lost, " + detail
    return ConnectionEvent(
        event_id=f"{run_id}:delivery:{source}:{t}",
        time=t,
        run_id=run_id,
        mode=mode,
        source=source,
        state=state,
        lag_ms=float(stats.get("lag_ms", 0.0)),
        detail=detail,
    )


def _one_line(text: Any, limit: int = 500) -> str:
    """A reason as one bounded line (a server's error text can span lines or be huge)."""
    if not text:
        return ""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
