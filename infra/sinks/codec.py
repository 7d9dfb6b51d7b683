"""The JSON codec every sink uses for event documents (Kafka values, spool lines, bulk bodies).

Why a module of its own: the Kafka sink, the Elasticsearch sink and the forwarder all write and
read the same documents, and each imported the codec from the Kafka sink, so reading Kafka into
Elasticsearch (or indexing without Kafka at all) meant importing the Kafka adapter. orjson is ~7x
faster than the standard library for these documents; the standard library is the fallback, and
both give compact bytes that the other reads back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["BACKEND", "dumps", "loads"]

#: Which JSON library is in use, ``"orjson"`` or ``"json"`` (benchmarks report it).
BACKEND: str

#: Parse JSON text or bytes into Python objects.
loads: Callable[[str | bytes], Any]

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes (NaN is already None in ``to_dict()`` output)."""
        return orjson.dumps(obj)

    loads = orjson.loads
    BACKEND = "orjson"

except ImportError:  # pragma: no cover - depends on the environment

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes (NaN is already None in ``to_dict()`` output)."""
        return json.dumps(obj, separators=(",", ":")).encode()

    loads = json.loads
    BACKEND = "json"
