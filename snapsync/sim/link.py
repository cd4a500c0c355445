"""A deterministic simulated link between the real Agent and a ServerProtocol.

The same agent and server code as in production, driven without sockets or sleeps: the Agent
(snapsync.agent.loop: its exchange loop, event handling and persistence) talks through a simulated
transport (`SimTransport`, as httpx's MockTransport stands in for the network) and keeps its
state in a MemoryStateStore, in the document form a state directory holds. Time is a
number (`now`, read through `clock()`, moved by `advance()` or by transfers on a capped link), and
every random choice comes from one seeded generator, so a run replays exactly from its seed (the
FoundationDB habit). Each exchange can lose the request, lose the answer, deliver the request twice
(at once, or later as a stale copy), deliver it late (after the agent gave up on it, possibly after
later requests), cut an upload chunk short (the server keeps the first part, the agent sees a
dropped connection), or take simulated time on a bandwidth-capped link and time out after partial
delivery. Outages of hours or days refuse every connection. Either side can crash and restart
from what it persisted: the agent from its state store as of its last save (the Agent saves
before and after every exchange), the server from its store, losing its replay memory.
Used by the property tests, the benchmarks and the demo.

Invariants of the model:
- Bytes recorded in `wire_bytes` are what crossed the link, counted when sent, never less than
  what the agent itself counts except where the link delivered less (timeouts, refusals).
- Every request is signed and passes the server's real request gate (snapsync.server.gate:
  declared size, signature, timestamp window, the server process's replay memory) before the
  server protocol sees it, so a late request is refused exactly as the web layer refuses it.
  A chunk cut short is cut after the gate (the web layer reads bodies whole: the cut models
  the protocol's own defence against a short chunk, not a body the gate would have read).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from snapsync.agent.loop import Agent, StepReport
from snapsync.agent.state import MemoryStateStore
from snapsync.agent.transport import PATHS, Answer, outcome_of
from snapsync.canonical.profile import Profile, load_profile
from snapsync.canonical.snapshot import Snapshot
from snapsync.errors import InputError, RemoteProtocolError, TransportError
from snapsync.protocol import (
    AgentConfig,
    AgentProtocol,
    MemoryStore,
    Reply,
    ServerProtocol,
)
from snapsync.protocol.auth import NonceMemory, SignedRequest, signature
from snapsync.protocol.events import Event
from snapsync.protocol.messages import (
    Chunk,
    Command,
    CommandResult,
    Message,
    Pong,
    Refusal,
    UploadReply,
    decode,
)
from snapsync.protocol.outcome import Outcome
from snapsync.protocol.server import refusal
from snapsync.server.gate import Refused, RequestGate

ENV = "edge-1"
SECRET = b"the simulated agent secret"
# What crossing the link costs beyond the bodies, measured by bench/bench_wire.py (TLS 1.3,
# RSA-2048, TCP/IP headers counted; bench/results/wire.md): AgentConfig.overhead per exchange on
# a kept-alive connection, RECONNECT more when the connection has to be opened again (TCP
# set-up and a resumed TLS handshake), which is after a failure or after KEEP_ALIVE idle seconds
# (`snapsync serve --keep-alive`; a carrier NAT may forget a connection sooner).
RECONNECT = 1_540
KEEP_ALIVE = 150.0


@dataclass
class LinkFaults:
    """Probabilities per exchange, and the shape of the link (bandwidth, timeout)."""

    loss: float = 0.0  # request lost before the server
    answer_loss: float = 0.0  # server acted, answer lost
    duplicate: float = 0.0  # request delivered twice
    truncate: float = 0.0  # chunk cut short mid-transfer
    delay: float = 0.0  # request held in the network: the agent times out, the server gets it later
    late_duplicate: float = 0.0  # a copy of the request reaches the server again, later
    max_delay: float = 240.0  # late copies land within this many seconds (inside WINDOW)
    agent_crash: float = 0.0  # the agent process dies mid-exchange (after sending, before saving)
    bandwidth: float = 0.0  # bytes per simulated second each way; 0 = unlimited
    timeout: float = 30.0  # per-request timeout (seconds); also how long a held request waits

    @property
    def healthy(self) -> bool:
        """No fault is on (a bandwidth cap is the link's nature, not a fault)."""
        return not (
            self.loss
            or self.answer_loss
            or self.duplicate
            or self.truncate
            or self.delay
            or self.late_duplicate
            or self.agent_crash
        )


@dataclass(frozen=True)
class Delivery:
    """A request still in the network, due at the server at `at`."""

    at: float
    kind: str
    body: bytes
    sent_at: float
    headers: dict[str, str]  # as signed when sent


@dataclass
class Sim:
    config: AgentConfig
    seed: int = 0
    store: MemoryStore = field(default_factory=MemoryStore)
    now: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    faults: LinkFaults = field(default_factory=LinkFaults)
    wire_bytes: list[tuple[float, int]] = field(default_factory=list)  # (time, bytes) per exchange
    events: list[Event] = field(default_factory=list)
    produced: set[bytes] = field(default_factory=set)  # digests the agent collected
    down_until: float = 0.0  # an outage refuses every connection until then
    in_network: list[Delivery] = field(default_factory=list)  # late copies, due later
    trace: list[str] = field(default_factory=list)  # one readable line per exchange
    counters: dict[str, int] = field(default_factory=dict)  # faults that actually fired
    uploaded: list[tuple[float, int]] = field(default_factory=list)  # (time, frame bytes) per chunk
    # The Agent's command runner: runs commands the moment they arrive and reports them; None
    # leaves CommandReceived events to the caller (who reports with `agent.command_finished`).
    command_runner: Callable[[Command], CommandResult] | None = None
    reconnect: int = RECONNECT
    keep_alive: float = KEEP_ALIVE

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.state = MemoryStateStore()
        self.transport = SimTransport(self)
        self.edge = self._new_agent(self.seed)
        self.server = ServerProtocol(self.store)
        self._alive_until = -1.0  # the agent's connection is open until then
        self.gate = _gate()  # the server process's: its replay memory is lost on restart
        self.applied: list[bytes] = []  # digests the server committed, in order
        self._nonce = 0

    # -- time -----------------------------------------------------------------------------------

    def clock(self) -> float:
        """The simulated clock, for code that takes a `clock` callable (Agent, HttpTransport)."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Let simulated time pass; requests held in the network land when due."""
        self.now += seconds
        self.deliver_due()

    def outage(self, seconds: float) -> None:
        """The link is down (every connection refused) for `seconds` from now."""
        self.down_until = max(self.down_until, self.now + seconds)
        self._note(f"outage until +{seconds:.0f}s")

    @property
    def link_up(self) -> bool:
        return self.now >= self.down_until

    # -- the agent's side ------------------------------------------------------------------------

    @property
    def agent(self) -> AgentProtocol:
        """The protocol inside the Agent (what it knows, for assertions and direct driving)."""
        return self.edge.protocol

    def _new_agent(self, seed: int) -> Agent:
        """An Agent process over the simulation's state store: it resumes from what is saved."""
        return Agent(
            _Fed(),
            self.transport,
            self.state,
            self.config,
            profile=_profile(),
            environment_id=ENV,
            commands=self.command_runner,
            clock=self.clock,
            seed=seed,
        )

    def collect(self, snapshot: Snapshot) -> None:
        """A collection: the snapshots come built (the traces), so frames stay comparable."""
        self.produced.add(snapshot.digest)
        self.agent.snapshot_collected(snapshot, self.now)

    def run_exchanges(self, limit: int = 50) -> int:
        """The Agent sends whatever it wants to send now; returns how many exchanges ran."""
        self.deliver_due()
        report = StepReport()
        while True:
            try:
                self.edge.exchange(report, limit)
            except AgentCrashed:
                self._restore_agent()
                continue
            break
        self.events += report.events
        return report.exchanges

    def _spent(self, body: bytes, overhead: int, answer: int = 0) -> int:
        """Record what an exchange cost on the link, now; the agent is charged the same."""
        spent = len(body) + answer + overhead
        self.wire_bytes.append((self.now, spent))
        return spent

    def exchange(self, kind: str, body: bytes) -> Answer:
        """One request over the link, as the Agent's transport posts it: an answer, or a
        TransportError (with what crossed the link), or the agent process dies (AgentCrashed)."""
        faults, overhead = self.faults, self.config.overhead
        if self.now > self._alive_until:
            overhead += self.reconnect  # a new connection: TCP set-up, resumed TLS handshake
        self._alive_until = -1.0  # until this exchange succeeds
        self.deliver_due()
        message = decode(body)
        what = _describe(message, body)
        if not self.link_up:
            self._count("refused")
            self._note(f"{what}: connection refused (outage)")
            raise TransportError("connection refused", wire_bytes=0)
        if isinstance(message, Chunk):
            self.uploaded.append((self.now, len(message.data)))
        if self.rng.random() < faults.loss:
            self._count("loss")
            self._note(f"{what}: lost")
            raise TransportError("lost", wire_bytes=self._spent(body, overhead))
        sent_at = self.now
        headers = self._signed(kind, body, sent_at)
        upload_time = self._transfer_time(len(body) + overhead // 2)
        if upload_time > faults.timeout:
            # Partial delivery: the server reads bodies whole, so a cut body changes nothing.
            self._count("timeout")
            self._note(f"{what}: timed out after partial delivery ({upload_time:.0f}s needed)")
            self.now += faults.timeout
            spent = int(faults.bandwidth * faults.timeout)
            self.wire_bytes.append((self.now, spent))
            raise TransportError("timed out", wire_bytes=spent)
        if self._chance(faults.delay):
            self._count("delay")
            at = self.now + self.rng.uniform(faults.timeout, faults.max_delay)
            self.in_network.append(Delivery(at, kind, body, sent_at, headers))
            self._note(f"{what}: held in the network until +{at - self.now:.0f}s")
            self.now += faults.timeout
            raise TransportError("timed out", wire_bytes=self._spent(body, overhead))
        if self._chance(faults.late_duplicate):
            self._count("late_duplicate")
            at = self.now + self.rng.uniform(1.0, faults.max_delay)
            self.in_network.append(Delivery(at, kind, body, sent_at, headers))
        self.now += upload_time
        delivered = body
        truncated = False
        if isinstance(message, Chunk) and self.rng.random() < faults.truncate:
            delivered = _truncated_chunk(message, self.rng)
            truncated = True
        passed = self.gate.check(headers, PATHS[kind], body, self.now)
        if isinstance(passed, Refused):  # e.g. a body over the gate's limit
            reply = refusal(outcome_of(passed.status), passed.reason, passed.retry_after)
        else:
            reply = self._handle(kind, delivered, self.now)
        if self.rng.random() < faults.duplicate and not isinstance(passed, Refused):
            # Delivered twice and let through (as by a server that just lost its replay memory).
            self._count("duplicate")
            reply = self._handle(kind, delivered, self.now)
        self.now += self._transfer_time(len(reply.body) + overhead // 2)
        # Counted when the exchange ends, in the budget period the agent counts it in.
        spent = self._spent(body, overhead, len(reply.body))
        if self._chance(faults.agent_crash):
            self._count("agent_crash")
            self._note(f"{what}: agent crashed before handling the answer")
            raise AgentCrashed
        if truncated or self.rng.random() < faults.answer_loss:
            self._count("truncate" if truncated else "answer_loss")
            self._note(f"{what}: {'cut short' if truncated else 'answer lost'}")
            raise TransportError("connection dropped", wire_bytes=spent)
        self._alive_until = self.now + self.keep_alive
        self._note(f"{what}: {_describe_reply(reply.outcome, reply.body)}")
        return Answer(reply.outcome, reply.body, spent)

    # -- the server's side -----------------------------------------------------------------------

    def deliver_due(self) -> None:
        """Hand the server every late request whose time has come, oldest first."""
        due = sorted((d for d in self.in_network if d.at <= self.now), key=lambda d: d.at)
        if not due:
            return
        self.in_network = [d for d in self.in_network if d.at > self.now]
        for delivery in due:
            passed = self.gate.check(
                delivery.headers, PATHS[delivery.kind], delivery.body, delivery.at
            )
            if isinstance(passed, Refused):
                self._note(f"late request from {delivery.sent_at - self.now:+.0f}s: refused (auth)")
                continue
            reply = self._handle(delivery.kind, delivery.body, delivery.at)
            self._note(
                f"late request from {delivery.sent_at - self.now:+.0f}s delivered: "
                f"{_describe_reply(reply.outcome, reply.body)} (nobody listens)"
            )

    def _handle(self, kind: str, body: bytes, now: float) -> Reply:
        reply = self.server.handle(ENV, kind, body, now)
        if reply.applied is not None:
            self.applied.append(reply.applied.digest)
        return reply

    # -- restarts ------------------------------------------------------------------------------

    def restart_agent(self, *, lose_snapshots: bool = False) -> None:
        """A new agent process from what the old one persisted (state + snapshots), saved now.

        `lose_snapshots` models a state directory whose state file survived (command cursor,
        results) but not the snapshots beside it: the agent shares no version with the server.
        """
        self.edge.save()
        if lose_snapshots:
            self.state.snapshots = {}
        self._restore_agent()

    def wipe_agent_state(self, seed: int) -> None:
        """A new agent process whose state directory was wiped: it knows nothing."""
        self.state = MemoryStateStore()
        self.edge = self._new_agent(seed)
        self._alive_until = -1.0
        self._note("agent started with an empty state directory")

    def _restore_agent(self) -> None:
        self.edge = self._new_agent(self.rng.randrange(2**32))
        self._alive_until = -1.0
        self._note("agent restarted from its state directory")

    def restart_server(self, *, lose_partials: bool = False) -> None:
        """A new server process over the same store; its replay memory is gone.

        `lose_partials` models a server that keeps partial uploads outside its database.
        """
        self.server = ServerProtocol(self.store)
        self.gate = _gate()
        if lose_partials:
            self.store.env(ENV).partials.clear()
        self._note("server restarted" + (" (partial uploads lost)" if lose_partials else ""))

    # -- accounting ----------------------------------------------------------------------------

    def bytes_in_period(self, start: float, end: float) -> int:
        return sum(size for when, size in self.wire_bytes if start <= when < end)

    def _transfer_time(self, size: int) -> float:
        return size / self.faults.bandwidth if self.faults.bandwidth else 0.0

    def _chance(self, probability: float) -> bool:
        """A draw for the newer faults only when they are on, so older seeds replay unchanged."""
        return probability > 0 and self.rng.random() < probability

    def _signed(self, kind: str, body: bytes, now: float) -> dict[str, str]:
        """The headers the gate reads, signed as the agent's transport signs them (a counter for
        the nonce, so a run replays exactly)."""
        self._nonce += 1
        timestamp, nonce = int(now), f"{self._nonce:016x}"
        sig = signature(SECRET, "POST", PATHS[kind], ENV, timestamp, nonce, body)
        authorization = SignedRequest(ENV, timestamp, nonce, sig).header()
        return {"Content-Length": str(len(body)), "Authorization": authorization}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _note(self, line: str) -> None:
        self.trace.append(f"t+{self.now - 1_767_225_600.0:.0f}s {line}")
        del self.trace[:-200]  # a readable tail, not a memory leak over a simulated week


def _truncated_chunk(chunk: Chunk, rng: random.Random) -> bytes:
    keep = rng.randrange(0, max(1, len(chunk.data)))
    return Chunk(
        chunk.upload, chunk.base, chunk.target, chunk.total, chunk.offset, chunk.data[:keep]
    ).encode()


def _describe(message: Message, body: bytes) -> str:
    if isinstance(message, Chunk):
        return (
            f"chunk {message.upload.hex()[:6]} {message.offset}+{len(message.data)}"
            f"/{message.total} -> {message.target.hex()[:6]}"
        )
    return f"{message.TYPE} ({len(body)} B)"


def _describe_reply(outcome: Outcome, body: bytes) -> str:
    try:
        message = decode(body, (Pong, UploadReply, Refusal))
    except RemoteProtocolError:
        return outcome.value
    if isinstance(message, UploadReply):
        extra = f" v{message.version.seq}" if message.version else ""
        return f"{message.status}{extra}" + (f" @{message.offset}" if message.offset else "")
    if isinstance(message, Pong):
        return f"pong holds {[v.seq for v in message.holds]} ({len(message.commands)} commands)"
    return f"{outcome.value} {message.reason if isinstance(message, Refusal) else ''}"


class AgentCrashed(Exception):
    """The agent process died mid-exchange (a simulated fault): the simulation starts a new one."""


@dataclass
class SimTransport:
    """The Agent's transport over the simulated link (Sim.exchange)."""

    sim: Sim

    def post(self, kind: str, body: bytes, limit: int) -> Answer:
        return self.sim.exchange(kind, body)

    def close(self) -> None:
        pass


class _Fed:
    """The Agent's collector in the simulation, never called: the simulation hands the protocol
    snapshots built from its traces (Sim.collect) and drives only the Agent's exchanges."""

    def collect(self, sink: object) -> None:
        raise InputError("the simulation feeds its snapshots itself")


@cache
def _profile() -> Profile:
    return load_profile()


def _gate() -> RequestGate:
    return RequestGate({ENV: SECRET}, NonceMemory())
