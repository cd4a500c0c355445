"""RFC 6902 JSON Patch for JSON documents: a fast, list-aware diff (applied by delta.patch).

Why not jsonpatch: `make_patch` is pure Python over every node, and it pairs array items by
position as soon as items also change, so a container inserted at the front while another one
changes rewrites every shifted item. This module does the same job in a fraction of the CPU,
pairing list items by what they are.

Invariants:
- `apply_patch(old, diff(old, new))` equals `new` exactly, with types kept apart (1, 1.0, -0.0 and
  true are four different values), and so does `jsonpatch.apply_patch` (plain RFC 6902 only:
  add, remove, replace, move; indices always explicit, never `-`).
- `diff` is deterministic: the same pair of documents always gives the same operations. Lists of
  maps with a natural key (a field set present and unique on both sides) are matched by key, other
  lists by equal items after trimming the common prefix and suffix; structural changes come first
  (removals from the end backward, then moves, then additions in index order), then the nested
  changes of matched items at their final index. A subtree whose operations would be larger than
  replacing it whole is replaced whole.
- Operations returned by `diff` share values with `new`: treat both as read-only.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import msgpack

Operation = dict[str, Any]

# Field sets that identify an item of a Kubernetes list, in order of preference. The first one
# present and unique in both the old and the new list is the key (correctness never depends on
# the choice: it only decides which items count as "the same item, changed").
LIST_KEYS: tuple[tuple[str, ...], ...] = (
    ("name",),
    ("type",),
    ("uid",),
    ("containerPort", "protocol"),
    ("port", "protocol"),
    ("mountPath",),
    ("devicePath",),
    ("ip",),
    ("key",),
    ("topologyKey", "whenUnsatisfiable"),
    ("containerPort",),
    ("port",),
)

_OP_OVERHEAD = 20  # msgpack bytes around an operation's path and value: {op: replace, path: ...}
_MOVE_WORK = 4_000_000  # movers x list length above which a list is replaced whole, not reordered


# --- diff ---------------------------------------------------------------------------------------


def diff(old: Any, new: Any) -> list[Operation]:
    """RFC 6902 operations turning `old` into `new` (see the module invariants)."""
    out = _Ops(msgpack.Packer(use_bin_type=True).pack)  # one Packer per diff, not per value
    _diff_value(old, new, "", out)
    return out.ops


def pointer_token(key: str) -> str:
    """`key` escaped as one JSON Pointer reference token (RFC 6901)."""
    if "~" in key or "/" in key:
        return key.replace("~", "~0").replace("/", "~1")
    return key


def same(a: Any, b: Any, pack: Callable[[Any], bytes] | None = None) -> bool:
    """Strict JSON equality: equal values of the same types (1 != 1.0 != true, -0.0 != 0.0).

    `pack` is the caller's msgpack packer, if it has one (msgpack.packb builds one per call)."""
    if a is b:
        return True
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is float:
        return bool(a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    if ta is dict or ta is list:
        if a != b:
            return False
        try:  # msgpack keeps int/float/bool and -0.0 apart, at C speed
            pack = pack or _pack
            return bool(pack(a) == pack(b)) or _same_deep(a, b)
        except (OverflowError, TypeError, ValueError):
            return _same_deep(a, b)
    return bool(a == b)


def _same_deep(a: Any, b: Any) -> bool:
    """`same`, walked in Python: for maps in different key orders and values msgpack refuses."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same_deep(v, b[k]) for k, v in a.items())
    if type(a) is list:
        return len(a) == len(b) and all(_same_deep(x, y) for x, y in zip(a, b, strict=True))
    return same(a, b)


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _size(value: Any, pack: Callable[[Any], bytes]) -> int:
    """Encoded size of a value (msgpack, as shipped), for choosing the cheaper form of a change."""
    if type(value) is str:
        return len(value) + 2
    try:
        return len(pack(value))
    except (OverflowError, TypeError, ValueError):
        return len(json.dumps(value))


@dataclass(slots=True)
class _Ops:
    """Operations being built for one subtree, with their running encoded size, and the diff's
    msgpack packer."""

    pack: Callable[[Any], bytes]
    ops: list[Operation] = field(default_factory=list)
    size: int = 0

    def add(self, path: str, value: Any) -> None:
        self.ops.append({"op": "add", "path": path, "value": value})
        self.size += _OP_OVERHEAD + len(path) + _size(value, self.pack)

    def replace(self, path: str, value: Any) -> None:
        self.ops.append({"op": "replace", "path": path, "value": value})
        self.size += _OP_OVERHEAD + len(path) + _size(value, self.pack)

    def remove(self, path: str) -> None:
        self.ops.append({"op": "remove", "path": path})
        self.size += _OP_OVERHEAD + len(path)

    def move(self, frm: str, path: str) -> None:
        self.ops.append({"op": "move", "from": frm, "path": path})
        self.size += _OP_OVERHEAD + len(frm) + len(path)

    def extend(self, other: _Ops) -> None:
        self.ops.extend(other.ops)
        self.size += other.size


def _diff_value(old: Any, new: Any, path: str, out: _Ops) -> None:
    if not same(old, new, out.pack):
        _diff_unequal(old, new, path, out)


def _diff_unequal(old: Any, new: Any, path: str, out: _Ops) -> None:
    """`_diff_value` of values already found not `same`."""
    sub = _Ops(out.pack)
    if type(old) is dict and type(new) is dict:
        _diff_dict(old, new, path, sub)
    elif type(old) is list and type(new) is list:
        _diff_list(old, new, path, sub)
    else:
        out.replace(path, new)
        return
    if len(sub.ops) > 1 and sub.size > _OP_OVERHEAD + len(path) + _size(new, out.pack):
        out.replace(path, new)
    else:
        out.extend(sub)


def _diff_dict(old: dict[str, Any], new: dict[str, Any], path: str, out: _Ops) -> None:
    for key in sorted(old):
        if key not in new:
            out.remove(f"{path}/{pointer_token(key)}")
    for key in sorted(new):
        if key in old:
            value = new[key]
            if not same(old[key], value, out.pack):  # before building the path: most are
                _diff_unequal(old[key], value, f"{path}/{pointer_token(key)}", out)
        else:
            out.add(f"{path}/{pointer_token(key)}", new[key])


def _diff_list(old: list[Any], new: list[Any], path: str, out: _Ops) -> None:
    n = min(len(old), len(new))
    start = 0
    while start < n and same(old[start], new[start], out.pack):
        start += 1
    tail = 0
    while tail < n - start and same(old[-1 - tail], new[-1 - tail], out.pack):
        tail += 1
    mid_old = old[start : len(old) - tail]
    mid_new = new[start : len(new) - tail]
    if not mid_old:
        for offset, value in enumerate(mid_new):
            out.add(f"{path}/{start + offset}", value)
        return
    if not mid_new:
        for offset in range(len(mid_old) - 1, -1, -1):
            out.remove(f"{path}/{start + offset}")
        return
    plan = _match(mid_old, mid_new, out.pack)
    if len(plan.movers) * len(mid_old) > _MOVE_WORK:
        out.replace(path, new)  # a shuffled long list: placing each mover is O(n)
        return
    _emit_list_ops(mid_old, mid_new, plan, start, path, out)


def _list_key(old: Sequence[Any], new: Sequence[Any]) -> Callable[[Any], Hashable] | None:
    """The first field set in LIST_KEYS that is present, scalar and unique on both sides."""
    if not all(type(x) is dict for x in old) or not all(type(x) is dict for x in new):
        return None
    for fields in LIST_KEYS:
        if _is_key(fields, old) and _is_key(fields, new):
            return itemgetter(*fields)
    return None


def _is_key(fields: tuple[str, ...], items: Sequence[dict[str, Any]]) -> bool:
    seen: set[tuple[Any, ...]] = set()
    for item in items:
        values = []
        for f in fields:
            value = item.get(f)
            if type(value) is not str and type(value) is not int:  # bool hashes like int
                return False
            values.append(value)
        seen.add(tuple(values))
    return len(seen) == len(items)


def _fingerprint(value: Any, pack: Callable[[Any], bytes]) -> Hashable:
    """A hashable identity for strict equality (`same`) of one list item."""
    if type(value) is str:
        return value
    try:
        return pack(value)
    except (OverflowError, TypeError, ValueError):
        return ("json", json.dumps(value, sort_keys=True))


@dataclass(frozen=True, slots=True)
class _Plan:
    """How the middles of two lists correspond: index pairs in order, and what moves."""

    stable: list[tuple[int, int]]  # (old index, new index), increasing in both
    movers: list[tuple[int, int]]  # (old index, new index), matched but out of order


def _match(old: Sequence[Any], new: Sequence[Any], pack: Callable[[Any], bytes]) -> _Plan:
    """Pair items by natural key, else by equal value; pair leftovers positionally between them."""
    key = _list_key(old, new)
    if key is not None:
        where = {key(item): i for i, item in enumerate(old)}
        pairs = [(where[k], j) for j, k in enumerate(map(key, new)) if k in where]
    else:
        slots: dict[Hashable, list[int]] = {}
        for i, item in enumerate(old):
            slots.setdefault(_fingerprint(item, pack), []).append(i)
        pairs = []
        for j, item in enumerate(new):
            free = slots.get(_fingerprint(item, pack))
            if free:
                pairs.append((free.pop(0), j))
    pairs.sort()
    keep = _longest_increasing(pairs)
    stable = [pairs[i] for i in keep]
    kept = set(keep)
    movers = [p for i, p in enumerate(pairs) if i not in kept]
    if key is None:
        stable = _pair_gaps(stable, {o for o, _ in movers}, {n for _, n in movers}, old, new)
    return _Plan(stable, movers)


def _longest_increasing(pairs: list[tuple[int, int]]) -> list[int]:
    """Indices into `pairs` (sorted by old index) of a longest run increasing in new index."""
    tails: list[int] = []  # new index ending the best run of each length
    tail_at: list[int] = []  # position in `pairs` of that end
    back: list[int] = []
    for pos, (_, j) in enumerate(pairs):
        length = bisect_left(tails, j)
        if length == len(tails):
            tails.append(j)
            tail_at.append(pos)
        else:
            tails[length] = j
            tail_at[length] = pos
        back.append(tail_at[length - 1] if length else -1)
    run: list[int] = []
    pos = tail_at[-1] if tail_at else -1
    while pos >= 0:
        run.append(pos)
        pos = back[pos]
    run.reverse()
    return run


def _pair_gaps(
    stable: list[tuple[int, int]],
    moved_old: set[int],
    moved_new: set[int],
    old: Sequence[Any],
    new: Sequence[Any],
) -> list[tuple[int, int]]:
    """Add positional pairs of unmatched items lying between the same two stable pairs.

    A changed item of an unkeyed list then becomes a nested diff (or a replace) instead of a
    removal plus an addition of the whole value.
    """
    result: list[tuple[int, int]] = []
    prev_o, prev_n = -1, -1
    for o, n in [*stable, (len(old), len(new))]:
        gap_old = [i for i in range(prev_o + 1, o) if i not in moved_old]
        gap_new = [j for j in range(prev_n + 1, n) if j not in moved_new]
        result.extend(zip(gap_old, gap_new, strict=False))
        if o < len(old):
            result.append((o, n))
        prev_o, prev_n = o, n
    return result


def _emit_list_ops(
    old: Sequence[Any],
    new: Sequence[Any],
    plan: _Plan,
    start: int,
    path: str,
    out: _Ops,
) -> None:
    """Operations for the middles: removals (backward), moves, additions, then nested diffs.

    A moved item whose nested diff costs about as much as the item itself is removed and added
    instead: that is smaller than a move plus a whole replacement.
    """
    source = {n: o for o, n in plan.stable}
    nested: dict[int, _Ops] = {}
    movers = []
    for o, n in plan.movers:
        sub = nested[n] = _Ops(out.pack)
        _diff_value(old[o], new[n], f"{path}/{start + n}", sub)
        if sub.size < _OP_OVERHEAD + _size(new[n], out.pack):
            movers.append((o, n))
            source[n] = o
    kept = set(source.values())
    for i in range(len(old) - 1, -1, -1):
        if i not in kept:
            out.remove(f"{path}/{start + i}")
    current = [i for i in range(len(old)) if i in kept]  # old indices, as the list now stands
    for o, n in sorted(movers, key=lambda pair: pair[1]):
        anchor = next((source[j] for j in range(n - 1, -1, -1) if j in source), None)
        frm = current.index(o)
        current.pop(frm)
        to = 0 if anchor is None else current.index(anchor) + 1
        current.insert(to, o)
        if to != frm:
            out.move(f"{path}/{start + frm}", f"{path}/{start + to}")
    for j, value in enumerate(new):
        if j not in source:
            out.add(f"{path}/{start + j}", value)
    for j in sorted(source):
        if j in nested:
            out.extend(nested[j])
        else:
            _diff_value(old[source[j]], new[j], f"{path}/{start + j}", out)
