"""The incremental digest (snapsync.delta.incremental) against a full recomputation: in memory, and
through a SQLite store across restarts and evictions of its newest-state cache."""

from __future__ import annotations

import bisect
import gc
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot, snapshot_digest
from snapsync.codec.decode import apply_frame
from snapsync.codec.encode import encode_delta, encode_snapshot
from snapsync.delta.diff import diff
from snapsync.delta.incremental import (
    CompactSnapshot,
    IncrementalSnapshot,
    KeyList,
    compact,
    derive,
    digest_pair,
    indexed,
)
from snapsync.errors import DeltaError
from snapsync.server.storage import ObjectQuery, Retention
from snapsync.server.store import open_store

NAMES = [f"c{i}" for i in range(12)]
# A state: object name -> its value (absent: not in the snapshot).
states = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(["a", "b", "c", "ddd"]))


def snap(state: dict[str, str], at: int = 0) -> Snapshot:
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ns" if i % 2 else ""},
            "data": {"v": value},
        }
        for i, (name, value) in enumerate(sorted(state.items()))
    ]
    return build_snapshot(objects, load_profile(), collected_at=f"2026-01-01T00:00:{at:02d}Z")


def recomputed(snapshot: Snapshot) -> bytes:
    """The digest from scratch: sorted pairs, each object re-hashed from its data."""
    rebuilt = {key: type(obj).from_data(obj.data) for key, obj in snapshot.objects.items()}
    return snapshot_digest((key, rebuilt[key].digest) for key in sorted(rebuilt))


def recomputed_pairs(snapshot: Snapshot) -> list[bytes]:
    """The pair encodings from scratch, as the digest hashes them."""
    rebuilt = {key: type(obj).from_data(obj.data) for key, obj in snapshot.objects.items()}
    return [digest_pair(key, rebuilt[key].digest) for key in sorted(rebuilt)]


def assert_whole(state: IncrementalSnapshot, target: Snapshot) -> None:
    """The kept state (keys, pairs, size, digest) is what a full recomputation gives."""
    assert state.digest == target.digest == recomputed(state)
    assert state.pairs == recomputed_pairs(state)
    assert state.keys == sorted(state.objects)
    assert state.encoded_size == sum(len(o.encoded) for o in state.objects.values())
    assert_same_objects(state, target)


def assert_same_objects(state: Snapshot, target: Snapshot) -> None:
    """Every object (bytes, digest, uid) under every key, looked up and iterated."""
    assert len(state) == len(target) and sorted(state.objects) == target.keys
    assert list(state) == list(target)
    for key, obj in target:
        assert key in state.objects and state.objects[key] == obj
    absent = ("", "ConfigMap", "zz", "absent")
    assert absent not in state.objects and state.objects.get(absent) is None  # type: ignore[arg-type]


@given(st.lists(states, min_size=1, max_size=8), st.sampled_from(["plain", "indexed", "compact"]))
def test_derived_digest_equals_a_full_recomputation(
    sequence: list[dict[str, str]], start: str
) -> None:
    """From a plain base, one indexed first, or one compacted (as a server keeps a full
    snapshot); a compact base derives compact states, each equal to the full one."""
    first = snap({})
    current: Snapshot = {"plain": first, "indexed": indexed(first), "compact": compact(first)}[
        start
    ]
    for step, state in enumerate(sequence):
        target = snap(state, step)
        current = derive(current, diff(current, target))
        assert isinstance(current, IncrementalSnapshot)
        assert isinstance(current, CompactSnapshot) == (start == "compact")
        assert_whole(current, target)
        assert_whole(indexed(target), target)
        assert_whole(compact(target), target)
        assert_whole(compact(current), target)


@given(states, states)
def test_a_compact_base_refuses_what_the_full_base_refuses(
    base_state: dict[str, str], other_state: dict[str, str]
) -> None:
    """A delta against another base, removing or changing what is not there, adding what is:
    the same DeltaError from a compact base as from the plain one, and the base unchanged."""
    base, other = snap(base_state), snap(other_state)
    kept = compact(base)
    for delta in (diff(other, base), diff(base, other), diff(snap({}), other)):
        try:
            expected: Exception | Snapshot = derive(base, delta)
        except DeltaError as exc:
            expected = exc
        try:
            got: Exception | Snapshot = derive(kept, delta)
        except DeltaError as exc:
            got = exc
        if isinstance(expected, Snapshot):
            assert isinstance(got, Snapshot) and got.digest == expected.digest
        else:
            assert isinstance(got, DeltaError) and str(got) == str(expected)
        assert_whole(kept, base)


def test_a_compact_state_is_a_few_objects_for_the_garbage_collector() -> None:
    """Four lists whatever the size: no tracked object per kept object once the collector has
    seen the keys (the ~19,000 of a 10,000-object Snapshot made full collections pause)."""
    big = snap({name: "a" for name in NAMES})
    kept = compact(big)
    gc.collect()
    assert not any(gc.is_tracked(key) for key in kept._plain)
    assert not any(gc.is_tracked(x) for x in (*kept._encoded, *kept.pairs, *kept._uids))
    keys = kept.keys  # a KeyList: plain tuples inside, ObjectKeys out
    assert not any(gc.is_tracked(key) for key in list.__iter__(keys))


