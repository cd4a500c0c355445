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
from collections.abc import Mapping

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
    objects = apply_changes(base, delta, budget)
    keys, pairs = list(base.keys), list(sorted_pairs(base))
    size = base.encoded_size
    for key in delta.removed:
        at = bisect.bisect_left(keys, key)
        del keys[at], pairs[at]
        size -= len(base.objects[key].encoded)
    for key in delta.changed:
        at = bisect.bisect_left(keys, key)
        pairs[at] = digest_pair(key, objects[key].digest)
        size += len(objects[key].encoded) - len(base.objects[key].encoded)
    for key in delta.added:
        at = bisect.bisect_left(keys, key)
        keys.insert(at, key)
        pairs.insert(at, digest_pair(key, objects[key].digest))
        size += len(objects[key].encoded)
    touched = frozenset((*delta.removed, *delta.added, *delta.changed))
    result = IncrementalSnapshot(delta.header, objects, keys, pairs, size, base.digest, touched)
    if result.digest != delta.target_digest:
        raise DeltaError("applying the delta does not reproduce its target digest")
    return result


def following(previous: Snapshot, snapshot: Snapshot) -> IncrementalSnapshot:
    """`snapshot` (same header and objects) carrying its keys, pairs and size, derived from
    `previous`'s as `derive` does from a delta's: the agent's next collection, from its last.

    Objects `snapshot` shares with `previous` by identity (a watch cache hands back the same
    CanonicalObject for an unchanged version) are not looked at beyond that: only the others
    are re-paired, and only their keys, with the removed ones, are `touched`. The digest is
    hashed from the pairs, so it is exactly `snapshot_digest`'s.
    """
    olds, news = previous.objects, snapshot.objects
    fresh = [key for key, obj in news.items() if olds.get(key) is not obj]
    removed = sorted(olds.keys() - news.keys())
    keys, pairs = list(previous.keys), list(sorted_pairs(previous))
    size = previous.encoded_size
    for key in removed:
        at = bisect.bisect_left(keys, key)
        del keys[at], pairs[at]
        size -= len(olds[key].encoded)
    touched = set(removed)
    for key in sorted(fresh):
        obj, old = news[key], olds.get(key)
        at = bisect.bisect_left(keys, key)
        if old is None:
            keys.insert(at, key)
            pairs.insert(at, digest_pair(key, obj.digest))
        elif old.digest != obj.digest:
            pairs[at] = digest_pair(key, obj.digest)
            size -= len(old.encoded)
        else:
            continue
        size += len(obj.encoded)
        touched.add(key)
    return IncrementalSnapshot(
        snapshot.header, news, keys, pairs, size, previous.digest, frozenset(touched)
    )
