"""Stage 3 of the data path: snapshots and deltas to the bytes on disk and wire, and back.

    frame        the binary frame around every payload (schemas/frame.md)
    wire_form    a Delta's compact payload: its layout and the vocabulary both sides share
    wire_pack    building that payload: base objects by position, leaves against references
    wire_unpack  reading it back against the base, every entry checked and bounded
    leaves       field-aware leaf encoding (what changes costs few bytes)
    times        RFC 3339 times as leaves carry them (parsed only when exactly reversible)
    dictionaries trained zstd dictionaries shipped by id
    payload      zstd around payloads, and the snapshot payload's msgpack layout, both ways
    decode       a frame back to its snapshot, delta or repair; apply; inspect
    encode       a cycle to the smallest candidate frame that verifies; snapshot frames

Invariants: encoding ships only a candidate that decoded back correctly; decoding trusts no
byte (sizes, checksum, bounds, re-hashing) and only FrameError or DeltaError escape it.

The entry points are re-exported here: `from snapsync.codec import encode_delta` reads the same
on every version, which bench/frame_digest.py relies on to compare checkouts.
"""

from snapsync.codec.decode import (
    apply_frame,
    decode_frame,
    decode_snapshot,
    inspect_frame,
    snapshot_document,
)
from snapsync.codec.encode import Encoded, EncodeOptions, encode_delta, encode_snapshot

__all__ = [
    "EncodeOptions",
    "Encoded",
    "apply_frame",
    "decode_frame",
    "decode_snapshot",
    "encode_delta",
    "encode_snapshot",
    "inspect_frame",
    "snapshot_document",
]
