"""Frame payloads: zstd around them (with a trained or a raw-content dictionary) and the
snapshot payload's canonical msgpack layout, both ways.

Decompression never produces more than the frame's declared (and limit-checked) size; reading
a payload builds only what the item budget allows, and a snapshot payload's objects are
re-keyed and must come in canonical order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import msgpack
import zstandard

from snapsync.bounds import Budget, items_for, unpackb
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import CanonicalObject, Snapshot, SnapshotHeader
from snapsync.codec import dictionaries
from snapsync.codec.frame import DEFAULT_LIMITS, Codec, Frame, Limits
from snapsync.errors import BaseMismatch, CanonicalError, FrameCorrupt, FrameTooLarge


def compress(raw: bytes, level: int) -> bytes:
    compressed: bytes = zstandard.ZstdCompressor(level=level, write_checksum=False).compress(raw)
    return compressed


def decompress(
    frame: Frame, base: Snapshot | None = None, limits: Limits = DEFAULT_LIMITS
) -> bytes:
    """The frame's raw payload, never more than its declared (and limit-checked) size.

    The declared size is refused beyond `limits.max_ratio` times the stored payload (plus the
    base's payload for patch-from, which may copy all of it) before anything is decompressed.
    """
    if frame.codec is Codec.NONE:
        raw = frame.payload
    else:
        reach = 0
        if frame.codec is Codec.ZSTD:
            dctx = _decompressor(None, limits)
        elif frame.codec is Codec.ZSTD_DICT:
            dctx = _decompressor(trained_dictionary(frame.dictionary_id), limits)
        else:
            if base is None or base.digest != frame.base_digest:
                raise BaseMismatch("a patch-from frame needs its base snapshot")
            base_raw = snapshot_payload(base)
            reach = len(base_raw)
            dctx = _decompressor(
                zstandard.ZstdCompressionDict(base_raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT),
                limits,
            )
        if frame.raw_size > reach + limits.max_ratio * len(frame.payload):
            raise FrameTooLarge(
                f"payload of {len(frame.payload)} bytes declares {frame.raw_size} decoded: "
                f"more than {limits.max_ratio}x"
            )
        raw = _bounded_read(dctx, frame.payload, frame.raw_size)
    if len(raw) != frame.raw_size:
        raise FrameCorrupt(f"payload is {len(raw)} bytes, header says {frame.raw_size}")
    return raw


def _decompressor(
    dict_data: zstandard.ZstdCompressionDict | None, limits: Limits
) -> zstandard.ZstdDecompressor:
    window = 2 ** min(limits.max_window_log, 31)
    if dict_data is None:
        return zstandard.ZstdDecompressor(max_window_size=window)
    return zstandard.ZstdDecompressor(dict_data=dict_data, max_window_size=window)


def _bounded_read(dctx: zstandard.ZstdDecompressor, payload: bytes, size: int) -> bytes:
    """Decompress at most size + 1 bytes (zstd's own content size is never trusted)."""
    out = bytearray()
    try:
        with dctx.stream_reader(payload, read_across_frames=False) as reader:
            while len(out) <= size:
                chunk = reader.read(min(size + 1 - len(out), 2**20))
                if not chunk:
                    break
                out += chunk
    except zstandard.ZstdError as exc:
        raise FrameCorrupt(f"payload does not decompress: {exc}") from None
    return bytes(out)


@functools.cache
def trained_dictionary(dict_id: int, level: int = 0) -> zstandard.ZstdCompressionDict:
    """A shipped dictionary, digested once per process for `level` (0: for decompression only).

    Loading a 224-448 KiB dictionary at level 19 costs 7-30 ms, more than compressing a cycle's
    delta; the digested tables (1.5-3 MB) are read-only, so one object serves every compressor
    and thread.
    """
    trained = zstandard.ZstdCompressionDict(dictionaries.dictionary_bytes(dict_id))
    if level:
        trained.precompute_compress(level=level)
    return trained


def unpack_payload(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """A payload's msgpack value, built within the item budget its size and `limits` allow."""
    budget = Budget(items_for(len(raw), limits.max_items), "the payload")
    return unpackb(raw, budget, FrameCorrupt, "payload")


def snapshot_payload(snapshot: Snapshot) -> bytes:
    """Canonical msgpack of a snapshot: header, then objects as [group, kind, ns, name, object]."""
    return b"".join(snapshot_payload_parts(snapshot))


def snapshot_payload_parts(snapshot: Snapshot) -> Iterator[bytes]:
    """`snapshot_payload` in pieces, for a writer that never holds it whole."""
    packer = msgpack.Packer(use_bin_type=True)
    yield packer.pack_map_header(2)
    yield packer.pack("header")
    yield packer.pack(snapshot.header.to_dict())
    yield packer.pack("objects")
    yield packer.pack_array_header(len(snapshot))
    for key, obj in snapshot:
        # [group, kind, ns, name, object]: the key packed as one 4-array (header 0x94, one
        # call instead of five: this runs for every object of every state-dir write), re-headed
        yield b"\x95"
        yield packer.pack(key.as_tuple())[1:]
        yield obj.encoded


def snapshot_from_payload(doc: Any, expected_digest: bytes) -> Snapshot:
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
        raise FrameCorrupt("snapshot payload lacks its objects")
    try:
        header = SnapshotHeader.from_dict(doc.get("header") or {})
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise FrameCorrupt(f"snapshot header is malformed: {exc}") from None
    objects = dict(_payload_objects(doc["objects"]))
    snapshot = Snapshot(header, objects)
    if snapshot.digest != expected_digest:
        raise FrameCorrupt("snapshot digest does not match the frame's target digest")
    return snapshot


def _payload_objects(entries: list[Any]) -> Iterator[tuple[ObjectKey, CanonicalObject]]:
    previous: ObjectKey | None = None
    for entry in entries:
        if (
            not isinstance(entry, list)
            or len(entry) != 5
            or not all(isinstance(part, str) for part in entry[:4])
            or not isinstance(entry[4], dict)
        ):
            raise FrameCorrupt("snapshot payload has a malformed object entry")
        key = ObjectKey(*entry[:4])
        try:
            own_key = ObjectKey.of(entry[4])
        except CanonicalError as exc:
            raise FrameCorrupt(f"snapshot payload object {key}: {exc}") from None
        if own_key != key:
            raise FrameCorrupt(f"snapshot payload object {own_key} is filed under {key}")
        if previous is not None and not previous < key:
            raise FrameCorrupt("snapshot payload objects are not in canonical order")
        previous = key
        yield key, CanonicalObject.from_data(entry[4])
