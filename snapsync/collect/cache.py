"""One kind's watched objects, each kept as what the sink made of it, not as the raw object.

Canonicalizing is most of a watch cycle's CPU, and between two cycles few objects change; the
raw objects were most of the agent's memory (691 of 976 MB at 50,000 objects). So the cache keeps
per object its version (uid, resourceVersion) and the sink's canonical result (opaque here: this
layer knows nothing of canonical forms). A raw object is held only until a result is computed
for it: a watch event's object until the next replay, a LIST's object not at all when the form is
known (its page is canonicalized as it arrives).

Invariants:
- An entry holds either its raw object (no result yet) or its result, never both.
- A result belongs to its object version: storing another raw object under the key drops it,
  unless both carry the same uid and resourceVersion (the API server gives every write a new
  resourceVersion), as after a relist of an unchanged object. Without both, nothing is reused.
- Results hold for one canonical form (profile, secret handling). A sink of another form cannot
  be served from results without their raw objects: `checkout` raises FormChanged and the owner
  lists the kind again.
- Entries are immutable and replaced, never changed, so a replay works on a checked-out list
  outside the owner's lock, and `settle` keeps a result only if its entry is still current.
  The cache itself is not thread-safe: its owner (KubeWatchCollector) serialises calls.
- It knows which keys changed since the last `checkout` or `changes` (put, popped), unless it
  was replaced since (a relist): then only the whole can be replayed. A `Fed` records what a
  replay gave a sink, so `replay_changes` gives a sink that still holds it only the changes
  (a steady cycle touches hundreds of objects, not all of them).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from snapsync.collect.base import Canonicalizer, CanonicalSink, ResumableSink, Sink
from snapsync.errors import SnapsyncError

ObjKey = tuple[str, str]  # (namespace, name) within one kind
Version = tuple[str, str]  # (uid, resourceVersion)


class _Pending(enum.Enum):
    PENDING = "pending"


PENDING = _Pending.PENDING  # no canonical result yet (None is a result: excluded by the profile)


class FormChanged(Exception):
    """The sink's canonical form differs from the one the held results are for, and their raw
    objects are gone: the kind must be listed again."""


@dataclass(frozen=True, slots=True)
class Entry:
    """An object version and the sink's canonical result for it; until there is one (PENDING),
    the raw object to compute it from."""

    version: Version | None
    raw: dict[str, Any] | None = None
    canonical: object = PENDING


Fresh = tuple[ObjKey, Entry, object]  # an entry and the result computed for it by a replay


class ObjectCache:
    """Objects by namespace/name as canonical results; see the module docstring."""

    __slots__ = ("_changed", "_entries", "_form", "canonicalized")

    def __init__(self) -> None:
        self._entries: dict[ObjKey, Entry] = {}
        self._form: Hashable = None
        self.canonicalized = 0  # objects canonicalized by `entry` (LIST objects), not by replays
        self._changed: set[ObjKey] | None = None  # since the last checkout; None: the whole

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> Iterable[Entry]:
        return self._entries.values()

    def entry(self, key: ObjKey, raw: dict[str, Any], form: Canonicalizer | None = None) -> Entry:
        """The entry for `raw`: the held result when the version is the same, else one `form`
        computes now (a LIST's objects: never held raw), else `raw` itself until a replay (and
        a malformed object, which every replay reports)."""
        version = object_version(raw)
        old = self._entries.get(key)
        reusable = version is not None and (form is None or form.canonical_form == self._form)
        if reusable and old is not None and old.raw is None and old.version == version:
            return Entry(version, None, old.canonical)
        if form is None:
            return Entry(version, raw)
        self.canonicalized += 1
        try:
            return Entry(version, None, form.canonical(raw))
        except SnapsyncError:  # malformed: kept raw, so every replay records it as invalid
            return Entry(version, raw)

    def put(self, key: ObjKey, raw: dict[str, Any]) -> None:
        self._entries[key] = self.entry(key, raw)
        if self._changed is not None:
            self._changed.add(key)

    def pop(self, key: ObjKey) -> None:
        self._entries.pop(key, None)
        if self._changed is not None:
            self._changed.add(key)

    def replace(self, entries: Mapping[ObjKey, Entry], form: Canonicalizer | None = None) -> None:
        """Swap in a relist's entries, made by `entry` with `form` (None: the held form)."""
        self._entries = dict(entries)
        self._changed = None
        if form is not None:
            self._form = form.canonical_form

    def checkout(self, sink: CanonicalSink | None) -> list[tuple[ObjKey, Entry]]:
        """The entries to replay into `sink` (None: a sink that takes raw objects only);
        FormChanged when they cannot serve its form."""
        form = sink.canonical_form if sink is not None else None
        if form != self._form:
            if any(entry.raw is None for entry in self._entries.values()):
                raise FormChanged(f"results are for another canonical form than {form!r}")
            self._form = form
        self._changed = set()
        return list(self._entries.items())

    def changes(
        self, sink: CanonicalSink, also: Iterable[ObjKey] = ()
    ) -> list[tuple[ObjKey, Entry | None]] | None:
        """The entries of the keys changed since the last `checkout` or `changes`, and of the
        keys `also` names (None for a key gone), for a sink of the held form; None when only
        the whole will do (replaced since, never checked out, another form): then `checkout`."""
        if self._changed is None or sink.canonical_form != self._form:
            return None
        changed, self._changed = self._changed, set()
        changed.update(also)
        return [(key, self._entries.get(key)) for key in changed]

    def settle(self, fresh: Iterable[Fresh]) -> None:
        """Keep results a replay computed, for the entries that are still current (their raw
        objects are dropped)."""
        for key, entry, canonical in fresh:
            if self._entries.get(key) is entry:
                self._entries[key] = Entry(entry.version, None, canonical)


