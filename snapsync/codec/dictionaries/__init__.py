"""Trained zstd dictionaries shipped with snapsync, by id; the receiver must know the sender's id.

manifest.json lists every dictionary this build knows: id, file, SHA-256 and how it was trained
(tools/train_dictionary.py, reproducible from the sample-cluster generator). Ids are never reused
and files never change once shipped, so an old agent and a new server still agree: a new
dictionary gets a new id next to the old ones, and `default_id` only moves forward once every
receiver knows it. Id 0 means "no dictionary".
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from typing import Any

from snapsync.errors import FrameUnsupported

MANIFEST = "manifest.json"


@functools.cache
def _manifest() -> dict[str, Any]:
    text = resources.files(__name__).joinpath(MANIFEST).read_text(encoding="utf-8")
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def known_ids() -> tuple[int, ...]:
    return tuple(sorted(int(d["id"]) for d in _manifest()["dictionaries"]))


def default_id() -> int:
    """The dictionary new frames use (0 if the build ships none)."""
    return int(_manifest().get("default", 0))


@functools.cache
def dictionary_bytes(dict_id: int) -> bytes:
    """The dictionary's bytes, checked against the manifest; FrameUnsupported if unknown."""
    for entry in _manifest()["dictionaries"]:
        if int(entry["id"]) == dict_id:
            data = resources.files(__name__).joinpath(entry["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise FrameUnsupported(f"dictionary {dict_id} is damaged in this installation")
            return data
    known = ", ".join(map(str, known_ids())) or "none"
    raise FrameUnsupported(
        f"frame uses zstd dictionary id {dict_id}, unknown to this snapsync build "
        f"(it knows {known}); upgrade the receiver"
    )
