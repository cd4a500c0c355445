"""Snapshots and deltas to frames and back: canonical msgpack inside, zstd outside.

Encoding a cycle computes candidates and ships the smallest one that decodes correctly:

    delta       the compact delta (snapsync.codec.wire_form), zstd with a trained dictionary
    patch-from  the new snapshot payload, zstd with the base payload as raw-content dictionary
    full        the new snapshot payload, plain zstd (needs no base)

Only the winner is verified (decoded back and compared, or its digest checked); if it fails,
the next smallest is tried, so a bug in one representation costs bytes, never correctness.

Decoding trusts nothing: the frame layer checks sizes and the checksum, decompression never
produces more than the declared size, the payload's structure is checked entry by entry, every
object is re-hashed and the result must have the frame's target digest. Whatever the bytes,
only FrameError or DeltaError subclasses escape.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgpack
import zstandard

from snapsync.bounds import DELTA_BYTES_PER_ITEM, Budget, items_for, unpackb
from snapsync.canonical.canonicalize import pack
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import CanonicalObject, Snapshot, SnapshotHeader
from snapsync.codec import dictionaries
from snapsync.codec.frame import (
    CODEC_NAMES,
    DEFAULT_LIMITS,
    NO_DIGEST,
    OVERHEAD,
    Codec,
    Frame,
    FrameKind,
    Limits,
    unpack_frame,
)
from snapsync.codec.wire_pack import WireStats, pack_delta
from snapsync.codec.wire_unpack import summarize_payload, unpack_delta, untrusted
from snapsync.delta.diff import (
    Delta,
    delta_document,
    delta_from_document,
    diff,
    uid_index_after,
)
from snapsync.delta.incremental import derive
from snapsync.errors import (
    BaseMismatch,
    CanonicalError,
    DeltaError,
    FrameCorrupt,
    FrameError,
    FrameTooLarge,
    FrameUnsupported,
    InputError,
    Unencodable,
)

DEFAULT_SNAPSHOT_LEVEL = 9
_WINDOW_LOG_MIN, _WINDOW_LOG_MAX = 10, 27  # zstd's default decoder limit is 2^27
_STREAM_BLOCK = 2**20  # raw bytes per compressor call when streaming a snapshot


@dataclass(frozen=True)
class EncodeOptions:
    """Knobs of `encode_delta`; defaults measured on 2 shared cores (bench/results/codec.md)."""

    delta: bool = True  # the compact delta candidate
    # zstd level of the delta candidate: 19 ships 14-16% fewer bytes than 3 for <10 ms more on
    # 1-50 KB payloads (22 gains nothing more).
    delta_level: int = 19
    # Trained dictionary (None: the build's default, 0: none): -58% bytes at 1k objects, -25% at
    # 10k (1% churn).
    dictionary_id: int | None = None
    exemplars: bool = True  # added objects as diffs against an object the receiver holds
    patch_from: bool = True
    # Patch-from costs 20-30 ms per MB of base (the base is loaded as a dictionary each cycle)
    # and in steady churn loses to the delta (0.6-1.0x JSON Patch + gzip against 0.25-0.35x).
    # It is tried only when the delta candidate exceeds this share of the snapshot's raw size
    # (mass changes, where it can win) and the base's object bytes are at most
    # patch_from_max_base; 0.0 and a huge max: always tried.
    patch_from_min_share: float = 0.02
    patch_from_max_base: int = 8 * 2**20
    patch_from_level: int = 3
    patch_from_hash_log: int = 24  # zstd defaults (17-ish) cannot reach the whole base
    patch_from_chain_log: int = 24
    patch_from_long: bool = False  # long-distance matching: smaller, ~2x CPU
    full: bool = True
    # Skip the full candidate when the delta is already below this fraction of the snapshot's raw
    # size: compressed Kubernetes msgpack never reaches 1/64 of its size.
    full_skip_ratio: float = 1 / 64
    full_level: int = 3


@dataclass(frozen=True)
class Encoded:
    """One encoded cycle: the frame to ship and what each computed candidate cost."""

    frame: bytes
    chosen: str  # "delta", "patch-from" or "full"
    candidates: Mapping[str, int]  # frame bytes of every candidate computed
    cpu_ms: Mapping[str, float]  # process CPU per step: diff, each candidate, verify
    stats: WireStats | None = None  # the delta candidate's contents, if computed

    @property
    def total_cpu_ms(self) -> float:
        return sum(self.cpu_ms.values())


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
            dctx = _decompressor(_trained(frame.dictionary_id), limits)
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
def _trained(dict_id: int, level: int = 0) -> zstandard.ZstdCompressionDict:
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


def encode_snapshot_streamed(snapshot: Snapshot, level: int) -> bytes:
    """A snapshot frame compressed piece by piece, never holding the raw payload whole: the
    agent writes its newest snapshot every cycle, ~70 MB raw at 50,000 objects. It decodes as
    `encode_snapshot`'s does; its zstd frame differs (no content size), so it is for the state
    directory, never the wire."""
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=False).compressobj()
    stored: list[bytes] = []
    pending: list[bytes] = []
    raw_size = pending_size = 0
    for part in snapshot_payload_parts(snapshot):
        pending.append(part)
        pending_size += len(part)
        if pending_size >= _STREAM_BLOCK:
            stored.append(compressor.compress(b"".join(pending)))
            raw_size += pending_size
            pending, pending_size = [], 0
    stored.append(compressor.compress(b"".join(pending)))
    stored.append(compressor.flush())
    return _snapshot_frame(snapshot, raw_size + pending_size, b"".join(stored)).pack()


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


# --- deltas -------------------------------------------------------------------------------------


def encode_delta(
    base: Snapshot,
    new: Snapshot,
    options: EncodeOptions = EncodeOptions(),
    *,
    delta: Delta | None = None,
) -> Encoded:
    """The smallest correct frame taking `base` to `new`, and every computed candidate's size.

    Pass `delta` when the caller already computed `diff(base, new)`.
    """
    cpu: dict[str, float] = {}
    clock = _Clock(cpu)
    if delta is None:
        with clock("diff"):
            delta = diff(base, new)
    if delta.base_digest != base.digest or delta.target_digest != new.digest:
        raise DeltaError("the delta given does not go from this base to this snapshot")
    frames: dict[str, Frame] = {}
    checks: dict[str, Callable[[bytes], bool]] = {}
    stats: WireStats | None = None
    with clock("delta"):
        try:
            wire = pack_delta(base, delta, exemplars=options.exemplars) if options.delta else None
        except Unencodable:
            wire = None
        if wire is not None:
            stats = wire.stats
            # this cycle's snapshot is the next one's base: hand it the uid index ready-made
            new.adopt_uid_index(uid_index_after(base, new, delta))
            frames["delta"] = _delta_frame(delta, wire.payload, options)
            checks["delta"] = lambda data: _same_delta(decode_frame(data, base), delta)
    delta_size = frames["delta"].size if "delta" in frames else None
    full_estimate = new.encoded_size
    want_full = options.full and (
        delta_size is None or delta_size > full_estimate * options.full_skip_ratio
    )
    want_patch_from = (
        options.patch_from
        and (delta_size is None or delta_size > full_estimate * options.patch_from_min_share)
        and base.encoded_size <= options.patch_from_max_base
    )
    new_raw = b""
    if want_full or want_patch_from:
        with clock("snapshot payload"):
            new_raw = snapshot_payload(new)
    if want_full:
        with clock("full"):
            frames["full"] = _snapshot_frame(
                new, len(new_raw), compress(new_raw, options.full_level)
            )
            checks["full"] = lambda data: decode_snapshot(data).digest == new.digest
    if want_patch_from:
        with clock("patch-from"):
            base_raw = snapshot_payload(base)
            stored = _patch_from(base_raw, new_raw, options)
            frames["patch-from"] = _snapshot_frame(new, len(new_raw), stored, base.digest)
            checks["patch-from"] = lambda data: (
                decode_snapshot(data, base=base).digest == new.digest
            )
    packed = {name: frame.pack() for name, frame in frames.items()}
    chosen = ""
    with clock("verify"):
        for name in sorted(packed, key=lambda n: (len(packed[n]), n)):
            if _passes(checks[name], packed[name]):
                chosen = name
                break
        else:  # nothing verified (a bug somewhere): the full snapshot is always right
            chosen, packed["full"] = "full", encode_snapshot(new, options.full_level)
    return Encoded(packed[chosen], chosen, _sizes(packed), dict(cpu), stats)


def _sizes(packed: Mapping[str, bytes]) -> dict[str, int]:
    return {name: len(data) for name, data in sorted(packed.items())}


def _passes(check: Callable[[bytes], bool], data: bytes) -> bool:
    try:
        return check(data)
    except (FrameError, DeltaError):
        return False


def _delta_frame(delta: Delta, raw: bytes, options: EncodeOptions) -> Frame:
    dict_id = dictionaries.default_id() if options.dictionary_id is None else options.dictionary_id
    if dict_id:
        trained = _trained(dict_id, options.delta_level)
        cctx = zstandard.ZstdCompressor(
            level=options.delta_level,
            dict_data=trained,
            write_checksum=False,
            write_content_size=False,
            write_dict_id=False,
        )
    else:
        cctx = zstandard.ZstdCompressor(
            level=options.delta_level, write_checksum=False, write_content_size=False
        )
    stored: bytes = cctx.compress(raw)
    if len(stored) >= len(raw):  # an idle cycle: zstd's own framing would cost more than it saves
        stored, dict_id = raw, 0
    codec = Codec.NONE if stored is raw else Codec.ZSTD_DICT if dict_id else Codec.ZSTD
    return Frame(
        kind=FrameKind.DELTA,
        codec=codec,
        dictionary_id=dict_id,
        base_digest=delta.base_digest,
        target_digest=delta.target_digest,
        raw_size=len(raw),
        payload=stored,
    )


def _patch_from(base_raw: bytes, new_raw: bytes, options: EncodeOptions) -> bytes:
    reach = len(base_raw) + len(new_raw)
    window_log = min(max(_WINDOW_LOG_MIN, math.ceil(math.log2(reach + 1))), _WINDOW_LOG_MAX)
    params = zstandard.ZstdCompressionParameters.from_level(
        options.patch_from_level,
        source_size=len(new_raw),
        dict_size=len(base_raw),
        window_log=window_log,
        hash_log=min(options.patch_from_hash_log, window_log + 1),
        chain_log=min(options.patch_from_chain_log, window_log + 1),
        enable_ldm=options.patch_from_long,
        write_checksum=False,
        write_content_size=False,
        write_dict_id=False,
    )
    raw_dict = zstandard.ZstdCompressionDict(base_raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    cctx = zstandard.ZstdCompressor(dict_data=raw_dict, compression_params=params)
    compressed: bytes = cctx.compress(new_raw)
    return compressed


def _snapshot_frame(
    new: Snapshot, raw_size: int, stored: bytes, base_digest: bytes = NO_DIGEST
) -> Frame:
    return Frame(
        kind=FrameKind.SNAPSHOT,
        codec=Codec.ZSTD if base_digest == NO_DIGEST else Codec.ZSTD_BASE,
        dictionary_id=0,
        base_digest=base_digest,
        target_digest=new.digest,
        raw_size=raw_size,
        payload=stored,
    )


class _Clock:
    """Adds the process CPU time of each `with clock(step):` block to `cpu[step]`, in ms."""

    def __init__(self, cpu: dict[str, float]) -> None:
        self.cpu = cpu
        self._step = ""
        self._start = 0.0

    def __call__(self, step: str) -> _Clock:
        self._step = step
        return self

    def __enter__(self) -> None:
        self._start = time.process_time()

    def __exit__(self, *exc: object) -> None:
        spent = (time.process_time() - self._start) * 1000
        self.cpu[self._step] = self.cpu.get(self._step, 0.0) + spent


def _same_delta(a: Snapshot | Delta, b: Delta) -> bool:
    """Exact equality, types included (True is not 1 on the wire)."""
    if not isinstance(a, Delta):
        return False
    if (a.base_digest, a.target_digest, a.header, a.removed) != (
        b.base_digest,
        b.target_digest,
        b.header,
        b.removed,
    ):
        return False
    if a.added.keys() != b.added.keys() or a.changed.keys() != b.changed.keys():
        return False
    if any(pack(a.added[k]) != pack(b.added[k]) for k in b.added):
        return False
    return all(_ops_bytes(a.changed[k]) == _ops_bytes(b.changed[k]) for k in b.changed)


def _ops_bytes(ops: Any) -> bytes:
    return pack([[[k, op[k]] for k in sorted(op)] for op in ops])


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
    data: bytes, base: Snapshot | None = None, limits: Limits = DEFAULT_LIMITS
) -> Snapshot | Delta:
    """A frame's content: a Snapshot (full or patch-from) or a Delta against `base`.

    A Delta is decoded, not applied: `apply_frame` applies it and checks the target digest.
    """
    return _decode(unpack_frame(data, limits), base, limits)


def _decode(frame: Frame, base: Snapshot | None, limits: Limits) -> Snapshot | Delta:
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
    )


def encode_repair(delta: Delta, options: EncodeOptions = EncodeOptions()) -> bytes:
    """A frame for a delta against a base the sender does not hold (anti-entropy).

    The sender knows the base only by digests, so objects are named by key and changed ones are
    replaced whole; the delta document is compressed with the trained dictionary, which is where
    whole objects compress best.
    """
    raw: bytes = msgpack.packb(delta_document(delta), use_bin_type=True)
    return replace(_delta_frame(delta, raw, options), kind=FrameKind.REPAIR).pack()


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
