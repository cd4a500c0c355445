"""Building a DELTA frame's compact payload from a Delta and its base (layout: wire_form)."""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from snapsync.canonical.canonicalize import pack
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import Snapshot, SnapshotHeader, object_uid
from snapsync.codec.leaves import KEPT, LeafEncoder
from snapsync.codec.times import TimeParses
from snapsync.codec.wire_form import (
    OPCODES,
    WITH_FROM,
    WITH_VALUE,
    event_name_parts,
    renamed,
    resolve,
)
from snapsync.delta.diff import Delta, Unpacked, diff_objects
from snapsync.delta.exemplars import ExemplarIndex
from snapsync.errors import CanonicalError, Unencodable

_OPCODE = {name: code for code, name in enumerate(OPCODES)}
EXEMPLAR_TRIES = 2  # exemplar candidates diffed per added object (best first)
_HEX = re.compile(r"[0-9a-f]{1,16}")


@dataclass(frozen=True)
class WireStats:
    added_whole: int
    added_exemplar: int
    changed: int
    removed: int
    operations: Mapping[str, int]


@dataclass(frozen=True)
class WireDelta:
    payload: bytes  # msgpack, uncompressed
    entries: tuple[Any, ...]  # each changed/added record, encoded
    stats: WireStats
    leaves: LeafEncoder  # what encoded them (its epoch packs them)

    @property
    def records(self) -> tuple[bytes, ...]:
        """Each changed/added record packed alone, for dictionary training: packed on demand,
        as the encoder itself never needs them."""
        return tuple(self.leaves.pack(r) for r in self.entries)


