"""Delta frames round-trip: every candidate decodes to exactly the target snapshot."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support_codec import EPOCH, LEAVES, snap, snapshot_pairs, stamp
from support_objects import JSON

from snapsync.bounds import Budget, unpackb
from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.decode import apply_frame, decode_frame, inspect_frame
from snapsync.codec.dictionaries import known_ids
from snapsync.codec.encode import EncodeOptions, encode_delta
from snapsync.codec.frame import OVERHEAD, Codec, Frame, FrameKind, unpack_frame
from snapsync.codec.leaves import (
    EXT_HELD,
    EXT_UID_OF,
    Expansion,
    LeafDecoder,
    LeafEncoder,
    _ext,
    held_strings,
    unpacked_ext,
)
from snapsync.codec.times import TimeParses, parse_time
from snapsync.codec.wire_pack import pack_delta
from snapsync.delta.diff import Delta, diff
from snapsync.errors import BaseMismatch, DeltaError, FrameCorrupt, FrameError

ONLY = {
    "delta": EncodeOptions(patch_from=False, full=False),
    "patch-from": EncodeOptions(delta=False, full=False),
    "full": EncodeOptions(delta=False, patch_from=False),
}


@given(snapshot_pairs())
def test_chosen_frame_applies_to_the_target(pair: tuple[Snapshot, Snapshot]) -> None:
    base, new = pair
    encoded = encode_delta(base, new)
    assert encoded.chosen in encoded.candidates
    assert len(encoded.frame) == min(encoded.candidates.values())
    assert apply_frame(base, encoded.frame).digest == new.digest


@given(snapshot_pairs(), st.sampled_from(sorted(ONLY)))
def test_every_candidate_decodes_to_the_target(pair: tuple[Snapshot, Snapshot], name: str) -> None:
    base, new = pair
    encoded = encode_delta(base, new, ONLY[name])
    assert encoded.chosen == name
    result = apply_frame(base, encoded.frame)
    assert result.digest == new.digest
    assert result.header == new.header


@given(snapshot_pairs())
def test_decoded_delta_equals_the_diff(pair: tuple[Snapshot, Snapshot]) -> None:
    base, new = pair
    delta = diff(base, new)
    decoded = decode_frame(encode_delta(base, new, ONLY["delta"], delta=delta).frame, base)
    assert isinstance(decoded, Delta)
    assert decoded.removed == delta.removed
    assert decoded.header == delta.header
    assert decoded.added == delta.added
    assert {k: list(v) for k, v in decoded.changed.items()} == {
        k: list(v) for k, v in delta.changed.items()
    }


@given(snapshot_pairs())
def test_records_are_the_payloads_entries_packed_alone(pair: tuple[Snapshot, Snapshot]) -> None:
    base, new = pair
    wire = pack_delta(base, diff(base, new))
    changed, added = msgpack.unpackb(wire.payload, raw=False)[4:]
    entries = [[*part[i : i + 2]] for part in (changed, added) for i in range(0, len(part), 2)]
    assert [msgpack.unpackb(r, raw=False) for r in wire.records] == entries


@given(st.data())
def test_field_leaves_round_trip_exactly(data: st.DataObject) -> None:
    value = data.draw(st.lists(LEAVES, max_size=6))
    ref = data.draw(st.lists(LEAVES, max_size=6))
    encoder = LeafEncoder()
    encoded = encoder.value(value, ref)
    epoch = encoder.choose_epoch()
    packed = encoder.pack(encoded)
    decoder = LeafDecoder(epoch, Expansion(2**20))
    decoded = decoder.value(msgpack.unpackb(packed, raw=False), ref)
    assert msgpack.packb(decoded) == msgpack.packb(value)


@given(JSON, JSON)
def test_structural_encoding_against_an_exemplar_round_trips(value: Any, ref: Any) -> None:
    encoder = LeafEncoder()
    encoded, same = encoder.against(value, ref)
    packed = encoder.pack(encoded)
    decoder = LeafDecoder(encoder.choose_epoch(), Expansion(2**20))
    decoded = decoder.value(msgpack.unpackb(packed), ref, whole=True)
    assert msgpack.packb(decoded) == msgpack.packb(value)
    assert same == (msgpack.packb(value) == msgpack.packb(ref))


class _Walking(LeafEncoder):
    """The encoder without its equal-container shortcut: every subtree walked."""

    def _same_bytes(self, value: Any, ref: Any) -> bool:
        return False


@st.composite
def _near(draw: st.DrawFn, value: Any) -> Any:
    """`value` with some leaves swapped for ones equal in Python but not in JSON (1, 1.0, true)."""
    if type(value) is dict:
        return {k: draw(_near(v)) for k, v in value.items()}
    if type(value) is list:
        return [draw(_near(v)) for v in value]
    if type(value) in (int, float, bool) and draw(st.booleans()):
        return draw(st.sampled_from([int(value), float(value), bool(value), -float(value)]))
    return value


@given(JSON, st.data())
def test_the_equal_container_shortcut_encodes_as_the_walk(value: Any, data: st.DataObject) -> None:
    ref = data.draw(_near(value))
    fast, walking = LeafEncoder(), _Walking()
    encoded, same = fast.against(value, ref)
    walked, walked_same = walking.against(value, ref)
    assert same == walked_same
    assert fast.pack(encoded) == walking.pack(walked)


@given(st.integers(min_value=0, max_value=127), st.binary(max_size=40))
def test_unchecked_ext_leaves_are_msgpack_ext_types(code: int, data: bytes) -> None:
    leaf = _ext(code, data)
    assert type(leaf) is msgpack.ExtType and leaf == msgpack.ExtType(code, data)
    assert msgpack.packb(leaf) == msgpack.packb(msgpack.ExtType(code, data))


@given(st.lists(st.text(max_size=30) | LEAVES.filter(lambda v: type(v) is str), max_size=8))
def test_remembered_time_parses_are_parse_time(texts: list[str]) -> None:
    parse = TimeParses()
    for text in texts + texts:
        assert parse(text) == parse_time(text)


def _unpacked(raw: bytes, hook: Any) -> Any:
    try:
        return unpackb(raw, Budget(2**16, "test"), FrameCorrupt, "payload", hook)
    except FrameCorrupt as exc:
        return str(exc)


@given(st.integers(min_value=-128, max_value=127), st.binary(max_size=20))
def test_the_unchecked_ext_hook_unpacks_as_ext_type(code: int, data: bytes) -> None:
    head = bytes([0xC7, len(data)]) + code.to_bytes(1, "big", signed=True)
    raw = msgpack.packb([1, "x"])[:1] + bytes([0x01]) + head + data  # [1, <ext>]
    assert repr(_unpacked(raw, unpacked_ext)) == repr(_unpacked(raw, msgpack.ExtType))


def _strings_depth_first(node: Any) -> list[str]:
    if type(node) is dict:
        return [s for v in node.values() for s in _strings_depth_first(v)]
    if type(node) is list:
        return [s for v in node for s in _strings_depth_first(v)]
    return [node] if type(node) is str else []


@given(JSON)
def test_held_strings_are_the_distinct_long_strings_depth_first(root: Any) -> None:
    expected: list[str] = []
    for text in _strings_depth_first(root):
        if len(text) >= 8 and text not in expected:
            expected.append(text)
    assert held_strings(root) == expected


@given(JSON, st.data())
def test_held_lookups_match_the_held_index(root: Any, data: st.DataObject) -> None:
    held = held_strings(root)
    strings = _strings_depth_first(root)
    # strings of the root, pieces of them (in its bytes, never held), and others
    pieces = [t[1:] for t in strings] + [t[:-1] for t in strings]
    found = st.sampled_from(strings + pieces) if strings else st.nothing()
    asked = data.draw(st.lists(found | st.text(max_size=12)))
    encoder = LeafEncoder()
    encoder.root = root
    for text in asked:
        assert encoder._held(text) == (held.index(text) if text in held else None)


def test_held_strings_walks_any_depth() -> None:
    root: Any = "a string of eight+"
    for _ in range(5000):
        root = [{"k": root}]
    assert held_strings(root) == ["a string of eight+"]


@given(JSON, JSON)
def test_arbitrary_json_round_trips_against_any_reference(value: Any, ref: Any) -> None:
    encoder = LeafEncoder()
    encoded = encoder.value(value, ref)
    packed = encoder.pack(encoded)
    decoded = LeafDecoder(encoder.choose_epoch(), Expansion(2**20)).value(
        msgpack.unpackb(packed), ref
    )
    assert msgpack.packb(decoded) == msgpack.packb(value)


def _pods(n: int, t: int, restarts: int = 0) -> list[dict[str, Any]]:
    owner = {
        "kind": "ReplicaSet",
        "name": "web-5d8f",
        "uid": "0" * 8 + "-1111-2222-3333-" + "4" * 12,
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"web-5d8f-{i:05d}",
                "namespace": "shop",
                "uid": f"{i:08x}-aaaa-bbbb-cccc-dddddddddddd",
                "creationTimestamp": stamp(t),
                "labels": {"app": "web"},
                "ownerReferences": [{**owner, "controller": True}],
            },
            "spec": {"containers": [{"name": "web", "image": "registry.example/web:1.4.2"}]},
            "status": {
                "phase": "Running",
                "startTime": stamp(t),
                "containerStatuses": [{"name": "web", "restartCount": restarts}],
            },
        }
        for i in range(n)
    ]


def test_an_idle_cycle_is_a_tiny_frame() -> None:
    base = snap(_pods(50, 0), 0)
    again = snap(_pods(50, 0), 60)  # same objects, later collection
    encoded = encode_delta(base, again)
    assert encoded.chosen == "delta"
    assert len(encoded.frame) <= 80  # 56 bytes of header and checksum + a few of payload
    assert apply_frame(base, encoded.frame).digest == again.digest


def test_a_new_sibling_pod_costs_a_fraction_of_itself() -> None:
    pods = _pods(20, 0)
    base = snap(pods[:19], 0)
    new = snap(pods, 60)
    whole = encode_delta(base, new, EncodeOptions(exemplars=False, patch_from=False, full=False))
    assert whole.stats is not None and whole.stats.added_whole == 1
    sibling = encode_delta(base, new, ONLY["delta"])
    assert sibling.stats is not None and sibling.stats.added_exemplar == 1
    assert (len(sibling.frame) - OVERHEAD) * 2 < len(whole.frame) - OVERHEAD
    assert apply_frame(base, sibling.frame).digest == new.digest


def test_encoding_reads_no_clock_unless_given_a_timer() -> None:
    base, new = snap(_pods(5, 0)), snap(_pods(6, 0), 60)
    assert encode_delta(base, new).cpu_ms == {}  # the protocol's call: sans-IO, nothing timed
    ticks = iter(range(100))
    timed = encode_delta(base, new, timer=lambda: float(next(ticks)))
    assert {"diff", "delta", "verify"} <= timed.cpu_ms.keys()
    assert all(ms == 1000.0 for ms in timed.cpu_ms.values())  # one tick per step, in ms
    assert timed.frame == encode_delta(base, new).frame


def test_a_frame_against_another_base_is_refused_as_base_mismatch() -> None:
    base, new, other = snap(_pods(3, 0)), snap(_pods(4, 0)), snap(_pods(2, 0))
    for options in ONLY.values():
        frame = encode_delta(base, new, options).frame
        if unpack_frame(frame).needs_base:
            with pytest.raises(BaseMismatch):
                apply_frame(other, frame)
            with pytest.raises(BaseMismatch):
                apply_frame(None, frame)


def test_inspect_summarizes_a_delta_without_its_base() -> None:
    base, new = snap(_pods(10, 0)), snap(_pods(12, 0, restarts=1), 60)
    summary = inspect_frame(encode_delta(base, new, ONLY["delta"]).frame)
    assert summary["type"] == "delta"
    assert summary["delta"]["added"] == 2
    assert summary["delta"]["changed"] == 10
    assert summary["delta"]["operations"]["replace"] >= 10


def _event(pod: dict[str, Any], reason: str, t: int, nanos: int) -> dict[str, Any]:
    seconds = EPOCH + t
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{seconds * 10**9 + nanos:x}",
            "namespace": meta["namespace"],
            "uid": f"{t:08x}-{nanos % 9999:04d}-4000-8000-00000000{reason[:4].encode().hex()}",
            "creationTimestamp": stamp(t),
        },
        "involvedObject": {"kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        "reason": reason,
        "message": f"{reason} {meta['name']}",
        "firstTimestamp": stamp(t),
        "lastTimestamp": stamp(t),
    }


def _leaf_codes(value: Any) -> set[int]:
    if isinstance(value, msgpack.ExtType):
        return {value.code}
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*map(_leaf_codes, value)) if value else set()
    return set()


def test_events_name_their_pod_by_reference_and_rebuild_their_own_name() -> None:
    pods = _pods(3, 0)
    base = snap([*pods, _event(pods[0], "Pulled", 5, 123)], 0)
    new = snap([*pods, _event(pods[0], "Pulled", 5, 123), _event(pods[1], "Pulled", 60, 456)], 60)
    wire = pack_delta(base, diff(base, new))
    doc = msgpack.unpackb(wire.payload)
    slot, body = doc[5]
    assert slot[1] == 456  # the Event's name travels as its nanoseconds
    assert EXT_UID_OF in _leaf_codes(body)  # involvedObject.uid: the base Pod, not 16 bytes
    encoded = encode_delta(base, new, ONLY["delta"])
    assert apply_frame(base, encoded.frame).digest == new.digest


def test_a_container_id_that_moved_is_sent_as_a_reference() -> None:
    old = _pods(1, 0)
    new_pods = _pods(1, 0, restarts=1)
    status = new_pods[0]["status"]["containerStatuses"][0]
    old_id = "containerd://" + "ab" * 32
    old[0]["status"]["containerStatuses"][0]["containerID"] = old_id
    status["containerID"] = "containerd://" + "cd" * 32
    status["lastState"] = {"terminated": {"containerID": old_id, "exitCode": 1}}
    base, new = snap(old), snap(new_pods, 60)
    wire = pack_delta(base, diff(base, new))
    assert EXT_HELD in _leaf_codes(msgpack.unpackb(wire.payload)[4])
    assert apply_frame(base, encode_delta(base, new, ONLY["delta"]).frame).digest == new.digest


@pytest.mark.parametrize("slot", [[0, -1], [None, 10**9], [None], [None, 1, 2], [10**6, 5]])
def test_malformed_added_slots_are_refused(slot: Any) -> None:
    pods = _pods(2, 0)
    base = snap(pods)
    raw = msgpack.packb([0, "t", {}, [], [], [slot, {"kind": "Event"}]])
    frame = Frame(FrameKind.DELTA, Codec.NONE, 0, base.digest, base.digest, len(raw), raw).pack()
    with pytest.raises((FrameError, DeltaError)):
        apply_frame(base, frame)


@pytest.mark.parametrize("dictionary_id", [0, *known_ids()])
def test_frames_made_with_every_shipped_dictionary_still_decode(dictionary_id: int) -> None:
    base, new = snap(_pods(10, 0)), snap(_pods(12, 0, restarts=1), 60)
    options = EncodeOptions(dictionary_id=dictionary_id, patch_from=False, full=False)
    frame = encode_delta(base, new, options).frame
    assert unpack_frame(frame).dictionary_id in (0, dictionary_id)
    assert apply_frame(base, frame).digest == new.digest
