"""Reading a DELTA frame's compact payload back into a Delta against its base (layout:
wire_form), and counting what a payload holds without its base.

Nothing in a payload is trusted: every entry is checked, what it builds is bounded, and only
FrameError or DeltaError escape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from snapsync.bounds import Budget, unpackb
from snapsync.canonical.canonicalize import pack
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import Snapshot, SnapshotHeader, object_uid
from snapsync.codec.leaves import PLAIN, Expansion, LeafDecoder, unpacked_ext
from snapsync.codec.times import TimeParses
from snapsync.codec.wire_form import (
    OPCODES,
    WITH_FROM,
    WITH_VALUE,
    event_name_parts,
    renamed,
    resolve,
)
from snapsync.delta.diff import Delta, Unpacked, apply_ops
from snapsync.errors import CanonicalError, DeltaError, FrameCorrupt, FrameError


def unpack_delta(
    base: Snapshot,
    raw: bytes,
    target_digest: bytes,
    *,
    max_expanded: int,
    max_items: int,
    base_data: Unpacked | None = None,
) -> Delta:
    """The Delta a payload describes against `base`; FrameError/DeltaError on anything wrong.

    Decoding builds at most `max_items` items (snapsync.bounds) from the payload, and at most
    `max_expanded` bytes of references into the base; operations on exemplars are charged to
    the item budget as well. Base objects are read through `base_data` when given.
    """
    if base_data is None:
        base_data = Unpacked(base, keep=False)
    budget = Budget(max_items, "the delta payload")
    doc = _unpack(raw, budget)
    epoch, collected_at, header_patch, removed_gaps, changed, added = doc
    if type(epoch) is not int or abs(epoch) > 2**40:
        raise FrameCorrupt("delta payload epoch is malformed")
    expansion = Expansion(max_expanded)
    leaves = LeafDecoder(epoch, expansion)
    keys = base.keys
    earlier: list[tuple[dict[str, Any], int]] = []  # objects added so far, and their sizes

    def uid_of(ref: int) -> str | None:
        if 0 <= ref < len(keys):
            return base.objects[keys[ref]].uid
        if -len(earlier) <= ref < 0:
            return object_uid(earlier[-ref - 1][0])
        return None

    leaves.uid_of = uid_of
    removed = tuple(keys[pos] for pos in _positions(removed_gaps, len(keys), "removed"))
    changed_map: dict[ObjectKey, tuple[dict[str, Any], ...]] = {}
    if type(changed) is not list or len(changed) % 2:
        raise FrameCorrupt("delta payload changed list is malformed")
    positions = _positions(changed[0::2], len(keys), "changed")
    for pos, ops in zip(positions, changed[1::2], strict=True):
        obj = base.objects[keys[pos]]
        expansion.charge(len(obj.encoded))
        changed_map[keys[pos]] = tuple(_decode_ops(leaves, ops, base_data[keys[pos]]))
    header = _apply_header(leaves, base.header, collected_at, header_patch)
    added_map = _decode_added(base, base_data, leaves, expansion, added, earlier, budget)
    return Delta(base.digest, target_digest, header, removed, added_map, changed_map)


def _unpack(raw: bytes, budget: Budget) -> list[Any]:
    doc = unpackb(raw, budget, FrameCorrupt, "delta payload", unpacked_ext)
    if type(doc) is not list or len(doc) != 6:
        raise FrameCorrupt("delta payload is not a 6-entry array")
    return doc


def _positions(gaps: Any, size: int, what: str) -> list[int]:
    if type(gaps) is not list:
        raise FrameCorrupt(f"delta payload {what} list is malformed")
    out: list[int] = []
    pos = -1
    for gap in gaps:
        if type(gap) is not int or gap < 0:
            raise FrameCorrupt(f"delta payload {what} positions are malformed")
        pos += gap + 1
        if pos >= size:
            raise FrameCorrupt(f"delta payload {what} position {pos} is past the base's {size}")
        out.append(pos)
    return out


def _decode_ops(leaves: LeafDecoder, ops: Any, ref: Any) -> list[dict[str, Any]]:
    if type(ops) is not list:
        raise FrameCorrupt("delta operations are not a list")
    leaves.root = ref
    out: list[dict[str, Any]] = []
    for op in ops:
        if type(op) is not list or not 2 <= len(op) <= 3 or type(op[0]) is not int:
            raise FrameCorrupt("delta operation is malformed")
        if not 0 <= op[0] < len(OPCODES):
            raise FrameCorrupt("delta operation has an unknown code")
        if type(op[1]) is not str:
            raise FrameCorrupt("delta operation has a malformed path")
        name, path = OPCODES[op[0]], op[1]
        if name in WITH_VALUE and len(op) == 3:
            value = op[2]  # a plain scalar decodes as itself: no reference to look up
            if type(value) not in PLAIN:
                value = leaves.value(value, resolve(ref, path))
            out.append({"op": name, "path": path, "value": value})
        elif name in WITH_FROM and len(op) == 3 and type(op[2]) is str:
            out.append({"op": name, "from": op[2], "path": path})
        elif name == "remove" and len(op) == 2:
            out.append({"op": name, "path": path})
        else:
            raise FrameCorrupt(f"delta {name} operation is malformed")
    leaves.root = None
    return out


def _apply_header(
    leaves: LeafDecoder, base: SnapshotHeader, collected_at: Any, patch: Any
) -> SnapshotHeader:
    if type(patch) is not dict:
        raise FrameCorrupt("delta header patch is not a map")
    doc = base.to_dict()
    doc["collected_at"] = leaves.value(collected_at)
    if type(doc["collected_at"]) is not str:
        raise FrameCorrupt("delta collection time is not a string")
    for field, value in patch.items():
        if field == "counts":
            counts = dict(doc.get("counts") or {})
            if type(value) is not dict:
                raise FrameCorrupt("delta header counts are malformed")
            for ref, count in value.items():
                if count is None:
                    counts.pop(ref, None)
                elif type(count) is int:
                    counts[ref] = count
                else:
                    raise FrameCorrupt("delta header counts are malformed")
            doc["counts"] = dict(sorted(counts.items()))
        else:
            doc[field] = leaves.value(value, doc.get(field))
    try:
        return SnapshotHeader.from_dict(doc)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise FrameCorrupt(f"delta header is malformed: {exc}") from None


def _decode_added(
    base: Snapshot,
    base_data: Unpacked,
    leaves: LeafDecoder,
    expansion: Expansion,
    added: Any,
    earlier: list[tuple[dict[str, Any], int]],
    budget: Budget,
) -> dict[ObjectKey, dict[str, Any]]:
    if type(added) is not list or len(added) % 2:
        raise FrameCorrupt("delta payload added list is malformed")
    keys = base.keys
    out: dict[ObjectKey, dict[str, Any]] = {}
    for slot, body in zip(added[0::2], added[1::2], strict=True):
        ref, nanos = slot, None
        if type(slot) is list:  # [ref, nanoseconds]: an Event whose name is rebuilt
            if len(slot) != 2 or type(slot[1]) is not int or not 0 <= slot[1] < 10**9:
                raise FrameCorrupt("added Event name is malformed")
            ref, nanos = slot
        if ref is None:
            obj = leaves.value(body)
            if type(obj) is not dict:
                raise FrameCorrupt("added object is not a map")
        elif type(ref) is int and -len(earlier) <= ref < len(keys):
            if ref >= 0:
                exemplar = base_data[keys[ref]]
                size = len(base.objects[keys[ref]].encoded)
            else:
                exemplar, size = earlier[-ref - 1]
            expansion.charge(size)
            if type(body) is dict:  # the object encoded against its exemplar
                leaves.root = exemplar
                obj = leaves.value(body, exemplar, whole=True)
                leaves.root = None
            else:  # RFC 6902 operations turning the exemplar into the object
                obj = _patched(exemplar, _decode_ops(leaves, body, exemplar), budget)
        else:
            raise FrameCorrupt("added object names an exemplar that does not exist")
        if nanos is not None:
            obj = renamed(obj, _event_name(obj, nanos, leaves.parse_time))
        try:
            key = ObjectKey.of(obj)
        except CanonicalError as exc:
            raise FrameCorrupt(f"added object is malformed: {exc}") from None
        if key in out:
            raise FrameCorrupt(f"delta adds {key} twice")
        out[key] = obj
        earlier.append((obj, len(_safe_pack(obj))))
    return out


def _patched(exemplar: dict[str, Any], ops: list[dict[str, Any]], budget: Budget) -> dict[str, Any]:
    with untrusted("operations on an exemplar"):
        patched = apply_ops(exemplar, ops, budget)
    return patched


@contextmanager
def untrusted(what: str) -> Iterator[None]:
    """What applying hostile operations raises becomes a DeltaError: only typed errors escape."""
    try:
        yield
    except (FrameError, DeltaError):
        raise
    except (
        CanonicalError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
    ) as exc:
        raise DeltaError(f"{what} do not apply: {type(exc).__name__}: {exc}") from None
    except RecursionError:
        raise DeltaError(f"{what} build a value nested too deeply") from None


def _safe_pack(obj: Any) -> bytes:
    try:
        return pack(obj)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise FrameCorrupt("added object cannot be encoded") from None


def _event_name(obj: dict[str, Any], nanos: int, parse: TimeParses) -> str:
    name, seconds = event_name_parts(obj, parse)
    if name is None or seconds is None:
        raise FrameCorrupt("an Event named from its fields lacks involvedObject.name or time")
    return f"{name}.{seconds * 10**9 + nanos:x}"


def summarize_payload(raw: bytes, max_items: int) -> dict[str, Any]:
    """Counts read from a payload without its base: for `snapsync inspect` on a delta frame."""
    _, _, header_patch, removed, changed, added = _unpack(raw, Budget(max_items, "the payload"))
    ops: Counter[str] = Counter()
    bodies: Iterator[Any] = iter(())
    if type(changed) is list and type(added) is list:
        bodies = iter(
            [
                *changed[1::2],
                *(b for r, b in zip(added[0::2], added[1::2], strict=False) if r is not None),
            ]
        )
    for body in bodies:
        for op in body if type(body) is list else ():
            if type(op) is list and op and type(op[0]) is int and 0 <= op[0] < len(OPCODES):
                ops[OPCODES[op[0]]] += 1
    n_added = len(added) // 2 if type(added) is list else 0
    refs = (
        [r[0] if type(r) is list and r else r for r in added[0::2]] if type(added) is list else []
    )
    whole = sum(1 for r in refs if r is None)
    return {
        "removed": len(removed) if type(removed) is list else 0,
        "changed": len(changed) // 2 if type(changed) is list else 0,
        "added": n_added,
        "added_whole": whole,
        "added_from_exemplar": n_added - whole,
        "operations": dict(sorted(ops.items())),
        "header_fields_changed": sorted(header_patch) if type(header_patch) is dict else [],
        "payload_bytes": len(raw),
    }
