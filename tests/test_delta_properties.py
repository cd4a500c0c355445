"""Properties of the delta engine: jsondiff's diff/apply on arbitrary JSON, delta on snapshots.

The documents mix what trips diffs up: lists of maps keyed by `name` (Kubernetes style), plain
lists with duplicates, and scalars JSON keeps apart but Python compares equal (1, 1.0, true, -0.0).
"""

from __future__ import annotations

import copy
import dataclasses
from functools import cache
from typing import Any

import jsonpatch
import jsonschema
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from snapsync.canonical.canonicalize import pack
from snapsync.canonical.profile import Profile, load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.delta.diff import (
    Delta,
    apply,
    apply_ops,
    delta_document,
    delta_from_document,
    diff,
    diff_objects,
)
from snapsync.delta.jsondiff import diff as json_diff
from snapsync.delta.jsondiff import same
from snapsync.delta.patch import apply_patch
from snapsync.errors import DeltaError
from snapsync.resources import schema

NAMES = ["app", "sidecar", "init", "web", "db", "a", "b"]
KEYS = st.sampled_from(["a", "b", "name", "type", "x/y", "m~n", "", "~1"]) | st.text(max_size=3)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | st.sampled_from([0, 1, 1.0, 0.0, -0.0, True, False, "", "a"])
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keyed = st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(NAMES)},
            optional={"value": children, "image": st.sampled_from(["x:1", "x:2", "y:1"])},
        ),
        max_size=6,
        unique_by=lambda item: item["name"],
    )
    return st.lists(children, max_size=5) | st.dictionaries(KEYS, children, max_size=5) | keyed


DOCS = st.recursive(SCALARS, _containers, max_leaves=24)
OBJECTS = st.dictionaries(KEYS, DOCS, max_size=5)


