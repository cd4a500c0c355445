"""What `snapsync inspect` reports about a snapshot, as plain data (JSON-able)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.payload import snapshot_payload


def summarize_snapshot(snapshot: Snapshot, frame_bytes: int | None = None) -> dict[str, Any]:
    """Digest, header, counts by kind and namespace, sizes at each stage, collection errors."""
    by_namespace = Counter(key.namespace or "(cluster)" for key in snapshot.keys)
    canonical_json = sum(
        len(json.dumps(obj.data, separators=(",", ":"), ensure_ascii=False)) for _, obj in snapshot
    )
    header = snapshot.header
    sizes = {
        "source_json": header.source_bytes or None,
        "canonical_json": canonical_json,
        "canonical_msgpack": len(snapshot_payload(snapshot)),
        "compressed": frame_bytes,
    }
    return {
        "type": "snapshot",
        "digest": snapshot.digest.hex(),
        "objects": len(snapshot),
        "environment_id": header.environment_id,
        "collected_at": header.collected_at,
        "profile": {"name": header.profile_name, "version": header.profile_version},
        "format_version": header.format_version,
        "counts": {
            "by_kind": dict(sorted(header.counts.items())),
            "by_namespace": dict(sorted(by_namespace.items())),
        },
        "sizes": sizes,
        "errors": [error.to_dict() for error in header.errors],
        "complete": not header.errors,
    }
