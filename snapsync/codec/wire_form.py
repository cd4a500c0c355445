"""The compact wire form of a Delta: what a DELTA frame's payload holds, before compression.

The receiver holds the base, so the payload refers to it instead of repeating it:
- base objects are named by their position in the sorted base key list (removed and changed
  objects as gaps between ascending positions, exemplars as absolute positions);
- an added object is, when smaller, encoded against an exemplar (snapsync.delta.exemplars)
  instead of whole: either structurally (equal subtrees become one SAME leaf) or as RFC 6902
  operations, whichever is smaller; the key is never sent, it is read from the rebuilt object;
- every value goes through snapsync.codec.leaves against the value the receiver holds at the
  same path (timestamps, uids, decimal strings, shared prefixes and suffixes), strings found
  elsewhere in that held object become an index, and uids of held objects (an Event's
  involvedObject, an endpoint's targetRef) a reference to their object;
- an Event named `<involvedObject.name>.<UnixNano hex>` (client-go's naming) travels without its
  name, only the nanoseconds: the receiver rebuilds it from involvedObject and firstTimestamp;
- the header is sent as its collection time and its other fields' difference from the base's.

Payload (msgpack array; layout documented in schemas/frame.md):

    [epoch, collected_at, header_patch, removed_gaps, changed, added]
    changed = [gap, ops, gap, ops, ...]        ops = [[opcode, path, value-or-from?], ...]
    added   = [slot, body, slot, body, ...]    slot = ref, or [ref, nanoseconds] for an Event
                                               whose name is rebuilt from its other fields;
                                               ref nil: body is the whole object; else body
                                               is the object against the exemplar (a map)
                                               or operations on it (a list)

Invariant: `unpack_delta(base, pack_delta(base, d).payload)` equals `d` exactly; the codec checks
that before shipping. Decoding validates every entry and raises only FrameError/DeltaError.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from snapsync.bounds import Budget, unpackb
from snapsync.canonical.canonicalize import pack
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import Snapshot, SnapshotHeader, object_uid
from snapsync.codec.leaves import Expansion, LeafDecoder, LeafEncoder, parse_time
from snapsync.delta.diff import Delta, apply_ops, diff_objects
from snapsync.delta.exemplars import ExemplarIndex
from snapsync.errors import CanonicalError, DeltaError, FrameCorrupt, FrameError

OPCODES = ("add", "remove", "replace", "move", "copy", "test")
_OPCODE = {name: code for code, name in enumerate(OPCODES)}
_WITH_VALUE = frozenset({"add", "replace", "test"})
_WITH_FROM = frozenset({"move", "copy"})
EXEMPLAR_TRIES = 2  # exemplar candidates diffed per added object (best first)
_HEX = re.compile(r"[0-9a-f]{1,16}")


class Unencodable(Exception):
    """The delta cannot take the compact form (the codec then ships another candidate)."""


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
    records: tuple[bytes, ...]  # each changed/added record packed alone (dictionary training)
    stats: WireStats


def resolve(doc: Any, path: Any) -> Any:
    """The value at JSON pointer `path` in `doc`, or None; a reference only, never an error."""
    if type(path) is not str or not path.startswith("/"):
        return None
    node = doc
    for token in path[1:].split("/"):
        if "~" in token:
            token = token.replace("~1", "/").replace("~0", "~")
        if type(node) is dict:
            node = node.get(token)
        elif type(node) is list and token.isdigit() and (token == "0" or token[0] != "0"):
            index = int(token)
            node = node[index] if index < len(node) else None
        else:
            return None
    return node


# --- encoding -----------------------------------------------------------------------------------


def pack_delta(base: Snapshot, delta: Delta, *, exemplars: bool = True) -> WireDelta:
    """The compact payload of `delta` against `base` (which must be the delta's base)."""
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
        entry = [pos - previous - 1, _encode_ops(leaves, ops, base.objects[key].data)]
        previous = pos
        changed.extend(entry)
        records.append(entry)
    added: list[Any] = []
    index = ExemplarIndex(base)
    n_exemplar = 0
    for key in sorted(delta.added):
        obj = delta.added[key]
        try:
            own = ObjectKey.of(obj)
        except CanonicalError:
            own = None
        if own != key:
            raise Unencodable(f"added object filed under {key} names itself {own}")
        entry = _encode_added(leaves, index, key, obj, op_counts, exemplars=exemplars)
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
    return WireDelta(payload, tuple(leaves.pack(r) for r in records), stats)


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
        expected = {"op", "path", "value" if name in _WITH_VALUE else "from"}
        if name == "remove":
            expected.discard("from")
        if code is None or type(path) is not str or set(op) != expected:
            raise Unencodable(f"operation {op!r} is not plain RFC 6902")
        if name in _WITH_VALUE:
            out.append([code, path, leaves.value(op["value"], resolve(ref, path))])
        elif name in _WITH_FROM:
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
    op_counts: Counter[str],
    *,
    exemplars: bool,
) -> list[Any]:
    nanos = _event_nanos(obj)
    slot: Any = (lambda ref: ref) if nanos is None else (lambda ref: [ref, nanos])
    plain_size = len(pack(obj))  # no leaves yet: an upper bound of the whole form
    best: list[Any] | None = None
    best_size = plain_size
    best_ops: list[Any] = []
    if exemplars:
        for tries, ref in enumerate(index.candidates(key, obj)):
            if tries >= EXEMPLAR_TRIES:
                break
            exemplar = index.resolve(ref)
            shown = (
                obj if nanos is None else _renamed(obj, exemplar.get("metadata", {}).get("name"))
            )
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
        whole = leaves.value(obj if nanos is None else _renamed(obj, ""))
        if best is None or leaves.size(whole) <= best_size:
            return [slot(None), whole]
    op_counts.update(str(op.get("op")) for op in best_ops)
    return best


