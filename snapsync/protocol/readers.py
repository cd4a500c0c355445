"""Field readers for decoding protocol messages.

Each checks one field of a decoded msgpack map (its type, and for digests its size) and raises
RemoteProtocolError for anything else, naming the field: what a peer sends is hostile until a
reader has accepted it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from snapsync.errors import RemoteProtocolError

DIGEST = 16

MISSING: Any = object()


def field(doc: dict[str, Any], name: str, default: Any) -> Any:
    value = doc.get(name, default)
    if value is MISSING:
        raise RemoteProtocolError(f"message lacks field {name!r}")
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def is_digest(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == DIGEST


def int_field(doc: dict[str, Any], name: str, default: Any = MISSING) -> int:
    value = field(doc, name, default)
    if not is_int(value):
        raise RemoteProtocolError(f"field {name!r} is not a non-negative integer")
    return int(value)


def number_field(doc: dict[str, Any], name: str, default: Any = MISSING) -> float:
    value = field(doc, name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise RemoteProtocolError(f"field {name!r} is not a sensible number")
    return float(value)


def str_field(doc: dict[str, Any], name: str, default: Any = MISSING) -> str:
    value = field(doc, name, default)
    if not isinstance(value, str):
        raise RemoteProtocolError(f"field {name!r} is not a string")
    return value


def bytes_field(doc: dict[str, Any], name: str, default: Any = MISSING) -> bytes:
    value = field(doc, name, default)
    if not isinstance(value, bytes):
        raise RemoteProtocolError(f"field {name!r} is not binary")
    return value


def digest_field(doc: dict[str, Any], name: str) -> bytes:
    value = bytes_field(doc, name)
    if len(value) != DIGEST:
        raise RemoteProtocolError(f"field {name!r} is not a {DIGEST}-byte digest")
    return value


def opt_digest_field(doc: dict[str, Any], name: str) -> bytes:
    return digest_field(doc, name) if name in doc else b""


def digest_item(value: Any) -> bytes:
    if not is_digest(value):
        raise RemoteProtocolError("malformed digest in a list")
    assert isinstance(value, bytes)
    return value


def list_field(
    doc: dict[str, Any], name: str, item: Callable[[Any], Any], default: Any = MISSING
) -> list[Any]:
    value = field(doc, name, default)
    if not isinstance(value, list):
        raise RemoteProtocolError(f"field {name!r} is not a list")
    return [item(v) for v in value]
