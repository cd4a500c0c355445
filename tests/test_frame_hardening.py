"""Hostile bytes: whatever a frame holds, only FrameError or DeltaError escapes, memory stays
bounded, and a damaged frame never yields a wrong snapshot."""

from __future__ import annotations

import contextlib
import struct
import tracemalloc
import zlib
from typing import Any

import msgpack
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support_codec import snap, stamp

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.decode import apply_frame, decode_frame, inspect_frame
from snapsync.codec.encode import EncodeOptions, encode_delta
from snapsync.codec.frame import HEADER_SIZE, MAGIC, NO_DIGEST, Codec, Frame, FrameKind, Limits
from snapsync.codec.leaves import MAX_DEPTH, Expansion, LeafDecoder
from snapsync.codec.wire_pack import pack_delta
from snapsync.errors import (
    DeltaError,
    FrameCorrupt,
    FrameError,
    FrameTooLarge,
    FrameTruncated,
    FrameUnsupported,
)

CANDIDATES = (
    EncodeOptions(patch_from=False, full=False),
    EncodeOptions(delta=False, full=False),
    EncodeOptions(delta=False, patch_from=False),
)


def _objects(n: int, t: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"settings-{i}",
                "namespace": "shop",
                "uid": f"{i:08x}-aaaa-bbbb-cccc-dddddddddddd",
                "creationTimestamp": stamp(t),
            },
            "data": {"mode": "fast" if (i + t) % 3 else "safe", "level": str(i * 7 + t)},
        }
        for i in range(n)
    ]


BASE = snap(_objects(12, 0), 0)
NEW = snap([*_objects(11, 5), *_objects(14, 0)[12:]], 60)
FRAMES = [encode_delta(BASE, NEW, options).frame for options in CANDIDATES]


DEFAULT_LIMITS = Limits()


def _decode_all(data: bytes, base: Snapshot | None = BASE, limits: Limits = DEFAULT_LIMITS) -> None:
    """Every entry point on hostile bytes; returns normally or raises a typed error."""
    for call in (
        lambda: apply_frame(base, data, limits),
        lambda: decode_frame(data, base, limits),
        lambda: inspect_frame(data, base, limits),
    ):
        with contextlib.suppress(FrameError, DeltaError):
            call()


def _frame(kind: FrameKind, codec: Codec, payload: bytes, raw_size: int, **kw: Any) -> bytes:
    return Frame(
        kind=kind,
        codec=codec,
        dictionary_id=kw.get("dictionary_id", 0),
        base_digest=kw.get("base_digest", BASE.digest),
        target_digest=kw.get("target_digest", NEW.digest),
        raw_size=raw_size,
        payload=payload,
    ).pack()


@pytest.mark.parametrize("frame", FRAMES, ids=["delta", "patch-from", "full"])
def test_every_single_bit_flip_is_detected(frame: bytes) -> None:
    for bit in range(len(frame) * 8):
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((FrameError, DeltaError)):
            apply_frame(BASE, bytes(damaged))


@pytest.mark.parametrize("frame", FRAMES, ids=["delta", "patch-from", "full"])
def test_every_truncation_is_refused(frame: bytes) -> None:
    for end in range(len(frame)):
        with pytest.raises((FrameTruncated, FrameUnsupported)):
            apply_frame(BASE, frame[:end])


@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _decode_all(data)
    _decode_all(MAGIC + b"\x01" + data)


@given(st.sampled_from(FRAMES), st.data())
def test_mutated_frames_never_decode_to_a_wrong_snapshot(frame: bytes, data: st.DataObject) -> None:
    damaged = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(damaged) - 1))
        damaged[pos] = data.draw(st.integers(0, 255))
    try:
        result = apply_frame(BASE, bytes(damaged))
    except (FrameError, DeltaError):
        return
    assert result.digest == NEW.digest  # only an unchanged frame may decode


def _raw_delta() -> bytes:
    from snapsync.delta.diff import diff

    return pack_delta(BASE, diff(BASE, NEW)).payload


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_payloads_with_a_valid_checksum(data: st.DataObject) -> None:
    """Past the checksum: the payload validator itself must hold."""
    raw = bytearray(_raw_delta())
    for _ in range(data.draw(st.integers(1, 8))):
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if action == "flip" and raw:
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif raw:
            del raw[pos]
    frame = _frame(FrameKind.DELTA, Codec.NONE, bytes(raw), len(raw))
    _decode_all(frame)
    try:
        result = apply_frame(BASE, frame)
    except (FrameError, DeltaError):
        return
    assert result.digest == NEW.digest  # a damaged payload never yields another snapshot


