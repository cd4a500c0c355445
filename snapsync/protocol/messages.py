"""The message vocabulary both sides share, and its msgpack wire form.

Every message is a msgpack map `{"v": PROTOCOL_VERSION, "t": <type>, ...fields}` with short field
names (an idle ping is paid for in bytes, every minute, on every site). schemas/wire.schema.json
documents each one. Decoding checks every field's type and size and raises RemoteProtocolError
for anything else: whatever arrives, nothing but that error escapes. What decoding builds is
metered (snapsync.bounds) before it is built: a message never costs more than MESSAGE_ITEMS
items, nor more than one per 8 of its bytes beyond a small floor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

import msgpack
import zstandard

from snapsync.bounds import Budget, items_for, unpackb
from snapsync.errors import RemoteProtocolError
from snapsync.protocol.readers import (
    DIGEST,
    bucket_digests,
    bucket_set,
    bytes_field,
    digest_field,
    digest_item,
    int_field,
    kind_entries,
    list_field,
    number_field,
    opt_digest_field,
    str_field,
)
from snapsync.protocol.reconcile import MAX_BUCKETS, BucketSet
from snapsync.protocol.values import BudgetReport, Command, CommandResult, Version

__all__ = [
    "ANSWER_LIMIT",
    "DIGEST",
    "MAX_MESSAGE",
    "MAX_PONG",
    "MESSAGE_ITEMS",
    "MIN_SHORT",
    "PROTOCOL_VERSION",
    "UPLOAD_ID",
    "UPLOAD_STATUSES",
    "BucketQuery",
    "BudgetReport",
    "Chunk",
    "Command",
    "CommandResult",
    "Differences",
    "Message",
    "Ping",
    "Pong",
    "Refusal",
    "Summary",
    "UploadReply",
    "Version",
    "decode",
]

PROTOCOL_VERSION = 1
MIN_SHORT = 4  # shortest object digest a differences answer may carry
UPLOAD_ID = 8
MAX_MESSAGE = 64 * 2**20
# Items (snapsync.bounds) one message may build: a differences answer listing 500,000 objects
# (4 items each), ~150 MB of Python objects at most; every other message needs far fewer.
MESSAGE_ITEMS = 2**21
# A pong never exceeds this (the server leaves further commands for the next ping), so an agent
# on a data budget knows what a ping can cost before sending it.
MAX_PONG = 1024
# Pings and chunks report (`s`) what the agent's link carried for its exchanges since the last
# report the server answered, as the agent counted it on the wire; the server's usage figures
# add these up (an exchange's own cost is in the next report).
# The largest anti-entropy answer (`differences`) an agent budgets for unless its request states a
# larger one (`m`); the server declines (answers without a version) rather than send more.
ANSWER_LIMIT = 256 * 1024


class Message:
    """Base of every message: `TYPE` names it on the wire (and, for a request, its kind)."""

    TYPE: ClassVar[str]

    def fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            {"v": PROTOCOL_VERSION, "t": self.TYPE, **self.fields()}, use_bin_type=True
        )
        return packed


# -- agent -> server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ping(Message):
    """Heartbeat; carries command results and asks which versions the server still holds."""

    TYPE: ClassVar[str] = "ping"
    # acknowledged digests the agent can diff against, newest first: only the newest while the
    # server confirms it, all of them once it did not (so a restored server is found out)
    have: tuple[bytes, ...] = ()
    # digest of the agent's newest collected snapshot; on the wire only when it is not have[0]
    latest: bytes = b""
    cursor: int = 0  # highest command id the agent has received
    results: tuple[CommandResult, ...] = ()
    waiting: int = 0  # bytes of a delta held back by the data budget, 0 if none
    # wire bytes the agent counted since its last answered report (`s`); None: not reported
    spent: int | None = None
    budget: BudgetReport | None = None  # the agent's budget state (`b`); None: not reported

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"h": list(self.have), "c": self.cursor}
        if self.latest and self.latest not in self.have[:1]:
            out["l"] = self.latest
        if self.results:
            out["r"] = [r.wire() for r in self.results]
        if self.waiting:
            out["w"] = self.waiting
        if self.spent is not None:
            out["s"] = self.spent
        if self.budget is not None:
            out["b"] = self.budget.wire()
        return out

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Ping:
        have = tuple(list_field(doc, "h", digest_item, default=[]))
        return cls(
            have=have,
            latest=opt_digest_field(doc, "l") or (have[0] if have else b""),
            cursor=int_field(doc, "c", default=0),
            results=tuple(list_field(doc, "r", CommandResult.parse, default=[])),
            waiting=int_field(doc, "w", default=0),
            spent=int_field(doc, "s") if "s" in doc else None,
            budget=BudgetReport.parse(doc["b"]) if "b" in doc else None,
        )


@dataclass(frozen=True)
class Chunk(Message):
    """A piece of an upload; re-sending a piece the server has changes nothing."""

    TYPE: ClassVar[str] = "chunk"
    upload: bytes  # id: derived from the frame, so a retry names the same upload
    base: bytes  # digest the frame is against; b"" for a whole snapshot
    target: bytes
    total: int  # frame size
    offset: int
    data: bytes
    # highest command id the agent has received: lets an ack say whether commands wait
    cursor: int = 0
    spent: int | None = None  # as in Ping

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "u": self.upload,
            "b": self.base,
            "g": self.target,
            "n": self.total,
            "o": self.offset,
            "d": self.data,
        }
        if self.cursor:
            out["c"] = self.cursor
        if self.spent is not None:
            out["s"] = self.spent
        return out

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Chunk:
        upload = bytes_field(doc, "u")
        base = bytes_field(doc, "b")
        if len(upload) != UPLOAD_ID or len(base) not in (0, DIGEST):
            raise RemoteProtocolError("malformed chunk: bad upload id or base digest")
        chunk = cls(
            upload=upload,
            base=base,
            target=digest_field(doc, "g"),
            total=int_field(doc, "n"),
            offset=int_field(doc, "o"),
            data=bytes_field(doc, "d"),
            cursor=int_field(doc, "c", default=0),
            spent=int_field(doc, "s") if "s" in doc else None,
        )
        if chunk.total == 0 or chunk.offset + len(chunk.data) > chunk.total:
            raise RemoteProtocolError("malformed chunk: data beyond the declared total")
        return chunk


@dataclass(frozen=True)
class Summary(Message):
    """Anti-entropy, step 1: the agent's latest snapshot as one short digest per kind."""

    TYPE: ClassVar[str] = "summary"
    target: bytes  # digest of the snapshot summarized
    kinds: Mapping[str, tuple[int, bytes]]  # kind ref -> (objects, short digest)
    limit: int = ANSWER_LIMIT  # the largest answer the agent budgeted for

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "g": self.target,
            "k": [[ref, n, d] for ref, (n, d) in sorted(self.kinds.items())],
        }
        return _with_limit(out, self.limit)

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Summary:
        kinds = {ref: (n, d) for ref, n, d in kind_entries(doc, "kind summary")}
        return cls(target=digest_field(doc, "g"), kinds=kinds, limit=_limit(doc))


