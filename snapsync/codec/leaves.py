"""Field-aware leaves: JSON values re-encoded for msgpack so that what changes costs few bytes.

A value is encoded against a *reference* (the value the receiver already holds at the same place:
the base version of a changed object, or the exemplar of an added one). Strings become, when that
is shorter and exactly reversible:

    TIME      RFC 3339 seconds "2024-05-01T10:00:00Z" -> integer seconds from the payload's epoch
    MICROTIME RFC 3339 with a fraction -> [seconds from the epoch, fraction digits as int, ndigits]
    UID_OF    the metadata.uid of an object the receiver holds -> that object's reference
              (base position, or -(n+1) for the n-th object added earlier in the payload)
    UUID      any other lowercase 8-4-4-4-12 uid -> its 16 raw bytes
    DECIMAL   a canonical decimal string ("42", resourceVersion) -> its integer minus the
              reference's integer (or minus 0)
    SAME      the reference string itself (no data)
    HELD      a string found elsewhere in the object the receiver holds (a container ID that moved
              to lastState, an address that moved to notReadyAddresses) -> its index there
    AFFIX     [common prefix length, common suffix length, middle] against the reference string;
              a middle of lowercase hex digits (Event name suffixes, hashes) travels as raw bytes

Each is a msgpack ext type, so a plain JSON value can never be mistaken for one. One epoch per
payload, not one per field: a cycle writes the same instant into many fields, and equal offsets
compress to nothing (per-field deltas measured larger). The epoch is chosen after every time is
seen, so that most offsets fit one byte. Decoding re-checks every type and bound and raises only
FrameCorrupt; `Expansion` caps the bytes references may materialize.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from snapsync.codec.times import TimeParses, format_time
from snapsync.errors import FrameCorrupt, FrameTooLarge

EXT_TIME = 1
EXT_MICROTIME = 2
EXT_UUID = 3
EXT_DECIMAL = 4
EXT_SAME = 5
EXT_AFFIX = 6
EXT_HELD = 7
EXT_UID_OF = 8

MAX_DEPTH = 128  # nesting accepted when decoding; canonical Kubernetes objects stay far below
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DECIMAL = re.compile(r"0|-?[1-9][0-9]{0,17}")
_MIN_AFFIX = 8  # shorter strings are cheaper sent whole
_MIN_HELD = 8
_HEX = re.compile(r"[0-9a-f]{8,}")
_SAME = msgpack.ExtType(EXT_SAME, b"")
PLAIN = frozenset({str, int, float, bool, type(None)})  # JSON scalars: decoded as they are
_NO_TYPES: frozenset[type] = frozenset()
KEPT = frozenset({int, float, bool, type(None)})  # encoded as they are, whatever the reference
_CONTEXT_FREE = frozenset({EXT_TIME, EXT_MICROTIME, EXT_UUID})  # decoded from their bytes alone
_NEW_TUPLE = tuple.__new__


def _ext(code: int, data: bytes) -> msgpack.ExtType:
    """msgpack.ExtType(code, data) without its argument checks, which run in Python and cost
    twice the tuple: every leaf this module makes is one, of a valid code and bytes."""
    ext: msgpack.ExtType = _NEW_TUPLE(msgpack.ExtType, (code, data))
    return ext


def unpacked_ext(code: int, data: bytes) -> msgpack.ExtType:
    """msgpack.ExtType as an unpacker's ext_hook, checking only what the unpacker may hand it
    wrong (a negative code: ExtType's own error); ExtType's checks run in Python, per leaf."""
    if code < 0:
        raise ValueError("code must be 0~127")
    return _ext(code, data)


def _affix(value: str, ref: str) -> tuple[int, int]:
    limit = min(len(value), len(ref))
    prefix = 0
    while prefix < limit and value[prefix] == ref[prefix]:
        prefix += 1
    suffix = 0
    limit -= prefix
    while suffix < limit and value[-1 - suffix] == ref[-1 - suffix]:
        suffix += 1
    return prefix, suffix


@dataclass(frozen=True, slots=True)
class _Time:
    """A time leaf whose offset waits for the payload's epoch (chosen once every time is seen)."""

    seconds: int
    fraction: str | None


class UidOwners(Protocol):
    """Finds the reference of the held object whose metadata.uid is `uid`."""

    def get(self, uid: str) -> int | None: ...


class _NoOwners:
    def get(self, uid: str) -> int | None:
        return None


_NO_OWNERS = _NoOwners()


class LeafEncoder:
    """Encodes values for one payload. Times stay symbolic until `pack`, which picks the epoch
    that puts the most of them within msgpack's one-byte integers."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self._times: list[int] = []
        # The object the receiver holds that values are encoded against (HELD leaves index its
        # strings); set by the caller around each object, None for whole objects and headers.
        self.root: Any = None
        # root, its msgpack bytes (None if it has none), HELD index of its strings once built
        self._held_cache: tuple[Any, bytes | None, dict[str, int] | None] | None = None
        self.parse_time = TimeParses()
        # uid -> reference of the object the receiver holds with that metadata.uid (an Event's
        # involvedObject, an owner, an endpoint's targetRef): a small int instead of 16 bytes.
        self.uid_owners: UidOwners = _NO_OWNERS
        # One Packer each (msgpack.packb builds a Packer per call: most of the encoding time).
        self._small = msgpack.Packer(use_bin_type=True).pack
        self._final = msgpack.Packer(use_bin_type=True, default=self._resolve).pack
        self._estimate = msgpack.Packer(use_bin_type=True, default=_time_estimate).pack

    def _held(self, value: str) -> int | None:
        """`value`'s index in held_strings(root), or None. Every string of the root is in its
        msgpack bytes as UTF-8, so a string absent from them (most: a new container ID, a new
        address) is answered by one search in C, and the index is built for the others only."""
        cache = self._held_cache
        if cache is None or cache[0] is not self.root:
            try:
                packed: bytes | None = self._small(self.root)
            except (OverflowError, TypeError, ValueError):  # not msgpack: the index decides
                packed = None
            cache = self._held_cache = (self.root, packed, None)
        root, packed, index = cache
        if packed is not None:
            try:
                if value.encode() not in packed:
                    return None
            except UnicodeEncodeError:
                pass
        if index is None:
            index = {s: i for i, s in enumerate(held_strings(root))}
            self._held_cache = (root, packed, index)
        return index.get(value)

    def choose_epoch(self) -> int:
        """The epoch maximizing times at offsets -32..127 (one byte each); fixed once chosen."""
        if self.epoch is None:
            times = sorted(set(self._times))
            best, best_count, lo = 0, -1, 0
            for hi, t in enumerate(times):
                while t - times[lo] > 159:
                    lo += 1
                if hi - lo > best_count:
                    best, best_count = t - 127, hi - lo
            self.epoch = best
        return self.epoch

    def pack(self, value: Any) -> bytes:
        """msgpack of an encoded value, times resolved against the epoch (chosen on first use)."""
        packed: bytes = self._final(value)
        return packed

    def size(self, value: Any) -> int:
        """Bytes of an encoded value, times counted at their likely size (for choosing forms)."""
        return len(self._estimate(value))

    def _resolve(self, leaf: Any) -> Any:
        if type(leaf) is not _Time:
            raise TypeError(f"cannot encode {type(leaf).__name__}")
        offset = leaf.seconds - self.choose_epoch()
        if leaf.fraction is None:
            return _ext(EXT_TIME, self._small(offset))
        return _ext(EXT_MICROTIME, self._small([offset, int(leaf.fraction), len(leaf.fraction)]))

    def value(self, value: Any, ref: Any = None) -> Any:
        """`value` with its strings re-encoded against `ref` (same shape, where shapes agree)."""
        kind = type(value)
        if kind is str:
            return self.string(value, ref)
        if kind is dict:
            if type(ref) is dict:
                return {k: self.value(v, ref.get(k)) for k, v in value.items()}
            return {k: v if type(v) in KEPT else self.value(v) for k, v in value.items()}
        if kind is list:
            if type(ref) is list:
                n = len(ref)
                return [self.value(v, ref[i] if i < n else None) for i, v in enumerate(value)]
            return [v if type(v) in KEPT else self.value(v) for v in value]
        return value

    def against(self, value: Any, ref: Any) -> tuple[Any, bool]:
        """`value` encoded structurally against `ref` (an exemplar): equal subtrees, containers
        included, become SAME. Returns (encoding, whether `value` equals `ref` exactly).

        An equal container is found equal in C (== then the same msgpack bytes, which keeps 1,
        1.0 and true apart) before any walk: a sibling shares most of its exemplar's subtrees.
        (Only a NaN, which no JSON value holds, could tell the walk apart from this.)"""
        kind = type(value)
        if (kind is dict or kind is list) and value == ref and self._same_bytes(value, ref):
            return _SAME, True
        if kind is dict and type(ref) is dict:
            out: dict[str, Any] = {}
            same = len(value) == len(ref)
            for k, v in value.items():
                if k in ref:
                    out[k], equal = self.against(v, ref[k])
                    same = same and equal
                else:
                    out[k], same = self.value(v), False
            return (_SAME if same else out), same
        if kind is list and type(ref) is list:
            n = len(ref)
            items: list[Any] = []
            same = len(value) == n
            for i, v in enumerate(value):
                if i < n:
                    encoded, equal = self.against(v, ref[i])
                    same = same and equal
                else:
                    encoded, same = self.value(v), False
                items.append(encoded)
            return (_SAME if same else items), same
        if kind is str:
            return self.string(value, ref), type(ref) is str and value == ref
        if kind is dict or kind is list:
            return self.value(value), False
        return value, type(ref) is kind and value == ref

    def _same_bytes(self, value: Any, ref: Any) -> bool:
        try:
            return bool(self._small(value) == self._small(ref))
        except (OverflowError, TypeError, ValueError):  # not msgpack: left to the walk
            return False

    def string(self, value: str, ref: Any) -> Any:
        if type(ref) is str:
            if value == ref:
                return _SAME if len(value) > 2 else value
            if _DECIMAL.fullmatch(value) and _DECIMAL.fullmatch(ref):
                return _ext(EXT_DECIMAL, self._small(int(value) - int(ref)))
        parsed = self.parse_time(value)
        if parsed is not None:
            if self.epoch is not None:
                raise RuntimeError("a time was encoded after the payload's epoch was chosen")
            self._times.append(parsed[0])
            return _Time(*parsed)
        if self.root is not None and len(value) >= _MIN_HELD:
            held = self._held(value)
            if held is not None:
                return _ext(EXT_HELD, self._small(held))
        if len(value) == 36 and _UUID.fullmatch(value):
            owner = self.uid_owners.get(value)
            if owner is not None:
                return _ext(EXT_UID_OF, self._small(owner))
            return _ext(EXT_UUID, uuid.UUID(value).bytes)
        if _DECIMAL.fullmatch(value) and len(value) > 2:
            return _ext(EXT_DECIMAL, self._small(int(value)))
        if type(ref) is str and len(value) >= _MIN_AFFIX:
            prefix, suffix = _affix(value, ref)
            if prefix + suffix >= 4:
                middle = value[prefix : len(value) - suffix]
                if _HEX.fullmatch(middle):  # odd lengths: a leading 0 nibble, and a flag
                    raw = bytes.fromhex(middle if len(middle) % 2 == 0 else "0" + middle)
                    parts = [prefix, suffix, raw] + ([1] if len(middle) % 2 else [])
                    return _ext(EXT_AFFIX, self._small(parts))
                return _ext(EXT_AFFIX, self._small([prefix, suffix, middle]))
        return value


class Expansion:
    """Counts bytes that references materialize while decoding one payload; refuses past a cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise FrameTooLarge(f"delta expands past the {self.limit}-byte decoding limit")


class LeafDecoder:
    """Inverse of LeafEncoder for one payload; validates as it goes (JSON values only)."""

    def __init__(self, epoch: int, expansion: Expansion) -> None:
        self.epoch = epoch
        self.expansion = expansion
        self.root: Any = None  # as LeafEncoder.root
        # reference -> metadata.uid of the object it names, None if it has none (UID_OF leaves)
        self.uid_of: Callable[[int], str | None] = lambda ref: None
        self._held_cache: tuple[Any, list[str]] | None = None
        self.parse_time = TimeParses()  # of Event times, whose names are rebuilt from them
        # TIME, MICROTIME and UUID leaves decoded so far: they mean the same wherever they
        # stand, and a payload repeats its few instants many times (at most one entry per leaf
        # of the payload, which its item budget bounds).
        self._context_free: dict[msgpack.ExtType, str] = {}

    def _held(self) -> list[str]:
        if self._held_cache is None or self._held_cache[0] is not self.root:
            self._held_cache = (self.root, held_strings(self.root))
        return self._held_cache[1]

    def value(self, value: Any, ref: Any = None, depth: int = 0, whole: bool = False) -> Any:
        """Decode one value; `whole`: encoded by LeafEncoder.against (containers may be SAME)."""
        if depth > MAX_DEPTH:
            raise FrameCorrupt(f"value nested deeper than {MAX_DEPTH} levels")
        kind = type(value)
        # Plain items are taken as they are, without a call (most of a payload's leaves), where
        # they stand within MAX_DEPTH: deeper, the call refuses them as before.
        plain = PLAIN if depth < MAX_DEPTH else _NO_TYPES
        if kind is dict:
            rdict = ref if type(ref) is dict else None
            out: dict[str, Any] = {}
            for k, v in value.items():
                if type(k) is not str:
                    raise FrameCorrupt("map key is not a string")
                if type(v) in plain:
                    out[k] = v
                else:
                    out[k] = self.value(
                        v, rdict.get(k) if rdict is not None else None, depth + 1, whole
                    )
            return out
        if kind is list:
            rlist = ref if type(ref) is list else None
            n = len(rlist) if rlist is not None else 0
            return [
                v
                if type(v) in plain
                else self.value(
                    v, rlist[i] if rlist is not None and i < n else None, depth + 1, whole
                )
                for i, v in enumerate(value)
            ]
        if kind is msgpack.ExtType:
            if whole and value.code == EXT_SAME and type(ref) in (dict, list) and not value.data:
                # A subtree of the exemplar, used once per place: the exemplar's size was charged.
                return ref
            return self.ext(value, ref)
        if value is None or kind in (str, int, float, bool):
            return value
        raise FrameCorrupt(f"unexpected {kind.__name__} in a delta value")

    def ext(self, ext: msgpack.ExtType, ref: Any) -> Any:
        code, data = ext.code, ext.data
        if code == EXT_SAME:
            if type(ref) is not str or data:
                raise FrameCorrupt("SAME leaf without a string to refer to")
            self.expansion.charge(len(ref))
            return ref
        if code in _CONTEXT_FREE:
            text = self._context_free.get(ext)
            if text is None:
                text = self._context_free[ext] = self._context_free_leaf(code, data)
            return text
        inner = _unpack_small(data)
        if code == EXT_UID_OF:
            uid = self.uid_of(inner) if _is_int(inner) else None
            if uid is None:
                raise FrameCorrupt("UID_OF leaf names no object with a uid")
            return uid
        if code == EXT_HELD:
            held = self._held() if self.root is not None else []
            if not _is_int(inner) or not 0 <= inner < len(held):
                raise FrameCorrupt("HELD leaf names no string of its object")
            self.expansion.charge(len(held[inner]))
            return held[inner]
        if code == EXT_DECIMAL:
            if not _is_int(inner) or abs(inner) >= 10**19:
                raise FrameCorrupt("malformed DECIMAL leaf")
            base = int(ref) if type(ref) is str and _DECIMAL.fullmatch(ref) else 0
            return str(base + inner)
        if code == EXT_AFFIX:
            if type(ref) is not str or not (isinstance(inner, list) and 3 <= len(inner) <= 4):
                raise FrameCorrupt("AFFIX leaf without a string to refer to")
            prefix, suffix, middle = inner[:3]
            if type(middle) is bytes and len(middle) >= 4:
                middle = middle.hex()
                if len(inner) == 4:
                    if inner[3] != 1 or middle[0] != "0":
                        raise FrameCorrupt("malformed AFFIX leaf")
                    middle = middle[1:]
            elif len(inner) == 4:
                raise FrameCorrupt("malformed AFFIX leaf")
            if not (_is_int(prefix) and _is_int(suffix) and type(middle) is str):
                raise FrameCorrupt("malformed AFFIX leaf")
            if prefix < 0 or suffix < 0 or prefix + suffix > len(ref):
                raise FrameCorrupt("AFFIX leaf reaches outside its reference")
            self.expansion.charge(prefix + suffix)
            return ref[:prefix] + middle + ref[len(ref) - suffix :]
        raise FrameCorrupt(f"unknown leaf type {code}")

    def _context_free_leaf(self, code: int, data: bytes) -> str:
        if code == EXT_UUID:
            if len(data) != 16:
                raise FrameCorrupt("UUID leaf is not 16 bytes")
            return str(uuid.UUID(bytes=data))
        inner = _unpack_small(data)
        if code == EXT_TIME:
            return self._time(inner, None)
        if not (isinstance(inner, list) and len(inner) == 3):
            raise FrameCorrupt("malformed MICROTIME leaf")
        offset, fraction, ndigits = inner
        if not (_is_int(fraction) and _is_int(ndigits) and 1 <= ndigits <= 9):
            raise FrameCorrupt("malformed MICROTIME leaf")
        if not 0 <= fraction < 10**ndigits:
            raise FrameCorrupt("malformed MICROTIME leaf")
        return self._time(offset, f"{fraction:0{ndigits}d}")

    def _time(self, offset: Any, fraction: str | None) -> str:
        if not _is_int(offset):
            raise FrameCorrupt("malformed TIME leaf")
        text = format_time(self.epoch + offset)
        if not text:
            raise FrameCorrupt("TIME leaf out of range")
        return f"{text}.{fraction}Z" if fraction is not None else f"{text}Z"


def held_strings(root: Any) -> list[str]:
    """Distinct strings of at least _MIN_HELD characters in `root`, depth first in map order:
    what a HELD leaf's index counts (both sides hold the same object, so agree on the list).
    Runs for every changed object and exemplar on both sides: a stack of iterators walks it
    (no recursion: a decoded object may nest deeply), dict.fromkeys drops repeats in C."""
    found: list[str] = []
    add = found.append
    stack: list[Iterator[Any]] = [iter((root,))]
    while stack:
        for node in stack[-1]:
            kind = type(node)
            if kind is str:
                if len(node) >= _MIN_HELD:
                    add(node)
            elif kind is dict:
                stack.append(iter(node.values()))
                break
            elif kind is list:
                stack.append(iter(node))
                break
        else:
            stack.pop()
    return list(dict.fromkeys(found))


def _time_estimate(leaf: Any) -> Any:
    if type(leaf) is not _Time:
        raise TypeError(f"cannot encode {type(leaf).__name__}")
    return _ext(EXT_TIME if leaf.fraction is None else EXT_MICROTIME, b"\0")


def _is_int(value: Any) -> bool:
    return type(value) is int


def _unpack_small(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise FrameCorrupt("malformed leaf") from None
