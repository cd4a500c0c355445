"""Anti-entropy's pure functions (snapsync.protocol.reconcile) and its messages, without a link.

The pipeline is the one agent and server run: kind digests -> the server's listed kinds and
bucket digests -> the agent's differing buckets -> the server's objects of those buckets ->
the repair delta, which applied to the server's snapshot must give the agent's exactly.
"""

from __future__ import annotations

import contextlib
from functools import cache

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.profile import Profile, load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.codec.decode import apply_frame
from snapsync.codec.encode import encode_repair
from snapsync.delta.diff import Delta, apply
from snapsync.errors import DeltaError, RemoteProtocolError
from snapsync.protocol.messages import BucketQuery, Differences, Version, decode
from snapsync.protocol.reconcile import (
    BUCKET_SHORT,
    MIN_BUCKETED,
    PER_BUCKET,
    BucketSet,
    ObjectDigests,
    bucket_digests,
    bucket_of,
    differing_buckets,
    differing_kinds,
    kind_digests,
    kind_pairs,
    objects_in,
    repair_delta,
    strays,
)

KINDS = ("ConfigMap", "Pod", "Service")
KEYS = [(kind, f"ns{n % 3}", f"obj-{n}") for kind in KINDS for n in range(40)]
V1 = Version(1, b"\x01" * 16)

State = dict[tuple[str, str, str], int]


@cache
def profile() -> Profile:
    return load_profile()


def snapshot(state: State) -> Snapshot:
    raws = [
        {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "data": {"value": str(value)},
        }
        for (kind, namespace, name), value in state.items()
    ]
    return build_snapshot(raws, profile(), collected_at="2026-01-01T00:00:00Z")


def key(kind: str, namespace: str, name: str) -> ObjectKey:
    return ObjectKey("", kind, namespace, name)


def reconcile(server: Snapshot, agent: Snapshot) -> tuple[Delta, dict[str, ObjectDigests]]:
    """The whole exchange, through the wire messages; returns the repair and what was listed."""
    found = differing_kinds(server, kind_digests(agent))
    answer = decode(Differences(V1, found.listed, found.buckets).encode())
    assert isinstance(answer, Differences)
    wanted = differing_buckets(agent, answer.buckets)
    query = decode(BucketQuery(V1, wanted).encode())
    assert isinstance(query, BucketQuery) and query.kinds == wanted
    objects = objects_in(server, query.kinds)
    assert not strays(objects, wanted)
    listed = {**answer.kinds, **objects}
    return repair_delta(server.digest, listed, agent, wanted), listed


STATES = st.dictionaries(st.sampled_from(KEYS), st.integers(0, 2), max_size=90)


@st.composite
def diverged(draw: st.DrawFn) -> tuple[State, State]:
    """A server state and an agent state a few edits (or wholly) apart."""
    server = draw(STATES)
    if draw(st.booleans()):
        return server, draw(STATES)
    agent = dict(server)
    for k in draw(st.lists(st.sampled_from(KEYS), max_size=6)):
        if k in agent and draw(st.booleans()):
            del agent[k]
        else:
            agent[k] = draw(st.integers(0, 3))
    return server, agent


# -- properties ----------------------------------------------------------------------------------


@given(diverged())
def test_the_repair_turns_the_server_snapshot_into_the_agent_snapshot(
    states: tuple[State, State],
) -> None:
    server, agent = snapshot(states[0]), snapshot(states[1])
    delta, _ = reconcile(server, agent)
    assert apply(server, delta).digest == agent.digest
    assert apply_frame(server, encode_repair(delta)).digest == agent.digest


@given(diverged())
def test_only_objects_of_differing_kinds_are_listed(states: tuple[State, State]) -> None:
    """Never more than the kind level alone would list: the bucket level only narrows."""
    server, agent = snapshot(states[0]), snapshot(states[1])
    _, listed = reconcile(server, agent)
    ours, theirs = kind_digests(server), kind_digests(agent)
    pairs = kind_pairs(server)
    for ref, entries in listed.items():
        assert ours.get(ref) != theirs.get(ref)
        assert len(entries) <= len(pairs.get(ref, ()))


@given(STATES, st.integers(1, 64))
def test_buckets_are_a_partition_both_sides_compute_alike(state: State, count: int) -> None:
    pairs = kind_pairs(snapshot(state))
    for items in pairs.values():
        digests = bucket_digests(items, count)
        assert len(digests) == count * BUCKET_SHORT
        assert digests == bucket_digests(reversed(items), count)  # order does not matter
        assert all(0 <= bucket_of(k, count) < count for k, _ in items)


@given(st.binary(max_size=64), st.integers(1, 600))
def test_hostile_bitmaps_raise_only_remote_protocol_errors(bitmap: bytes, count: int) -> None:
    doc = {"v": 1, "t": "buckets", "ver": V1.wire(), "k": [["Pod", count, bitmap]]}
    with contextlib.suppress(RemoteProtocolError):
        query = decode(msgpack.packb(doc, use_bin_type=True))
        assert isinstance(query, BucketQuery)
        chosen = query.kinds["Pod"]
        within = [i for i in range(count) if chosen.bitmap[i >> 3] >> (i & 7) & 1]
        assert BucketSet.of(count, within) == chosen  # no bit beyond the count


# -- cases ---------------------------------------------------------------------------------------


def configmaps(count: int, value: int = 0) -> State:
    return {("ConfigMap", "ns", f"cm-{i}"): value for i in range(count)}


