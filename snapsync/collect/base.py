"""The collector interface: every source of cluster state implements `Collector`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class KindError:
    """Why one kind is missing or incomplete: recorded in the snapshot, never fatal."""

    kind: str  # kind ref: Kind or Kind.group
    reason: str  # forbidden, not-found, timeout, unavailable, error, ...
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "reason": self.reason, "message": self.message}


class Sink(Protocol):
    """Receives what a collector finds (a SnapshotBuilder is one)."""

    def add(self, raw: dict[str, Any]) -> object: ...

    def record_error(self, error: KindError) -> None: ...


class Collector(Protocol):
    """A source of cluster state. `collect` may be called once per snapshot cycle."""

    def collect(self, sink: Sink) -> None: ...
