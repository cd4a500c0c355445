"""Applying a delta in the time of what it changes, with the target digest still checked exactly.

The snapshot digest is BLAKE2b-128 over the msgpack encodings of the (key, object digest) pairs
in key order (snapshot.snapshot_digest), a sequential hash that no shortcut may replace: agents
compute it. An `IncrementalSnapshot` keeps, beside its objects, the sorted key list and each
pair's encoding in the same order. The next one copies both lists, bisects out what the delta
removed, bisects in what it added, replaces the encodings of what it changed, and hashes the
joined encodings: the very bytes snapshot_digest hashes, so the very digest it gives. Only the
objects the delta touches are patched, encoded and hashed; no pair is re-packed and nothing is
sorted. What stays linear in the snapshot's size runs in C and is small: a dict and two list
copies (pointers), and one BLAKE2b pass over ~60 bytes per object (~1 ms at 10,000 objects).

A base that is a plain Snapshot (decoded from a full frame or read from storage) is turned
into pairs once, then every snapshot derived from it carries them along.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import SupportsIndex, cast, overload

import msgpack

from snapsync.bounds import Budget
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import DIGEST_SIZE, CanonicalObject, Snapshot, SnapshotHeader
from snapsync.delta.diff import Delta, apply_changes
from snapsync.errors import DeltaError


def digest_pair(key: ObjectKey, digest: bytes) -> bytes:
    """One (key, object digest) pair as snapshot_digest feeds it to the hash."""
    encoded: bytes = msgpack.packb((*key, digest), use_bin_type=True)
    return encoded


def pairs_digest(pairs: list[bytes]) -> bytes:
    """The snapshot digest of pair encodings in key order."""
    return hashlib.blake2b(b"".join(pairs), digest_size=DIGEST_SIZE).digest()


class IncrementalSnapshot(Snapshot):
    """A Snapshot whose digest, key order and size came with it, and that knows the version it
    was derived from (`parent`, a digest) and which keys differ from it (`touched`)."""

    __slots__ = ("_pairs", "_size", "_sorted", "_target", "parent", "touched")

    def __init__(
        self,
        header: SnapshotHeader,
        objects: Mapping[ObjectKey, CanonicalObject],
        keys: list[ObjectKey],
        pairs: list[bytes],
        size: int,
        parent: bytes,
        touched: frozenset[ObjectKey],
    ) -> None:
        super().__init__(header, objects)
        self._sorted = keys
        self._pairs = pairs
        self._size = size
        self._target = pairs_digest(pairs)
        self.parent = parent
        self.touched = touched

    @property
    def keys(self) -> list[ObjectKey]:
        return self._sorted

    @property
    def digest(self) -> bytes:
        return self._target

    @property
    def encoded_size(self) -> int:
        return self._size

    @property
    def pairs(self) -> list[bytes]:
        """The pair encodings in key order (read-only)."""
        return self._pairs


def sorted_pairs(snapshot: Snapshot) -> list[bytes]:
    """The pair encodings of `snapshot` in key order: carried along, or computed once."""
    if isinstance(snapshot, IncrementalSnapshot):
        return snapshot.pairs
    return [digest_pair(key, obj.digest) for key, obj in snapshot]


def indexed(snapshot: Snapshot) -> IncrementalSnapshot:
    """`snapshot` (same header and objects) carrying its pair encodings, computed once now, so
    the first delta to it costs what it touches too (a server caches this for a version stored
    from a full frame or read from rows). DeltaError unless they give exactly its digest; it
    derives from no version (`parent` empty)."""
    if isinstance(snapshot, IncrementalSnapshot):
        return snapshot
    keys, pairs = list(snapshot.keys), sorted_pairs(snapshot)
    result = IncrementalSnapshot(
        snapshot.header, snapshot.objects, keys, pairs, snapshot.encoded_size, b"", frozenset()
    )
    if result.digest != snapshot.digest:
        raise DeltaError("the snapshot's pairs do not give its digest")
    return result


def derive(base: Snapshot, delta: Delta, budget: Budget | None = None) -> IncrementalSnapshot:
    """`delta` applied to `base` (as delta.apply, what it builds charged to `budget`):
    DeltaError, and `base` untouched, unless the result has exactly the target digest."""
    if isinstance(base, CompactSnapshot):
        return _derive_compact(base, delta, budget)
    objects = apply_changes(base, delta, budget)
    keys, pairs, size = _patched(base, objects, delta.removed, delta.changed, delta.added)
    touched = frozenset((*delta.removed, *delta.added, *delta.changed))
    result = IncrementalSnapshot(delta.header, objects, keys, pairs, size, base.digest, touched)
    if result.digest != delta.target_digest:
        raise DeltaError("applying the delta does not reproduce its target digest")
    return result


def _patched(
    base: Snapshot,
    objects: Mapping[ObjectKey, CanonicalObject],
    removed: Iterable[ObjectKey],
    changed: Iterable[ObjectKey],
    added: Iterable[ObjectKey],
) -> tuple[list[ObjectKey], list[bytes], int]:
    """`base`'s key order, pair encodings and size, patched to `objects` where the keys named
    differ: only those are bisected, re-paired and re-measured."""
    olds = base.objects
    keys, pairs = list(base.keys), list(sorted_pairs(base))
    size = base.encoded_size
    for key in removed:
        at = bisect.bisect_left(keys, key)
        del keys[at], pairs[at]
        size -= len(olds[key].encoded)
    for key in changed:
        at = bisect.bisect_left(keys, key)
        pairs[at] = digest_pair(key, objects[key].digest)
        size += len(objects[key].encoded) - len(olds[key].encoded)
    for key in added:
        at = bisect.bisect_left(keys, key)
        keys.insert(at, key)
        pairs.insert(at, digest_pair(key, objects[key].digest))
        size += len(objects[key].encoded)
    return keys, pairs, size


def _key(plain: tuple[str, str, str, str]) -> ObjectKey:
    key: ObjectKey = tuple.__new__(ObjectKey, plain)
    return key


class KeyList(list[ObjectKey]):
    """Sorted keys held as plain tuples, handed out as ObjectKeys one at a time.

    A delta decoded against a kept version looks up the keys at the positions it names (and
    the count); building all 10,000 ObjectKeys for that cost ~1.3 ms and made 10,000 tracked
    objects per delta, which set off young collections. This list stores the plain tuples (one
    copy of the pointers, in C) and converts on the way out: indexing, slicing, iteration,
    reversal, copy. Comparisons, `in`, len and msgpack see the plain tuples, which compare,
    hash and pack as the ObjectKeys do. Read-only by convention, like the Snapshot it serves.
    """

    __slots__ = ()

    @overload
    def __getitem__(self, index: SupportsIndex) -> ObjectKey: ...

    @overload
    def __getitem__(self, index: slice) -> list[ObjectKey]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> ObjectKey | list[ObjectKey]:
        if isinstance(index, slice):
            return list(map(_key, super().__getitem__(index)))
        return _key(super().__getitem__(index))

    def __iter__(self) -> Iterator[ObjectKey]:
        return map(_key, super().__iter__())

    def __reversed__(self) -> Iterator[ObjectKey]:
        return map(_key, super().__reversed__())

    def copy(self) -> list[ObjectKey]:
        return list(self)


class CompactSnapshot(IncrementalSnapshot):
    """An IncrementalSnapshot held as four parallel lists in key order — keys as plain tuples,
    each object's canonical bytes, its pair encoding, its metadata.uid — for a server that keeps
    the newest version of thousands of environments.

    Why: the cyclic garbage collector walks every tracked object of the oldest generation at
    each full collection, holding the GIL. A kept 10,000-object Snapshot is ~19,000 tracked
    objects (a CanonicalObject and a NamedTuple key per object, and their dict); these four
    lists are four, as bytes, str and None are never tracked, and a tuple of str stops being
    tracked the first time the collector sees it (CPython untracks exact tuples of untracked
    items; an ObjectKey is a tuple subclass and never is). A CanonicalObject is built when
    `objects` is asked for one key (a bisect), an ObjectKey when `keys` (a KeyList) is asked for
    one position: a delta decoded against this state builds what it touches, not 10,000 keys.
    derive() on a CompactSnapshot copies the four lists (pointers, in C) and patches what the
    delta touches, so the result is compact again; its digest is checked exactly as derive's.
    """

    __slots__ = ("_encoded", "_plain", "_uids", "_view")

    def __init__(
        self,
        header: SnapshotHeader,
        plain: list[tuple[str, str, str, str]],
        encoded: list[bytes],
        pairs: list[bytes],
        uids: list[str | None],
        size: int,
        parent: bytes,
        touched: frozenset[ObjectKey],
    ) -> None:
        self._plain, self._encoded, self._uids = plain, encoded, uids
        self._view: KeyList | None = None
        objects = _CompactObjects(self)
        super().__init__(header, objects, [], pairs, size, parent, touched)

    @property
    def keys(self) -> list[ObjectKey]:
        if self._view is None:
            self._view = KeyList(cast(list[ObjectKey], self._plain))  # plain: see KeyList
        return self._view

    def __len__(self) -> int:
        return len(self._plain)

    def __iter__(self) -> Iterator[tuple[ObjectKey, CanonicalObject]]:
        for at, key in enumerate(self.keys):
            yield key, self._object(at)

    def _find(self, key: tuple[str, str, str, str]) -> int:
        """The position of `key`, or -1."""
        at = bisect.bisect_left(self._plain, key)
        return at if at < len(self._plain) and self._plain[at] == key else -1

    def _object(self, at: int) -> CanonicalObject:
        return CanonicalObject(self._encoded[at], self._pairs[at][-DIGEST_SIZE:], self._uids[at])


class _CompactObjects(Mapping[ObjectKey, CanonicalObject]):
    """A CompactSnapshot's objects as the Mapping a Snapshot has (built per look-up)."""

    __slots__ = ("_of",)

    def __init__(self, of: CompactSnapshot) -> None:
        self._of = of

    def __getitem__(self, key: ObjectKey) -> CanonicalObject:
        at = self._of._find(key)
        if at < 0:
            raise KeyError(key)
        return self._of._object(at)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and self._of._find(key) >= 0

    def __iter__(self) -> Iterator[ObjectKey]:
        return iter(self._of.keys)

    def __len__(self) -> int:
        return len(self._of._plain)


