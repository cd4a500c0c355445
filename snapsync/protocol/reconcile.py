"""Anti-entropy: find what differs between two snapshots that share no version, by digests.

When the agent holds no version the server holds (server restored from a backup, agent state
lost, a long time offline with the bases pruned) it does not resend everything. It sends a digest
per kind (a few bytes each). For each kind that differs the server answers either its objects with
digests (a small kind, or one the agent has none of) or, for a large kind, a digest per bucket: the
kind split by a hash of the object key into buckets of about `PER_BUCKET` objects. The agent asks
for the objects of the buckets that differ only; it then knows exactly which objects to remove,
add or replace, and ships only those as a repair frame against the server's version.

Why buckets this small: an object's entry (namespace, name, short digest) costs 15-20 bytes on the
wire compressed, a bucket digest 4, and in the kinds that churn (Events, Pods) a few per cent of
the objects differ after minutes apart, so buckets of a few dozen objects nearly all differ.
Buckets of 4 keep the bucket digests to about a byte per object of the differing kinds.

Digests are truncated (kinds 8 bytes, buckets and objects 4): a collision only makes the repair
miss its target digest, which the server detects when it applies the frame (the agent then falls
back to a full snapshot). Every function here is pure; both sides hash keys the same way.

A bucket choice stays the bitmap it travels as (one bit per bucket, never a set of indices: a
full 128 KiB bitmap would be a million Python ints), and the server answers a bucket query only
when every kind in it is one it holds, split into exactly the count it announced for it
(`bucket_count`): anything else is refused before a key is hashed.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from snapsync.canonical.keys import ObjectKey, split_kind_ref
from snapsync.canonical.snapshot import Snapshot, snapshot_digest
from snapsync.delta.diff import Delta

SHORT = 8  # kind digests
OBJECT_SHORT = 4  # object digests in a differences answer
BUCKET_SHORT = 4  # bucket digests
PER_BUCKET = 4  # objects per bucket the server aims at
MIN_BUCKETED = 2 * PER_BUCKET  # kinds with fewer objects are listed whole: buckets cannot pay
MAX_BUCKETS = 2**20  # per kind, on the wire: bounds what a peer can make the other side compute

ObjectDigests = list[tuple[str, str, bytes]]  # (namespace, name, short digest)
Pairs = list[tuple[ObjectKey, bytes]]  # (key, object digest), in key order


@dataclass(frozen=True)
class BucketSet:
    """Some of the `count` buckets a kind is split into: those the agent asks objects for.

    Bucket i is bit i % 8 (least significant first) of byte i // 8 of `bitmap`, as on the wire.
    """

    count: int
    bitmap: bytes

    @classmethod
    def of(cls, count: int, chosen: Iterable[int]) -> BucketSet:
        out = bytearray((count + 7) // 8)
        for i in chosen:
            out[i >> 3] |= 1 << (i & 7)
        return cls(count, bytes(out))

    def covers(self, key: ObjectKey) -> bool:
        i = bucket_of(key, self.count)
        return bool(self.bitmap[i >> 3] >> (i & 7) & 1)


def bucket_count(objects: int) -> int:
    """How many buckets a kind of `objects` objects is split into (both sides agree on it)."""
    return min(MAX_BUCKETS, objects // PER_BUCKET)


def bucket_of(key: ObjectKey, count: int) -> int:
    """The bucket of `key` when its kind is split into `count`: a hash, so both sides agree."""
    name = f"{key.namespace}/{key.name}".encode()
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big") % count


def kind_pairs(snapshot: Snapshot) -> dict[str, Pairs]:
    """(key, object digest) pairs per kind ref, in key order."""
    pairs: dict[str, Pairs] = defaultdict(list)
    for key, obj in snapshot:
        pairs[key.kind_ref].append((key, obj.digest))
    return pairs


def kind_digests(snapshot: Snapshot) -> dict[str, tuple[int, bytes]]:
    """Per kind ref: object count and the short digest of its (key, object digest) pairs."""
    return {
        ref: (len(items), snapshot_digest(items)[:SHORT])
        for ref, items in kind_pairs(snapshot).items()
    }


def bucket_digests(pairs: Iterable[tuple[ObjectKey, bytes]], count: int) -> bytes:
    """`count` short digests, bucket by bucket, of the pairs in key order (in any order given);
    an empty bucket has the digest of no pairs."""
    buckets: dict[int, Pairs] = defaultdict(list)
    for key, digest in pairs:
        buckets[bucket_of(key, count)].append((key, digest))
    empty = snapshot_digest(())[:BUCKET_SHORT]
    return b"".join(
        snapshot_digest(sorted(buckets[i]))[:BUCKET_SHORT] if i in buckets else empty
        for i in range(count)
    )


def object_digests(pairs: Iterable[tuple[ObjectKey, bytes]]) -> ObjectDigests:
    return [(key.namespace, key.name, digest[:OBJECT_SHORT]) for key, digest in pairs]


# -- the server's side -------------------------------------------------------------------------


@dataclass(frozen=True)
class KindDifferences:
    """What the server answers to a summary, for the kinds whose digest differs."""

    listed: dict[str, ObjectDigests]  # kinds whose objects are listed whole
    buckets: dict[str, bytes]  # kinds split into buckets: their bucket digests


def differing_kinds(snapshot: Snapshot, theirs: Mapping[str, tuple[int, bytes]]) -> KindDifferences:
    """For every kind whose digest differs from `theirs`, its objects or its bucket digests."""
    ours = {ref: (len(p), snapshot_digest(p)[:SHORT], p) for ref, p in kind_pairs(snapshot).items()}
    listed: dict[str, ObjectDigests] = {}
    buckets: dict[str, bytes] = {}
    for ref in ours.keys() | theirs.keys():
        count, digest, pairs = ours.get(ref, (0, b"", []))
        if (count, digest) == theirs.get(ref):
            continue
        their_count = theirs.get(ref, (0, b""))[0]
        if count < MIN_BUCKETED or their_count == 0:
            listed[ref] = object_digests(pairs)
        else:
            buckets[ref] = bucket_digests(pairs, bucket_count(count))
    return KindDifferences(listed, buckets)


def unexpected_buckets(snapshot: Snapshot, wanted: Mapping[str, BucketSet]) -> str:
    """Why `wanted` cannot be a question about `snapshot`, or "" if it can: every kind must be
    one it bucketed (MIN_BUCKETED objects or more), split into the count it announced."""
    counts = Counter(key.kind_ref for key in snapshot.keys)
    for ref, chosen in wanted.items():
        held = counts.get(ref, 0)
        if held < MIN_BUCKETED:
            return f"kind {ref!r:.80} was not split into buckets"
        if chosen.count != bucket_count(held):
            return f"kind {ref!r:.80} has {bucket_count(held)} buckets, not {chosen.count}"
    return ""


def objects_in(snapshot: Snapshot, wanted: Mapping[str, BucketSet]) -> dict[str, ObjectDigests]:
    """This side's objects, with digests, in the chosen buckets of each kind (empty lists too)."""
    pairs = kind_pairs(snapshot)
    return {
        ref: object_digests((k, d) for k, d in pairs.get(ref, ()) if chosen.covers(k))
        for ref, chosen in wanted.items()
    }


