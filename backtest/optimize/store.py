"""The results file: one row per combination with every scalar metric; resumable.

Each row carries ``key`` = a hash of (data digest, strategy, window, fill model, broker
settings/costs, parameters), so a re-run with the same ``--results`` skips every combination
already in the file and recomputes only the missing ones, and a file from other data or costs is
never mixed in (its keys simply do not match). CSV is appended and flushed as results arrive,
so Ctrl-C keeps what finished; Parquet (``.parquet``) is rewritten whole when the run ends or is
interrupted (Parquet files cannot be appended to).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, TextIO

__all__ = ["ResultsStore", "combo_key", "scalar_row"]


def combo_key(context: dict[str, Any], params: dict[str, float]) -> str:
    """Stable key of one combination in one context (data + strategy + window + model + costs)."""
    blob = json.dumps({"ctx": context, "params": {k: float(v) for k, v in sorted(params.items())}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def scalar_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalar metrics (lists/dicts such as fills and assumptions are left out)."""
    return {k: v for k, v in metrics.items() if not isinstance(v, list | dict) and k != "run_id"}


def _parse(v: str) -> Any:
    if v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() and math.isfinite(f) else f


class ResultsStore:
    """Rows by key, loaded from ``path`` if it exists; ``add`` writes CSV rows immediately."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.rows: dict[str, dict[str, Any]] = {}
        self.parquet = bool(self.path and self.path.suffix.lower() == ".parquet")
        self._fh: TextIO | None = None
        self._writer: csv.DictWriter[str] | None = None
        self._columns: list[str] | None = None
        if self.path and self.path.exists() and self.path.stat().st_size:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        if self.parquet:
            import pyarrow.parquet as pq

            for row in pq.read_table(self.path).to_pylist():
                self.rows[row["key"]] = row
            return
        with self.path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            self._columns = list(reader.fieldnames or [])
            if "key" not in self._columns:
                raise ValueError(f"{self.path}: not an optimiser results file (no 'key' column)")
            for raw in reader:
                row = {k: _parse(v) for k, v in raw.items()}
                row["key"] = raw["key"]
                self.rows[raw["key"]] = row

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def add(self, row: dict[str, Any]) -> None:
        if self.path is None or self.parquet:
            self.rows[row["key"]] = row
            return
        if self._writer is None:
            fresh = not (self.path.exists() and self.path.stat().st_size)
            if not fresh and self._columns and set(row) - set(self._columns):
                self._rewrite(list(row))
            self._fh = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._fh, fieldnames=self._columns or list(row))
            if fresh:
                self._writer.writeheader()
        self.rows[row["key"]] = row
        self._writer.writerow({c: row.get(c) for c in self._writer.fieldnames})
        assert self._fh is not None  # opened together with the writer
        self._fh.flush()

    def _rewrite(self, columns: list[str]) -> None:
        """Old file with other columns (e.g. another objective): rewrite it with the new header."""
        assert self.path is not None
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            for r in self.rows.values():
                w.writerow({c: r.get(c) for c in columns})
        os.replace(tmp, self.path)
        self._columns = columns

    def close(self) -> None:
        """Flush: close the CSV, or write the Parquet file (atomically, via a temporary file)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.path is not None and self.parquet and self.rows:
            import pyarrow as pa
            import pyarrow.parquet as pq

            tmp = self.path.with_suffix(".parquet.tmp")
            pq.write_table(pa.Table.from_pylist(list(self.rows.values())), tmp)
            os.replace(tmp, self.path)
