"""The agent side of the sync protocol, as a sans-IO state machine (the h11 way).

Nothing here opens a socket, reads a clock or sleeps. The embedding loop feeds it collected
snapshots, the current time, and the answers to the requests it asked for; it returns the next
request to send, the events to act on, and when it next wants to be woken.

Invariants:
- At most one request is in flight; at most one upload exists. A new snapshot replaces an upload
  the server has confirmed nothing of, so after an outage one delta goes from the last ack to now
  (coalescing), never a backlog.
- Deltas are made against versions the server acknowledged and, as far as the agent knows, still
  holds; an ack only counts for the upload it names, so late, repeated or stray acks can never
  move the base to a version the server does not hold.
- The data budget is checked before every request (request + the largest expected answer), so it
  is never exceeded; an upload that does not fit waits for the next period and says so in pings.
- Commands are executed at most once: the cursor is advanced (and persisted by the caller) before
  a command is handed out, and one the agent saw started but never finished is reported as
  interrupted, not run again.
- An ack that says what a pong would (commands waiting, the server's newest version) stands in
  for the next ping: commands waiting are fetched at once, and the next ping is due one ping
  interval after the ack, as after a pong. It does not when the ping still has bases to verify.
- Anti-entropy works on one pinned snapshot from summary to repair; a repair that fails, or a
  server that declines or answers out of turn, leads to a full snapshot, never to a loop.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.frame import unpack_frame
from snapsync.codec.pipeline import EncodeOptions, encode_delta, encode_repair, encode_snapshot
from snapsync.errors import LocalProtocolError, RemoteProtocolError
from snapsync.protocol.budget import Budget, BudgetConfig
from snapsync.protocol.commands import PROTOCOL_COMMANDS, validate_command
from snapsync.protocol.events import (
    Acked,
    AuthRejected,
    BackingOff,
    BaseUnknown,
    BudgetDeferred,
    CollectRequested,
    CommandReceived,
    Event,
    PeerMisbehaved,
    UploadRejected,
)
from snapsync.protocol.messages import (
    ANSWER_LIMIT,
    MAX_PONG,
    UPLOAD_ID,
    BucketQuery,
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
from snapsync.protocol.reconcile import (
    BucketSet,
    ObjectDigests,
    differing_buckets,
    kind_digests,
    repair_delta,
    strays,
)
from snapsync.protocol.schedule import Intervals, backoff_delay, jittered

# What one exchange costs on the wire beyond its two bodies, on a kept-alive TLS connection: HTTP
# heads, TLS record framing and TCP/IP headers; measured by bench/bench_wire.py. Where the
# transport counts the wire (`receive(..., wire=)`), the budget is charged what it counted and
# budgets each exchange for the largest overhead seen; before the first count, for this plus
# `connect_allowance` (a full TLS handshake with a certificate chain).
DEFAULT_OVERHEAD = 520
CONNECT_ALLOWANCE = 6 * 1024
UPLOAD_REPLY_ALLOWANCE = 512  # an upload reply (or refusal) is read up to this, and budgeted
# An anti-entropy answer may list every object (15-20 bytes each compressed, more for long names);
# the agent budgets for this much per object of its snapshot, and the server answers within it.
ANSWER_PER_OBJECT = 24
MIN_CHUNK = 1024
RETRYABLE = (408, 429, 500, 502, 503, 504)  # refusals that say "later", not "no"


@dataclass(frozen=True)
class AgentConfig:
    intervals: Intervals = field(default_factory=Intervals)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    chunk_size: int = 256 * 1024
    keep_versions: int = 3  # acknowledged versions kept as possible bases
    overhead: int = DEFAULT_OVERHEAD
    connect_allowance: int = CONNECT_ALLOWANCE
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    full_level: int = 9
    # Canonical bytes of a snapshot above which, with no version shared with the server, the
    # agent compares digests (anti-entropy) before resending everything.
    reconcile_min: int = 64 * 1024


@dataclass(frozen=True)
class Request:
    """What to send: POST `message.encode()` to `message.PATH`.

    `allowance`: the most it may cost on the wire (its body, the overhead budgeted per exchange
    and the largest answer), charged to the budget when it is handed out and settled to what
    it cost when it ends, so a crash in between leaves the budget charged, never short.
    """

    message: Message
    body: bytes
    allowance: int = 0

    @property
    def path(self) -> str:
        return self.message.PATH

    @property
    def answer_limit(self) -> int:
        """The largest answer body the agent reads (and budgets for); more is a bad server."""
        if isinstance(self.message, Summary | BucketQuery):
            return self.message.limit
        if isinstance(self.message, Chunk):
            return UPLOAD_REPLY_ALLOWANCE
        return MAX_PONG


@dataclass(frozen=True)
class Reconciliation:
    """Anti-entropy under way, for one pinned snapshot: what the server has said so far."""

    target: Snapshot
    base: Version | None = None  # the server's version compared with; None until it answers
    listed: Mapping[str, ObjectDigests] = field(default_factory=dict)  # kinds known whole
    wanted: Mapping[str, BucketSet] = field(default_factory=dict)  # buckets that differ

    @property
    def limit(self) -> int:
        """The largest answer the agent budgets for (and the server keeps to)."""
        return max(ANSWER_LIMIT, ANSWER_PER_OBJECT * len(self.target))


@dataclass
class Upload:
    """The one frame being uploaded, and how much of it the server confirmed."""

    id: bytes
    base: Version | None
    target: Snapshot
    frame: bytes
    kind: str  # delta, patch-from, full
    candidates: dict[str, int]
    confirmed: int = 0


class AgentProtocol:
    """`wire_counted`: the embedding transport counts what crosses the link and passes it to
    `receive`/`fail`; until its first count, every exchange is budgeted for a new connection."""

    def __init__(
        self, config: AgentConfig, *, seed: int | None = None, wire_counted: bool = False
    ) -> None:
        self.config = config
        # budgeted per exchange beyond its bodies; grows to the largest overhead counted
        self.overhead = config.overhead + (config.connect_allowance if wire_counted else 0)
        self._counted = False
        self.rng = random.Random(seed)
        self.bases: dict[bytes, tuple[Version, Snapshot]] = {}
        self.latest: Snapshot | None = None
        self.upload: Upload | None = None
        self.need_full = False
        self.cursor = 0
        self.running: set[int] = set()
        self.results: list[CommandResult] = []
        self.budget = Budget(config.budget)
        self.next_ping = 0.0
        self.next_snapshot = 0.0
        self.backoff_until = 0.0
        self.failures = 0
        self.waiting = 0  # bytes of an upload held back by the budget
        self.unreported = 0  # wire bytes not yet reported to the server (Ping/Chunk `spent`)
        self.server_current: Version | None = None
        self.chunk_size = config.chunk_size
        self._chunk_ceiling = config.chunk_size  # lowered by 413 answers, never by failures
        self._last_ping = 0.0
        self._verify_bases = True  # list every base in the next ping, not only the newest
        # The server's newest version is not our latest although it holds it (an upload we gave
        # up on landed late, after a newer one): upload the latest again, as an empty delta.
        self._reassert = False
        # The first exchange after a start is a ping: it checks credentials for a few bytes, and
        # the server may already hold the latest snapshot (no upload at all).
        self._greeted = False
        # anti-entropy failed or was declined: the next upload is a full snapshot
        self._repair_failed = False
        self.reconciliation: Reconciliation | None = None
        self._in_flight: Request | None = None
        self._reserved_in = 0.0  # the budget period the request in flight was charged in
        self._events: list[Event] = []

    # -- what the agent knows -------------------------------------------------------------------

    @property
    def acked(self) -> Version | None:
        """The newest version the server acknowledged that the agent can diff against."""
        if not self.bases:
            return None
        return max(version for version, _ in self.bases.values())

    @property
    def in_sync(self) -> bool:
        """The server holds the agent's newest snapshot."""
        acked = self.acked
        return self.latest is not None and acked is not None and acked.digest == self.latest.digest

    def snapshot_due(self, now: float) -> bool:
        return now >= self.next_snapshot

    def wakeup_at(self, now: float) -> float:
        """When the loop should next call `next_request` (or collect)."""
        if self._in_flight is not None:
            return now
        candidates = [self.next_snapshot, max(self.next_ping, self.backoff_until)]
        if self._wants_upload() and self._greeted and not self.waiting:
            candidates.append(max(now, self.backoff_until))
        return min(candidates)

    def poll_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- inputs ---------------------------------------------------------------------------------

    def snapshot_collected(self, snapshot: Snapshot, now: float) -> None:
        """A fresh collection; replaces an upload the server has confirmed nothing of."""
        self.latest = snapshot
        self.next_snapshot = now + jittered(
            self.config.intervals.snapshot, self.config.intervals.jitter, self.rng
        )
        if self._replaceable(snapshot):
            self.upload = None

    def _replaceable(self, snapshot: Snapshot) -> bool:
        """Coalescing: an upload nothing of which reached the server gives way to a newer one."""
        upload, in_flight = self.upload, self._in_flight
        return (
            upload is not None
            and upload.confirmed == 0
            and upload.target.digest != snapshot.digest
            and (in_flight is None or not isinstance(in_flight.message, Chunk))
        )

    def collect_now(self, now: float) -> None:
        self.next_snapshot = now

    def next_request(self, now: float) -> Request | None:
        """The request to send now, if any; the caller sends it and reports back."""
        if self._in_flight is not None or now < self.backoff_until:
            return None
        request = self._upload_request(now) if self._greeted else None
        if request is None and (now >= self.next_ping or self._results_due(now)):
            request = self._ping_request(now)
        if request is not None:
            self._in_flight = request
            self.budget.spend(request.allowance, now)
            self._reserved_in = self.budget.period_started
        return request

    def receive(
        self, request: Request, status: int, body: bytes, now: float, wire: int | None = None
    ) -> list[Event]:
        """The server answered `request` with an HTTP status and body; `wire`: what the exchange
        cost on the link as the transport counted it (None: estimated from the bodies)."""
        self._finish(request, len(body), now, wire)
        if status == 200 and isinstance(request.message, Ping | Chunk):
            self.unreported = max(0, self.unreported - (request.message.spent or 0))
        if wire is not None:
            self._learn_overhead(wire - len(request.body) - len(body))
        if status == 200:
            try:
                if isinstance(request.message, Ping):
                    self._on_pong(request.message, decode(body, (Pong,)), now)  # type: ignore[arg-type]
                elif isinstance(request.message, Summary | BucketQuery):
                    if len(body) > request.message.limit:
                        raise RemoteProtocolError("an answer larger than the limit asked for")
                    differences = decode(body, (Differences,))
                    self._on_differences(request.message, differences)  # type: ignore[arg-type]
                else:
                    self._on_upload_reply(decode(body, (UploadReply,)), now)  # type: ignore[arg-type]
            except RemoteProtocolError as exc:
                if isinstance(request.message, Summary | BucketQuery):
                    self._give_up_reconciling()
                self._events.append(PeerMisbehaved(str(exc)))
                self._back_off(now, f"bad answer: {exc}")
        else:
            self._on_refusal(request, status, body, now)
        return self.poll_events()

    def fail(
        self, request: Request, now: float, reason: str, wire: int | None = None
    ) -> list[Event]:
        """The request did not complete (connection refused or cut, timeout, an answer over its
        cap); `wire`: what crossed the link before it failed, as the transport counted it.

        A failed chunk halves the chunk size (down to 1 KiB): on a slow link a chunk that cannot
        cross within the transport's timeout would otherwise fail forever.
        """
        self._finish(request, 0, now, wire)
        if isinstance(request.message, Chunk):
            self.chunk_size = max(MIN_CHUNK, min(self.chunk_size, len(request.message.data) // 2))
        self._back_off(now, reason)
        return self.poll_events()

    def command_finished(self, result: CommandResult) -> None:
        """The embedding code ran a command handed out in a CommandReceived event."""
        if result.id not in self.running:
            raise LocalProtocolError(f"command {result.id} is not running")
        self.running.discard(result.id)
        self.results.append(result)

    # -- requests -------------------------------------------------------------------------------

    def _wants_upload(self) -> bool:
        return (
            self.upload is not None
            or self._reassert
            or (self.latest is not None and not self.in_sync)
        )

    def _upload_request(self, now: float) -> Request | None:
        if not self._wants_upload():
            self.waiting = 0
            return None
        if self.upload is None:
            if self._should_reconcile():
                return self._reconcile_request(now)
            self.reconciliation = None
            self.upload = self._prepare_upload()
        upload = self.upload
        data = upload.frame[upload.confirmed : upload.confirmed + self.chunk_size]
        message = Chunk(
            upload=upload.id,
            base=upload.base.digest if upload.base is not None else b"",
            target=upload.target.digest,
            total=len(upload.frame),
            offset=upload.confirmed,
            data=data,
            cursor=self.cursor,
            spent=self.unreported,
        )
        body = message.encode()
        remaining_frame = len(upload.frame) - upload.confirmed
        need = remaining_frame + (len(body) - len(data)) + self.overhead
        need += UPLOAD_REPLY_ALLOWANCE
        continuing = upload.confirmed > 0  # paced: only an upload's start waits for the pace
        if not self.budget.allows(need, now, essential=False, continuing=continuing):
            if self.waiting != len(upload.frame):
                self._events.append(
                    BudgetDeferred(
                        needed=need,
                        remaining=self.budget.remaining(now) or 0,
                        until=self.budget.ready_at(need, now),
                    )
                )
            self.waiting = len(upload.frame)
            return None
        self.waiting = 0
        return Request(message, body, len(body) + self.overhead + UPLOAD_REPLY_ALLOWANCE)

    def _should_reconcile(self) -> bool:
        """No shared version, but the server holds one: compare digests before a full resend."""
        latest = self.latest
        return (
            latest is not None
            and self.acked is None
            and not self.need_full
            and not self._repair_failed
            and self.server_current is not None
            and latest.encoded_size >= self.config.reconcile_min
        )

    def _reconcile_request(self, now: float) -> Request | None:
        """A summary of the latest snapshot, or once answered, the buckets that differ."""
        reconciliation = self.reconciliation
        message: Summary | BucketQuery
        if reconciliation is None or reconciliation.base is None:
            assert self.latest is not None
            reconciliation = self.reconciliation = Reconciliation(self.latest)
            message = Summary(
                target=self.latest.digest,
                kinds=kind_digests(self.latest),
                limit=reconciliation.limit,
            )
        else:
            message = BucketQuery(
                reconciliation.base, reconciliation.wanted, limit=reconciliation.limit
            )
        body = message.encode()
        need = len(body) + self.overhead + reconciliation.limit
        if not self.budget.ever_allows(need, essential=False):
            self._give_up_reconciling()  # a budget this small never fits it: a full snapshot
            return self._upload_request(now)
        if not self.budget.allows(need, now, essential=False):
            self.waiting = reconciliation.limit  # the upload it leads to cannot fit either
            return None
        return Request(message, body, need)

    def _on_differences(self, asked: Summary | BucketQuery, differences: Differences) -> None:
        self._succeeded()
        reconciliation = self.reconciliation
        if reconciliation is None:
            return
        if differences.base is None:  # nothing to compare with, or too much: a full snapshot
            self._give_up_reconciling()
        elif isinstance(asked, Summary):
            self._on_kind_differences(reconciliation, differences)
        else:
            self._on_bucket_objects(reconciliation, differences)

    def _on_kind_differences(self, pinned: Reconciliation, differences: Differences) -> None:
        """Kinds listed whole are settled; of the others, the buckets that differ are asked for."""
        self.server_current = differences.base
        wanted = differing_buckets(pinned.target, differences.buckets)
        reconciliation = Reconciliation(pinned.target, differences.base, differences.kinds, wanted)
        if wanted:
            self.reconciliation = reconciliation
        else:
            self._start_repair(reconciliation, reconciliation.listed)

    def _on_bucket_objects(self, reconciliation: Reconciliation, differences: Differences) -> None:
        if differences.base != reconciliation.base or differences.buckets:
            raise RemoteProtocolError("bucket objects for another version, or bucket digests")
        if strays(differences.kinds, reconciliation.wanted):
            raise RemoteProtocolError("bucket objects outside the buckets asked for")
        self._start_repair(reconciliation, {**reconciliation.listed, **differences.kinds})

    def _start_repair(
        self, reconciliation: Reconciliation, objects: Mapping[str, ObjectDigests]
    ) -> None:
        """Ship exactly the objects that differ, as a repair against the server's version."""
        base, target = reconciliation.base, reconciliation.target
        assert base is not None
        self.reconciliation = None
        delta = repair_delta(base.digest, objects, target, reconciliation.wanted)
        frame = encode_repair(delta, self.config.encode)
        upload_id = hashlib.blake2b(frame, digest_size=UPLOAD_ID).digest()
        self.upload = Upload(upload_id, base, target, frame, "repair", {"repair": len(frame)})

    def _give_up_reconciling(self) -> None:
        self.reconciliation = None
        self._repair_failed = True

    def _prepare_upload(self) -> Upload:
        latest = self.latest
        if latest is None:
            raise LocalProtocolError("no snapshot collected yet")
        acked = None if self.need_full else self.acked
        self._reassert = False
        if acked is not None:
            base_snapshot = self.bases[acked.digest][1]
            encoded = encode_delta(base_snapshot, latest, self.config.encode)
            frame, kind, candidates = encoded.frame, encoded.chosen, dict(encoded.candidates)
            base = acked if unpack_frame(frame).needs_base else None
        else:
            frame = encode_snapshot(latest, self.config.full_level)
            kind, candidates, base = "full", {"full": len(frame)}, None
        upload_id = hashlib.blake2b(frame, digest_size=UPLOAD_ID).digest()
        return Upload(upload_id, base, latest, frame, kind, candidates)

    def _ping_request(self, now: float) -> Request | None:
        versions = sorted((v for v, _ in self.bases.values()), reverse=True)
        if not self._verify_bases:
            versions = versions[:1]
        message = Ping(
            have=tuple(v.digest for v in versions),
            latest=self.latest.digest if self.latest is not None else b"",
            cursor=self.cursor,
            results=tuple(self.results),
            waiting=self.waiting,
            spent=self.unreported,
        )
        body = message.encode()
        need = len(body) + self.overhead + MAX_PONG
        if not self.budget.allows(need, now, essential=True):
            self.next_ping = self.budget.next_period(now)
            return None
        return Request(message, body, need)

    def _results_due(self, now: float) -> bool:
        return (
            bool(self.results or self.running)
            and now >= self._last_ping + self.config.intervals.command
        )

    # -- answers --------------------------------------------------------------------------------

    def _finish(self, request: Request, received: int, now: float, wire: int | None) -> None:
        if request is not self._in_flight:
            raise LocalProtocolError("that request is not the one in flight")
        self._in_flight = None
        estimate = len(request.body) + received + self.config.overhead
        cost = estimate if wire is None else wire
        self.unreported += cost
        self.budget.roll(now)
        if self.budget.period_started == self._reserved_in:
            cost -= request.allowance  # settle what next_request charged
        self.budget.spend(cost, now)
        if isinstance(request.message, Ping):
            self._last_ping = now

    def _learn_overhead(self, counted: int) -> None:
        """Budget each exchange for the most one has cost beyond its bodies (a reconnect's
        handshake included), once the transport has counted real ones."""
        if not self._counted:
            self._counted = True
            self.overhead = self.config.overhead
        self.overhead = max(self.overhead, counted)

    def _succeeded(self) -> None:
        self.failures = 0

    def _back_off(self, now: float, reason: str, at_least: float = 0.0) -> None:
        self.failures += 1
        delay = max(at_least, backoff_delay(self.failures, self.config.intervals, self.rng))
        self.backoff_until = now + delay
        self._events.append(BackingOff(until=self.backoff_until, reason=reason))

    def _on_pong(self, ping: Ping, pong: Pong, now: float) -> None:
        self._succeeded()
        held = {v.digest for v in pong.holds}
        lost = [digest for digest in ping.have if digest not in held]
        for digest in lost:
            self.bases.pop(digest, None)
        self._verify_bases = bool(lost)
        self.server_current = pong.current
        self._greeted = True
        latest = self.latest
        for version in pong.holds:  # newest first; a re-asserted digest is held twice
            if latest is not None and version.digest == latest.digest:
                self._remember(version, latest)
                break
        if self.in_sync and pong.current is not None and latest is not None:
            self._reassert = pong.current.digest != latest.digest
        sent = {r.id for r in ping.results}
        self.results = [r for r in self.results if r.id not in sent]
        for command in pong.commands:
            self._on_command(command, now)
        interval = self.config.intervals.ping
        self.next_ping = now + jittered(interval, self.config.intervals.jitter, self.rng)
        if pong.retry_after:
            self.backoff_until = now + self._quiet_for(pong.retry_after)

    def _ack_as_pong(self, reply: UploadReply, now: float) -> None:
        """What the ping after this ack would learn, the ack says: that ping is not needed.

        Commands waiting are fetched by a ping right away; otherwise the next ping is due a ping
        interval from now, as after a pong. A server that does not say (`queued` None), or bases
        the next ping must verify, leave the ping schedule as it was.
        """
        current = reply.current or reply.version
        self.server_current = current
        latest = self.latest
        if self.in_sync and current is not None and latest is not None:
            self._reassert = current.digest != latest.digest
        if reply.queued is None or self._verify_bases:
            return
        if reply.queued:
            self.next_ping = now
        else:
            interval = self.config.intervals.ping
            self.next_ping = now + jittered(interval, self.config.intervals.jitter, self.rng)

    def _on_command(self, command: Command, now: float) -> None:
        if command.id <= self.cursor:
            return  # delivered again: at most once
        self.cursor = command.id
        problem = validate_command(command)
        if problem:
            self.results.append(CommandResult(command.id, False, problem))
            return
        if command.name in PROTOCOL_COMMANDS:
            if command.name == "full-snapshot":
                self._want_full()
            self.next_snapshot = now
            self._events.append(CollectRequested(command.id))
            self.results.append(CommandResult(command.id, True, "scheduled"))
            return
        self.running.add(command.id)
        self._events.append(CommandReceived(command))

    def _on_upload_reply(self, reply: UploadReply, now: float) -> None:
        upload = self.upload
        if upload is None:
            raise RemoteProtocolError("upload reply with no upload in progress")
        self._succeeded()
        if reply.status == "partial":
            if not 0 <= reply.offset <= len(upload.frame):
                raise RemoteProtocolError(
                    f"server confirmed offset {reply.offset} of {len(upload.frame)}"
                )
            upload.confirmed = reply.offset
        elif reply.status == "ack":
            assert reply.version is not None
            if reply.version.digest != upload.target.digest:
                raise RemoteProtocolError("ack names another version than the upload's target")
            self._remember(reply.version, upload.target)
            self.upload = None
            self.chunk_size = self._chunk_ceiling  # the next upload starts at full size again
            self.need_full = False
            self._repair_failed = False
            self._events.append(
                Acked(reply.version, upload.kind, len(upload.frame), upload.candidates)
            )
            self._ack_as_pong(reply, now)
        elif reply.status == "unknown-base":
            held = {v.digest for v in reply.holds}
            for digest in list(self.bases):
                if digest not in held:
                    del self.bases[digest]
            self.upload = None
            self._verify_bases = True
            self.server_current = reply.holds[0] if reply.holds else None
            self._repair_failed = upload.kind == "repair"
            self._events.append(BaseUnknown(upload.base))
        else:
            self.upload = None
            self._repair_failed = upload.kind == "repair"
            self._want_full()
            self._events.append(UploadRejected(reply.reason))
            self._back_off(now, f"upload rejected: {reply.reason}")

    def _want_full(self) -> None:
        """The next upload is a whole snapshot: no base is used (or trusted) until it is acked."""
        self.need_full = True
        self.bases.clear()
        if self.upload is not None and self.upload.confirmed == 0:
            self.upload = None

    def _remember(self, version: Version, snapshot: Snapshot) -> None:
        self.bases[version.digest] = (version, snapshot)
        newest = sorted(self.bases.values(), key=lambda item: item[0], reverse=True)
        self.bases = {v.digest: (v, s) for v, s in newest[: self.config.keep_versions]}

    def _on_refusal(self, request: Request, status: int, body: bytes, now: float) -> None:
        try:
            refusal = decode(body, (Refusal,))
            reason = refusal.reason  # type: ignore[attr-defined]
            retry_after = refusal.retry_after  # type: ignore[attr-defined]
        except RemoteProtocolError:
            reason, retry_after = f"HTTP {status}", 0.0
        if status in (401, 403):
            self._events.append(AuthRejected(reason))
        elif status == 413 and isinstance(request.message, Chunk) and self.chunk_size > 1024:
            self.chunk_size //= 2
            self._chunk_ceiling = self.chunk_size
            return
        elif isinstance(request.message, Summary | BucketQuery) and status not in RETRYABLE:
            self._give_up_reconciling()  # refused, not just busy: a full snapshot instead
        self._back_off(now, reason, at_least=self._quiet_for(retry_after))

    def _quiet_for(self, retry_after: float) -> float:
        """A server's `ra`, capped at the agent's own longest backoff: a server (or whatever
        answers in its name) cannot silence an agent for longer than its own worst failure would."""
        return min(retry_after, self.config.intervals.backoff_cap)

    # -- persistence ----------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """Everything a restart needs besides the snapshots themselves (msgpack-able)."""
        upload = self.upload
        return {
            "bases": [v.wire() for v, _ in self.bases.values()],
            "latest": self.latest.digest if self.latest is not None else None,
            "upload": None
            if upload is None
            else {
                "id": upload.id,
                "base": upload.base.wire() if upload.base else None,
                "target": upload.target.digest,
                "frame": upload.frame,
                "kind": upload.kind,
                "confirmed": upload.confirmed,
            },
            "need_full": self.need_full,
            "cursor": self.cursor,
            "running": sorted(self.running),
            "results": [r.wire() for r in self.results],
            "budget": [self.budget.period_started, self.budget.used],
            "unreported": self.unreported,
        }

    def snapshots_to_keep(self) -> Iterable[Snapshot]:
        """The snapshots `export_state` refers to, which the caller persists beside it."""
        seen: dict[bytes, Snapshot] = {s.digest: s for _, s in self.bases.values()}
        if self.latest is not None:
            seen[self.latest.digest] = self.latest
        if self.upload is not None:
            seen[self.upload.target.digest] = self.upload.target
        return seen.values()

    def restore_state(self, state: dict[str, Any], snapshots: dict[bytes, Snapshot]) -> None:
        """Resume from `export_state` output; commands seen running are reported interrupted."""
        for raw in state.get("bases", []):
            version = Version.parse(raw)
            if version.digest in snapshots:
                self._remember(version, snapshots[version.digest])
        latest = state.get("latest")
        self.latest = snapshots.get(latest) if latest else None
        upload = state.get("upload")
        if upload and upload["target"] in snapshots:
            self.upload = Upload(
                id=upload["id"],
                base=Version.parse(upload["base"]) if upload["base"] else None,
                target=snapshots[upload["target"]],
                frame=upload["frame"],
                kind=upload["kind"],
                candidates={upload["kind"]: len(upload["frame"])},
                confirmed=upload["confirmed"],
            )
        self.need_full = bool(state.get("need_full", False))
        self.cursor = int(state.get("cursor", 0))
        self.results = [CommandResult.parse(r) for r in state.get("results", [])]
        for command_id in state.get("running", []):
            self.results.append(
                CommandResult(
                    command_id, False, "interrupted: the agent restarted while running it"
                )
            )
        period_started, used = state.get("budget", [0.0, 0])
        self.budget.period_started, self.budget.used = float(period_started), int(used)
        self.unreported = int(state.get("unreported", 0))