def _paths(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every container in `doc`, as a tuple of keys/indices from the root."""
    found = [path] if isinstance(doc, dict | list) else []
    children = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, child in children:
        found.extend(_paths(child, (*path, key)))
    return found


@st.composite
def edited(draw: st.DrawFn, doc: Any) -> Any:
    """`doc` after a few local edits: the kind of change churn makes, not a new document."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        if not paths:
            return draw(DOCS)
        node = doc
        for step in draw(st.sampled_from(paths)):
            node = node[step]
        action = draw(st.sampled_from(["set", "delete", "insert", "shuffle", "keyed"]))
        if isinstance(node, dict):
            if action == "delete" and node:
                del node[draw(st.sampled_from(sorted(node)))]
            else:
                node[draw(KEYS)] = draw(DOCS)
        elif action == "delete" and node:
            del node[draw(st.integers(0, len(node) - 1))]
        elif action == "shuffle":
            node[:] = draw(st.permutations(node))
        elif action == "keyed":
            node.insert(draw(st.integers(0, len(node))), {"name": draw(st.sampled_from(NAMES))})
        elif action == "set" and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(DOCS)
        else:
            node.insert(draw(st.integers(0, len(node))), draw(DOCS))
    return doc


DOC_PAIRS = st.tuples(DOCS, DOCS) | DOCS.flatmap(lambda d: st.tuples(st.just(d), edited(d)))
OBJECT_PAIRS = st.tuples(OBJECTS, OBJECTS) | OBJECTS.flatmap(
    lambda d: st.tuples(st.just(d), edited(d).filter(lambda e: isinstance(e, dict)))
)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


@given(DOC_PAIRS)
def test_diff_applies_with_jsonpatch_and_ours(pair: tuple[Any, Any]) -> None:
    old, new = pair
    before = copy.deepcopy((old, new))
    ops = json_diff(old, new)
    assert same(jsonpatch.apply_patch(old, ops), new)
    assert same(apply_patch(old, ops), new)
    assert same((old, new), before)  # neither diff nor apply touched their inputs
    assert json_diff(copy.deepcopy(old), copy.deepcopy(new)) == ops  # deterministic
    assert {op["op"] for op in ops} <= {"add", "remove", "replace", "move"}


@given(OBJECT_PAIRS)
def test_objects_round_trip_canonically(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    old, new = _sorted(pair[0]), _sorted(pair[1])
    snapshot_of_old = pack(old)
    ops = diff_objects(old, new)
    assert same(jsonpatch.apply_patch(old, ops), new)
    patched = apply_ops(old, ops)
    assert pack(patched) == pack(new)  # same bytes: same values, same types, sorted keys
    assert pack(old) == snapshot_of_old
    assert not diff_objects(old, copy.deepcopy(old))


@given(DOC_PAIRS)
def test_apply_accepts_other_producers(pair: tuple[Any, Any]) -> None:
    """jsonpatch's own patches (index-based, `-` appends, copies): we apply them as it does."""
    old, new = pair
    try:
        ops = jsonpatch.make_patch(old, new).patch
        expected = jsonpatch.apply_patch(old, ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
        assume(False)  # jsonpatch's diff is not valid on this pair: nothing to compare against
    assert same(apply_patch(old, ops), expected)


@given(DOCS, st.lists(st.sampled_from(NAMES), unique=True, max_size=6), st.data())
def test_front_insert_into_keyed_list_is_one_operation(
    doc: Any, names: list[str], data: st.DataObject
) -> None:
    items = [{"name": n, "image": f"{n}:1", "ports": [{"containerPort": 80}]} for n in names]
    old = {"spec": {"containers": items, "other": doc}}
    new = copy.deepcopy(old)
    fresh = {"name": "fresh-" + data.draw(st.text(max_size=4)), "image": "new:1"}
    new["spec"]["containers"].insert(0, fresh)
    ops = diff_objects(old, new)
    assert ops == [{"op": "add", "path": "/spec/containers/0", "value": fresh}]


@given(st.lists(st.sampled_from(NAMES), unique=True, min_size=2), st.data())
def test_keyed_reorder_moves_only_what_moved(names: list[str], data: st.DataObject) -> None:
    old = [{"name": n, "status": "True"} for n in names]
    moved = data.draw(st.integers(0, len(names) - 1))
    to = data.draw(st.integers(0, len(names) - 1))
    new = copy.deepcopy(old)
    new.insert(to, new.pop(moved))
    ops = json_diff(old, new)
    assert len(ops) <= 1
    assert all(op["op"] == "move" for op in ops)
    assert jsonpatch.apply_patch(old, ops) == new


# --- snapshots ----------------------------------------------------------------------------------


@cache
def _profile() -> Profile:
    return load_profile()


def _raw(kind: str, name: str, spec: Any) -> dict[str, Any]:
    api = "apps/v1" if kind == "Deployment" else "v1"
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": spec,
    }


SPECS = st.dictionaries(KEYS, st.recursive(SCALARS, _containers, max_leaves=8), max_size=4)


@st.composite
def snapshot_pairs(draw: st.DrawFn) -> tuple[Snapshot, Snapshot]:
    """A base and a later state of the same small cluster: some objects gone, new, changed."""
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=1, max_size=4))
    kinds = ["Pod", "ConfigMap", "Deployment"]
    base = {
        (k, n): draw(SPECS)
        for n in names
        for k in draw(st.sets(st.sampled_from(kinds), min_size=1))
    }
    new: dict[tuple[str, str], Any] = {}
    for ident, spec in base.items():
        fate = draw(st.sampled_from(["keep", "change", "change", "remove"]))
        if fate == "change":
            new[ident] = draw(edited(spec).filter(lambda e: isinstance(e, dict)))
        elif fate == "keep":
            new[ident] = spec
    for n in draw(st.lists(st.sampled_from(["f", "g", "h"]), unique=True, max_size=2)):
        new[("Pod", n)] = draw(SPECS)
    snaps = [
        build_snapshot([_raw(k, n, spec) for (k, n), spec in objs.items()], _profile())
        for objs in (base, new)
    ]
    return snaps[0], snaps[1]


def _contents(snapshot: Snapshot) -> list[tuple[str, bytes, bytes]]:
    return [(str(k), o.digest, pack(o.data)) for k, o in snapshot]


