"""Field readers for decoding protocol messages.

Each checks one field of a decoded msgpack map (its type, and for digests its size) and raises
RemoteProtocolError for anything else, naming the field: what a peer sends is hostile until a
reader has accepted it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from snapsync.errors import RemoteProtocolError
from snapsync.protocol.reconcile import BUCKET_SHORT, MAX_BUCKETS, BucketSet

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


def kind_entries(
    doc: dict[str, Any], what: str, least: int = 0, most: int = 2**63 - 1
) -> list[tuple[str, int, bytes]]:
    """Field "k": [kind ref, count, bytes] triples, the count between `least` and `most`."""

    def entry(value: Any) -> tuple[str, int, bytes]:
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not isinstance(value[0], str)
            or not is_int(value[1])
            or not least <= value[1] <= most
            or not isinstance(value[2], bytes)
        ):
            raise RemoteProtocolError(f"malformed {what}")
        return value[0], value[1], value[2]

    return list_field(doc, "k", entry)


def bucket_digests(value: Any) -> tuple[str, bytes]:
    """[kind ref, digests]: one short digest per bucket, at least one, at most MAX_BUCKETS."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not isinstance(value[1], bytes)
        or len(value[1]) % BUCKET_SHORT
        or not 1 <= len(value[1]) // BUCKET_SHORT <= MAX_BUCKETS
    ):
        raise RemoteProtocolError("malformed bucket digests")
    return value[0], value[1]


def bucket_set(count: int, bitmap: bytes) -> BucketSet:
    """The bitmap as it came, checked (never expanded: see snapsync.protocol.reconcile)."""
    if len(bitmap) != (count + 7) // 8:
        raise RemoteProtocolError(f"a bitmap of {len(bitmap)} bytes for {count} buckets")
    if count % 8 and bitmap[-1] >> (count % 8):
        raise RemoteProtocolError("a bitmap choosing buckets beyond the count")
    return BucketSet(count, bitmap)
