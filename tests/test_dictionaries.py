"""A dictionary id names its bytes forever: an agent and a server of different builds must agree.

Retraining makes a new id; changing the bytes behind a released id would make old frames
undecodable (zstd "data corruption") on a newer server. These digests are pinned on purpose:
the manifest's own sha256 only catches damage within one build.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import snapsync.codec.dictionaries

RELEASED = {
    1: "3ced6e70051e3587dda4ce3b30e7fe36c5b85e8b1195066ba21fd7dfd099a808",
    2: "e0748316c17541fbc7bf092dd148a8a570e9aa71d67c60a3a4444478cc6aacf2",
    3: "be72ed5ce3c3300e78f5bae0a58b442758b79011c744dc2f1f10ad77fa574505",
}
FOLDER = Path(snapsync.codec.dictionaries.__file__).parent


@pytest.mark.parametrize(("dictionary_id", "sha256"), sorted(RELEASED.items()))
def test_released_dictionaries_never_change(dictionary_id: int, sha256: str) -> None:
    manifest = json.loads((FOLDER / "manifest.json").read_text())
    entry = next(d for d in manifest["dictionaries"] if d["id"] == dictionary_id)
    assert entry["sha256"] == sha256
    assert hashlib.sha256((FOLDER / entry["file"]).read_bytes()).hexdigest() == sha256