def compact(snapshot: Snapshot) -> CompactSnapshot:
    """`snapshot` (same header, objects and digest) as a CompactSnapshot; built once per full
    snapshot or cold read, O(objects). DeltaError unless its pairs give exactly its digest."""
    if isinstance(snapshot, CompactSnapshot):
        return snapshot
    keys, pairs = snapshot.keys, sorted_pairs(snapshot)
    objects = [snapshot.objects[key] for key in keys]
    parent, touched = (
        (snapshot.parent, snapshot.touched)
        if isinstance(snapshot, IncrementalSnapshot)
        else (b"", frozenset[ObjectKey]())
    )
    result = CompactSnapshot(
        snapshot.header,
        [tuple(key) for key in keys],  # type: ignore[misc]
        [obj.encoded for obj in objects],
        list(pairs),
        [obj.uid for obj in objects],
        snapshot.encoded_size,
        parent,
        touched,
    )
    if any(pair[-DIGEST_SIZE:] != obj.digest for pair, obj in zip(pairs, objects, strict=True)):
        raise DeltaError("the snapshot's pairs do not hold its objects' digests")
    if result.digest != snapshot.digest:
        raise DeltaError("the snapshot's pairs do not give its digest")
    return result


class _Touched(Snapshot):
    """The objects of a compact base that a delta names, standing for the whole base in
    apply_changes (which checks each key against what the base holds, and the base digest)."""

    __slots__ = ("_whole",)

    def __init__(self, base: CompactSnapshot, delta: Delta) -> None:
        named = (*delta.removed, *delta.changed, *delta.added)
        objects = {key: base.objects[key] for key in named if key in base.objects}
        super().__init__(base.header, objects)
        self._whole = base.digest

    @property
    def digest(self) -> bytes:
        return self._whole