@given(snapshot_pairs())
def test_apply_reproduces_the_target(pair: tuple[Snapshot, Snapshot]) -> None:
    base, new = pair
    before = _contents(base)
    delta = diff(base, new)
    result = apply(base, delta)
    assert result.digest == new.digest
    assert _contents(result) == _contents(new)
    assert _contents(base) == before
    assert delta.is_empty == (base.digest == new.digest)
    document = delta_document(delta)
    jsonschema.validate(document, schema("delta"))
    assert apply(base, delta_from_document(document)).digest == new.digest


def _tampered(delta: Delta, how: str, base: Snapshot) -> Delta:
    if how == "target":
        flipped = bytes([delta.target_digest[0] ^ 1]) + delta.target_digest[1:]
        return dataclasses.replace(delta, target_digest=flipped)
    if how == "extra-op" and delta.changed:
        key = sorted(delta.changed)[0]
        ops = (*delta.changed[key], {"op": "add", "path": "/tampered", "value": 1})
        return dataclasses.replace(delta, changed={**delta.changed, key: ops})
    if how == "drop-added" and delta.added:
        key = sorted(delta.added)[0]
        return dataclasses.replace(delta, added={k: v for k, v in delta.added.items() if k != key})
    if how == "bad-op" and base.keys:
        changed = {**delta.changed, base.keys[0]: ({"op": "remove", "path": "/no/such/field"},)}
        return dataclasses.replace(delta, changed=changed)
    flipped = bytes([delta.base_digest[0] ^ 1]) + delta.base_digest[1:]
    return dataclasses.replace(delta, base_digest=flipped)


@given(snapshot_pairs(), st.sampled_from(["target", "extra-op", "drop-added", "bad-op", "base"]))
def test_tampered_delta_is_refused_and_base_untouched(
    pair: tuple[Snapshot, Snapshot], how: str
) -> None:
    base, new = pair
    delta = _tampered(diff(base, new), how, base)
    before = _contents(base)
    with pytest.raises(DeltaError):
        apply(base, delta)
    assert _contents(base) == before


@given(snapshot_pairs())
def test_wrong_base_is_refused(pair: tuple[Snapshot, Snapshot]) -> None:
    base, new = pair
    extra = build_snapshot([_raw("ConfigMap", "not-in-base", {})], _profile())
    wrong = Snapshot(base.header, {**base.objects, **extra.objects})
    before = _contents(wrong)
    with pytest.raises(DeltaError):
        apply(wrong, diff(base, new))
    assert _contents(wrong) == before


# --- any producer's operations ------------------------------------------------------------------


def _pointers(doc: Any) -> list[str]:
    """Pointers to every value in `doc`, escaped."""
    found = [""]
    for path in _paths(doc):
        node = doc
        for step in path:
            node = node[step]
        prefix = "".join("/" + str(s).replace("~", "~0").replace("/", "~1") for s in path)
        keys = list(node) if isinstance(node, dict) else [*range(len(node)), "-"]
        found.extend(f"{prefix}/{str(k).replace('~', '~0').replace('/', '~1')}" for k in keys)
    return found


@st.composite
def documents_and_ops(draw: st.DrawFn) -> tuple[Any, list[dict[str, Any]]]:
    doc = draw(DOCS)
    pointers = st.sampled_from(_pointers(doc)) | st.sampled_from(["/nope", "/0", "/-", "/a/b"])
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["add", "remove", "replace", "move", "copy", "test"]))
        op: dict[str, Any] = {"op": kind, "path": draw(pointers)}
        if kind in ("add", "replace"):
            op["value"] = draw(DOCS)
        elif kind == "test":  # strings only: jsonpatch compares with Python ==, so 1 == true
            op["value"] = draw(st.text(max_size=2))
        elif kind in ("move", "copy"):
            op["from"] = draw(pointers)
        ops.append(op)
    return doc, ops


@given(documents_and_ops())
def test_apply_agrees_with_jsonpatch_on_any_operations(case: tuple[Any, list[Any]]) -> None:
    """Valid or not, our applier's verdict and result are jsonpatch's (the reference)."""
    doc, ops = case
    before = copy.deepcopy(doc)
    try:
        expected = jsonpatch.apply_patch(doc, ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
        with pytest.raises(DeltaError):
            apply_patch(doc, ops)
    else:
        assert same(apply_patch(doc, ops), expected)
    assert same(doc, before)
