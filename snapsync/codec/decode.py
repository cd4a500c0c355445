"""Frames back to what they carry: a snapshot, a delta or a repair, or the snapshot a frame
leads to from its base; and what `snapsync inspect` shows of any frame.

Decoding trusts nothing: the frame layer checks sizes and the checksum, decompression never
produces more than the declared size, the payload's structure is checked entry by entry, every
object is re-hashed and the result must have the frame's target digest. Whatever the bytes,
only FrameError or DeltaError subclasses escape.
"""

from __future__ import annotations

from typing import Any

from snapsync.bounds import DELTA_BYTES_PER_ITEM, Budget, items_for
from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.frame import (
    CODEC_NAMES,
    DEFAULT_LIMITS,
    OVERHEAD,
    Codec,
    Frame,
    FrameKind,
    Limits,
    unpack_frame,
)
from snapsync.codec.payload import decompress, snapshot_from_payload, unpack_payload
from snapsync.codec.wire_unpack import summarize_payload, unpack_delta, untrusted
from snapsync.delta.diff import Delta, Unpacked, delta_document, delta_from_document
from snapsync.delta.incremental import derive
from snapsync.errors import BaseMismatch, FrameCorrupt, FrameUnsupported, InputError


def decode_snapshot(
    data: bytes, limits: Limits = DEFAULT_LIMITS, *, base: Snapshot | None = None
) -> Snapshot:
    """A snapshot frame's snapshot; a patch-from frame also needs its `base`."""
    frame = unpack_frame(data, limits)
    if frame.kind is not FrameKind.SNAPSHOT:
        raise FrameUnsupported(f"expected a snapshot frame, found a {frame.kind.name.lower()}")
    _check_base(frame, base)
    raw = decompress(frame, base, limits)
    return snapshot_from_payload(unpack_payload(raw, limits), frame.target_digest)


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


def _check_base(frame: Frame, base: Snapshot | None) -> None:
    if not frame.needs_base:
        return
    want = frame.base_digest.hex()[:12]
    if base is None:
        raise BaseMismatch(
            f"this frame is against base {want}; no base was given", expected=frame.base_digest
        )
    if base.digest != frame.base_digest:
        raise BaseMismatch(
            f"this frame is against base {want}, the base given is {base.digest.hex()[:12]}",
            expected=frame.base_digest,
            offered=base.digest,
        )


def decode_frame(
    data: bytes,
    base: Snapshot | None = None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    base_data: Unpacked | None = None,
) -> Snapshot | Delta:
    """A frame's content: a Snapshot (full or patch-from) or a Delta against `base`.

    A Delta is decoded, not applied: `apply_frame` applies it and checks the target digest.
    `base_data`: the base's objects as the caller already unpacked them (the encoder checking
    its own frame), read-only.
    """
    return _decode(unpack_frame(data, limits), base, limits, base_data)


def _decode(
    frame: Frame, base: Snapshot | None, limits: Limits, base_data: Unpacked | None = None
) -> Snapshot | Delta:
    _check_base(frame, base)
    raw = decompress(frame, base, limits)
    if frame.kind is FrameKind.SNAPSHOT:
        return snapshot_from_payload(unpack_payload(raw, limits), frame.target_digest)
    if frame.kind is FrameKind.REPAIR:
        return _repair_from_payload(unpack_payload(raw, limits), frame)
    assert base is not None  # _check_base: a delta always needs its base
    return unpack_delta(
        base,
        raw,
        frame.target_digest,
        max_expanded=limits.max_expanded,
        max_items=items_for(len(raw), limits.max_items, DELTA_BYTES_PER_ITEM),
        base_data=base_data,
    )


def _repair_from_payload(doc: Any, frame: Frame) -> Delta:
    try:
        delta = delta_from_document(doc)
    except InputError as exc:
        raise FrameCorrupt(f"repair payload: {exc}") from None
    if (delta.base_digest, delta.target_digest) != (frame.base_digest, frame.target_digest):
        raise FrameCorrupt("repair payload names other digests than its frame")
    return delta


def apply_frame(base: Snapshot | None, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Snapshot:
    """The snapshot a frame leads to from `base`, its target digest verified; base untouched.

    What the delta's operations build is bounded like what decoding its payload may build.
    """
    frame = unpack_frame(data, limits)
    result = _decode(frame, base, limits)
    if isinstance(result, Snapshot):
        return result
    assert base is not None
    items = items_for(frame.raw_size, limits.max_items, DELTA_BYTES_PER_ITEM)
    budget = Budget(items, "applying the delta")
    with untrusted("the delta's operations"):
        snapshot = derive(base, result, budget)  # as delta.apply, in the time of what changes
    return snapshot


def inspect_frame(
    data: bytes, base: Snapshot | None = None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """What `snapsync inspect` shows about any frame, as JSON-able data.

    Needs no base for a delta (counts come from the payload's structure); a patch-from frame's
    contents are only counted when its base is given.
    """
    frame = unpack_frame(data, limits)
    doc: dict[str, Any] = {
        "type": frame.kind.name.lower(),
        "format_version": frame.version,
        "codec": CODEC_NAMES[frame.codec],
        "dictionary_id": frame.dictionary_id,
        "base_digest": frame.base_digest.hex() if frame.needs_base else None,
        "target_digest": frame.target_digest.hex(),
        "sizes": {
            "frame": len(data),
            "header_and_checksum": OVERHEAD,
            "stored_payload": len(frame.payload),
            "raw_payload": frame.raw_size,
        },
    }
    if frame.codec is Codec.ZSTD_BASE and (base is None or base.digest != frame.base_digest):
        doc["contents"] = "needs the base snapshot to decode"
        return doc
    raw = decompress(frame, base, limits)
    if frame.kind is FrameKind.DELTA:
        items = items_for(len(raw), limits.max_items, DELTA_BYTES_PER_ITEM)
        doc["delta"] = summarize_payload(raw, items)
    elif frame.kind is FrameKind.REPAIR:
        summary = delta_document(_repair_from_payload(unpack_payload(raw, limits), frame))[
            "summary"
        ]
        doc["repair"] = summary
    else:
        payload = unpack_payload(raw, limits)
        objects = payload.get("objects") if isinstance(payload, dict) else None
        doc["objects"] = len(objects) if isinstance(objects, list) else None
    return doc
