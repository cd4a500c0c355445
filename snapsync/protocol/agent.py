"""The agent side of the sync protocol, as a sans-IO state machine (the h11 way).

Its phases and the transitions between them are a table (snapsync.protocol.table); every input
is checked against it. The upload session (upload), anti-entropy (antientropy), the bases
(bases), the command ledger (commands) and what exchanges cost (metering) keep their own state
and invariants in their own modules.

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
  is never exceeded; an upload the pace or the period holds back waits, and the agent wakes when
  the budget says it may go (snapsync.protocol.deferral); pings say it waits.
- An ack that says what a pong would (commands waiting, the server's newest version) stands in
  for the next ping: commands waiting are fetched at once, and the next ping is due one ping
  interval after the ack, as after a pong. It does not when the ping still has bases to verify.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from snapsync.canonical.snapshot import Snapshot
from snapsync.errors import LocalProtocolError, RemoteProtocolError
from snapsync.protocol import agent_state
from snapsync.protocol.agent_state import AgentState
from snapsync.protocol.antientropy import AntiEntropy
from snapsync.protocol.bases import Bases
from snapsync.protocol.budget import Budget
from snapsync.protocol.commands import PROTOCOL_COMMANDS, Ledger
from snapsync.protocol.deferral import BudgetGate
from snapsync.protocol.events import (
    Acked,
    AuthRejected,
    BackingOff,
    BaseUnknown,
    CollectRequested,
    CommandReceived,
    Event,
    PeerMisbehaved,
    UploadRejected,
)
from snapsync.protocol.messages import (
    MAX_PONG,
    BucketQuery,
    Chunk,
    Command,
    CommandResult,
    Differences,
    Ping,
    Pong,
    Refusal,
    Summary,
    UploadReply,
    Version,
    decode,
)
from snapsync.protocol.metering import Meter
from snapsync.protocol.outcome import Outcome
from snapsync.protocol.request import AgentConfig, Request
from snapsync.protocol.schedule import Backoff, jittered
from snapsync.protocol.table import Input, Phase, allowed
from snapsync.protocol.upload import UPLOAD_REPLY_ALLOWANCE, ChunkSize, Upload, prepare

__all__ = ["AgentConfig", "AgentProtocol", "Request"]


class AgentProtocol:
    """`wire_counted`: the embedding transport counts what crosses the link and passes it to
    `receive`/`fail`; until its first count, every exchange is budgeted for a new connection."""

    def __init__(
        self, config: AgentConfig, *, seed: int | None = None, wire_counted: bool = False
    ) -> None:
        self.config = config
        self.budget = Budget(config.budget)
        self.meter = Meter.for_agent(self.budget, config, wire_counted)
        self.rng = random.Random(seed)
        self.bases = Bases(config.keep_versions)
        self.latest: Snapshot | None = None
        self.upload: Upload | None = None
        self.need_full = False
        self.commands = Ledger()
        self.next_ping = 0.0
        self.next_snapshot = 0.0
        self.backoff = Backoff(config.intervals, self.rng)
        self.gate = BudgetGate(self.budget)  # what the budget holds back, until when, and why
        self.server_current: Version | None = None
        self.chunks = ChunkSize(config.chunk_size, config.chunk_size)
        self._last_ping = 0.0
        self._reassert = False  # upload the latest again, as an empty delta (_server_has)
        self.antientropy = AntiEntropy(config.reconcile_min, config.encode)
        self.phase = Phase.GREETING
        self._sent_from = Phase.GREETING  # the phase the request in flight was sent in
        self._in_flight: Request | None = None
        self._events: list[Event] = []

    # -- what the agent knows -------------------------------------------------------------------

    @property
    def acked(self) -> Version | None:
        """The newest version the server acknowledged that the agent can diff against."""
        return self.bases.newest

    @property
    def in_sync(self) -> bool:
        """The server holds the agent's newest snapshot."""
        acked = self.acked
        return self.latest is not None and acked is not None and acked.digest == self.latest.digest

    @property
    def waiting(self) -> int:
        """Bytes of an upload the budget holds back (pings report them)."""
        return self.gate.waiting

    @property
    def backoff_until(self) -> float:
        return self.backoff.until

    @property
    def greeted(self) -> bool:
        """A pong came since the start. The first exchange is a ping: it checks credentials for
        a few bytes, and the server may already hold the latest snapshot (no upload at all)."""
        phase = self._sent_from if self.phase is Phase.AWAITING_ANSWER else self.phase
        return phase is not Phase.GREETING

    def _resolve(self, now: float) -> Phase:
        """The phase the agent's state amounts to now."""
        if self._in_flight is not None:
            return Phase.AWAITING_ANSWER
        if not self.greeted:
            return Phase.GREETING
        if now < self.backoff.until:
            return Phase.BACKING_OFF
        if self.gate.waiting:
            return Phase.WAITING_FOR_BUDGET
        if self.upload is not None:
            return Phase.UPLOADING
        if self.antientropy.current is not None:
            if self.antientropy.current.base is None:
                return Phase.RECONCILING_KINDS
            return Phase.RECONCILING_BUCKETS
        return Phase.IDLE

    def _settle(self, event: Input, after: frozenset[Phase], now: float) -> None:
        """Enter the phase the input led to: one the table allows, or it is our bug."""
        phase = self._resolve(now)
        if phase not in after:
            moved = f"from {self.phase.value!r} to {phase.value!r}"
            raise LocalProtocolError(f"{event.value!r} led {moved}: not in the table")
        self.phase = phase

    def snapshot_due(self, now: float) -> bool:
        return now >= self.next_snapshot

    def wakeup_at(self, now: float) -> float:
        """When the loop should next call `next_request` (or collect)."""
        if self._in_flight is not None:
            return now
        candidates = [self.next_snapshot, max(self.next_ping, self.backoff.until)]
        if self._wants_upload() and self.greeted:
            ready = self.gate.ready_at if self.gate.waiting else now  # the pace, or now
            candidates.append(max(ready, self.backoff.until))
        return min(candidates)

    def poll_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- inputs ---------------------------------------------------------------------------------

    def snapshot_collected(self, snapshot: Snapshot, now: float) -> None:
        """A fresh collection; replaces an upload the server has confirmed nothing of."""
        after = allowed(self.phase, Input.SNAPSHOT)
        self.latest = snapshot
        self.next_snapshot = now + jittered(
            self.config.intervals.snapshot, self.config.intervals.jitter, self.rng
        )
        if self._replaceable(snapshot):
            self.upload = None
        self._settle(Input.SNAPSHOT, after, now)

    def collection_failed(self, now: float) -> None:
        """A collection failed (the embedding code logs why): the next try is one snapshot
        interval from now, without jitter."""
        after = allowed(self.phase, Input.COLLECTION_FAILED)
        self.next_snapshot = now + self.config.intervals.snapshot
        self._settle(Input.COLLECTION_FAILED, after, now)

    def _replaceable(self, snapshot: Snapshot) -> bool:
        """Coalescing: an upload nothing of which reached the server gives way to a newer one."""
        sending = self._in_flight is not None and isinstance(self._in_flight.message, Chunk)
        return self.upload is not None and not sending and self.upload.untouched_by(snapshot)

    def collect_now(self, now: float) -> None:
        self.next_snapshot = now

    def next_request(self, now: float) -> Request | None:
        """The request to send now, if any; the caller sends it and reports back."""
        after = allowed(self.phase, Input.DUE)
        request = None
        if self._in_flight is None and now >= self.backoff.until:
            request = self._upload_request(now) if self.greeted else None
            if request is None and (now >= self.next_ping or self._commands_due(now)):
                request = self._ping_request(now)
        if request is not None:
            self._sent_from = self.phase
            self._in_flight = request
            self.meter.charge(request, now)
        self._settle(Input.DUE, after, now)
        return request

    def receive(
        self, request: Request, outcome: Outcome, body: bytes, now: float, wire: int | None = None
    ) -> list[Event]:
        """The server answered `request` with `outcome` and a body; `wire`: what the exchange
        cost on the link as the transport counted it (None: estimated from the bodies)."""
        after = allowed(self.phase, Input.ANSWER)
        self._finish(request, len(body), now, wire)
        if outcome is Outcome.OK and isinstance(request.message, Ping | Chunk):
            self.meter.reported(request.message.spent)
        if wire is not None:
            self.meter.counted(wire - len(request.body) - len(body))
        if outcome is Outcome.OK:
            try:
                if isinstance(request.message, Ping):
                    self._on_pong(request.message, decode(body, Pong), now)
                elif isinstance(request.message, Summary | BucketQuery):
                    if len(body) > request.message.limit:
                        raise RemoteProtocolError("an answer larger than the limit asked for")
                    self._on_differences(request.message, decode(body, Differences))
                else:
                    self._on_upload_reply(decode(body, UploadReply), now)
            except RemoteProtocolError as exc:
                if isinstance(request.message, Summary | BucketQuery):
                    self.antientropy.give_up()
                self._events.append(PeerMisbehaved(str(exc)))
                self._back_off(now, f"bad answer: {exc}")
        else:
            self._on_refusal(request, outcome, body, now)
        self._settle(Input.ANSWER, after, now)
        return self.poll_events()

    def fail(
        self, request: Request, now: float, reason: str, wire: int | None = None
    ) -> list[Event]:
        """The request did not complete (connection refused or cut, timeout, an answer over its
        cap); `wire`: what crossed the link before it failed, as the transport counted it."""
        after = allowed(self.phase, Input.TRANSPORT_FAILED)
        self._finish(request, 0, now, wire)
        self.meter.dropped()
        if isinstance(request.message, Chunk):
            self.chunks.failed(len(request.message.data))
        self._back_off(now, reason)
        self._settle(Input.TRANSPORT_FAILED, after, now)
        return self.poll_events()

    def command_finished(self, result: CommandResult) -> None:
        """The embedding code ran a command handed out in a CommandReceived event."""
        self.commands.finished(result)

    # -- requests -------------------------------------------------------------------------------

    def _wants_upload(self) -> bool:
        return (
            self.upload is not None
            or self._reassert
            or (self.latest is not None and not self.in_sync)
        )

    def _upload_request(self, now: float) -> Request | None:
        if not self._wants_upload():
            self.gate.clear()
            return None
        if self.upload is None:
            if self._should_reconcile():
                return self._reconcile_request(now)
            self.antientropy.current = None
            self.upload = self._prepare_upload()
        upload = self.upload
        message = upload.chunk(self.chunks.size, self.commands.cursor, self.meter.unreported)
        body = message.encode()
        bodies = upload.remaining + (len(body) - len(message.data)) + UPLOAD_REPLY_ALLOWANCE
        cost, continuing, size = self.meter.cost(bodies), upload.confirmed > 0, len(upload.frame)
        if not self.gate.admit(cost, now, size=size, continuing=continuing, events=self._events):
            return None
        return Request(message, body, len(body) + self.meter.overhead + UPLOAD_REPLY_ALLOWANCE)

    def _should_reconcile(self) -> bool:
        """No shared version, but the server holds one: compare digests before a full resend."""
        latest = self.latest
        return (
            latest is not None
            and self.acked is None
            and not self.need_full
            and self.antientropy.wanted(latest, self.server_current)
        )

    def _reconcile_request(self, now: float) -> Request | None:
        """A summary of the latest snapshot, or once answered, the buckets that differ."""
        assert self.latest is not None
        message, limit = self.antientropy.question(self.latest)
        body = message.encode()
        need = len(body) + self.meter.overhead + limit
        if not self.budget.ever_allows(need, essential=False):
            self.antientropy.give_up()  # a budget this small never fits it: a full snapshot
            return self._upload_request(now)
        if not self.gate.hold(need, now, limit):  # the upload it leads to cannot fit either
            return None
        return Request(message, body, need)

    def _on_differences(self, asked: Summary | BucketQuery, differences: Differences) -> None:
        self.backoff.succeeded()
        if self.antientropy.current is None:
            return
        if isinstance(asked, Summary) and differences.base is not None:
            self.server_current = differences.base
        repair = self.antientropy.answered(asked, differences)
        if repair is not None:
            self.upload = repair

    def _prepare_upload(self) -> Upload:
        latest = self.latest
        if latest is None:
            raise LocalProtocolError("no snapshot collected yet")
        acked = None if self.need_full else self.acked
        self._reassert = False
        base = (acked, self.bases[acked.digest][1]) if acked is not None else None
        config = self.config
        return prepare(latest, base, config.encode, config.full_level, config.encoder)

    def _ping_request(self, now: float) -> Request | None:
        message = Ping(
            have=tuple(v.digest for v in self.bases.to_verify()),
            latest=self.latest.digest if self.latest is not None else b"",
            cursor=self.commands.cursor,
            results=tuple(self.commands.results),
            waiting=self.waiting,
            spent=self.meter.unreported,
            budget=self.budget.report(self.waiting, now),
        )
        body = message.encode()
        need = len(body) + self.meter.overhead + MAX_PONG
        if not self.budget.allows(need, now, essential=True):
            self.next_ping = self.budget.next_period(now)
            return None
        return Request(message, body, need)

    def _commands_due(self, now: float) -> bool:
        return self.commands.busy and now >= self._last_ping + self.config.intervals.command

    # -- answers --------------------------------------------------------------------------------

    def _finish(self, request: Request, received: int, now: float, wire: int | None) -> None:
        if request is not self._in_flight:
            raise LocalProtocolError("that request is not the one in flight")
        self._in_flight = None
        self.meter.settle(request, received, now, wire)
        if isinstance(request.message, Ping):
            self._last_ping = now

    def _back_off(self, now: float, reason: str, retry_after: float = 0.0) -> None:
        until = self.backoff.failed(now, retry_after)
        self._events.append(BackingOff(until=until, reason=reason))

    def _on_pong(self, ping: Ping, pong: Pong, now: float) -> None:
        self.backoff.succeeded()
        self.bases.listed(ping.have, {v.digest for v in pong.holds})
        self._sent_from = Phase.IDLE  # a pong ends the greeting
        latest = self.latest
        for version in pong.holds:  # newest first; a re-asserted digest is held twice
            if latest is not None and version.digest == latest.digest:
                self.bases.remember(version, latest)
                break
        self._server_has(pong.current)
        self.commands.delivered(ping.results)
        for command in pong.commands:
            self._on_command(command, now)
        self._ping_in_an_interval(now)
        if pong.retry_after:
            self.backoff.quiet(now, pong.retry_after)

    def _ack_as_pong(self, reply: UploadReply, now: float) -> None:
        """What the ping after this ack would learn, the ack says (see the invariants): commands
        waiting are fetched by a ping right away, else the next ping is an interval away."""
        self._server_has(reply.current or reply.version)
        if reply.queued is None or self.bases.verify:
            return
        if reply.queued:
            self.next_ping = now
        else:
            self._ping_in_an_interval(now)

    def _ping_in_an_interval(self, now: float) -> None:
        interval = self.config.intervals.ping
        self.next_ping = now + jittered(interval, self.config.intervals.jitter, self.rng)

    def _server_has(self, current: Version | None) -> None:
        """The server's newest version. When it holds our latest, but its newest is another (an
        upload we gave up on landed late, after a newer one), the latest is uploaded again."""
        self.server_current = current
        latest = self.latest
        if self.in_sync and current is not None and latest is not None:
            self._reassert = current.digest != latest.digest

    def _on_command(self, command: Command, now: float) -> None:
        if not self.commands.admit(command):
            return
        if command.name in PROTOCOL_COMMANDS:
            if command.name == "full-snapshot":
                self._want_full()
            self.next_snapshot = now
            self._events.append(CollectRequested(command.id))
            self.commands.results.append(CommandResult(command.id, True, "scheduled"))
            return
        self.commands.running.add(command.id)
        self._events.append(CommandReceived(command))

    def _on_upload_reply(self, reply: UploadReply, now: float) -> None:
        upload = self.upload
        if upload is None:
            raise RemoteProtocolError("upload reply with no upload in progress")
        self.backoff.succeeded()
        if reply.status == "partial":
            upload.confirm(reply.offset)
        elif reply.status == "ack":
            assert reply.version is not None
            if reply.version.digest != upload.target.digest:
                raise RemoteProtocolError("ack names another version than the upload's target")
            self.bases.remember(reply.version, upload.target)
            self.upload = None
            self.chunks.restart()  # the next upload starts at full size again
            self.need_full = False
            self.antientropy.failed = False
            self._events.append(
                Acked(reply.version, upload.kind, len(upload.frame), upload.candidates)
            )
            self._ack_as_pong(reply, now)
        elif reply.status == "unknown-base":
            self.bases.only({v.digest for v in reply.holds})
            self.upload = None
            self.server_current = reply.holds[0] if reply.holds else None
            self.antientropy.failed = upload.kind == "repair"
            self._events.append(BaseUnknown(upload.base))
        else:
            self.upload = None
            self.antientropy.failed = upload.kind == "repair"
            self._want_full()
            self._events.append(UploadRejected(reply.reason))
            self._back_off(now, f"upload rejected: {reply.reason}")

    def _want_full(self) -> None:
        """The next upload is a whole snapshot: no base is used (or trusted) until it is acked."""
        self.need_full = True
        self.bases.clear()
        if self.upload is not None and self.upload.confirmed == 0:
            self.upload = None

    def _on_refusal(self, request: Request, outcome: Outcome, body: bytes, now: float) -> None:
        try:
            refusal = decode(body, Refusal)
            reason, retry_after = refusal.reason, refusal.retry_after
        except RemoteProtocolError:
            reason, retry_after = f"refused ({outcome.value})", 0.0
        if outcome is Outcome.AUTH:
            self._events.append(AuthRejected(reason))
        elif (
            outcome is Outcome.TOO_LARGE
            and isinstance(request.message, Chunk)
            and self.chunks.too_large()
        ):
            return
        elif isinstance(request.message, Summary | BucketQuery) and not outcome.retryable:
            self.antientropy.give_up()  # refused, not just busy: a full snapshot instead
        self._back_off(now, reason, retry_after)

    # -- persistence (snapsync.protocol.agent_state) -------------------------------------------

    def export_state(self) -> AgentState:
        """Everything a restart needs besides the snapshots themselves."""
        return agent_state.export_state(self)

    def snapshots_to_keep(self) -> Iterable[Snapshot]:
        """The snapshots `export_state` refers to, which the caller persists beside it."""
        return agent_state.snapshots_to_keep(self)

    def restore_state(self, state: AgentState, snapshots: dict[bytes, Snapshot]) -> None:
        """Resume from `export_state` output; commands seen running are reported interrupted."""
        agent_state.restore_state(self, state, snapshots)