def _event_nanos(obj: dict[str, Any]) -> int | None:
    """For an Event named as client-go names them, `<involvedObject.name>.<UnixNano in hex>`
    with the seconds of its firstTimestamp, the nanoseconds: the name is rebuilt from them and
    the other fields, so 16 hex digits travel as ~4 bytes."""
    if obj.get("kind") != "Event":
        return None
    name, seconds = _event_name_parts(obj)
    full = obj.get("metadata", {}).get("name")
    if name is None or seconds is None or type(full) is not str:
        return None
    prefix, dot, digits = full.rpartition(".")
    if not dot or prefix != name or not _HEX.fullmatch(digits) or digits[0] == "0":
        return None
    nanos = int(digits, 16) - seconds * 10**9
    return nanos if 0 <= nanos < 10**9 else None


def _event_name_parts(obj: dict[str, Any]) -> tuple[str | None, int | None]:
    involved = obj.get("involvedObject")
    name = involved.get("name") if type(involved) is dict else None
    first = obj.get("firstTimestamp")
    parsed = parse_time(first) if type(first) is str else None
    seconds = parsed[0] if parsed is not None and parsed[1] is None else None
    return (name if type(name) is str else None), seconds


def _event_name(obj: dict[str, Any], nanos: int) -> str:
    name, seconds = _event_name_parts(obj)
    if name is None or seconds is None:
        raise FrameCorrupt("an Event named from its fields lacks involvedObject.name or time")
    return f"{name}.{seconds * 10**9 + nanos:x}"


def _renamed(obj: dict[str, Any], name: Any) -> dict[str, Any]:
    """A shallow copy with another metadata.name (never touches `obj`, which may be shared)."""
    meta = obj.get("metadata")
    if type(meta) is not dict:
        raise FrameCorrupt("an Event named from its fields has no metadata")
    return {**obj, "metadata": {**meta, "name": name if type(name) is str else ""}}


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


# --- decoding -----------------------------------------------------------------------------------


def unpack_delta(
    base: Snapshot, raw: bytes, target_digest: bytes, *, max_expanded: int, max_items: int
) -> Delta:
    """The Delta a payload describes against `base`; FrameError/DeltaError on anything wrong.

    Decoding builds at most `max_items` items (snapsync.bounds) from the payload, and at most
    `max_expanded` bytes of references into the base; operations on exemplars are charged to
    the item budget as well.
    """
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
        changed_map[keys[pos]] = tuple(_decode_ops(leaves, ops, obj.data))
    header = _apply_header(leaves, base.header, collected_at, header_patch)
    added_map = _decode_added(base, leaves, expansion, added, earlier, budget)
    return Delta(base.digest, target_digest, header, removed, added_map, changed_map)


def _unpack(raw: bytes, budget: Budget) -> list[Any]:
    doc = unpackb(raw, budget, FrameCorrupt, "delta payload")
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
        if name in _WITH_VALUE and len(op) == 3:
            out.append({"op": name, "path": path, "value": leaves.value(op[2], resolve(ref, path))})
        elif name in _WITH_FROM and len(op) == 3 and type(op[2]) is str:
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
                held = base.objects[keys[ref]]
                exemplar, size = held.data, len(held.encoded)
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
            obj = _renamed(obj, _event_name(obj, nanos))
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


# --- summary ------------------------------------------------------------------------------------


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
