"""Kafka topic names: one topic per event family, keyed by symbol.

Why per family rather than per type or one topic: a family is what one Elasticsearch index and
one Kibana data view hold (``status`` gathers connection, engine-state and error events), and
consumers usually want exactly one family. Keying by symbol sends every event of a symbol in a
family to one partition, which is the unit Kafka keeps in order.

Names are ``<prefix>.<family>`` (default prefix ``tradeconsole``) and ``<prefix>.deadletter`` for
what the forwarder could not index. The prefix makes it possible to run several consoles (or a
test) against one cluster without mixing their events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from tradeconsole.core.events import Event

__all__ = [
    "DEFAULT_PREFIX",
    "TopicNames",
    "event_classes",
    "families",
    "message_key",
]

DEFAULT_PREFIX = "tradeconsole"
_LEGAL = re.compile(r"^[A-Za-z0-9._-]+$")
_MAX_TOPIC_LEN = 249  # Kafka's limit


def _all_subclasses(cls: type) -> list[type]:
    out: list[type] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


@cache
def event_classes() -> dict[str, type[Event]]:
    """Every concrete event class by its ``type`` (``candle`` -> ``CandleEvent``)."""
    import tradeconsole.core.events  # noqa: F401 - make sure all event classes are defined

    return {c.type: c for c in _all_subclasses(Event)}


@cache
def families() -> tuple[str, ...]:
    """Every event family, sorted; each is one topic and one index."""
    return tuple(sorted({c.family for c in event_classes().values()}))


def message_key(event: Event) -> bytes:
    """The Kafka key of an event: its symbol (empty for engine-wide events, which therefore all
    land on one partition and stay in order too). Tabs and newlines cannot occur in a symbol; they
    are replaced so a key can never break the spool's line format."""
    return event.symbol.replace("\t", " ").replace("\n", " ").encode()


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Topic naming for one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _LEGAL.match(self.prefix) or len(self.prefix) > _MAX_TOPIC_LEN - 20:
            raise ValueError(
                f"topic prefix {self.prefix!r} must be 1-229 characters of letters, digits, '.', '_' and '-'"
            )

    def for_family(self, family: str) -> str:
        return f"{self.prefix}.{family}"

    def for_event(self, event: Event) -> str:
        return f"{self.prefix}.{event.family}"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}.deadletter"

    def all(self) -> list[str]:
        """The topics events are published to (not the dead-letter topic)."""
        return [self.for_family(f) for f in families()]

    def family_of(self, topic: str) -> str | None:
        """The family a topic carries, or None when the topic is not one of ours."""
        head, _, family = topic.rpartition(".")
        if head != self.prefix or family not in families():
            return None
        return family
