"""One kind's watched objects, each kept with what the sink made of it at the last replay.

Canonicalizing is most of a watch cycle's CPU, and between two cycles few objects change. So next
to each raw object the cache keeps the sink's canonical result for it (opaque here: this layer
knows nothing of canonical forms), and a replay hands that back instead of canonicalizing again.

Invariants:
- A result belongs to its raw object: storing another raw object under the key drops it, unless
  both carry the same uid and resourceVersion (the API server gives every write a new
  resourceVersion), as after a relist of an unchanged object. Without both, nothing is reused.
- A result holds for one canonical form (profile, secret handling): checking out for a sink of
  another form drops every result first.
- Entries are immutable and replaced, never changed, so a replay works on a checked-out list
  outside the owner's lock, and `settle` keeps a result only if its entry is still current.
  The cache itself is not thread-safe: its owner (KubeWatchCollector) serialises calls.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from snapsync.collect.base import CanonicalSink, Sink
from snapsync.errors import SnapsyncError

ObjKey = tuple[str, str]  # (namespace, name) within one kind


class _Pending(enum.Enum):
    PENDING = "pending"


PENDING = _Pending.PENDING  # no canonical result yet (None is a result: excluded by the profile)


@dataclass(frozen=True, slots=True)
class Entry:
    """A raw object and the sink's canonical result for it, or PENDING."""

    raw: dict[str, Any]
    canonical: object = PENDING


Fresh = tuple[ObjKey, Entry, object]  # an entry and the result computed for it by a replay


class ObjectCache:
    """Raw objects by namespace/name with their canonical results; see the module docstring."""

    __slots__ = ("_entries", "_form")

    def __init__(self) -> None:
        self._entries: dict[ObjKey, Entry] = {}
        self._form: Hashable = None

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: ObjKey, raw: dict[str, Any]) -> None:
        self._entries[key] = self._entry(key, raw)

    def pop(self, key: ObjKey) -> None:
        self._entries.pop(key, None)

    def replace(self, raws: Mapping[ObjKey, dict[str, Any]]) -> None:
        """Swap in a relist's objects, keeping the results of unchanged object versions."""
        self._entries = {key: self._entry(key, raw) for key, raw in raws.items()}

    def checkout(self, sink: Sink) -> list[tuple[ObjKey, Entry]]:
        """The entries to replay into `sink`, after dropping results of another canonical form."""
        if isinstance(sink, CanonicalSink) and sink.canonical_form != self._form:
            self._form = sink.canonical_form
            self._entries = {key: Entry(entry.raw) for key, entry in self._entries.items()}
        return list(self._entries.items())

    def settle(self, fresh: Iterable[Fresh]) -> None:
        """Keep results a replay computed, for the entries that are still current."""
        for key, entry, canonical in fresh:
            if self._entries.get(key) is entry:
                self._entries[key] = Entry(entry.raw, canonical)

    def _entry(self, key: ObjKey, raw: dict[str, Any]) -> Entry:
        old = self._entries.get(key)
        if old is None or old.canonical is PENDING:
            return Entry(raw)
        version = object_version(raw)
        if version is None or version != object_version(old.raw):
            return Entry(raw)
        return Entry(raw, old.canonical)


def replay(entries: Iterable[tuple[ObjKey, Entry]], sink: Sink, invalid: list[str]) -> list[Fresh]:
    """Add every entry's object to `sink`, canonicalizing only those without a result.

    An object the sink refuses (malformed: SnapsyncError) is left out and its message appended
    to `invalid`, as a LIST does. Returns the results computed, for ObjectCache.settle (and so
    their count).
    """
    fresh: list[Fresh] = []
    canonical_sink = sink if isinstance(sink, CanonicalSink) else None
    for key, entry in entries:
        try:
            if canonical_sink is None:
                sink.add(entry.raw)
                continue
            canonical = entry.canonical
            if canonical is PENDING:
                canonical = canonical_sink.canonical(entry.raw)
                fresh.append((key, entry, canonical))
            canonical_sink.add_canonical(entry.raw, canonical)
        except SnapsyncError as exc:
            invalid.append(str(exc))
    return fresh


def object_version(raw: dict[str, Any]) -> tuple[str, str] | None:
    """(uid, resourceVersion), which name one version of one object; None when either is missing."""
    meta = raw.get("metadata")
    if not isinstance(meta, dict):
        return None
    uid, rv = meta.get("uid"), meta.get("resourceVersion")
    if isinstance(uid, str) and uid and isinstance(rv, str) and rv:
        return (uid, rv)
    return None
