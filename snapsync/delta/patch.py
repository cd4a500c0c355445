"""RFC 6902 JSON Patch applied to one JSON document, copy-on-write and bounded.

Why not jsonpatch: its applier deep-copies the whole document per patch; this one copies only
the containers an operation touches.

Invariants:
- `apply_patch` accepts any valid RFC 6902 patch, never modifies its input document (touched
  containers are copied on first write; the rest is shared with the input), and raises DeltaError,
  never anything else, for a patch that does not apply. Maps it touches keep their keys sorted.
- Every operation's output (the value an add or replace brings, what a copy duplicates) is
  charged to the caller's Budget container by container, before the container is built: 20
  `copy /metadata -> /metadata/cN` double the object each time, so a 600-byte patch could
  otherwise ask for terabytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from snapsync.bounds import Budget
from snapsync.delta.jsondiff import Operation
from snapsync.errors import DeltaError

_INDEX = re.compile(r"0|[1-9][0-9]*")
_BAD_ESCAPE = re.compile(r"~(?![01])")


def apply_patch(doc: Any, ops: Iterable[Operation], budget: Budget | None = None) -> Any:
    """`doc` patched by any valid RFC 6902 `ops`; `doc` itself is never modified.

    Raises DeltaError when an operation is malformed or does not apply (RFC 6902 section 5: the
    whole patch then fails); what the operations build is charged to `budget` (whose own error
    it raises past its limit).
    """
    patcher = _Patcher(doc, budget)
    try:
        for op in ops:
            patcher.apply(op)
        patcher.sort_touched()
    except RecursionError:
        raise DeltaError("operation value nested too deeply") from None
    return patcher.root


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality as RFC 6902 `test` defines it: numbers by value, never a number as a bool."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def json_copy(value: Any, budget: Budget | None = None) -> Any:
    """A deep copy with map keys sorted; DeltaError for anything JSON cannot hold.

    Each container is charged to `budget` (one item plus its length) before it is copied.
    """
    if type(value) is dict:
        if budget is not None:
            budget.charge(1 + len(value))
        for k in value:
            if type(k) is not str:
                raise DeltaError(f"operation value has a non-string map key {k!r}")
        return {k: json_copy(value[k], budget) for k in sorted(value)}
    if type(value) is list:
        if budget is not None:
            budget.charge(1 + len(value))
        return [json_copy(item, budget) for item in value]
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float and math.isfinite(value):
        return value
    raise DeltaError(f"operation value {value!r:.40} is not JSON")


def parse_pointer(pointer: Any) -> list[str]:
    """RFC 6901 reference tokens of a JSON Pointer, unescaped."""
    if type(pointer) is not str:
        raise DeltaError(f"pointer {pointer!r:.60} is not a string")
    if pointer == "":
        return []
    if pointer[0] != "/":
        raise DeltaError(f"pointer {pointer!r:.60} does not start with '/'")
    tokens = pointer[1:].split("/")
    if "~" in pointer:
        if _BAD_ESCAPE.search(pointer):
            raise DeltaError(f"pointer {pointer!r:.60} has a bad '~' escape")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in tokens]
    return tokens


class _Patcher:
    """One patch application: the working root and the containers it owns (copied already).

    `owned` maps id -> container and keeps each one alive, so an id is never reused by another
    object while the application runs.
    """

    def __init__(self, doc: Any, budget: Budget | None) -> None:
        self.root = doc
        self.budget = budget
        self.owned: dict[int, Any] = {}
        self.touched: dict[int, dict[str, Any]] = {}  # owned maps that gained keys

    def apply(self, op: Operation) -> None:
        if type(op) is not dict:
            raise DeltaError(f"operation {op!r:.60} is not a map")
        kind = op.get("op")
        if "path" not in op:
            raise DeltaError(f"{kind} operation without 'path'")
        path = parse_pointer(op["path"])
        if kind == "add":
            self.add(path, json_copy(self.value(op), self.budget))
        elif kind == "remove":
            self.remove(path)
        elif kind == "replace":
            self.replace(path, json_copy(self.value(op), self.budget))
        elif kind == "move":
            frm = parse_pointer(self.source(op))
            if path[: len(frm)] == frm and len(path) > len(frm):
                raise DeltaError(f"move from {op['from']!r} into its own child {op['path']!r}")
            if path != frm:
                self.add(path, self.remove(frm))
            else:
                self.get(frm)
        elif kind == "copy":
            self.add(path, json_copy(self.get(parse_pointer(self.source(op))), self.budget))
        elif kind == "test":
            if not json_equal(self.get(path), self.value(op)):
                raise DeltaError(f"test failed at {op['path']!r}")
        else:
            raise DeltaError(f"unknown operation {kind!r:.40}")

    @staticmethod
    def value(op: Operation) -> Any:
        if "value" not in op:
            raise DeltaError(f"{op.get('op')} operation without 'value'")
        return op["value"]

    @staticmethod
    def source(op: Operation) -> Any:
        if "from" not in op:
            raise DeltaError(f"{op.get('op')} operation without 'from'")
        return op["from"]

    def get(self, tokens: list[str]) -> Any:
        node = self.root
        for token in tokens:
            node = _child(node, token)
        return node

    def add(self, tokens: list[str], value: Any) -> None:
        if not tokens:
            self.root = value
            return
        parent = self.parent(tokens)
        last = tokens[-1]
        if type(parent) is dict:
            if last not in parent:
                self.touched[id(parent)] = parent
            parent[last] = value
        elif type(parent) is list:
            index = len(parent) if last == "-" else _index(last, len(parent) + 1)
            parent.insert(index, value)
        else:
            raise DeltaError(f"cannot add {last!r} to a {type(parent).__name__}")

    def replace(self, tokens: list[str], value: Any) -> None:
        if not tokens:
            self.root = value
            return
        parent, slot = self.existing(tokens)
        parent[slot] = value

    def remove(self, tokens: list[str]) -> Any:
        if not tokens:
            raise DeltaError("cannot remove the whole document")
        parent, slot = self.existing(tokens)
        return parent.pop(slot)

    def existing(self, tokens: list[str]) -> tuple[Any, str | int]:
        """The (owned) container of an existing target and its key or index there."""
        parent = self.parent(tokens)
        last = tokens[-1]
        if type(parent) is dict:
            if last not in parent:
                raise DeltaError(f"no member {last!r}")
            return parent, last
        if type(parent) is list:
            return parent, _index(last, len(parent))
        raise DeltaError(f"cannot look up {last!r} in a {type(parent).__name__}")

    def parent(self, tokens: list[str]) -> Any:
        """The container holding the last token's target, made owned along the way."""
        node = self.own(self.root)
        self.root = node
        for token in tokens[:-1]:
            child = _child(node, token)
            owned = self.own(child)
            if owned is not child:
                node[_index(token, len(node)) if type(node) is list else token] = owned
            node = owned
        return node

    def own(self, node: Any) -> Any:
        if type(node) is not dict and type(node) is not list:
            return node
        if id(node) in self.owned:
            return node
        copied = dict(node) if type(node) is dict else list(node)
        self.owned[id(copied)] = copied
        return copied

    def sort_touched(self) -> None:
        for node in self.touched.values():
            if list(node) != sorted(node):
                items = sorted(node.items())
                node.clear()
                node.update(items)


def _child(node: Any, token: str) -> Any:
    if type(node) is dict:
        if token not in node:
            raise DeltaError(f"no member {token!r}")
        return node[token]
    if type(node) is list:
        return node[_index(token, len(node))]
    raise DeltaError(f"cannot look up {token!r} in a {type(node).__name__}")


def _index(token: str, limit: int) -> int:
    """An array index below `limit` (RFC 6901: digits, no leading zero; '-' is never one here)."""
    if not _INDEX.fullmatch(token):
        raise DeltaError(f"bad array index {token!r:.40}")
    index = int(token)
    if index >= limit:
        raise DeltaError(f"array index {index} out of range")
    return index