def replay(
    entries: Iterable[tuple[ObjKey, Entry]],
    sink: Sink,
    canonical_sink: CanonicalSink | None,
    invalid: list[str],
) -> list[Fresh]:
    """Add every entry's object to `sink`, canonicalizing only those without a result.

    `canonical_sink` is `sink` if it is a CanonicalSink, else None (the caller checks once per
    collection: a runtime Protocol check costs ~40 us, and there are two per kind).
    An object the sink refuses (malformed: SnapsyncError) is left out and its message appended
    to `invalid`, as a LIST does. Returns the results computed, for ObjectCache.settle (and so
    their count).
    """
    fresh: list[Fresh] = []
    for key, entry in entries:
        try:
            if canonical_sink is None:
                assert entry.raw is not None  # checkout: a plain sink's cache holds raw objects
                sink.add(entry.raw)
                continue
            canonical_sink.add_canonical(_result(key, entry, canonical_sink, fresh))
        except SnapsyncError as exc:
            invalid.append(str(exc))
    return fresh


def _result(key: ObjKey, entry: Entry, sink: CanonicalSink, fresh: list[Fresh]) -> object:
    """The entry's canonical result; computed by `sink` if it has none yet (noted in `fresh`)."""
    canonical = entry.canonical
    if canonical is PENDING:
        assert entry.raw is not None
        canonical = sink.canonical(entry.raw)
        fresh.append((key, entry, canonical))
    return canonical


@dataclass
class Fed:
    """What replays of one kind gave a sink: the result per key, and the keys the sink refused
    (given again each time, so that their errors are recorded in every snapshot)."""

    results: dict[ObjKey, object] = field(default_factory=dict)
    refused: set[ObjKey] = field(default_factory=set)


def replay_changes(
    changes: Iterable[tuple[ObjKey, Entry | None]],
    fed: Fed,
    sink: ResumableSink,
    invalid: list[str],
) -> list[Fresh]:
    """Update `sink`, which holds what `fed` records, to the entries of `changes` (None: the
    key is gone): what it held of those keys is taken back, their current objects added.
    Errors and the return value are as `replay`'s; `fed` is kept up to date."""
    fresh: list[Fresh] = []
    for key, entry in changes:
        old = fed.results.pop(key, None)
        fed.refused.discard(key)
        if old is not None:
            sink.remove_canonical(old)
        if entry is None:
            continue
        try:
            canonical = _result(key, entry, sink, fresh)
            sink.add_canonical(canonical)
        except SnapsyncError as exc:
            invalid.append(str(exc))
            fed.refused.add(key)
            continue
        fed.results[key] = canonical
    return fresh


def replay_kind(
    sink: Sink,
    canonical_sink: CanonicalSink | None,
    resumable: ResumableSink | None,
    fed: Fed | None,
    changes: list[tuple[ObjKey, Entry | None]] | None,
    checkout: Callable[[], list[tuple[ObjKey, Entry]]],
    invalid: list[str],
) -> tuple[list[Fresh], Fed | None]:
    """One kind into `sink` (`canonical_sink` and `resumable` are it if it is one, else None):
    only the `changes` when it resumed holding what
    `fed` records and they could be told, else every entry `checkout` gives, taking back what
    a resumed sink holds of the kind besides (a relist since). Returns the fresh results and,
    for a resumable sink, what it was given."""
    if resumable is None:
        return replay(checkout(), sink, canonical_sink, invalid), None
    if fed is not None and changes is not None:
        return replay_changes(changes, fed, resumable, invalid), fed
    fed = fed or Fed()
    entries = checkout()
    whole = dict(entries)
    gone: list[tuple[ObjKey, Entry | None]] = [(k, None) for k in fed.results if k not in whole]
    return replay_changes([*entries, *gone], fed, resumable, invalid), fed


def object_key(raw: dict[str, Any]) -> ObjKey:
    """A raw object's key in its kind's cache."""
    meta = raw.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def object_version(raw: dict[str, Any]) -> Version | None:
    """(uid, resourceVersion), which name one version of one object; None when either is missing."""
    meta = raw.get("metadata")
    if not isinstance(meta, dict):
        return None
    uid, rv = meta.get("uid"), meta.get("resourceVersion")
    if isinstance(uid, str) and uid and isinstance(rv, str) and rv:
        return (uid, rv)
    return None