# -- the agent's side --------------------------------------------------------------------------


def differing_buckets(snapshot: Snapshot, theirs: Mapping[str, bytes]) -> dict[str, BucketSet]:
    """Per bucketed kind, the buckets whose digest differs from the server's."""
    pairs = kind_pairs(snapshot)
    out: dict[str, BucketSet] = {}
    for ref, digests in theirs.items():
        count = len(digests) // BUCKET_SHORT
        ours = bucket_digests(pairs.get(ref, ()), count)
        chosen = [
            i
            for i in range(count)
            if ours[i * BUCKET_SHORT : (i + 1) * BUCKET_SHORT]
            != digests[i * BUCKET_SHORT : (i + 1) * BUCKET_SHORT]
        ]
        if chosen:
            out[ref] = BucketSet.of(count, chosen)
    return out


def strays(objects: Mapping[str, ObjectDigests], wanted: Mapping[str, BucketSet]) -> bool:
    """Whether any listed object lies outside the buckets asked for (an honest server's never)."""
    for ref, entries in objects.items():
        chosen = wanted.get(ref)
        group, kind = split_kind_ref(ref)
        for namespace, name, _ in entries:
            if chosen is None or not chosen.covers(ObjectKey(group, kind, namespace, name)):
                return True
    return False


def repair_delta(
    server_digest: bytes,
    server_objects: Mapping[str, ObjectDigests],
    latest: Snapshot,
    scopes: Mapping[str, BucketSet] | None = None,
) -> Delta:
    """The delta from the server's version (known by digests only) to `latest`.

    `server_objects` lists, per kind, the server's objects in the kind's scope: the whole kind,
    or for a kind in `scopes`, only the buckets chosen there.
    """
    scopes = scopes or {}
    removed: list[ObjectKey] = []
    added = {}
    changed = {}
    by_kind: dict[str, list[ObjectKey]] = defaultdict(list)
    for key in latest.keys:
        by_kind[key.kind_ref].append(key)
    for ref in server_objects.keys() | scopes.keys():
        group, kind = split_kind_ref(ref)
        held = {
            ObjectKey(group, kind, ns, name): short
            for ns, name, short in server_objects.get(ref, ())
        }
        for key, short in held.items():
            obj = latest.objects.get(key)
            if obj is None:
                removed.append(key)
            elif obj.digest[: len(short)] != short:
                changed[key] = ({"op": "replace", "path": "", "value": obj.data},)
        scope = scopes.get(ref)
        for key in by_kind.get(ref, ()):
            if key not in held and (scope is None or scope.covers(key)):
                added[key] = latest.objects[key].data
    header = latest.header
    return Delta(server_digest, latest.digest, header, tuple(sorted(removed)), added, changed)