@dataclass(frozen=True)
class BucketQuery(Message):
    """Anti-entropy, step 3: the buckets whose digests differ, per kind, of the server's `base`."""

    TYPE: ClassVar[str] = "buckets"
    base: Version  # the version the server's bucket digests described
    kinds: Mapping[str, BucketSet]
    limit: int = ANSWER_LIMIT

    def fields(self) -> dict[str, Any]:
        kinds = [[ref, b.count, b.bitmap] for ref, b in sorted(self.kinds.items())]
        return _with_limit({"ver": self.base.wire(), "k": kinds}, self.limit)

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> BucketQuery:
        kinds = {
            ref: bucket_set(count, bitmap)
            for ref, count, bitmap in kind_entries(doc, "bucket choice", 1, MAX_BUCKETS)
        }
        return cls(base=Version.parse(doc.get("ver")), kinds=kinds, limit=_limit(doc))


# -- server -> agent ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Differences(Message):
    """Anti-entropy, steps 2 and 4: what the server holds of the kinds or buckets that differ.

    `base` is the version they describe (None: the server declines, send a full snapshot).
    `kinds` lists objects with short digests; `buckets` (answering a summary only) has a large
    kind's bucket digests instead. The object lists travel zstd-compressed: names repeat.
    """

    TYPE: ClassVar[str] = "differences"
    base: Version | None
    kinds: Mapping[str, list[tuple[str, str, bytes]]]
    buckets: Mapping[str, bytes] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        lists = {ref: [list(e) for e in entries] for ref, entries in sorted(self.kinds.items())}
        packed = msgpack.packb(lists, use_bin_type=True)
        out: dict[str, Any] = {"z": zstandard.ZstdCompressor(level=9).compress(packed)}
        if self.base is not None:
            out["ver"] = self.base.wire()
        if self.buckets:
            out["bk"] = [[ref, digests] for ref, digests in sorted(self.buckets.items())]
        return out

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Differences:
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(bytes_field(doc, "z"))
            packed = reader.read(MAX_MESSAGE + 1)
        except zstandard.ZstdError as exc:
            raise RemoteProtocolError(f"differences do not decompress: {exc}") from None
        if len(packed) > MAX_MESSAGE:
            raise RemoteProtocolError("differences exceed the message limit")
        budget = Budget(MESSAGE_ITEMS, "the differences", RemoteProtocolError)
        lists = unpackb(packed, budget, RemoteProtocolError, "the differences")
        if not isinstance(lists, dict):
            raise RemoteProtocolError("malformed differences")
        kinds: dict[str, list[tuple[str, str, bytes]]] = {}
        for ref, entries in lists.items():
            if not isinstance(entries, list):
                raise RemoteProtocolError("malformed differences")
            kinds[ref] = []
            for e in entries:
                if (
                    not isinstance(e, list)
                    or len(e) != 3
                    or not all(isinstance(part, str) for part in e[:2])
                    or not isinstance(e[2], bytes)
                    or not MIN_SHORT <= len(e[2]) <= DIGEST
                ):
                    raise RemoteProtocolError("malformed object digest")
                kinds[ref].append((e[0], e[1], e[2]))
        buckets = dict(list_field(doc, "bk", bucket_digests, default=[]))
        return cls(base=_opt_version(doc.get("ver")), kinds=kinds, buckets=buckets)


