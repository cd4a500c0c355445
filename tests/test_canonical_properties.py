"""Properties of canonicalization: order independence, idempotence, what moves the digest."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapsync.canonical.canonicalize import (
    _checked_copy,
    _sorted_copy,
    canonicalize,
    pack,
    unpack,
    unpack_fields,
)
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import (
    CanonicalObject,
    Snapshot,
    SnapshotHeader,
    build_snapshot,
    object_uid,
)
from snapsync.codec.decode import decode_snapshot
from snapsync.codec.encode import encode_snapshot, encode_snapshot_streamed
from snapsync.codec.payload import snapshot_payload
from snapsync.errors import CanonicalError
from snapsync.sim.sample_cluster import SampleCluster
from tests.support_objects import JSON, raw_objects, unique_by_key

PROFILE = load_profile()
FIXED_TIME = "2026-01-01T00:00:00Z"


def shuffled(node: Any, rng: random.Random) -> Any:
    """The same value with every map's insertion order shuffled."""
    if isinstance(node, dict):
        items = list(node.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(node, list):
        return [shuffled(v, rng) for v in node]
    return node


@given(st.lists(raw_objects(), max_size=8).map(unique_by_key), st.randoms())
def test_any_order_gives_identical_bytes(objs: list[dict[str, Any]], rng: random.Random) -> None:
    reordered = [shuffled(o, rng) for o in objs]
    rng.shuffle(reordered)
    a = build_snapshot(objs, PROFILE, collected_at=FIXED_TIME)
    b = build_snapshot(reordered, PROFILE, collected_at=FIXED_TIME)
    assert a.digest == b.digest
    assert encode_snapshot(a) == encode_snapshot(b)


@given(st.dictionaries(st.text(max_size=8), JSON, max_size=6), st.frozensets(st.text(max_size=8)))
def test_unpack_fields_is_unpack_restricted(obj: dict[str, Any], names: frozenset[str]) -> None:
    encoded = pack(obj)
    wanted = names | frozenset(list(obj)[::2])  # some fields present, some absent
    restricted = {k: v for k, v in unpack(encoded).items() if k in wanted}
    assert pack(unpack_fields(encoded, wanted)) == pack(restricted)
    assert pack(unpack_fields(encoded, frozenset(obj))) == encoded


@given(raw_objects())
def test_canonicalizing_twice_changes_nothing(raw: dict[str, Any]) -> None:
    result = canonicalize(raw, PROFILE)
    assert result is not None
    key, once = result
    again = canonicalize(once, PROFILE)
    assert again == (key, once)
    assert list(once) == sorted(once)


@given(raw_objects())
def test_input_is_not_modified(raw: dict[str, Any]) -> None:
    before = copy.deepcopy(raw)
    canonicalize(raw, PROFILE)
    assert raw == before


@given(raw_objects(), st.text(min_size=1, max_size=8), JSON)
def test_a_kept_field_moves_the_digest(raw: dict[str, Any], field: str, value: Any) -> None:
    changed = copy.deepcopy(raw)
    changed["spec"] = {**raw["spec"], field: value}
    a = build_snapshot([raw], PROFILE)
    b = build_snapshot([changed], PROFILE)
    assert (a.digest == b.digest) == (changed["spec"] == raw["spec"])


@given(raw_objects(), st.integers(1, 10**9), st.text(max_size=10))
def test_removed_fields_do_not_move_the_digest(raw: dict[str, Any], rv: int, manager: str) -> None:
    changed = copy.deepcopy(raw)
    changed["metadata"]["resourceVersion"] = str(rv)
    changed["metadata"]["managedFields"] = [{"manager": manager}]
    changed["metadata"].setdefault("annotations", {})[
        "kubectl.kubernetes.io/last-applied-configuration"
    ] = "{}"
    assert build_snapshot([raw], PROFILE).digest == build_snapshot([changed], PROFILE).digest


@given(st.lists(raw_objects(), max_size=8).map(unique_by_key))
def test_snapshot_file_round_trip(objs: list[dict[str, Any]]) -> None:
    snapshot = build_snapshot(objs, PROFILE, environment_id="edge-1", collected_at=FIXED_TIME)
    for frame in encode_snapshot(snapshot), encode_snapshot_streamed(snapshot, 1):
        decoded = decode_snapshot(frame)
        assert decoded.digest == snapshot.digest
        assert decoded.header == snapshot.header
        assert {k: o.data for k, o in decoded} == {k: o.data for k, o in snapshot}


def test_a_streamed_snapshot_spanning_blocks_decodes_to_the_same_snapshot() -> None:
    """The state directory's frames are compressed a block at a time (2 MB raw here)."""
    snapshot = build_snapshot(SampleCluster(objects=1500, seed=2).objects(), PROFILE)
    assert len(snapshot_payload(snapshot)) > 2**20
    decoded = decode_snapshot(encode_snapshot_streamed(snapshot, 1))
    assert [(k, o.encoded) for k, o in decoded] == [(k, o.encoded) for k, o in snapshot]
    assert decoded.header == snapshot.header and decoded.digest == snapshot.digest


@given(st.lists(raw_objects(), min_size=2, max_size=6).map(unique_by_key), st.data())
def test_one_changed_object_changes_the_snapshot_digest(
    objs: list[dict[str, Any]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(objs) - 1))
    changed = copy.deepcopy(objs)
    changed[index]["spec"]["snapsync-test"] = data.draw(st.integers(-(2**63), 2**63 - 1))
    assert build_snapshot(objs, PROFILE).digest != build_snapshot(changed, PROFILE).digest


@given(raw_objects())
def test_a_packed_object_unpacks_to_its_canonical_form(raw: dict[str, Any]) -> None:
    """Snapshots hold objects as canonical bytes: unpacking gives the canonical form, types
    included, packing that again gives the very bytes, and each unpacking is a fresh copy."""
    result = canonicalize(raw, PROFILE)
    assert result is not None
    _, data = result
    obj = CanonicalObject.from_data(data)
    unpacked = obj.data
    assert unpacked == data and pack(unpacked) == obj.encoded
    assert repr(unpacked) == repr(data)  # True stays True, 1.0 stays 1.0
    assert obj.uid == object_uid(data)
    unpacked["metadata"]["name"] = "changed"
    assert obj.data == data  # a caller's copy, never the held object


keys = st.builds(
    ObjectKey,
    st.sampled_from(["", "apps"]),
    st.sampled_from(["Pod", "Service"]),
    st.sampled_from(["", "a", "b"]),
    st.text("xyz-0", min_size=1, max_size=3),
)


@given(st.sets(keys, max_size=30), st.sets(keys, max_size=30))
def test_keys_derived_from_the_previous_snapshot_are_sorted(
    before: set[ObjectKey], after: set[ObjectKey]
) -> None:
    obj = CanonicalObject.from_data({})
    previous = Snapshot(SnapshotHeader(), dict.fromkeys(before, obj))
    snapshot = Snapshot(SnapshotHeader(), dict.fromkeys(after, obj))
    snapshot.adopt_keys(previous)
    assert snapshot.keys == sorted(after)


class _Text(str):
    """A str subclass: canonicalize takes it as text, though not of the exact type."""


ODD_KEYS = st.text(max_size=4) | st.integers(0, 3) | st.booleans() | st.builds(_Text, st.text())
ODD_VALUES = st.recursive(
    JSON
    | st.sampled_from([float("nan"), float("inf"), 2**64, -(2**63) - 1, b"x", _Text("t")])
    | st.builds(object),
    lambda children: (
        st.lists(children, max_size=3)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(
            st.text(max_size=4) | st.integers(0, 3) | st.booleans(), children, max_size=3
        )
    ),
    max_leaves=12,
)


@given(ODD_VALUES)
def test_the_fast_copy_agrees_with_the_path_naming_copy(value: Any) -> None:
    """`_checked_copy` (no field paths built) gives what `_sorted_copy` gives, value and types,
    or the very error naming the very field."""
    try:
        expected: Any = _sorted_copy(value, "Pod/x", "")
    except CanonicalError as exc:
        with pytest.raises(CanonicalError) as caught:
            _checked_copy(value, "Pod/x")
        assert str(caught.value) == str(exc)
        return
    got = _checked_copy(value, "Pod/x")
    assert got == expected
    assert repr(got) == repr(expected)  # same types (True is not 1), same key order
    assert pack(got) == pack(expected)


def _reference_canonicalize(raw: dict[str, Any]) -> tuple[ObjectKey, dict[str, Any]] | None:
    """canonicalize as it was before pruning: copy everything, then strip."""
    key = ObjectKey.of(raw)
    if not PROFILE.keeps_kind(key.group, key.kind):
        return None
    obj: dict[str, Any] = _sorted_copy(raw, key, "")
    PROFILE.strip(key, obj)
    return key, obj


@given(raw_objects(), st.sampled_from(["managedFields", "resourceVersion", "selfLink"]), ODD_VALUES)
def test_pruned_fields_change_neither_the_result_nor_the_error(
    raw: dict[str, Any], field: str, odd: Any
) -> None:
    """Fields the profile removes are cut before copying; the canonical object, or the error a
    non-JSON value among them raises, is what copying everything and stripping gives."""
    raw["metadata"][field] = odd
    try:
        expected = _reference_canonicalize(raw)
    except CanonicalError as exc:
        with pytest.raises(CanonicalError) as caught:
            canonicalize(raw, PROFILE)
        assert str(caught.value) == str(exc)
        return
    got = canonicalize(raw, PROFILE)
    assert (got is None) == (expected is None)
    if got is not None and expected is not None:
        assert got[0] == expected[0]
        assert pack(got[1]) == pack(expected[1])
        assert repr(got[1]) == repr(expected[1])
