"""Strategies and helpers for the frame and codec tests: snapshot pairs that look like churn."""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from hypothesis import strategies as st
from support_objects import JSON, NAME, raw_objects

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot

PROFILE = load_profile()
EPOCH = 1_700_000_000


def stamp(seconds: int, fraction: str | None = None) -> str:
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(EPOCH + seconds))
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def snap(raws: list[dict[str, Any]], at: int = 0) -> Snapshot:
    return build_snapshot(raws, PROFILE, collected_at=stamp(at))


def _name(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


LEAVES = (
    st.integers(0, 10**6).map(stamp)
    | st.tuples(st.integers(-(10**6), 10**6), st.from_regex(r"[0-9]{1,9}", fullmatch=True)).map(
        lambda t: stamp(*t)
    )
    | st.uuids().map(str)
    | st.integers(-(10**18), 10**18).map(str)
    | st.text(max_size=30)
    | JSON
)


def _mutate(draw: st.DrawFn, obj: dict[str, Any]) -> dict[str, Any]:
    """A changed version: fields set, replaced or removed, strings edited in the middle."""
    out = copy.deepcopy(obj)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["set", "edit", "drop", "label"]))
        spec = out.setdefault("spec", {})
        if action == "set":
            spec[draw(st.sampled_from(["a", "b", "when", "uid", "rv"]))] = draw(LEAVES)
        elif action == "edit":
            old = str(spec.get("text", "prefix-common-middle-suffix-common"))
            cut = draw(st.integers(0, len(old)))
            spec["text"] = old[:cut] + draw(st.text(max_size=6)) + old[cut + 1 :]
        elif action == "drop" and spec:
            spec.pop(draw(st.sampled_from(sorted(spec))))
        else:
            out["metadata"].setdefault("labels", {})[draw(NAME)] = draw(NAME)
    return out


def _sibling(draw: st.DrawFn, obj: dict[str, Any], taken: set[tuple[str, str, str]]) -> Any:
    """A new object made like `obj` (a new Pod of the same ReplicaSet), or None if taken."""
    out = _mutate(draw, obj)
    out["metadata"]["name"] = obj["metadata"]["name"] + "-" + draw(NAME)
    out["metadata"]["uid"] = str(draw(st.uuids()))
    if draw(st.booleans()):
        owner = str(uuid.UUID(int=len(obj["metadata"]["name"])))
        for o in (obj, out):
            o["metadata"]["ownerReferences"] = [
                {"kind": "ReplicaSet", "name": "rs", "uid": owner, "controller": True}
            ]
    return None if _name(out) in taken else out


@st.composite
def snapshot_pairs(draw: st.DrawFn, max_objects: int = 8) -> tuple[Snapshot, Snapshot]:
    """(base, new): objects removed, changed, added (some as siblings of base objects)."""
    raws = draw(st.lists(raw_objects(), max_size=max_objects, unique_by=_name))
    for obj in raws:
        if draw(st.booleans()):
            obj["metadata"]["creationTimestamp"] = stamp(draw(st.integers(0, 10**5)))
            obj["metadata"]["uid"] = str(draw(st.uuids()))
    base_raws = copy.deepcopy(raws)
    new_raws: list[dict[str, Any]] = []
    taken = {_name(o) for o in raws}
    for obj in raws:
        fate = draw(st.sampled_from(["keep", "keep", "change", "remove", "sibling"]))
        if fate == "remove":
            continue
        if fate == "change":
            obj = _mutate(draw, obj)
        if fate == "sibling":
            twin = _sibling(draw, obj, taken)
            if twin is not None:
                taken.add(_name(twin))
                new_raws.append(twin)
        new_raws.append(obj)
    for extra in draw(st.lists(raw_objects(), max_size=3)):
        if _name(extra) not in taken:
            taken.add(_name(extra))
            new_raws.append(extra)
    return snap(base_raws, 0), snap(new_raws, draw(st.integers(0, 10**5)))
