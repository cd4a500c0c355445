"""Data files shipped with the package: JSON Schemas and built-in profiles.

The schemas live in the repository's top-level schemas/ (where people read them); a wheel carries
them as snapsync/_schemas. A source checkout reads them in place.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

_PACKAGE = resources.files("snapsync")


def _schema_dir() -> Path:
    installed = Path(str(_PACKAGE / "_schemas"))
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "schemas"


@cache
def schema(name: str) -> dict[str, Any]:
    """A JSON Schema from schemas/, by file name without `.schema.json`."""
    path = _schema_dir() / f"{name}.schema.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def builtin_profile_path(name: str) -> Path | None:
    path = Path(str(_PACKAGE / "canonical" / "profiles" / f"{name}.yaml"))
    return path if path.is_file() else None


def builtin_profile_names() -> list[str]:
    folder = Path(str(_PACKAGE / "canonical" / "profiles"))
    return sorted(p.stem for p in folder.glob("*.yaml"))
