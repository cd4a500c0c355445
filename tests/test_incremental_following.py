"""The agent's next snapshot derived from its last (delta.incremental.following) is what a full
build gives: digest, key order, pair encodings and size, after any sequence of changes, with
unchanged objects shared by identity as a watch cache shares them, or rebuilt as a relist does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import CanonicalObject, Snapshot, SnapshotHeader, snapshot_digest
from snapsync.delta.incremental import IncrementalSnapshot, digest_pair, following

NAMES = [f"o{i}" for i in range(12)]
KINDS = ["ConfigMap", "Pod", "Node"]
states = st.dictionaries(
    st.tuples(st.sampled_from(KINDS), st.sampled_from(NAMES)), st.sampled_from("abcd")
)


def key(kind: str, name: str) -> ObjectKey:
    return ObjectKey("", kind, "" if kind == "Node" else "ns", name)


def build(previous: Snapshot | None, state: dict[tuple[str, str], str], share: bool) -> Snapshot:
    """A snapshot of `state`; with `share`, objects unchanged since `previous` are its own."""
    before = previous.objects if previous is not None else {}
    objects = {}
    for (kind, name), value in state.items():
        k = key(kind, name)
        data = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "v": value}
        if k.namespace:
            data["metadata"]["namespace"] = k.namespace
        old = before.get(k)
        fresh = CanonicalObject.from_data(data)
        objects[k] = old if share and old is not None and old.digest == fresh.digest else fresh
    return Snapshot(SnapshotHeader(environment_id="e"), objects)


def assert_whole(derived: IncrementalSnapshot, snapshot: Snapshot) -> None:
    keys = sorted(snapshot.objects)
    assert derived.objects is snapshot.objects and derived.header is snapshot.header
    assert derived.keys == keys
    assert derived.pairs == [digest_pair(k, snapshot.objects[k].digest) for k in keys]
    assert derived.digest == snapshot_digest((k, snapshot.objects[k].digest) for k in keys)
    assert derived.digest == Snapshot(snapshot.header, dict(snapshot.objects)).digest
    assert derived.encoded_size == sum(len(o.encoded) for o in snapshot.objects.values())


@given(first=states, later=st.lists(st.tuples(states, st.booleans()), max_size=8))
def test_the_next_snapshot_derived_from_the_last_equals_a_full_build(
    first: dict[tuple[str, str], str], later: list[tuple[dict[tuple[str, str], str], bool]]
) -> None:
    previous: Snapshot = build(None, first, False)
    for state, share in later:
        snapshot = build(previous, state, share)
        derived = following(previous, snapshot)
        assert_whole(derived, snapshot)
        assert derived.parent == previous.digest
        differ = {
            k
            for k in previous.objects.keys() | snapshot.objects.keys()
            if getattr(previous.objects.get(k), "digest", None)
            != getattr(snapshot.objects.get(k), "digest", None)
        }
        assert derived.touched == differ
        previous = derived
