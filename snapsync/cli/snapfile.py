"""Snapshot files as people handle them: `.snap` frames or the decoded JSON document.

Reading accepts both (a JSON snapshot is re-canonicalized and its digest recomputed, so a hand
edit is caught only as a different version, never as a silent mismatch). Every failure is an
InputError or FrameError whose message names the file.
"""

from __future__ import annotations

import json
from typing import Any

from snapsync.canonical.canonicalize import canonical_copy
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import CanonicalObject, Snapshot, SnapshotHeader
from snapsync.codec.decode import decode_snapshot
from snapsync.errors import CanonicalError, FrameError, InputError
from snapsync.fileio import display_name, read_input


def looks_like_json(data: bytes) -> bool:
    return data.lstrip()[:1] == b"{"


def load_snapshot(path: str) -> Snapshot:
    """A snapshot from a `.snap` frame or a `--format json` document (`-`: stdin)."""
    return parse_snapshot(read_input(path), display_name(path))


def parse_snapshot(data: bytes, name: str) -> Snapshot:
    """Errors name `name`, the file the bytes came from."""
    try:
        if looks_like_json(data):
            return snapshot_from_document(_parse_json(data))
        return decode_snapshot(data)
    except (FrameError, InputError) as exc:
        raise type(exc)(f"{name}: {exc}") from None


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not a snapshot frame nor valid JSON: {exc}") from None


def snapshot_from_document(doc: Any) -> Snapshot:
    """Rebuild a snapshot from its JSON document; a stated digest must match the objects."""
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
        raise InputError("JSON is not a snapsync snapshot document (no objects list)")
    objects: dict[ObjectKey, CanonicalObject] = {}
    for entry in doc["objects"]:
        data = entry.get("object") if isinstance(entry, dict) else None
        if not isinstance(data, dict):
            raise InputError("snapshot document has an entry without an object")
        try:
            key = ObjectKey.of(data)
            objects[key] = CanonicalObject.from_data(canonical_copy(data))
        except CanonicalError as exc:
            raise InputError(f"snapshot document: {exc}") from None
    try:
        header = SnapshotHeader.from_dict(doc.get("header") or {})
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise InputError(f"snapshot document header is malformed: {exc}") from None
    snapshot = Snapshot(header, objects)
    stated = doc.get("digest")
    if stated is not None and stated != snapshot.digest.hex():
        raise InputError(
            f"snapshot document says digest {stated}, its objects give {snapshot.digest.hex()}"
        )
    return snapshot