@given(states)
def test_a_key_list_hands_out_object_keys_wherever_a_list_would(state: dict[str, str]) -> None:
    target = snap(state)
    keys, expected = compact(target).keys, target.keys
    assert isinstance(keys, KeyList) and keys == expected and len(keys) == len(expected)
    for got, want in (
        (list(keys), expected),
        (keys[:], expected),
        (keys[1:], expected[1:]),
        (list(reversed(keys)), list(reversed(expected))),
        (keys.copy(), expected),
        ([keys[i] for i in range(len(keys))], expected),
        (sorted(keys), expected),
        (tuple(keys), tuple(expected)),
    ):
        assert got == want and all(type(key) is ObjectKey for key in got)
        assert [str(key) for key in got] == [str(key) for key in want]
    for key in expected:
        assert key in keys and keys[bisect.bisect_left(keys, key)] == key


def test_indexing_refuses_pairs_that_miss_the_digest() -> None:
    plain = snap({"c1": "a"})
    forged = Snapshot(plain.header, plain.objects)
    forged._digest = b"x" * 16
    with pytest.raises(DeltaError, match="digest"):
        indexed(forged)


def test_a_delta_that_misses_its_target_is_refused() -> None:
    base, target = snap({"c1": "a"}), snap({"c1": "b", "c2": "a"})
    delta = diff(base, target)
    forged = type(delta)(delta.base_digest, b"x" * 16, delta.header, delta.removed, delta.added)
    with pytest.raises(DeltaError, match="target digest"):
        derive(base, forged)


# One step of the store walk: a new state, and what happens to the server before it arrives.
events = st.sampled_from(["hot", "evicted", "restarted", "tiny-cache", "elsewhere"])


@given(st.lists(st.tuples(states, events), min_size=1, max_size=6))
def test_store_versions_verify_across_restarts_and_evictions(
    steps: list[tuple[dict[str, str], str]],
) -> None:
    """Each delta is handled as the protocol does (decode against the base the store gives,
    derive, verify, commit), some by another process's store ("elsewhere": this one then
    catches up from the rows that changed); whatever the cache held, the digest is the full one,
    and
    every stored version rebuilds from its rows alone (a second store, cold) with its digest;
    history pruned to 3 versions still gives each retained version's objects."""
    retention = Retention(keep_versions=3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.db"
        store = open_store(str(path), retention)
        first = snap({"c0": "a"})
        store.commit("e", first, encode_snapshot(first), None, 0.0)
        agent_base = first
        stored = {1: first}
        for at, (state, event) in enumerate(steps, start=1):
            if event == "restarted":
                store.close()
                store = open_store(str(path), retention)
            elif event == "evicted":
                store.versions.states.drop("e")
            elif event == "tiny-cache":
                store.versions.states.limit_bytes = 1
            target = snap(state, at)
            base_held = store.snapshot("e", agent_base.digest)
            assert base_held is not None and base_held.digest == agent_base.digest
            if target.digest == agent_base.digest:
                continue
            frame = encode_delta(agent_base, target).frame
            applied = apply_frame(base_held, frame)
            assert applied.digest == target.digest == recomputed(applied)
            writer = open_store(str(path), retention) if event == "elsewhere" else store
            held = writer.held("e")
            stored[writer.commit("e", applied, frame, held[0], float(at)).seq] = target
            if writer is not store:
                writer.close()
            kept = store.versions.states.newest("e")  # after "elsewhere": an older one
            if kept is not None and kept[1].digest == target.digest:
                assert isinstance(kept[1], CompactSnapshot)
                assert_whole(kept[1], target)
            agent_base = target
            cold = open_store(str(path), retention)
            current = cold.versions.current("e")
            assert current is not None and current.digest == target.digest
            for version in cold.queries.versions("e"):
                rows = cold.queries.objects("e", ObjectQuery(limit=100), seq=version.seq)
                expected = stored[version.seq]
                assert {(r.key, r.digest) for r in rows} == {(k, o.digest) for k, o in expected}
            cold.close()
        store.close()


def test_a_process_catches_up_from_the_rows_another_one_changed(tmp_path: Path) -> None:
    one, two = open_store(str(tmp_path / "s.db")), open_store(str(tmp_path / "s.db"))
    states = [snap({"c1": "a", "c2": "a"}), snap({"c1": "b", "c2": "a", "c3": "a"})]
    states += [snap({"c2": "c", "c3": "a"}), snap({"c1": "a", "c2": "c", "c3": "ddd"})]
    version = one.commit("e", states[0], b"f", None, 1.0)
    assert two.snapshot("e", version.digest) is not None  # cold: every row, then kept
    for at, state in enumerate(states[1:], start=2):
        version = one.commit("e", state, b"f", version, float(at))
    caught_up = two.snapshot("e", version.digest)
    assert isinstance(caught_up, IncrementalSnapshot) and caught_up.parent == states[0].digest
    assert caught_up.digest == states[-1].digest == recomputed(caught_up)
    one.close()
    two.close()
