"""Snapshots to frames and back: canonical msgpack inside, zstd outside.

Decoding trusts nothing: the frame layer checks sizes and the checksum, decompression is capped at
the declared size, the payload's structure is checked entry by entry, every object is re-hashed
and the snapshot digest must equal the frame's target digest. Whatever the bytes, only FrameError
subclasses escape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import zstandard

from snapsync.errors import CanonicalError, FrameCorrupt, FrameUnsupported
from snapsync.frame import DEFAULT_LIMITS, NO_DIGEST, Codec, Frame, FrameKind, Limits, unpack_frame
from snapsync.keys import ObjectKey
from snapsync.snapshot import CanonicalObject, Snapshot, SnapshotHeader

DEFAULT_SNAPSHOT_LEVEL = 9


def compress(raw: bytes, level: int) -> bytes:
    compressed: bytes = zstandard.ZstdCompressor(level=level, write_checksum=False).compress(raw)
    return compressed


def decompress(frame: Frame) -> bytes:
    """The frame's raw payload, never more than its declared (and limit-checked) size."""
    if frame.codec is Codec.NONE:
        raw = frame.payload
    elif frame.codec is Codec.ZSTD:
        try:
            raw = zstandard.ZstdDecompressor().decompress(
                frame.payload, max_output_size=frame.raw_size
            )
        except zstandard.ZstdError as exc:
            raise FrameCorrupt(f"payload does not decompress: {exc}") from None
    else:
        raise FrameUnsupported(f"codec {frame.codec.name} needs a dictionary or a base")
    if len(raw) != frame.raw_size:
        raise FrameCorrupt(f"payload is {len(raw)} bytes, header says {frame.raw_size}")
    return raw


def unpack_payload(raw: bytes) -> Any:
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        raise FrameCorrupt(f"payload is not valid msgpack: {type(exc).__name__}") from None


def snapshot_payload(snapshot: Snapshot) -> bytes:
    """Canonical msgpack of a snapshot: header, then objects as [group, kind, ns, name, object]."""
    packer = msgpack.Packer(use_bin_type=True)
    parts = [
        packer.pack_map_header(2),
        packer.pack("header"),
        packer.pack(snapshot.header.to_dict()),
        packer.pack("objects"),
        packer.pack_array_header(len(snapshot)),
    ]
    for key, obj in snapshot:
        parts.append(packer.pack_array_header(5))
        parts.extend(packer.pack(part) for part in key.as_tuple())
        parts.append(obj.encoded)
    return b"".join(parts)


def encode_snapshot(snapshot: Snapshot, level: int = DEFAULT_SNAPSHOT_LEVEL) -> bytes:
    raw = snapshot_payload(snapshot)
    return Frame(
        kind=FrameKind.SNAPSHOT,
        codec=Codec.ZSTD,
        dictionary_id=0,
        base_digest=NO_DIGEST,
        target_digest=snapshot.digest,
        raw_size=len(raw),
        payload=compress(raw, level),
    ).pack()


def decode_snapshot(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Snapshot:
    frame = unpack_frame(data, limits)
    if frame.kind is not FrameKind.SNAPSHOT:
        raise FrameUnsupported(f"expected a snapshot frame, found a {frame.kind.name.lower()}")
    return snapshot_from_payload(unpack_payload(decompress(frame)), frame.target_digest)


def snapshot_from_payload(doc: Any, expected_digest: bytes) -> Snapshot:
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
        raise FrameCorrupt("snapshot payload lacks its objects")
    try:
        header = SnapshotHeader.from_dict(doc.get("header") or {})
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
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


def snapshot_document(snapshot: Snapshot) -> dict[str, Any]:
    """The decoded snapshot as plain JSON-able data (`--format json`; schemas/snapshot)."""
    return {
        "digest": snapshot.digest.hex(),
        "header": snapshot.header.to_dict(),
        "objects": [
            {"key": str(key), "digest": obj.digest.hex(), "object": obj.data}
            for key, obj in snapshot
        ],
    }
