"""The collector interface: every source of cluster state implements `Collector`."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol, runtime_checkable

from snapsync.canonical.snapshot import KindFailure


def invalid_objects(kind: str, messages: list[str]) -> KindFailure:
    """The error recorded for a kind some of whose objects could not be canonicalized (the
    others are kept: one malformed object must not cost the whole cluster's state)."""
    more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
    return KindFailure(kind, "invalid", f"{messages[0]}{more}")


class Sink(Protocol):
    """Receives what a collector finds (a SnapshotBuilder is one)."""

    def add(self, raw: dict[str, Any]) -> object: ...

    def record_error(self, error: KindFailure) -> None: ...


class Canonicalizer(Protocol):
    """Canonicalizes raw objects for one canonical form (profile, secret handling).

    `canonical(raw)` depends only on `raw` and on `canonical_form`, never on what was added to a
    sink before; its results are opaque to collectors, which keep them and compare forms (a
    result holds for an equal form).
    """

    @property
    def canonical_form(self) -> Hashable: ...

    def canonical(self, raw: dict[str, Any]) -> object: ...


@runtime_checkable
class CanonicalSink(Sink, Canonicalizer, Protocol):
    """A sink that canonicalizes apart from adding, so a collector that keeps objects between
    cycles (watch mode) keeps the result instead of the raw object and skips canonicalizing
    unchanged objects.

    `add_canonical(canonical(raw))` does what `add(raw)` does, on this sink or on a later one of
    an equal form; `canonicalizer` is a Canonicalizer of the same form that holds nothing of the
    sink (a collector keeps it between cycles, to canonicalize a relist's pages as they come).
    """

    @property
    def canonicalizer(self) -> Canonicalizer: ...

    def add_canonical(self, canonical: object) -> object: ...


@runtime_checkable
class ResumableSink(CanonicalSink, Protocol):
    """A canonical sink that may start from what a collector gave an earlier sink of its line
    (SnapshotBuilder.successor), so a collector that knows what changed since gives only that.

    The collector `stamp`s each sink it filled with a token of its own; `resume(token)` on the
    next is True when the earlier one was stamped with it, and then holds its objects (else it
    is empty, as a new sink); `remove_canonical(result)` takes back an object given earlier.
    """

    def resume(self, token: object) -> bool: ...

    def stamp(self, token: object) -> None: ...

    def remove_canonical(self, canonical: object) -> None: ...


class Collector(Protocol):
    """A source of cluster state. `collect` may be called once per snapshot cycle."""

    def collect(self, sink: Sink) -> None: ...
