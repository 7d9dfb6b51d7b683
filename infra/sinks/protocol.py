"""What the journal shipper and the runtime may ask of a sink, declared rather than probed.

Why a module of its own: the protocol used to live in the shipper, which then found the
journal-fed methods with ``getattr``/``hasattr``, while the runtime told the Kafka sink from the
Elasticsearch sink by its class name. Both sinks now say what they are (``kind``) and what they
offer (``journal_fed``, the :class:`JournalFedSink` methods), and the checks are the type's.
"""

from __future__ import annotations

from typing import Any, Final, Protocol, runtime_checkable

__all__ = ["ELASTICSEARCH", "KAFKA", "JournalFedSink", "Sink"]

#: ``Sink.kind`` of the Kafka sink. Kinds are also the names of the journal cursors the shipper
#: keeps per sink and the ``source`` of the sinks' status events, so they never change.
KAFKA: Final = "kafka"
#: ``Sink.kind`` of the Elasticsearch sink.
ELASTICSEARCH: Final = "elasticsearch"


@runtime_checkable
class Sink(Protocol):
    """A destination the engine's events are delivered to (Kafka, Elasticsearch).

    ``publish`` never blocks the caller; ``flush`` waits up to ``timeout`` for what was published
    to be acknowledged; ``close`` stops the sink, True when everything was delivered."""

    @property
    def kind(self) -> str:
        """What the sink delivers to (:data:`KAFKA`, :data:`ELASTICSEARCH`)."""
        ...

    @property
    def journal_fed(self) -> bool:
        """True when made for the shipper's windowed protocol (:class:`JournalFedSink`)."""
        ...

    def publish(self, event: Any) -> None: ...

    def flush(self, timeout: float = ...) -> bool: ...

    def close(self, timeout: float = ...) -> bool: ...

    def stats(self) -> dict[str, Any]: ...


@runtime_checkable
class JournalFedSink(Sink, Protocol):
    """A sink the journal shipper feeds with its exactly-once protocol (see
    :mod:`tradeconsole.infra.persistence.shipper`)."""

    def progress(self) -> tuple[int, int]:
        """(epoch, records of that epoch resolved so far, in publish order); a new epoch means
        everything unresolved was dropped and must be resent from the journal cursor."""
        ...

    def ready(self) -> bool:
        """True while the destination acknowledges; the shipper publishes nothing otherwise."""
        ...

    def set_source(self, source: str) -> None:
        """The journal's identity, for a sink that tags what it sends with it."""
        ...

    def delivered_seqs(self, source: str, after_seq: int) -> set[int]:
        """Journal seqs above ``after_seq`` from journal ``source`` the destination already
        holds (read back after a failure and at every start; raises when it cannot be read)."""
        ...
