# The naive ways of shipping cluster state that snapsync is measured against, and the floor
# estimate; shared by the benchmarks (bench/: the trace runner, bench_codec.py, bench_diff.py) and
# `snapsync demo`'s closing report, so every comparison measures the same baselines the same way.
# A helper at the codec's level: nothing on the data path (protocol, agent, server) imports it.
"""Baseline encoders and decoders (sender and receiver side) and the floor estimate.

- full JSON + gzip-6 of the whole canonical state each cycle;
- JSON Patch (jsonpatch.make_patch) of the whole state against the previous one, as JSON +
  gzip-6: what today's async edge agents ship (Portainer's async agent, ../shared/REFERENCE.md);
- full canonical msgpack + zstd-3 each cycle;
- the floor: only what changed (paths and new values, removed keys, added objects whole),
  msgpack, zstd at its highest level with snapsync's trained dictionary.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import jsonpatch
import msgpack
import zstandard

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec import dictionaries
from snapsync.codec.payload import snapshot_payload
from snapsync.delta.diff import Delta

T = TypeVar("T")
GZIP_LEVEL = 6
ZSTD_FULL_LEVEL = 3
FLOOR_LEVEL = 22


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """fn's result and its process CPU in ms (process time: the machine is shared)."""
    start = time.process_time()
    out = fn()
    return out, (time.process_time() - start) * 1000


def state_doc(snapshot: Snapshot) -> dict[str, Any]:
    """The whole state as one JSON document {key: object}: what the JSON baselines ship."""
    return {str(key): obj.data for key, obj in snapshot}


def full_json_gzip(doc: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), GZIP_LEVEL)


def read_full_json_gzip(blob: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(gzip.decompress(blob))
    return doc


def json_patch_gzip(old_doc: dict[str, Any], new_doc: dict[str, Any]) -> bytes:
    return gzip.compress(jsonpatch.make_patch(old_doc, new_doc).to_string().encode(), GZIP_LEVEL)


def apply_json_patch_gzip(old_doc: dict[str, Any], blob: bytes) -> dict[str, Any]:
    """The receiver's side: the patch applied to its copy of the base (not in place)."""
    patched: dict[str, Any] = jsonpatch.apply_patch(old_doc, json.loads(gzip.decompress(blob)))
    return patched


def full_msgpack_zstd(snapshot: Snapshot) -> bytes:
    compressed: bytes = zstandard.ZstdCompressor(level=ZSTD_FULL_LEVEL).compress(
        snapshot_payload(snapshot)
    )
    return compressed


def read_full_msgpack_zstd(blob: bytes) -> Any:
    return msgpack.unpackb(zstandard.ZstdDecompressor().decompress(blob), raw=False)


def floor_payload(delta: Delta) -> bytes:
    """Only the information that changed: header time, removed keys, added objects, and for each
    changed object its operations as (path, new value), (path, from) for a move or copy, or
    (path, nil) for a removal; keys as (group, kind, namespace, name)."""
    changed = []
    for key, ops in delta.changed.items():
        fields = [
            [op["path"], op["value"]] if "value" in op else [op["path"], op.get("from")]
            for op in ops
        ]
        changed.append([list(key.as_tuple()), fields])
    packed: bytes = msgpack.packb(
        [
            delta.header.collected_at,
            [list(k.as_tuple()) for k in delta.removed],
            [[list(k.as_tuple()), obj] for k, obj in delta.added.items()],
            changed,
        ],
        use_bin_type=True,
    )
    return packed


def zstd_max_with_dictionary(raw: bytes, level: int = FLOOR_LEVEL) -> bytes:
    """zstd (by default at its highest level) with snapsync's shipped trained dictionary, no
    frame extras: the floor's compressor, and at level 19 the one snapsync's delta uses."""
    trained = zstandard.ZstdCompressionDict(
        dictionaries.dictionary_bytes(dictionaries.default_id())
    )
    cctx = zstandard.ZstdCompressor(
        level=level,
        dict_data=trained,
        write_checksum=False,
        write_content_size=False,
        write_dict_id=False,
    )
    compressed: bytes = cctx.compress(raw)
    return compressed


def floor_bytes(delta: Delta) -> bytes:
    return zstd_max_with_dictionary(floor_payload(delta))
