"""Exemplars: for an object the receiver lacks, a similar object it already holds.

An added object is shipped as a diff against its exemplar when that is smaller (most new Pods
have a sibling, most new Events an earlier Event about the same thing). The choice uses only
what an agent really sees in the objects themselves. Among objects of the same kind and
namespace, ranked:

1. the same controller ownerReference (siblings of a ReplicaSet or Job);
2. the same metadata.generateName;
3. Events: the same reason about the same involvedObject, then about an object of the same name
   stem (the "Pulled" Event of a sibling Pod is a near twin of the new Pod's "Pulled"), then the
   same involvedObject, then the same stem;
4. the same name stem (the name without generated suffixes);
5. the largest overlap of labels;

then 6. the same kind and name in another namespace (every namespace has a `default`
ServiceAccount); else nothing, and the object is sent whole.

Cost is bounded per added object, not per base object: Kubernetes names siblings after their
owner (`web-7d9c8b6f5-x2x4k`, `web-0`, Event `web-0.17a3…`), so the pool ranked by rules 1-4 is
the objects whose name starts with the new name's stem, found by bisection in the sorted base
keys (at most POOL nearest). Rule 5 scans at most LABEL_SCAN objects of the group.

Candidates are the base's objects plus the objects added earlier in the same payload (the
receiver holds those too by then). References are integers: a base object's position in the
sorted base key list, or -(n + 1) for the n-th object added earlier in the payload.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from snapsync.canonical.canonicalize import unpack_fields
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import Snapshot
from snapsync.delta.diff import Unpacked

_SUFFIXES = re.compile(r"(?:[.-](?:[0-9a-f]{16}|[0-9a-f]{8,10}|[b-df-hj-np-tv-z2-9]{5,10}|\d+))+$")
POOL = 48  # same-stem objects ranked per added object
LABEL_SCAN = 256  # objects of the group scanned for label overlap
_HIGH = "\U0010ffff"
_TRAIT_FIELDS = frozenset({"metadata", "involvedObject", "regarding", "reason"})  # _Traits.of's


def name_stem(name: str) -> str:
    """`web-7d9c8b6f5-x2x4k` -> `web`; `web-0` -> `web`; Event `web-0.17a3…` -> `web`."""
    return _SUFFIXES.sub("", name) or name


def _controller(obj: dict[str, Any]) -> str | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("controller") is True:
            return str(ref.get("uid") or ref.get("name"))
    return None


def _involved(obj: dict[str, Any]) -> tuple[str, ...] | None:
    inv = obj.get("involvedObject") or obj.get("regarding")
    if not isinstance(inv, dict):
        return None
    return tuple(str(inv.get(f, "")) for f in ("kind", "namespace", "name", "uid"))


def _labels(obj: dict[str, Any]) -> dict[str, Any]:
    labels = obj.get("metadata", {}).get("labels")
    return labels if isinstance(labels, dict) else {}


class _Traits(NamedTuple):
    """What ranking compares of an object, read once per object (a pool ranks ~48 candidates
    per added object, and one candidate serves every sibling added in the same payload). A
    NamedTuple: made ~1,000 times a cycle, where a frozen dataclass costs ~3x as much."""

    controller: str | None
    generate_name: Any
    involved: tuple[str, ...] | None
    reason: Any
    stem: str  # of metadata.name
    labels: dict[str, Any]

    @classmethod
    def of(cls, obj: dict[str, Any]) -> _Traits:
        meta = obj.get("metadata", {})
        return cls(
            _controller(obj),
            meta.get("generateName"),
            _involved(obj),
            obj.get("reason"),
            name_stem(str(meta.get("name", ""))),
            _labels(obj),
        )


def _rank(mine: _Traits, stem: str, theirs: _Traits) -> tuple[int, int]:
    """(rule score, label overlap): higher is better; (0, 0): no rule matched.

    For Events the reason weighs more than the subject: a new Pod's "Pulled" Event is closer to
    a sibling Pod's "Pulled" (same message but the name) than to its own "Scheduled".
    """
    score = 0
    if mine.controller is not None and mine.controller == theirs.controller:
        score = 8
    elif mine.generate_name and mine.generate_name == theirs.generate_name:
        score = 7
    elif mine.involved is not None:
        same_subject = mine.involved == theirs.involved
        same_stem = stem == theirs.stem
        if mine.reason == theirs.reason and (same_subject or same_stem):
            score = 6 if same_subject else 5
        elif same_subject or same_stem:
            score = 4 if same_subject else 3
    elif stem == theirs.stem:
        score = 3
    labels, other = mine.labels, theirs.labels
    overlap = sum(1 for k, v in labels.items() if other.get(k) == v) if labels and other else 0
    return score, overlap


class ExemplarIndex:
    """Finds exemplars for objects added to `base`; `added` records what the payload added.
    Base objects are read through `base_data` when given (shared with the caller)."""

    def __init__(self, base: Snapshot, base_data: Unpacked | None = None) -> None:
        self.base = base
        self._keys = base.keys
        self._added: list[dict[str, Any]] = []
        self._data = Unpacked(base) if base_data is None else base_data
        self._traits: dict[int, _Traits] = {}  # of the objects ranked so far, by reference
        self._added_groups: dict[tuple[str, str, str], list[int]] = {}
        self._kind_names: dict[tuple[str, str], dict[str, int]] = {}

    def resolve(self, ref: int) -> dict[str, Any]:
        """The object a reference names (the caller checked the range). Base objects are unpacked
        once per payload: the encoder tries the same neighbours for every sibling added."""
        if ref < 0:
            return self._added[-ref - 1]
        return self._data[self._keys[ref]]

    def added(self, key: ObjectKey, obj: dict[str, Any]) -> None:
        """Make an object just added in the payload a candidate for the ones after it."""
        self._added.append(obj)
        ref = -len(self._added)
        self._added_groups.setdefault((key.group, key.kind, key.namespace), []).append(ref)
        names = self._kind_names.get((key.group, key.kind))
        if names is not None:
            names.setdefault(key.name, ref)

    def candidates(self, key: ObjectKey, obj: dict[str, Any]) -> Iterator[int]:
        """Exemplar references for `obj`, best first."""
        stem = name_stem(key.name)
        pool = self._pool(key, stem)
        mine = _Traits.of(obj)
        # Stable sort: among equals, the pool's order (nearest first) decides.
        ranked = sorted(
            ((_rank(mine, stem, self._traits_of(ref)), ref) for ref in pool),
            key=lambda item: item[0],
            reverse=True,
        )
        ranked = [(rank, ref) for rank, ref in ranked if rank != (0, 0)]
        # The best of each rule first (a sibling's Event of the same reason, then one about the
        # same object...): the encoder tries a few, and different rules fail differently.
        leaders = [
            i for i, (rank, _) in enumerate(ranked) if i == 0 or rank[0] != ranked[i - 1][0][0]
        ]
        lead = set(leaders)
        order = leaders + [i for i in range(len(ranked)) if i not in lead]
        yielded = set()
        for i in order:
            ref = ranked[i][1]
            yielded.add(ref)
            yield ref
        other = self._names(key).get(key.name)
        if other is not None and other not in yielded:
            yield other

    def _traits_of(self, ref: int) -> _Traits:
        """Ranking reads a few fields of each neighbour: a base object's others stay packed."""
        traits = self._traits.get(ref)
        if traits is None:
            if ref < 0:
                fields = self._added[-ref - 1]
            else:
                fields = unpack_fields(self.base.objects[self._keys[ref]].encoded, _TRAIT_FIELDS)
            traits = self._traits[ref] = _Traits.of(fields)
        return traits

    def _pool(self, key: ObjectKey, stem: str) -> list[int]:
        """Same-stem objects of the key's group, nearest first (objects added earlier in the
        payload before base ones), else the group's last ones."""
        group = (key.group, key.kind, key.namespace)
        lo = bisect.bisect_left(self._keys, ObjectKey(*group, stem))
        hi = bisect.bisect_left(self._keys, ObjectKey(*group, stem + _HIGH))
        if lo == hi:  # no namesake: label overlap over a bounded part of the group
            start = bisect.bisect_left(self._keys, ObjectKey(*group, ""))
            end = bisect.bisect_left(self._keys, ObjectKey(*group, _HIGH))
            near = list(range(end - 1, max(start, end - LABEL_SCAN) - 1, -1))
        else:
            at = bisect.bisect_left(self._keys, key, lo, hi)
            lo, hi = max(lo, at - POOL // 2), min(hi, at + POOL // 2)
            near = sorted(range(lo, hi), key=lambda pos: abs(pos - at + 0.5))
        return [*reversed(self._added_groups.get(group, ())[-POOL:]), *near]

    def _names(self, key: ObjectKey) -> dict[str, int]:
        kind = (key.group, key.kind)
        names = self._kind_names.get(kind)
        if names is None:
            names = {}
            lo = bisect.bisect_left(self._keys, ObjectKey(key.group, key.kind, "", ""))
            hi = bisect.bisect_left(self._keys, ObjectKey(key.group, key.kind, _HIGH, ""))
            for pos in range(lo, hi):
                names.setdefault(self._keys[pos].name, pos)
            self._kind_names[kind] = names
        return names
