"""Deltas between snapshots: removed keys, added objects, RFC 6902 operations per changed object.

Invariants:
- `apply(base, diff(base, new))` has exactly `new`'s digest; `apply` checks the base digest
  before and the target digest after, and raises DeltaError without touching `base` otherwise.
  Nothing in a base snapshot is ever modified: objects are held as canonical bytes, and a
  patched object is built from a fresh unpacking of its base object's bytes.
- Operations are plain RFC 6902 (jsonpatch applies them), on canonical objects; they come from
  snapsync.delta.jsondiff, which diffs Kubernetes lists by their natural key, so an item
  inserted at the front of a list costs one operation.
- Every object `apply` produces is filed under its own key (ObjectKey.of): a delta that renames
  an object, or adds one under another's key, is refused, so every stored version reads back.
- What `apply` builds from the operations is charged to the caller's Budget (bounds the expansion
  a hostile delta can ask for, `copy` above all).
- `delta_document` is the decoded delta as JSON (schemas/delta.schema.json): digests in hex, keys
  in their printable form, operations as RFC 6902; `delta_from_document` reverses it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from snapsync.bounds import Budget
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import CanonicalObject, Snapshot, SnapshotHeader
from snapsync.delta import jsondiff, patch
from snapsync.delta.jsondiff import Operation
from snapsync.errors import CanonicalError, DeltaError, InputError

__all__ = [
    "Delta",
    "Operation",
    "Unpacked",
    "apply",
    "apply_changes",
    "apply_ops",
    "delta_document",
    "delta_from_document",
    "diff",
    "diff_objects",
]


@dataclass(frozen=True)
class Delta:
    base_digest: bytes
    target_digest: bytes
    header: SnapshotHeader  # the target's header: collection time, counts, errors
    removed: tuple[ObjectKey, ...] = ()  # sorted
    added: Mapping[ObjectKey, dict[str, Any]] = field(default_factory=dict)  # whole objects
    changed: Mapping[ObjectKey, tuple[Operation, ...]] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (self.removed or self.added or self.changed)

    @property
    def operation_count(self) -> int:
        return sum(len(ops) for ops in self.changed.values())


class Unpacked:
    """A snapshot's objects as data, each unpacked at most once: one encode reads the same base
    objects for the diff, for the operations' references and as exemplars. The values are
    shared by all of them: read-only.

    `keep=False` unpacks anew on each read and keeps nothing: for one pass that reads most
    objects once (a decoder), where holding every object read until the end cost more in
    garbage collection (twice the collections) than unpacking the few read twice."""

    __slots__ = ("_data", "_keep", "_objects")

    def __init__(self, snapshot: Snapshot, *, keep: bool = True) -> None:
        self._objects = snapshot.objects
        self._data: dict[ObjectKey, dict[str, Any]] = {}
        self._keep = keep

    def __getitem__(self, key: ObjectKey) -> dict[str, Any]:
        data = self._data.get(key)
        if data is None:
            data = self._objects[key].data
            if self._keep:
                self._data[key] = data
        return data


def diff(base: Snapshot, new: Snapshot, base_data: Unpacked | None = None) -> Delta:
    """The delta from `base` to `new`; unchanged objects are skipped by digest, never walked.

    An object shared with the base (a watch cache hands the same CanonicalObject back for an
    unchanged version) is skipped by identity, before its digest is read. Base objects are
    read through `base_data` when given (the caller reads them again).
    """
    if base_data is None:
        base_data = Unpacked(base)
    olds, news = base.objects, new.objects
    fresh: list[ObjectKey] = []
    differing: list[ObjectKey] = []
    for key, obj in news.items():  # not new.keys: one lookup per key, not two
        old = olds.get(key)
        if old is None:
            fresh.append(key)
        elif old is not obj and old.digest != obj.digest:
            differing.append(key)
    # Base keys all kept when the counts say so (most cycles); else a set difference in C.
    gone = len(olds) - (len(news) - len(fresh))
    removed = tuple(sorted(olds.keys() - news.keys())) if gone else ()
    added = {key: news[key].data for key in sorted(fresh)}
    changed = {
        key: tuple(diff_objects(base_data[key], news[key].data)) for key in sorted(differing)
    }
    return Delta(base.digest, new.digest, new.header, removed, added, changed)


def uid_index_after(base: Snapshot, new: Snapshot, delta: Delta) -> dict[str, ObjectKey]:
    """`new`'s uid_index from `base`'s and the delta between them, in O(changes) (for
    Snapshot.adopt_uid_index). A uid shared by several objects may end up missing after one of
    them went: it is then encoded as a plain uuid, never as a wrong reference."""
    index = dict(base.uid_index)
    for key in (*delta.removed, *delta.changed):
        uid = base.objects[key].uid
        if uid is not None and index.get(uid) == key:
            del index[uid]
    for key in (*delta.changed, *delta.added):
        uid = new.objects[key].uid
        if uid is not None:
            index.setdefault(uid, key)
    return index


def diff_objects(old: dict[str, Any], new: dict[str, Any]) -> list[Operation]:
    """RFC 6902 operations turning `old` into `new` (they share values with `new`)."""
    return jsondiff.diff(old, new)


def apply_ops(
    obj: dict[str, Any],
    ops: tuple[Operation, ...] | list[Operation],
    budget: Budget | None = None,
) -> dict[str, Any]:
    """A new object: `obj` patched by any valid RFC 6902 `ops` (`obj` is not modified).

    Maps the operations touch, and values they bring, come out with sorted keys, so a canonical
    `obj` gives a canonical result; untouched parts are shared with `obj`. What the operations
    build is charged to `budget`.
    """
    patched = patch.apply_patch(obj, ops, budget)
    if not isinstance(patched, dict):
        raise DeltaError("operations replaced the object with a non-object")
    return patched


def apply(base: Snapshot, delta: Delta, budget: Budget | None = None) -> Snapshot:
    """The target snapshot; DeltaError (and `base` as it was) if it is not exactly the target.

    What the operations build is charged to `budget` (none: unbounded, for trusted deltas).
    """
    result = Snapshot(delta.header, apply_changes(base, delta, budget))
    if result.digest != delta.target_digest:
        raise DeltaError("applying the delta does not reproduce its target digest")
    return result


def apply_changes(
    base: Snapshot, delta: Delta, budget: Budget | None = None
) -> dict[ObjectKey, CanonicalObject]:
    """The base's objects with what `delta` removes, adds and patches, checking that the delta
    is against `base` and that each key it names is (or is not) there, and charging what the
    operations build to `budget`; `base` is left as it was, and the target digest is the
    caller's to check."""
    if base.digest != delta.base_digest:
        raise DeltaError(
            f"delta is against {delta.base_digest.hex()[:12]}, base is {base.digest.hex()[:12]}"
        )
    objects = dict(base.objects)
    for key in delta.removed:
        if objects.pop(key, None) is None:
            raise DeltaError(f"delta removes {key}, which the base does not hold")
    for key, data in delta.added.items():
        if key in objects:
            raise DeltaError(f"delta adds {key}, which the base already holds")
        objects[key] = _canonical_object(key, _copy_added(data))
    for key, ops in delta.changed.items():
        old = objects.get(key)
        if old is None:
            raise DeltaError(f"delta changes {key}, which the base does not hold")
        try:
            patched = apply_ops(old.data, ops, budget)
        except DeltaError as exc:
            raise DeltaError(f"{key}: {exc}") from None
        objects[key] = _canonical_object(key, patched)
    return objects