def pack_delta(
    base: Snapshot,
    delta: Delta,
    *,
    exemplars: bool = True,
    base_data: Unpacked | None = None,
    added_bytes: Mapping[ObjectKey, bytes] | None = None,
) -> WireDelta:
    """The compact payload of `delta` against `base` (which must be the delta's base); base
    objects are read through `base_data` when given (the diff read them already), and
    `added_bytes` are the added objects' canonical bytes, if the caller holds them."""
    if base_data is None:
        base_data = Unpacked(base)
    leaves = LeafEncoder()
    owners = _UidOwners(base)
    leaves.uid_owners = owners
    positions = _Positions(base.keys)
    records: list[Any] = []
    removed = _gaps(positions, delta.removed)
    changed: list[Any] = []
    op_counts: Counter[str] = Counter()
    previous = -1
    for key in sorted(delta.changed):
        pos = positions.get(key)
        if pos is None:
            raise Unencodable(f"delta changes {key}, which the base does not hold")
        ops = delta.changed[key]
        op_counts.update(str(op.get("op")) for op in ops)
        entry = [pos - previous - 1, _encode_ops(leaves, ops, base_data[key])]
        previous = pos
        changed.extend(entry)
        records.append(entry)
    added: list[Any] = []
    index = ExemplarIndex(base, base_data)
    n_exemplar = 0
    for key in sorted(delta.added):
        obj = delta.added[key]
        try:
            own = ObjectKey.of(obj)
        except CanonicalError:
            own = None
        if own != key:
            raise Unencodable(f"added object filed under {key} names itself {own}")
        plain_size = len(pack(obj) if added_bytes is None else added_bytes[key])
        entry = _encode_added(leaves, index, key, obj, plain_size, op_counts, exemplars=exemplars)
        n_exemplar += (entry[0][0] if type(entry[0]) is list else entry[0]) is not None
        index.added(key, obj)
        uid = object_uid(obj)
        if uid is not None:  # later records may name it: the n-th added is -(n + 1)
            owners.added.setdefault(uid, -(len(added) // 2 + 1))
        added.extend(entry)
        records.append(entry)
    # Objects first: the epoch is then an object's time, and the many times of one cycle are
    # small offsets (the collection time may come from another clock).
    header = _header_patch(leaves, base.header, delta.header)
    collected_at = leaves.value(delta.header.collected_at)
    epoch = leaves.choose_epoch()
    payload = leaves.pack([epoch, collected_at, header, removed, changed, added])
    stats = WireStats(
        added_whole=len(delta.added) - n_exemplar,
        added_exemplar=n_exemplar,
        changed=len(delta.changed),
        removed=len(delta.removed),
        operations=dict(sorted(op_counts.items())),
    )
    return WireDelta(payload, tuple(records), stats, leaves)


class _Positions:
    """Position of a key in the sorted base key list, by bisection (no 10k-entry dict per cycle)."""

    def __init__(self, keys: list[ObjectKey]) -> None:
        self.keys = keys

    def get(self, key: ObjectKey) -> int | None:
        pos = bisect.bisect_left(self.keys, key)
        return pos if pos < len(self.keys) and self.keys[pos] == key else None


class _UidOwners:
    """metadata.uid -> reference, for UID_OF leaves: base objects by sorted position (found by
    bisection, only for the uids actually met), then objects added earlier in the payload."""

    def __init__(self, base: Snapshot) -> None:
        self.keys = base.keys
        self.base = base.uid_index
        self.added: dict[str, int] = {}

    def get(self, uid: str) -> int | None:
        key = self.base.get(uid)
        if key is not None:
            return bisect.bisect_left(self.keys, key)
        return self.added.get(uid)


def _gaps(positions: _Positions, keys: tuple[ObjectKey, ...]) -> list[int]:
    out: list[int] = []
    previous = -1
    for pos in sorted(_missing(k) if (p := positions.get(k)) is None else p for k in keys):
        out.append(pos - previous - 1)
        previous = pos
    return out


def _missing(key: ObjectKey) -> int:
    raise Unencodable(f"delta removes {key}, which the base does not hold")


def _encode_ops(leaves: LeafEncoder, ops: Any, ref: dict[str, Any]) -> list[Any]:
    leaves.root = ref
    out: list[Any] = []
    for op in ops:
        name = op.get("op")
        code = _OPCODE.get(name) if type(name) is str else None
        path = op.get("path")
        expected = {"op", "path", "value" if name in WITH_VALUE else "from"}
        if name == "remove":
            expected.discard("from")
        if code is None or type(path) is not str or set(op) != expected:
            raise Unencodable(f"operation {op!r} is not plain RFC 6902")
        if name in WITH_VALUE:
            value = op["value"]  # encoded as it is, unless its reference may matter
            if type(value) not in KEPT:
                value = leaves.value(value, resolve(ref, path))
            out.append([code, path, value])
        elif name in WITH_FROM:
            if type(op["from"]) is not str:
                raise Unencodable(f"operation {op!r} has a malformed from")
            out.append([code, path, op["from"]])
        else:
            out.append([code, path])
    leaves.root = None
    return out


def _encode_added(
    leaves: LeafEncoder,
    index: ExemplarIndex,
    key: ObjectKey,
    obj: dict[str, Any],
    plain_size: int,  # of its canonical msgpack, no leaves: an upper bound of the whole form
    op_counts: Counter[str],
    *,
    exemplars: bool,
) -> list[Any]:
    nanos = _event_nanos(obj, leaves.parse_time)
    slot: Any = (lambda ref: ref) if nanos is None else (lambda ref: [ref, nanos])
    best: list[Any] | None = None
    best_size = plain_size
    best_ops: list[Any] = []
    if exemplars:
        for tries, ref in enumerate(index.candidates(key, obj)):
            if tries >= EXEMPLAR_TRIES:
                break
            exemplar = index.resolve(ref)
            shown = obj if nanos is None else renamed(obj, exemplar.get("metadata", {}).get("name"))
            leaves.root = exemplar
            structural, _ = leaves.against(shown, exemplar)
            leaves.root = None
            size = leaves.size(structural)
            if size < best_size:
                best, best_size, best_ops = [slot(ref), structural], size, []
            ops = diff_objects(exemplar, shown)
            encoded = _encode_ops(leaves, ops, exemplar)
            size = leaves.size(encoded)
            if size < best_size:
                best, best_size, best_ops = [slot(ref), encoded], size, ops
            if best_size * 3 < plain_size:  # good enough: a near twin
                break
    if best is None or best_size * 3 >= plain_size:
        # Field-aware leaves shrink a whole object too; compare against that before settling.
        whole = leaves.value(obj if nanos is None else renamed(obj, ""))
        if best is None or leaves.size(whole) <= best_size:
            return [slot(None), whole]
    op_counts.update(str(op.get("op")) for op in best_ops)
    return best


def _event_nanos(obj: dict[str, Any], parse: TimeParses) -> int | None:
    """For an Event named as client-go names them, `<involvedObject.name>.<UnixNano in hex>`
    with the seconds of its firstTimestamp, the nanoseconds: the name is rebuilt from them and
    the other fields, so 16 hex digits travel as ~4 bytes."""
    if obj.get("kind") != "Event":
        return None
    name, seconds = event_name_parts(obj, parse)
    full = obj.get("metadata", {}).get("name")
    if name is None or seconds is None or type(full) is not str:
        return None
    prefix, dot, digits = full.rpartition(".")
    if not dot or prefix != name or not _HEX.fullmatch(digits) or digits[0] == "0":
        return None
    nanos = int(digits, 16) - seconds * 10**9
    return nanos if 0 <= nanos < 10**9 else None


def _header_patch(leaves: LeafEncoder, base: SnapshotHeader, new: SnapshotHeader) -> dict[str, Any]:
    old_doc, new_doc = base.to_dict(), new.to_dict()
    patch: dict[str, Any] = {}
    for field, value in new_doc.items():
        old = old_doc.get(field)
        if field == "collected_at":
            continue
        if field == "counts" and isinstance(old, dict):
            counts = {k: v for k, v in value.items() if old.get(k) != v}
            counts.update({k: None for k in old if k not in value})
            if counts:
                patch[field] = counts
        elif value != old or type(value) is not type(old):
            patch[field] = leaves.value(value, old)
    for field in old_doc:
        if field not in new_doc:
            raise Unencodable(f"header field {field} disappeared")
    return patch
