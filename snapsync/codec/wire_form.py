"""The compact wire form of a Delta: what a DELTA frame's payload holds, before compression.

This module holds the layout and the vocabulary both sides share; snapsync.codec.wire_pack
builds the payload, snapsync.codec.wire_unpack reads it back.

The receiver holds the base, so the payload refers to it instead of repeating it:
- base objects are named by their position in the sorted base key list (removed and changed
  objects as gaps between ascending positions, exemplars as absolute positions);
- an added object is, when smaller, encoded against an exemplar (snapsync.delta.exemplars)
  instead of whole: either structurally (equal subtrees become one SAME leaf) or as RFC 6902
  operations, whichever is smaller; the key is never sent, it is read from the rebuilt object;
- every value goes through snapsync.codec.leaves against the value the receiver holds at the
  same path (timestamps, uids, decimal strings, shared prefixes and suffixes), strings found
  elsewhere in that held object become an index, and uids of held objects (an Event's
  involvedObject, an endpoint's targetRef) a reference to their object;
- an Event named `<involvedObject.name>.<UnixNano hex>` (client-go's naming) travels without its
  name, only the nanoseconds: the receiver rebuilds it from involvedObject and firstTimestamp;
- the header is sent as its collection time and its other fields' difference from the base's.

Payload (msgpack array; layout documented in schemas/frame.md):

    [epoch, collected_at, header_patch, removed_gaps, changed, added]
    changed = [gap, ops, gap, ops, ...]        ops = [[opcode, path, value-or-from?], ...]
    added   = [slot, body, slot, body, ...]    slot = ref, or [ref, nanoseconds] for an Event
                                               whose name is rebuilt from its other fields;
                                               ref nil: body is the whole object; else body
                                               is the object against the exemplar (a map)
                                               or operations on it (a list)

Invariant: `unpack_delta(base, pack_delta(base, d).payload)` equals `d` exactly; the codec checks
that before shipping. Decoding validates every entry and raises only FrameError/DeltaError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from snapsync.codec.times import parse_time
from snapsync.errors import FrameCorrupt

OPCODES = ("add", "remove", "replace", "move", "copy", "test")
WITH_VALUE = frozenset({"add", "replace", "test"})
WITH_FROM = frozenset({"move", "copy"})


def resolve(doc: Any, path: Any) -> Any:
    """The value at JSON pointer `path` in `doc`, or None; a reference only, never an error."""
    if type(path) is not str or not path.startswith("/"):
        return None
    node = doc
    escaped = "~" in path  # once per path, not per token: most paths have no escape
    for token in path[1:].split("/"):
        if escaped and "~" in token:
            token = token.replace("~1", "/").replace("~0", "~")
        if type(node) is dict:
            node = node.get(token)
        elif type(node) is list and token.isdigit() and (token == "0" or token[0] != "0"):
            index = int(token)
            node = node[index] if index < len(node) else None
        else:
            return None
    return node


def event_name_parts(
    obj: dict[str, Any], parse: Callable[[str], tuple[int, str | None] | None] = parse_time
) -> tuple[str | None, int | None]:
    """An Event's involvedObject.name and firstTimestamp seconds: what its name is rebuilt from
    (`parse`: parse_time, or the payload's remembered one)."""
    involved = obj.get("involvedObject")
    name = involved.get("name") if type(involved) is dict else None
    first = obj.get("firstTimestamp")
    parsed = parse(first) if type(first) is str else None
    seconds = parsed[0] if parsed is not None and parsed[1] is None else None
    return (name if type(name) is str else None), seconds


def renamed(obj: dict[str, Any], name: Any) -> dict[str, Any]:
    """A shallow copy with another metadata.name (never touches `obj`, which may be shared)."""
    meta = obj.get("metadata")
    if type(meta) is not dict:
        raise FrameCorrupt("an Event named from its fields has no metadata")
    return {**obj, "metadata": {**meta, "name": name if type(name) is str else ""}}