@dataclass(frozen=True)
class Pong(Message):
    TYPE: ClassVar[str] = "pong"
    # of the agent's `have` and `latest`, those the server holds, newest first
    holds: tuple[Version, ...] = ()
    # the server's newest version; on the wire only when it is not holds[0]
    current: Version | None = None
    commands: tuple[Command, ...] = ()
    retry_after: float = 0.0  # seconds the agent should stay quiet (server load)

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"h": [v.wire() for v in self.holds]}
        if self.current is not None and self.current not in self.holds[:1]:
            out["cur"] = self.current.wire()
        if self.commands:
            out["cmd"] = [c.wire() for c in self.commands]
        if self.retry_after:
            out["ra"] = self.retry_after
        return out

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Pong:
        holds = tuple(list_field(doc, "h", Version.parse, default=[]))
        current = doc.get("cur")
        return cls(
            holds=holds,
            current=holds[0] if current is None and holds else _opt_version(current),
            commands=tuple(list_field(doc, "cmd", Command.parse, default=[])),
            retry_after=number_field(doc, "ra", default=0.0),
        )


UPLOAD_STATUSES = ("partial", "ack", "unknown-base", "rejected")


@dataclass(frozen=True)
class UploadReply(Message):
    """The server's answer to a chunk.

    partial: send on from `offset`. ack: the frame is applied and stored as `version`.
    unknown-base: the server does not hold the base; `holds` lists what it does hold.
    rejected: the frame is unusable (`reason`); the agent must not resend it.

    An ack also says what a pong would, so the agent need not ping after it: whether commands
    wait after the chunk's cursor (`queued`; None from a server that does not say) and the
    server's newest version (`current`; on the wire only when it is not `version`).
    """

    TYPE: ClassVar[str] = "upload"
    status: str
    offset: int = 0
    version: Version | None = None
    holds: tuple[Version, ...] = ()
    reason: str = ""
    queued: bool | None = None
    current: Version | None = None

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"s": self.status}
        if self.status == "partial":
            out["o"] = self.offset
        if self.version is not None:
            out["ver"] = self.version.wire()
        if self.current is not None and self.current != self.version:
            out["cur"] = self.current.wire()
        if self.queued is not None:
            out["q"] = self.queued
        if self.status == "unknown-base":
            out["h"] = [v.wire() for v in self.holds]
        if self.reason:
            out["why"] = self.reason
        return out

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> UploadReply:
        status = doc.get("s")
        if status not in UPLOAD_STATUSES:
            raise RemoteProtocolError(f"unknown upload status {status!r}")
        version = _opt_version(doc.get("ver"))
        queued = doc.get("q")
        if queued is not None and not isinstance(queued, bool):
            raise RemoteProtocolError("field 'q' is not a boolean")
        reply = cls(
            status=status,
            offset=int_field(doc, "o", default=0),
            version=version,
            holds=tuple(list_field(doc, "h", Version.parse, default=[])),
            reason=str_field(doc, "why", default=""),
            queued=queued,
            current=_opt_version(doc.get("cur")) or version,
        )
        if status == "ack" and reply.version is None:
            raise RemoteProtocolError("ack without a version")
        return reply


