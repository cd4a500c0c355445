"""What the server keeps beyond the protocol's needs, as values: environments, objects, history.

The protocol talks to a store through `VersionStore` (snapsync.protocol.server); the browse API,
the page, the registry and the metrics talk to the repositories of server/store/, which take
and give these values. Everything here is a frozen value, so a page can hold what it read without
the store changing it underneath.

Invariants:
- Times are unix seconds (float, UTC); days and months for data use are UTC calendar periods.
- An object's history row holds the whole object after that version (or None: removed), so any
  version's state is "the newest row at or before it, per key" — no replay of deltas needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import KindFailure
from snapsync.kubeview import parse_time
from snapsync.protocol.messages import BudgetReport, Command, CommandResult

# How long since the agent was heard from before an environment counts as stale / offline.
FRESH_SECONDS = 5 * 60.0
STALE_SECONDS = 60 * 60.0
FRESHNESS = ("fresh", "stale", "offline", "never")


def freshness(last_seen: float | None, now: float) -> str:
    if not last_seen:
        return "never"
    age = now - last_seen
    return "fresh" if age <= FRESH_SECONDS else "stale" if age <= STALE_SECONDS else "offline"


def utc_day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Retention:
    """How much history to keep per environment; a version goes when either limit says so.

    Versions that may still serve as bases (the protocol's newest few) are never pruned.
    """

    keep_versions: int | None = 1000
    keep_seconds: float | None = 90 * 86400.0


@dataclass(frozen=True)
class Registration:
    """An environment as registered by a person; the agent secret is never part of it."""

    edge_id: str
    name: str
    group: str = ""
    tags: tuple[str, ...] = ()
    created_at: float = 0.0


@dataclass(frozen=True)
class EnvironmentSummary:
    edge_id: str
    name: str
    group: str
    tags: tuple[str, ...]
    registered: bool
    last_seen: float | None
    version: int | None  # newest stored sequence
    digest: bytes | None
    objects: int
    bytes_today: int
    bytes_month: int
    bytes_total: int
    waiting: int  # bytes the agent's budget holds back
    # From the newest version's snapshot header: when the agent collected it, and the kinds it
    # could not collect (forbidden, timed out, ...): a kind is never silently missing.
    collected_at: str = ""
    errors: tuple[KindFailure, ...] = ()
    received_at: float | None = None  # when the server stored the newest version
    # The data budget the agent's latest ping reported, and when (None: never reported: an
    # older agent, or one without a limit).
    budget: BudgetReport | None = None
    budget_at: float | None = None

    def status(self, now: float) -> str:
        return freshness(self.last_seen, now)

    @property
    def collected(self) -> float | None:
        """When the agent collected the newest version (its clock); None if not recorded."""
        return parse_time(self.collected_at)

    def age(self, now: float) -> float | None:
        """Freshness: seconds since the newest version was collected (None: unknown). Negative
        only when the agent's clock runs ahead of the server's."""
        collected = self.collected
        return None if collected is None else now - collected

    @property
    def lag(self) -> float | None:
        """Seconds from collecting the newest version to storing it (budget waits, link, apply);
        None when either time is unknown."""
        collected = self.collected
        if collected is None or self.received_at is None:
            return None
        return self.received_at - collected


@dataclass(frozen=True)
class VersionInfo:
    seq: int
    digest: bytes
    base_seq: int | None
    frame_bytes: int
    objects: int
    changed: int  # objects added, changed or removed by this version
    received_at: float
    held: bool  # its whole snapshot is kept (the protocol may use it as a base)


@dataclass(frozen=True)
class ObjectQuery:
    kind: str = ""  # `Kind` or `Kind.group`
    namespace: str | None = None  # None: any; "": cluster-scoped only
    name: str = ""  # substring
    labels: tuple[tuple[str, str | None], ...] = ()  # (name, value); value None: label present
    limit: int = 500
    offset: int = 0

    @staticmethod
    def parse_labels(selector: str) -> tuple[tuple[str, str | None], ...]:
        """`app=web,tier` -> (("app", "web"), ("tier", None)): kubectl's equality selector."""
        out: list[tuple[str, str | None]] = []
        for part in filter(None, (p.strip() for p in selector.split(","))):
            name, eq, value = part.partition("=")
            out.append((name.strip(), value.strip().lstrip("=") if eq else None))
        return tuple(out)

    def matches_labels(self, labels: dict[str, Any]) -> bool:
        return all(
            name in labels and (value is None or labels[name] == value)
            for name, value in self.labels
        )


@dataclass(frozen=True)
class ObjectRow:
    key: ObjectKey
    digest: bytes
    seq: int  # the version in which it last changed
    data: dict[str, Any] = field(repr=False)

    @property
    def labels(self) -> dict[str, Any]:
        metadata = self.data.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, dict) else None
        return labels if isinstance(labels, dict) else {}


@dataclass(frozen=True)
class ObjectChange:
    """One version's effect on one object: its whole new form, or None when it was removed."""

    seq: int
    received_at: float | None  # None: the version itself was pruned (a retained baseline)
    digest: bytes | None
    data: dict[str, Any] | None = field(repr=False)


@dataclass(frozen=True)
class CommandRecord:
    command: Command
    queued_at: float
    result: CommandResult | None
    result_at: float | None


# What one stored header may hold: an agent is a peer like any other, and these reach every
# fleet page and scrape.
MAX_ERRORS = 200
MAX_ERROR_TEXT = 500


def bounded_errors(errors: Sequence[KindFailure]) -> tuple[KindFailure, ...]:
    """The first MAX_ERRORS errors, each field cut to MAX_ERROR_TEXT characters."""
    return tuple(
        KindFailure(e.kind[:MAX_ERROR_TEXT], e.reason[:MAX_ERROR_TEXT], e.message[:MAX_ERROR_TEXT])
        for e in errors[:MAX_ERRORS]
    )


def object_json(data: dict[str, Any]) -> str:
    """Compact, key-ordered JSON: what the object columns hold."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
