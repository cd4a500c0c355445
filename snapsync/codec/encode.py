"""Snapshots and deltas to frames: canonical msgpack inside, zstd outside.

Encoding a cycle computes candidates and ships the smallest one that decodes correctly:

    delta       the compact delta (snapsync.codec.wire_pack), zstd with a trained dictionary
    patch-from  the new snapshot payload, zstd with the base payload as raw-content dictionary
    full        the new snapshot payload, plain zstd (needs no base)

Only the winner is verified (decoded back and compared, or its digest checked); if it fails,
the next smallest is tried, so a bug in one representation costs bytes, never correctness.
Encoding reads no clock unless its caller hands it one (`encode_delta(timer=...)`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgpack
import zstandard

from snapsync.canonical.canonicalize import pack
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import Snapshot
from snapsync.codec import dictionaries
from snapsync.codec.decode import decode_frame, decode_snapshot
from snapsync.codec.frame import NO_DIGEST, Codec, Frame, FrameKind
from snapsync.codec.payload import (
    compress,
    snapshot_payload,
    snapshot_payload_parts,
    trained_dictionary,
)
from snapsync.codec.wire_pack import WireStats, pack_delta
from snapsync.delta.diff import Delta, Unpacked, delta_document, diff, uid_index_after
from snapsync.errors import DeltaError, FrameError, Unencodable

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
    # time per step (diff, each candidate, verify) by the caller's timer; empty without one
    cpu_ms: Mapping[str, float]
    stats: WireStats | None = None  # the delta candidate's contents, if computed

    @property
    def total_cpu_ms(self) -> float:
        return sum(self.cpu_ms.values())


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


def encode_delta(
    base: Snapshot,
    new: Snapshot,
    options: EncodeOptions = EncodeOptions(),
    *,
    delta: Delta | None = None,
    timer: Callable[[], float] | None = None,
) -> Encoded:
    """The smallest correct frame taking `base` to `new`, and every computed candidate's size.

    Pass `delta` when the caller already computed `diff(base, new)`. With a `timer` (seconds,
    e.g. time.process_time) each step's time goes to `Encoded.cpu_ms`; without one no clock is
    read and `cpu_ms` is empty, as on the agent's protocol path (sans-IO).
    """
    cpu: dict[str, float] = {}
    clock = _Clock(cpu, timer)
    # The diff, the delta candidate and its check read the same base objects: unpacked once.
    base_data = Unpacked(base)
    # The added objects' canonical bytes, when the delta is ours (diff takes them from `new`).
    added_bytes: Mapping[ObjectKey, bytes] | None = None
    if delta is None:
        with clock("diff"):
            delta = diff(base, new, base_data)
        added_bytes = {key: new.objects[key].encoded for key in delta.added}
    if delta.base_digest != base.digest or delta.target_digest != new.digest:
        raise DeltaError("the delta given does not go from this base to this snapshot")
    frames: dict[str, Frame] = {}
    checks: dict[str, Callable[[bytes], bool]] = {}
    stats: WireStats | None = None
    with clock("delta"):
        try:
            wire = (
                pack_delta(
                    base,
                    delta,
                    exemplars=options.exemplars,
                    base_data=base_data,
                    added_bytes=added_bytes,
                )
                if options.delta
                else None
            )
        except Unencodable:
            wire = None
        if wire is not None:
            stats = wire.stats
            # this cycle's snapshot is the next one's base: hand it the uid index ready-made
            new.adopt_uid_index(uid_index_after(base, new, delta))
            frames["delta"] = _delta_frame(delta, wire.payload, options)
            checks["delta"] = lambda data: _same_delta(
                decode_frame(data, base, base_data=base_data), delta, added_bytes
            )
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
        trained = trained_dictionary(dict_id, options.delta_level)
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
    """Adds the `timer` time of each `with clock(step):` block to `cpu[step]`, in ms; without a
    timer it reads nothing and adds nothing."""

    def __init__(self, cpu: dict[str, float], timer: Callable[[], float] | None) -> None:
        self.cpu = cpu
        self.timer = timer
        self._step = ""
        self._start = 0.0

    def __call__(self, step: str) -> _Clock:
        self._step = step
        return self

    def __enter__(self) -> None:
        if self.timer is not None:
            self._start = self.timer()

    def __exit__(self, *exc: object) -> None:
        if self.timer is not None:
            spent = (self.timer() - self._start) * 1000
            self.cpu[self._step] = self.cpu.get(self._step, 0.0) + spent


def _same_delta(
    a: Snapshot | Delta, b: Delta, b_added: Mapping[ObjectKey, bytes] | None = None
) -> bool:
    """Exact equality, types included (True is not 1 on the wire); `b_added`: the canonical
    bytes of b's added objects, if known."""
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
    if b_added is None:
        b_added = {k: pack(v) for k, v in b.added.items()}
    if any(pack(a.added[k]) != b_added[k] for k in b.added):
        return False
    return all(_ops_bytes(a.changed[k]) == _ops_bytes(b.changed[k]) for k in b.changed)


def _ops_bytes(ops: Any) -> bytes:
    return pack([[[k, op[k]] for k in sorted(op)] for op in ops])


def encode_repair(delta: Delta, options: EncodeOptions = EncodeOptions()) -> bytes:
    """A frame for a delta against a base the sender does not hold (anti-entropy).

    The sender knows the base only by digests, so objects are named by key and changed ones are
    replaced whole; the delta document is compressed with the trained dictionary, which is where
    whole objects compress best.
    """
    raw: bytes = msgpack.packb(delta_document(delta), use_bin_type=True)
    return replace(_delta_frame(delta, raw, options), kind=FrameKind.REPAIR).pack()