@dataclass(frozen=True)
class Refusal(Message):
    """Any request the server will not serve now: bad auth, overload, bad request."""

    TYPE: ClassVar[str] = "refusal"
    reason: str
    retry_after: float = 0.0

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"why": self.reason}
        if self.retry_after:
            out["ra"] = self.retry_after
        return out

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> Refusal:
        return cls(
            reason=str_field(doc, "why", default=""),
            retry_after=number_field(doc, "ra", default=0.0),
        )


_PARSERS: dict[str, Callable[[dict[str, Any]], Message]] = {
    cls.TYPE: cls.parse
    for cls in (Ping, Chunk, Summary, BucketQuery, Pong, UploadReply, Differences, Refusal)
}


M = TypeVar("M", bound=Message)


@overload
def decode(data: bytes) -> Message: ...
@overload
def decode(data: bytes, expect: type[M]) -> M: ...
@overload
def decode(data: bytes, expect: tuple[type[Message], ...]) -> Message: ...


def decode(data: bytes, expect: type[Message] | tuple[type[Message], ...] | None = None) -> Message:
    """Parse one message; RemoteProtocolError for anything malformed or unexpected.

    `expect`: the message type the caller can use (then that is the type returned), or several.
    """
    if len(data) > MAX_MESSAGE:
        raise RemoteProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    budget = Budget(items_for(len(data), MESSAGE_ITEMS), "the message", RemoteProtocolError)
    doc = unpackb(data, budget, RemoteProtocolError, "the message")
    if not isinstance(doc, dict) or doc.get("v") != PROTOCOL_VERSION:
        raise RemoteProtocolError("not a snapsync message of a known protocol version")
    kind = doc.get("t")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise RemoteProtocolError(f"unknown message type {kind!r:.40}")
    message = parser(doc)
    expected = (expect,) if isinstance(expect, type) else expect
    if expected is not None and not isinstance(message, expected):
        names = "/".join(cls.TYPE for cls in expected)
        raise RemoteProtocolError(f"expected a {names} message, got {message.TYPE}")
    return message


# -- message-specific readers ----------------------------------------------------------------


def _opt_version(raw: Any) -> Version | None:
    return None if raw is None else Version.parse(raw)


def _with_limit(out: dict[str, Any], limit: int) -> dict[str, Any]:
    if limit != ANSWER_LIMIT:
        out["m"] = limit
    return out


def _limit(doc: dict[str, Any]) -> int:
    limit = int_field(doc, "m", default=ANSWER_LIMIT)
    if not 0 < limit <= MAX_MESSAGE:
        raise RemoteProtocolError(f"answer limit {limit} is outside 1..{MAX_MESSAGE}")
    return limit
