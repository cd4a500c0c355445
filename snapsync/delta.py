"""Deltas between snapshots: removed keys, added objects, RFC 6902 operations per changed object.

Invariants:
- `apply(base, diff(base, new))` has exactly `new`'s digest; `apply` checks the base digest
  before and the target digest after, and raises DeltaError without touching `base` otherwise.
- Operations are plain RFC 6902 (jsonpatch applies them), on canonical objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from snapsync.canonical import canonical_copy
from snapsync.errors import DeltaError
from snapsync.keys import ObjectKey
from snapsync.snapshot import CanonicalObject, Snapshot, SnapshotHeader

Operation = dict[str, Any]


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


def diff(base: Snapshot, new: Snapshot) -> Delta:
    removed = tuple(k for k in base.keys if k not in new.objects)
    added: dict[ObjectKey, dict[str, Any]] = {}
    changed: dict[ObjectKey, tuple[Operation, ...]] = {}
    for key, obj in new:
        old = base.objects.get(key)
        if old is None:
            added[key] = obj.data
        elif old.digest != obj.digest:
            changed[key] = tuple(diff_objects(old.data, obj.data))
    return Delta(base.digest, new.digest, new.header, removed, added, changed)


def diff_objects(old: dict[str, Any], new: dict[str, Any]) -> list[Operation]:
    """RFC 6902 operations turning `old` into `new`."""
    ops: list[Operation] = jsonpatch.make_patch(old, new).patch
    return ops


def apply_ops(obj: dict[str, Any], ops: tuple[Operation, ...] | list[Operation]) -> dict[str, Any]:
    """A new canonical object: `obj` patched by `ops` (`obj` is not modified)."""
    try:
        patched = jsonpatch.apply_patch(obj, list(ops), in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise DeltaError(f"operation does not apply: {exc}") from None
    if not isinstance(patched, dict):
        raise DeltaError("operations replaced the object with a non-object")
    return canonical_copy(patched)


def apply(base: Snapshot, delta: Delta) -> Snapshot:
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
        objects[key] = CanonicalObject.from_data(canonical_copy(data))
    for key, ops in delta.changed.items():
        old = objects.get(key)
        if old is None:
            raise DeltaError(f"delta changes {key}, which the base does not hold")
        objects[key] = CanonicalObject.from_data(apply_ops(old.data, ops))
    result = Snapshot(delta.header, objects)
    if result.digest != delta.target_digest:
        raise DeltaError("applying the delta does not reproduce its target digest")
    return result
