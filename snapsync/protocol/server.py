"""The server side of the sync protocol: requests in, answers out, state in a store.

Like the agent side it opens no socket and reads no clock: the web layer hands it the edge id
(already authenticated), the request's kind (the message type its path stands for), its body
and the time; it answers with an `Outcome`, which the web layer turns into a status. Storage is
behind `VersionStore`, so the same logic runs over memory (tests, simulations) and a database.

Invariants:
- A frame is applied only when complete, only to the base it names, and stored only if the
  result has exactly the target digest: a bad frame is refused and the stored state stays as it
  was.
- Every answer is idempotent: a chunk received twice, or a whole upload of a version the server
  already holds, is answered from the stored state and changes nothing. The exception is a held
  version that is not the newest, uploaded as a re-assertion (base = target: the agent saw in a
  pong that a late, stale upload became the newest) or built on the newest (the cluster went
  back to it, a reverted edit): that version is committed anew as the newest.
- An ack says what a pong would (commands waiting, the newest version) and records the agent as
  seen, so the agent skips the ping that would follow it without the server knowing less.
- Anti-entropy answers are computed from a stored version alone (no state between requests) and
  never exceed the limit the agent budgeted for: the server declines instead.
- Uploads in progress are bounded per environment (`PartialLimits`): a chunk is appended, never
  rewritten with what came before; other uploads of the environment are evicted, oldest first,
  beyond a count and a byte total; and uploads untouched for a while are expired by a sweep
  that runs with the requests (storage grows only through requests, so nothing grows while
  none come; at most one sweep per interval, one indexed delete).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Protocol

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.decode import apply_frame
from snapsync.codec.frame import unpack_frame
from snapsync.errors import BaseMismatch, DeltaError, FrameError, RemoteProtocolError
from snapsync.protocol.messages import (
    MAX_PONG,
    BucketQuery,
    BudgetReport,
    Chunk,
    Command,
    CommandResult,
    Differences,
    Message,
    Ping,
    Pong,
    Refusal,
    Summary,
    UploadReply,
    Version,
    decode,
)
from snapsync.protocol.outcome import Outcome
from snapsync.protocol.reconcile import differing_kinds, objects_in, unexpected_buckets

# One report counted at most (4 GiB, more than any link carries between two answered requests):
# what an agent reports is its own usage, but it must not overflow the server's sums.
MAX_SPENT = 2**32


@dataclass(frozen=True)
class PartialUpload:
    """An upload in progress: what it will be, and how many of its bytes the store holds."""

    base: bytes
    target: bytes
    total: int
    received: int


@dataclass(frozen=True)
class PartialLimits:
    """How much of unfinished uploads one environment may leave in storage.

    An agent has one upload in flight (two when it restarted mid-upload), and a real frame is a
    few MiB: beyond `max_uploads` uploads or `max_bytes` in all, the oldest others go. The
    upload being written is never evicted, so one frame up to ServerConfig.max_frame still
    completes.
    """

    max_uploads: int = 4
    max_bytes: int = 32 * 2**20
    ttl: float = 86400.0  # seconds untouched before an upload counts as abandoned
    sweep_every: float = 60.0  # seconds between sweeps for abandoned uploads

    def evicted(self, current: bytes, held: Sequence[tuple[bytes, int, float]]) -> list[bytes]:
        """Of an environment's uploads (id, bytes held, last written), those to evict."""
        kept, total, out = 0, 0, []
        for upload, size, _ in sorted(held, key=lambda u: (u[0] != current, -u[2])):
            if upload != current and (kept >= self.max_uploads or total + size > self.max_bytes):
                out.append(upload)
                continue
            kept, total = kept + 1, total + size
        return out


class VersionStore(Protocol):
    """What the protocol needs from storage, per environment (edge id)."""

    def held(self, env: str) -> Sequence[Version]:
        """Versions whose snapshot the store can produce, newest first."""

    def snapshot(self, env: str, digest: bytes) -> Snapshot | None: ...

    def commit(
        self, env: str, snapshot: Snapshot, frame: bytes, base: Version | None, now: float
    ) -> Version:
        """Store `snapshot` as the newest version, atomically; returns it with its sequence.

        Of older versions keep the newest few and always `base`: it is the agent's newest
        acknowledged version, which it diffs against until it hears of this commit.
        """

    def partial(self, env: str, upload: bytes) -> PartialUpload | None: ...

    def append_partial(
        self,
        env: str,
        upload: bytes,
        partial: PartialUpload,
        data: bytes,
        now: float,
        limits: PartialLimits,
    ) -> int:
        """Append `data` at `partial.received` (0: the upload starts over), unless the upload
        no longer matches `partial` (another request got there first); then evict the
        environment's other uploads as `limits` say. Returns the bytes now held."""

    def partial_data(self, env: str, upload: bytes) -> bytes:
        """The bytes held of an upload, in order."""

    def drop_partial(self, env: str, upload: bytes) -> None: ...

    def expire_partials(self, before: float) -> int:
        """Drop every upload last written before `before`, in every environment; how many."""

    def commands_after(self, env: str, cursor: int, limit: int) -> Sequence[Command]: ...

    def record_results(self, env: str, results: Sequence[CommandResult], now: float) -> None:
        """Keep the first result per command id; later duplicates change nothing."""

    def seen(
        self, env: str, now: float, latest: bytes, waiting: int, budget: BudgetReport | None = None
    ) -> None:
        """The agent was heard from: its newest digest, bytes held back by its budget, and the
        budget's state when the agent reported it (None: keep the last report)."""


