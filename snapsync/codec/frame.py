"""The binary frame around every snapshot and delta, on disk and on the wire.

Layout (all integers big-endian; documented byte by byte in schemas/frame.md):

    magic "SSYN" | version u8 | kind u8 | codec u8 | flags u8 | dictionary id u32
    | base digest 16 | target digest 16 | raw size u32 | stored size u32
    | payload (stored size bytes) | CRC-32 of everything before it, u32

This module only packs and checks that layout. It refuses sizes over the caller's limits before
anything is allocated, and raises only FrameError subclasses whatever bytes it is given.

Invariants checked here (so every layer above can rely on them):
- the dictionary id is non-zero exactly when the codec is ZSTD_DICT;
- the base digest is non-zero exactly when the frame needs a base to decode: a DELTA frame, or
  a SNAPSHOT frame whose codec is ZSTD_BASE ("patch-from");
- the CRC-32 covers header and payload, so a flipped bit anywhere is caught before decoding.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from snapsync.errors import FrameCorrupt, FrameTooLarge, FrameTruncated, FrameUnsupported

MAGIC = b"SSYN"
VERSION = 1
NO_DIGEST = bytes(16)
_HEADER = struct.Struct(">4sBBBBI16s16sII")
HEADER_SIZE = _HEADER.size  # 52
TRAILER_SIZE = 4
OVERHEAD = HEADER_SIZE + TRAILER_SIZE
MAX_FIELD = 2**32 - 1


class FrameKind(IntEnum):
    SNAPSHOT = 1  # a whole snapshot; base digest is zero
    DELTA = 2  # changes from the base digest's snapshot to the target's
    # changes from a base whose contents the sender does not hold (anti-entropy): objects named by
    # key, changed ones sent whole; the receiver applies them to its base and checks the target
    REPAIR = 3


class Codec(IntEnum):
    NONE = 0  # payload is plain msgpack
    ZSTD = 1  # zstd, no dictionary
    ZSTD_DICT = 2  # zstd with the trained dictionary named by dictionary id
    ZSTD_BASE = 3  # zstd with the base snapshot as a raw-content dictionary ("patch-from")


CODEC_NAMES = {
    Codec.NONE: "msgpack",
    Codec.ZSTD: "zstd",
    Codec.ZSTD_DICT: "zstd+trained-dictionary",
    Codec.ZSTD_BASE: "zstd+base-snapshot",
}


@dataclass(frozen=True)
class Limits:
    """What a decoder accepts; checked against declared sizes before any allocation."""

    max_stored: int = 256 * 2**20
    # A 50,000-object sample cluster is 64-74 MiB of msgpack; 128 MiB leaves room for larger
    # objects, and caps the buffer a declared size can make the decoder fill.
    max_raw: int = 128 * 2**20
    # Bytes a delta may make the decoder materialize from references into the base (exemplar
    # copies, repeated strings): bounds the amplification of a small hostile payload. A delta
    # never legitimately builds more than a whole snapshot, so the same bound as max_raw.
    max_expanded: int = 128 * 2**20
    # Items (a container counts one plus its length; snapsync.bounds) decoding a payload, or
    # applying its operations, may build; a payload also gets no more than one per 8 of its
    # bytes (bounds.items_for). The densest 50,000-object sample snapshot needs 5.1 Mi items
    # (~350 MB of Python objects): 8 Mi fits it with 1.6x to spare, and stops a hostile payload
    # near what the largest real snapshot costs.
    max_items: int = 8 * 2**20
    # Decoded bytes per stored byte a compressed payload may declare (patch-from: beyond its
    # base's payload). Real frames reach 9-15x (snapshots 12-14x, deltas 9x, repairs 11x on the
    # sample clusters); a zstd bomb reaches 10,000x. 128 leaves 8x to spare for repetitive
    # clusters and turns a 595-byte bomb into at most 76 KB.
    max_ratio: int = 128
    # zstd window the decoder accepts (log2): bounds decompression memory; patch-from needs the
    # window to reach the whole base payload.
    max_window_log: int = 27


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Frame:
    kind: FrameKind
    codec: Codec
    dictionary_id: int
    base_digest: bytes
    target_digest: bytes
    raw_size: int
    payload: bytes  # as stored (compressed unless codec is NONE)
    version: int = VERSION

    @property
    def needs_base(self) -> bool:
        """Whether decoding this frame needs the snapshot named by `base_digest`."""
        return self.kind is not FrameKind.SNAPSHOT or self.codec is Codec.ZSTD_BASE

    def pack(self) -> bytes:
        if len(self.payload) > MAX_FIELD or self.raw_size > MAX_FIELD:
            raise FrameTooLarge(f"payload of {len(self.payload)} bytes does not fit a frame")
        head = _HEADER.pack(
            MAGIC,
            self.version,
            self.kind,
            self.codec,
            0,
            self.dictionary_id,
            self.base_digest,
            self.target_digest,
            self.raw_size,
            len(self.payload),
        )
        body = head + self.payload
        return body + struct.pack(">I", zlib.crc32(body))

    @property
    def size(self) -> int:
        return OVERHEAD + len(self.payload)


def unpack_frame(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Parse and check a frame: magic, version, kind, codec, sizes, checksum."""
    if len(data) == 0:
        raise FrameTruncated("empty input, not a snapsync frame")
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise FrameUnsupported("not a snapsync frame (bad magic)")
    if len(data) < HEADER_SIZE:
        raise FrameTruncated(f"truncated frame header ({len(data)} of {HEADER_SIZE} bytes)")
    (_, version, kind, codec, flags, dict_id, base, target, raw_size, stored_size) = (
        _HEADER.unpack_from(data)
    )
    if version != VERSION:
        raise FrameUnsupported(f"frame format version {version} (this build reads {VERSION})")
    try:
        frame_kind = FrameKind(kind)
        frame_codec = Codec(codec)
    except ValueError as exc:
        raise FrameUnsupported(f"unknown frame kind or codec: {exc}") from None
    if flags:
        raise FrameUnsupported(f"unknown frame flags {flags:#04x}")
    if (frame_codec is Codec.ZSTD_DICT) != (dict_id != 0):
        raise FrameCorrupt(f"dictionary id {dict_id} does not go with codec {frame_codec.name}")
    needs_base = frame_kind is not FrameKind.SNAPSHOT or frame_codec is Codec.ZSTD_BASE
    if needs_base == (base == NO_DIGEST):
        raise FrameCorrupt("base digest present without need, or missing where a base is needed")
    if stored_size > limits.max_stored:
        raise FrameTooLarge(f"payload of {stored_size} bytes exceeds the {limits.max_stored} limit")
    if raw_size > limits.max_raw:
        raise FrameTooLarge(f"decoded size {raw_size} exceeds the {limits.max_raw} limit")
    end = HEADER_SIZE + stored_size
    if len(data) < end + TRAILER_SIZE:
        raise FrameTruncated(f"truncated frame ({len(data)} of {end + TRAILER_SIZE} bytes)")
    if len(data) > end + TRAILER_SIZE:
        raise FrameCorrupt(f"{len(data) - end - TRAILER_SIZE} unexpected bytes after the frame")
    (crc,) = struct.unpack_from(">I", data, end)
    if crc != zlib.crc32(memoryview(data)[:end]):
        raise FrameCorrupt("frame checksum mismatch (corrupted in transit or on disk)")
    return Frame(
        kind=frame_kind,
        codec=frame_codec,
        dictionary_id=dict_id,
        base_digest=base,
        target_digest=target,
        raw_size=raw_size,
        payload=bytes(data[HEADER_SIZE:end]),
        version=version,
    )