def _copy_added(data: Any) -> Any:
    """An added object, copied and checked like any operation value (sorted, JSON only)."""
    try:
        return patch.json_copy(data)
    except RecursionError:
        raise DeltaError("added object nested too deeply") from None


def _canonical_object(key: ObjectKey, data: Any) -> CanonicalObject:
    """`data` as the object stored under `key`: it must name itself by that key, or the version
    could not be read back (a snapshot payload files every object under its own key)."""
    if not isinstance(data, dict):
        raise DeltaError(f"{key}: the object is not a map")
    try:
        own = ObjectKey.of(data)
    except CanonicalError as exc:
        raise DeltaError(f"{key}: {exc}") from None
    if own != key:
        raise DeltaError(f"{key}: the object names itself {own}")
    try:
        return CanonicalObject.from_data(data)
    except (OverflowError, TypeError, ValueError) as exc:  # msgpack refuses a value
        raise DeltaError(f"{key}: the object cannot be encoded: {exc}") from None


def delta_document(delta: Delta) -> dict[str, Any]:
    """The decoded delta as plain JSON-able data (`inspect`, `--format json`; schemas/delta)."""
    return {
        "base_digest": delta.base_digest.hex(),
        "target_digest": delta.target_digest.hex(),
        "header": delta.header.to_dict(),
        "summary": {
            "removed": len(delta.removed),
            "added": len(delta.added),
            "changed": len(delta.changed),
            "operations": delta.operation_count,
        },
        "removed": [str(key) for key in sorted(delta.removed)],
        "added": [{"key": str(key), "object": delta.added[key]} for key in sorted(delta.added)],
        "changed": [
            {"key": str(key), "ops": list(delta.changed[key])} for key in sorted(delta.changed)
        ],
    }


def delta_from_document(doc: Mapping[str, Any]) -> Delta:
    """The Delta a `delta_document` describes; InputError if the document is malformed."""
    try:
        return Delta(
            base_digest=bytes.fromhex(doc["base_digest"]),
            target_digest=bytes.fromhex(doc["target_digest"]),
            header=SnapshotHeader.from_dict(doc["header"]),
            removed=tuple(sorted(ObjectKey.parse(text) for text in doc["removed"])),
            added={ObjectKey.parse(e["key"]): e["object"] for e in doc["added"]},
            changed={ObjectKey.parse(e["key"]): tuple(e["ops"]) for e in doc["changed"]},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a delta document: {exc!r}") from None