EXT = st.builds(msgpack.ExtType, st.integers(0, 9), st.binary(max_size=12))
HOSTILE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=8)
    | EXT,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(
            st.text(max_size=6) | st.sampled_from(["op", "path", "value"]), inner, max_size=4
        )
    ),
    max_leaves=40,
)


@given(st.lists(HOSTILE, min_size=6, max_size=6) | HOSTILE)
def test_hostile_payload_structures(doc: Any) -> None:
    raw = msgpack.packb(doc, use_bin_type=True)
    _decode_all(_frame(FrameKind.DELTA, Codec.NONE, raw, len(raw)))
    _decode_all(_frame(FrameKind.SNAPSHOT, Codec.NONE, raw, len(raw), base_digest=NO_DIGEST))


def test_deep_nesting_is_refused() -> None:
    deep: Any = "x"
    for _ in range(900):
        deep = [deep]
    raw = msgpack.packb([0, "t", {}, [], [], [None, {"kind": deep}]])
    with pytest.raises(FrameError):
        apply_frame(BASE, _frame(FrameKind.DELTA, Codec.NONE, raw, len(raw)))


@pytest.mark.parametrize("container", [list, dict])
@pytest.mark.parametrize("extra", [0, 1])
def test_the_depth_limit_counts_the_leaves_too(container: type, extra: int) -> None:
    value: Any = "x"
    for _ in range(MAX_DEPTH + extra):
        value = [value] if container is list else {"k": value}
    decoder = LeafDecoder(0, Expansion(2**20))
    if extra:
        with pytest.raises(FrameCorrupt):
            decoder.value(value)
    else:
        assert decoder.value(value) == value


def test_huge_declared_sizes_are_refused_before_allocating() -> None:
    head = struct.pack(
        ">4sBBBBI16s16sII", MAGIC, 1, 2, 0, 0, 0, BASE.digest, NEW.digest, 2**32 - 1, 2**32 - 1
    )
    with pytest.raises(FrameTooLarge):
        apply_frame(BASE, head + b"\0" * 8)


def test_a_decompression_bomb_stops_at_the_declared_size() -> None:
    bomb = zstandard.ZstdCompressor(level=1).compress(b"\0" * (64 * 2**20))
    frame = _frame(FrameKind.DELTA, Codec.ZSTD, bomb, 100)
    tracemalloc.start()
    try:
        with pytest.raises(FrameCorrupt):
            apply_frame(BASE, frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # 64 MiB declared inside zstd, a few KiB allocated


def test_references_cannot_amplify_past_the_limit() -> None:
    """Thousands of 'copy base object 0' records: refused by max_expanded, not materialized."""
    records: list[Any] = []
    for i in range(5000):
        records += [0, [[2, "/metadata/name", f"n{i}"]]]
    raw = msgpack.packb([0, "t", {}, [], [], records])
    limits = Limits(max_expanded=200_000)
    with pytest.raises(FrameTooLarge):
        apply_frame(BASE, _frame(FrameKind.DELTA, Codec.NONE, raw, len(raw)), limits)


def test_unknown_dictionary_id_is_refused_clearly() -> None:
    data = _frame(FrameKind.DELTA, Codec.ZSTD_DICT, b"\x28\xb5\x2f\xfd", 10, dictionary_id=991)
    with pytest.raises(FrameUnsupported, match="dictionary id 991"):
        apply_frame(BASE, data)


def test_unknown_version_and_codec_are_refused_clearly() -> None:
    good = FRAMES[0]
    for offset, value, message in ((4, 9, "version 9"), (6, 77, "codec")):
        bad = bytearray(good[:-4])
        bad[offset] = value
        bad += struct.pack(">I", zlib.crc32(bad))
        with pytest.raises(FrameUnsupported, match=message):
            apply_frame(BASE, bytes(bad))


def test_header_invariants() -> None:
    with pytest.raises(FrameCorrupt):  # a delta without a base digest
        apply_frame(BASE, _frame(FrameKind.DELTA, Codec.NONE, b"\x90", 1, base_digest=NO_DIGEST))
    with pytest.raises(FrameCorrupt):  # a dictionary id without the dictionary codec
        apply_frame(BASE, _frame(FrameKind.DELTA, Codec.NONE, b"\x90", 1, dictionary_id=1))
    assert HEADER_SIZE == 52