def _derive_compact(base: CompactSnapshot, delta: Delta, budget: Budget | None) -> CompactSnapshot:
    """derive() for a compact base: the same checks and the same digest, compact lists out."""
    objects = apply_changes(_Touched(base, delta), delta, budget)
    plain, encoded = list(base._plain), list(base._encoded)
    pairs, uids = list(base.pairs), list(base._uids)
    size = base.encoded_size
    for key in delta.removed:
        at = bisect.bisect_left(plain, key)
        size -= len(encoded[at])
        del plain[at], encoded[at], pairs[at], uids[at]
    for key in delta.changed:
        at, obj = bisect.bisect_left(plain, key), objects[key]
        size += len(obj.encoded) - len(encoded[at])
        encoded[at], pairs[at], uids[at] = obj.encoded, digest_pair(key, obj.digest), obj.uid
    for key in delta.added:
        at, obj = bisect.bisect_left(plain, key), objects[key]
        plain.insert(at, tuple(key))  # type: ignore[arg-type]
        encoded.insert(at, obj.encoded)
        pairs.insert(at, digest_pair(key, obj.digest))
        uids.insert(at, obj.uid)
        size += len(obj.encoded)
    touched = frozenset((*delta.removed, *delta.added, *delta.changed))
    result = CompactSnapshot(delta.header, plain, encoded, pairs, uids, size, base.digest, touched)
    if result.digest != delta.target_digest:
        raise DeltaError("applying the delta does not reproduce its target digest")
    return result


def differences(
    previous: Snapshot, snapshot: Snapshot
) -> tuple[list[ObjectKey], list[ObjectKey], list[ObjectKey]]:
    """The keys (removed, changed, added) from `previous` to `snapshot`, each sorted. Objects
    the two share by identity (a watch cache hands back the same CanonicalObject for an
    unchanged version) are passed over without a look at their digest."""
    olds, news = previous.objects, snapshot.objects
    changed: list[ObjectKey] = []
    added: list[ObjectKey] = []
    for key in sorted(key for key, obj in news.items() if olds.get(key) is not obj):
        old = olds.get(key)
        if old is None:
            added.append(key)
        elif old.digest != news[key].digest:
            changed.append(key)
    return sorted(olds.keys() - news.keys()), changed, added


def following(previous: Snapshot, snapshot: Snapshot) -> IncrementalSnapshot:
    """`snapshot` (same header and objects) carrying its keys, pairs and size, derived from
    `previous`'s as `derive` does from a delta's: the agent's next collection, from its last.

    Only the objects that `differences` finds are re-paired, and only their keys are `touched`.
    The digest is hashed from the pairs, so it is exactly `snapshot_digest`'s.
    """
    removed, changed, added = differences(previous, snapshot)
    keys, pairs, size = _patched(previous, snapshot.objects, removed, changed, added)
    touched = frozenset((*removed, *changed, *added))
    return IncrementalSnapshot(
        snapshot.header, snapshot.objects, keys, pairs, size, previous.digest, touched
    )
