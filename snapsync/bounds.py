"""Bounds on what decoding hostile bytes may build, counted before (or as) it is built.

Every byte from the network is hostile, and msgpack builds Python objects 10-70 times the size
of their encoding (an empty map is 1 byte on the wire, 64 in memory). So decoding is metered in
*items*: a container counts one plus its length, whatever it holds. A real snapshot costs about
one item per 13-27 bytes of msgpack (a 50,000-object sample cluster: 5.1 Mi items in 74 MiB,
350 MB of Python objects, ~70 bytes per item), a hostile payload up to one per byte.

`unpackb` refuses a payload before it builds more items than its budget allows: no container
may declare more entries than the budget (msgpack preallocates them), and every container built
is charged as soon as it is complete, so at most one container's worth is built past the limit.
Nesting stops at msgpack's own stack (1024 levels), which bounds the containers open at once.
`Budget` is the same meter for whatever else decoding builds (JSON-Patch outputs, copies).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from snapsync.errors import FrameTooLarge, SnapsyncError

# Bytes of msgpack per item a payload must weigh, and a floor for small payloads. Snapshots (and
# repair frames, which carry whole objects) spend 15-27 bytes per item in the sample clusters;
# compact deltas 4.6-6.2 for decoding (their leaves are small ints), and applying their
# operations adds ~5% (4.4 at the densest, busy and steady churn, both shapes). A pathological
# payload spends 1, so it is refused 3-8x sooner than it could grow, with 1.5-2x to spare for
# real data (and payloads under 0.2-0.5 MiB get the floor whatever they hold).
SNAPSHOT_BYTES_PER_ITEM = 8
DELTA_BYTES_PER_ITEM = 3
MIN_ITEMS = 2**16


class Budget:
    """Items one decoding may still build; `charge` refuses (raises `error`) past the limit."""

    def __init__(self, limit: int, what: str, error: type[SnapsyncError] = FrameTooLarge) -> None:
        self.limit = limit
        self.used = 0
        self.what = what
        self.error = error

    def charge(self, items: int) -> None:
        self.used += items
        if self.used > self.limit:
            raise self.error(f"{self.what} builds more than {self.limit} items")

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)


def items_for(raw_size: int, cap: int, per_item: int = SNAPSHOT_BYTES_PER_ITEM) -> int:
    """The item budget of a payload of `raw_size` bytes: proportional, floored, capped."""
    return min(cap, max(MIN_ITEMS, raw_size // per_item))


def unpackb(
    raw: bytes,
    budget: Budget,
    error: type[SnapsyncError],
    what: str,
    ext_hook: Callable[[int, bytes], Any] = msgpack.ExtType,
) -> Any:
    """One msgpack value from `raw`, built within `budget`; `error` for malformed input.

    Map keys must be strings (or bytes/ints only where msgpack's strict_map_key allows: never
    here) and the input must hold exactly one value. `ext_hook` makes each ext value (a
    ValueError from it is malformed input).
    """

    left = budget.left
    built = 0

    def charge(container: Any) -> Any:  # called per container: kept to a few bytecodes
        nonlocal built
        built += 1 + len(container)
        if built > left:
            budget.charge(built)
        return container

    most = min(left, len(raw))
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        use_list=True,
        max_buffer_size=max(len(raw), 1),
        max_array_len=most,
        max_map_len=most,
        max_str_len=len(raw),
        max_bin_len=len(raw),
        max_ext_len=len(raw),
        object_hook=charge,
        list_hook=charge,
        ext_hook=ext_hook,
    )
    unpacker.feed(raw)
    try:
        value = unpacker.unpack()
    except SnapsyncError:
        raise
    except msgpack.OutOfData:
        raise error(f"{what} is truncated msgpack") from None
    except (ValueError, TypeError, msgpack.FormatError, msgpack.StackError) as exc:
        raise error(f"{what} is not valid msgpack: {type(exc).__name__}: {exc}") from None
    if unpacker.tell() != len(raw):
        raise error(f"{what} has {len(raw) - unpacker.tell()} bytes after its msgpack value")
    budget.charge(built + 1)
    return value