def test_one_changed_object_costs_one_bucket() -> None:
    server_state = configmaps(40)
    agent_state = dict(server_state)
    agent_state["ConfigMap", "ns", "cm-7"] = 1
    server, agent = snapshot(server_state), snapshot(agent_state)
    found = differing_kinds(server, kind_digests(agent))
    assert not found.listed and len(found.buckets["ConfigMap"]) == 40 // PER_BUCKET * BUCKET_SHORT
    wanted = differing_buckets(agent, found.buckets)
    changed = bucket_of(key("ConfigMap", "ns", "cm-7"), 40 // PER_BUCKET)
    assert wanted == {"ConfigMap": BucketSet.of(40 // PER_BUCKET, {changed})}
    delta, listed = reconcile(server, agent)
    assert 1 <= len(listed["ConfigMap"]) < 40
    assert list(delta.changed) == [key("ConfigMap", "ns", "cm-7")]
    assert not delta.added and not delta.removed


def test_when_every_bucket_differs_every_object_is_listed() -> None:
    server, agent = snapshot(configmaps(40)), snapshot(configmaps(40, value=1))
    delta, listed = reconcile(server, agent)
    assert len(listed["ConfigMap"]) == 40
    assert len(delta.changed) == 40
    assert apply(server, delta).digest == agent.digest


def test_a_bucket_empty_on_one_side() -> None:
    """Objects only the agent has in a bucket the server holds nothing of are added, and the
    objects of a bucket the agent emptied are removed."""
    count = 16 // PER_BUCKET
    server_state = configmaps(16)
    by_bucket: dict[int, list[tuple[str, str, str]]] = {}
    for k in server_state:
        by_bucket.setdefault(bucket_of(key(*k), count), []).append(k)
    emptied = next(iter(by_bucket))
    agent_state = {k: v for k, v in server_state.items() if k not in by_bucket[emptied]}
    server_state = {k: v for k, v in server_state.items() if k in by_bucket[emptied]}
    server_state.update(configmaps(MIN_BUCKETED))  # the server's kind is large enough to bucket
    server, agent = snapshot(server_state), snapshot(agent_state)
    delta, _ = reconcile(server, agent)
    assert apply(server, delta).digest == agent.digest
    assert delta.removed and delta.added


def test_kinds_one_side_lacks_are_listed_whole() -> None:
    server_state = {**configmaps(20), ("Pod", "ns", "p"): 0}
    agent_state = {("Service", "ns", f"s{i}"): 0 for i in range(20)} | {("Pod", "ns", "p"): 0}
    server, agent = snapshot(server_state), snapshot(agent_state)
    found = differing_kinds(server, kind_digests(agent))
    assert set(found.listed) == {"ConfigMap", "Service"} and not found.buckets
    assert found.listed["Service"] == []
    delta, _ = reconcile(server, agent)
    assert len(delta.removed) == 20 and len(delta.added) == 20


def test_a_bucket_digest_collision_is_caught_by_the_target_digest() -> None:
    """A differing bucket whose short digest happens to match is missed; the repair then does
    not reproduce the agent's digest, which applying it detects (the agent sends a full one)."""
    server_state = configmaps(40)
    agent_state = dict(server_state)
    agent_state["ConfigMap", "ns", "cm-7"] = 1
    server, agent = snapshot(server_state), snapshot(agent_state)
    found = differing_kinds(server, kind_digests(agent))
    count = 40 // PER_BUCKET
    collided = {"ConfigMap": bucket_digests(kind_pairs(agent)["ConfigMap"], count)}
    wanted = differing_buckets(agent, collided)
    assert wanted == {}
    delta = repair_delta(server.digest, found.listed, agent, wanted)
    with pytest.raises(DeltaError):
        apply(server, delta)


def test_objects_outside_the_buckets_asked_for_are_strays() -> None:
    wanted = {"ConfigMap": BucketSet.of(4, {bucket_of(key("ConfigMap", "ns", "a"), 4)})}
    other = next(
        f"b{i}"
        for i in range(100)
        if not wanted["ConfigMap"].covers(key("ConfigMap", "ns", f"b{i}"))
    )
    assert not strays({"ConfigMap": [("ns", "a", b"d" * 4)]}, wanted)
    assert strays({"ConfigMap": [("ns", other, b"d" * 4)]}, wanted)
    assert strays({"Pod": [("ns", "a", b"d" * 4)]}, wanted)


@pytest.mark.parametrize(
    "doc",
    [
        {"v": 1, "t": "buckets", "k": []},  # no version
        {"v": 1, "t": "buckets", "ver": V1.wire(), "k": [["Pod", 0, b""]]},
        {"v": 1, "t": "buckets", "ver": V1.wire(), "k": [["Pod", 9, b"\x01"]]},  # short bitmap
        {"v": 1, "t": "buckets", "ver": V1.wire(), "k": [["Pod", 3, b"\x08"]]},  # bit beyond
        {"v": 1, "t": "buckets", "ver": V1.wire(), "k": [["Pod", 2**21, b""]]},
        {"v": 1, "t": "buckets", "ver": V1.wire(), "k": [], "m": 0},
        {"v": 1, "t": "differences", "z": b"", "bk": [["Pod", b"abc"]]},
        {"v": 1, "t": "differences", "z": b"", "bk": [["Pod", b""]]},
        {"v": 1, "t": "summary", "g": b"g" * 16, "k": [], "m": -1},
    ],
)
def test_malformed_anti_entropy_messages_are_remote_errors(doc: dict[str, object]) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(msgpack.packb(doc, use_bin_type=True))


def test_short_object_digests_are_refused() -> None:
    body = Differences(V1, {"Pod": [("ns", "p", b"\x01\x02")]}).encode()
    with pytest.raises(RemoteProtocolError):
        decode(body)
