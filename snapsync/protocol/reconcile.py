"""Anti-entropy: find what differs between two snapshots that share no version, by digests.

When the agent holds no version the server holds (server restored from a backup, agent state
lost, a long time offline with the bases pruned) it does not resend everything. It sends a digest
per kind (a few bytes each); the server answers, for the kinds that differ, a digest per object;
the agent then knows exactly which objects to remove, add or replace, and ships only those as a
repair frame against the server's version. Digests are truncated to 8 bytes here: a collision
only makes the repair miss its target digest, which the server detects (the agent then falls
back to a full snapshot).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from snapsync.delta import Delta
from snapsync.keys import ObjectKey, split_kind_ref
from snapsync.snapshot import Snapshot, snapshot_digest

SHORT = 8

ObjectDigests = list[tuple[str, str, bytes]]  # (namespace, name, short digest)


def kind_digests(snapshot: Snapshot) -> dict[str, tuple[int, bytes]]:
    """Per kind ref: object count and the short digest of its (key, object digest) pairs."""
    pairs: dict[str, list[tuple[ObjectKey, bytes]]] = defaultdict(list)
    for key, obj in snapshot:
        pairs[key.kind_ref].append((key, obj.digest))
    return {ref: (len(items), snapshot_digest(items)[:SHORT]) for ref, items in pairs.items()}


def differing_objects(
    snapshot: Snapshot, theirs: Mapping[str, tuple[int, bytes]]
) -> dict[str, ObjectDigests]:
    """For every kind whose digest differs from `theirs`, this side's objects with digests."""
    ours = kind_digests(snapshot)
    differing = {ref for ref in ours.keys() | theirs.keys() if ours.get(ref) != theirs.get(ref)}
    out: dict[str, ObjectDigests] = {ref: [] for ref in differing}
    for key, obj in snapshot:
        if key.kind_ref in differing:
            out[key.kind_ref].append((key.namespace, key.name, obj.digest[:SHORT]))
    return out


def repair_delta(
    server_digest: bytes, server_objects: Mapping[str, ObjectDigests], latest: Snapshot
) -> Delta:
    """The delta from the server's version (known by digests only) to `latest`."""
    removed: list[ObjectKey] = []
    added = {}
    changed = {}
    by_kind: dict[str, list[ObjectKey]] = defaultdict(list)
    for key in latest.keys:
        by_kind[key.kind_ref].append(key)
    for ref, entries in server_objects.items():
        group, kind = split_kind_ref(ref)
        held = {ObjectKey(group, kind, ns, name): short for ns, name, short in entries}
        for key, short in held.items():
            obj = latest.objects.get(key)
            if obj is None:
                removed.append(key)
            elif obj.digest[:SHORT] != short:
                changed[key] = ({"op": "replace", "path": "", "value": obj.data},)
        for key in by_kind.get(ref, ()):
            if key not in held:
                added[key] = latest.objects[key].data
    header = latest.header
    return Delta(server_digest, latest.digest, header, tuple(sorted(removed)), added, changed)