@dataclass(frozen=True)
class ServerConfig:
    max_frame: int = 256 * 2**20
    max_commands: int = 16  # per ping answer: bounds the answer the agent budgets for
    keep_versions: int = 3  # versions whose snapshots stay available as bases
    partials: PartialLimits = PartialLimits()


@dataclass(frozen=True)
class Reply:
    outcome: Outcome
    body: bytes
    applied: Version | None = None  # set when this request stored a new version
    refused: str = ""  # why a frame was refused, for logs and metrics
    spent: int | None = None  # wire bytes the agent reported (Ping/Chunk `spent`), if any

    def usage(self, body: bytes) -> int:
        """What the request adds to its environment's usage: the wire bytes its agent reported,
        or the request's body from an agent that reports none."""
        return len(body) if self.spent is None else min(self.spent, MAX_SPENT)


def refusal(outcome: Outcome, reason: str, retry_after: float = 0.0) -> Reply:
    return Reply(outcome, Refusal(reason, retry_after).encode())


class ServerProtocol:
    def __init__(self, store: VersionStore, config: ServerConfig | None = None) -> None:
        self.store = store
        self.config = config or ServerConfig()
        self._next_sweep = 0.0  # when abandoned uploads are next looked for

    # Every kind of request an agent sends, and the message it must carry.
    KINDS: ClassVar[dict[str, type[Message]]] = {
        cls.TYPE: cls for cls in (Ping, Chunk, Summary, BucketQuery)
    }

    def handle(self, env: str, kind: str, body: bytes, now: float) -> Reply:
        """Answer one authenticated request of `kind` (a message type) from environment `env`."""
        expected = self.KINDS.get(kind)
        if expected is None:
            return refusal(Outcome.NOT_FOUND, f"no such request kind {kind!r:.40}")
        if now >= self._next_sweep:
            self._next_sweep = now + self.config.partials.sweep_every
            self.store.expire_partials(now - self.config.partials.ttl)
        try:
            message = decode(body, expected)
        except RemoteProtocolError as exc:
            return refusal(Outcome.MALFORMED, str(exc))
        reply = self._answer(env, message, now)
        spent = message.spent if isinstance(message, Ping | Chunk) else None
        return reply if spent is None else replace(reply, spent=spent)

    def _answer(self, env: str, message: Message, now: float) -> Reply:
        if isinstance(message, Ping):
            return self._ping(env, message, now)
        if isinstance(message, Summary):
            return self._reconcile(env, message)
        if isinstance(message, BucketQuery):
            return self._buckets(env, message)
        assert isinstance(message, Chunk)
        if message.total > self.config.max_frame:
            return refusal(
                Outcome.TOO_LARGE, f"frame of {message.total} bytes exceeds {self.config.max_frame}"
            )
        return self._chunk(env, message, now)

    def _ping(self, env: str, ping: Ping, now: float) -> Reply:
        held = list(self.store.held(env))
        have = {*ping.have, ping.latest}
        self.store.record_results(env, ping.results, now)
        self.store.seen(env, now, ping.latest, ping.waiting, ping.budget)
        pong = Pong(
            holds=tuple(v for v in held if v.digest in have), current=held[0] if held else None
        )
        body = pong.encode()
        commands: list[Command] = []
        for command in self.store.commands_after(env, ping.cursor, self.config.max_commands):
            longer = replace(pong, commands=(*commands, command)).encode()
            if len(longer) > MAX_PONG:
                break  # the rest goes with the next ping
            commands.append(command)
            body = longer
        return Reply(Outcome.OK, body)

    def _reconcile(self, env: str, summary: Summary) -> Reply:
        """For the kinds whose digest differs from the agent's: objects, or bucket digests."""
        held = list(self.store.held(env))
        snapshot = self.store.snapshot(env, held[0].digest) if held else None
        if snapshot is None:
            return _declined()
        found = differing_kinds(snapshot, summary.kinds)
        return _within(Differences(held[0], found.listed, found.buckets), summary.limit)

    def _buckets(self, env: str, query: BucketQuery) -> Reply:
        """The objects of the buckets the agent found different, from the version it names.

        A kind the server did not bucket, or a bucket count it did not announce, is refused
        (malformed) before any key is hashed: an honest agent only echoes the server's own counts.
        """
        held = any(v.digest == query.base.digest for v in self.store.held(env))
        snapshot = self.store.snapshot(env, query.base.digest) if held else None
        if snapshot is None:
            return _declined()
        unexpected = unexpected_buckets(snapshot, query.kinds)
        if unexpected:
            return refusal(
                Outcome.MALFORMED,
                f"bucket query does not match version {query.base.seq}: {unexpected}",
            )
        return _within(Differences(query.base, objects_in(snapshot, query.kinds)), query.limit)

    def _chunk(self, env: str, chunk: Chunk, now: float) -> Reply:
        held = list(self.store.held(env))
        for version in held:
            if version.digest == chunk.target:
                self.store.drop_partial(env, chunk.upload)
                # An older version again: a re-assertion (base == target), or a change built on
                # our newest that went back to it (a reverted edit). Either way it becomes the
                # newest; a mere ack would leave the agent re-uploading it at every wake-up.
                if version != held[0] and chunk.base in (chunk.target, held[0].digest):
                    applies_to = held[0] if chunk.base == held[0].digest else version
                    return self._reassert(env, chunk, version, applies_to, now)
                return self._ack(env, chunk, version, held[0], now)
        base = next((v for v in held if v.digest == chunk.base), None) if chunk.base else None
        if chunk.base and base is None:
            self.store.drop_partial(env, chunk.upload)
            return Reply(Outcome.OK, UploadReply("unknown-base", holds=tuple(held)).encode())
        held_partial = self.store.partial(env, chunk.upload)
        stored = held_partial
        if stored is not None and (stored.base, stored.target, stored.total) != (
            chunk.base,
            chunk.target,
            chunk.total,
        ):
            stored = None  # an id reused for another frame: start over
        received = stored.received if stored is not None else 0
        if chunk.offset != received or (not chunk.data and received < chunk.total):
            return Reply(Outcome.OK, UploadReply("partial", offset=received).encode())
        if received + len(chunk.data) < chunk.total:
            partial = PartialUpload(chunk.base, chunk.target, chunk.total, received)
            offset = self.store.append_partial(
                env, chunk.upload, partial, chunk.data, now, self.config.partials
            )
            return Reply(Outcome.OK, UploadReply("partial", offset=offset).encode())
        frame = self.store.partial_data(env, chunk.upload) if stored is not None else b""
        if held_partial is not None:
            self.store.drop_partial(env, chunk.upload)
        if len(frame) != received:  # evicted or expired meanwhile: the agent starts over
            return Reply(Outcome.OK, UploadReply("partial", offset=0).encode())
        frame += chunk.data
        return self._complete(env, chunk, base, frame, now)

    def _reassert(
        self, env: str, chunk: Chunk, version: Version, base: Version, now: float
    ) -> Reply:
        """Make a held version the newest again (the agent's latest, overtaken by a stale upload
        or returned to); `base` is the version the chunk's frame applies to."""
        snapshot = self.store.snapshot(env, version.digest)
        if snapshot is None:
            return self._ack(env, chunk, version, self.store.held(env)[0], now)
        frame = chunk.data if chunk.offset == 0 and len(chunk.data) == chunk.total else b""
        applied = self.store.commit(env, snapshot, frame, base, now)
        return self._ack(env, chunk, applied, applied, now, applied=applied)

    def _ack(
        self,
        env: str,
        chunk: Chunk,
        version: Version,
        current: Version,
        now: float,
        applied: Version | None = None,
    ) -> Reply:
        """An ack that also answers what the ping after it would have asked."""
        queued = bool(self.store.commands_after(env, chunk.cursor, 1))
        # the agent sends chunks only when its budget lets them through: nothing waits
        self.store.seen(env, now, chunk.target, 0)
        reply = UploadReply("ack", version=version, current=current, queued=queued)
        return Reply(Outcome.OK, reply.encode(), applied=applied)

    def _complete(
        self, env: str, chunk: Chunk, base: Version | None, frame: bytes, now: float
    ) -> Reply:
        try:
            header = unpack_frame(frame)
            if header.target_digest != chunk.target:
                raise DeltaError("the frame's target is not the upload's target")
            if header.needs_base != bool(chunk.base) or (
                header.needs_base and header.base_digest != chunk.base
            ):
                raise DeltaError("the frame's base is not the upload's base")
            base_snapshot = self.store.snapshot(env, base.digest) if base is not None else None
            if base is not None and base_snapshot is None:
                raise BaseMismatch("the base's snapshot is no longer available")
            snapshot = apply_frame(base_snapshot, frame)
        except BaseMismatch:
            held = tuple(self.store.held(env))
            return Reply(Outcome.OK, UploadReply("unknown-base", holds=held).encode())
        except (FrameError, DeltaError) as exc:
            reply = UploadReply("rejected", reason=str(exc))
            return Reply(Outcome.OK, reply.encode(), refused=type(exc).__name__)
        version = self.store.commit(env, snapshot, frame, base, now)
        return self._ack(env, chunk, version, version, now, applied=version)


def _declined() -> Reply:
    """No anti-entropy: the server holds nothing to compare with, or the answer would not fit."""
    return Reply(Outcome.OK, Differences(None, {}).encode())


def _within(differences: Differences, limit: int) -> Reply:
    body = differences.encode()
    return Reply(Outcome.OK, body) if len(body) <= limit else _declined()
