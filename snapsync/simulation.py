"""A deterministic simulated link between an AgentProtocol and a ServerProtocol.

The same agent and server code as in production, driven without sockets or sleeps: time is a
number the caller advances, and every random choice comes from one seeded generator, so a run
replays exactly from its seed (the FoundationDB habit). Each exchange can lose the request, lose
the answer, deliver the request twice, or cut an upload chunk short (the server keeps the first
part, the agent sees a dropped connection), as a flaky mobile link does. Used by the property
tests, the benchmarks and the demo.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import msgpack

from snapsync.protocol import AgentConfig, AgentProtocol, MemoryStore, Request, ServerProtocol
from snapsync.protocol.events import Event
from snapsync.protocol.messages import Chunk
from snapsync.snapshot import Snapshot

ENV = "edge-1"


@dataclass
class LinkFaults:
    """Probabilities per exchange."""

    loss: float = 0.0  # request lost before the server
    answer_loss: float = 0.0  # server acted, answer lost
    duplicate: float = 0.0  # request delivered twice
    truncate: float = 0.0  # chunk cut short mid-transfer

    @property
    def healthy(self) -> bool:
        return not (self.loss or self.answer_loss or self.duplicate or self.truncate)


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

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.agent = AgentProtocol(self.config, seed=self.seed)
        self.server = ServerProtocol(self.store)

    def collect(self, snapshot: Snapshot) -> None:
        self.produced.add(snapshot.digest)
        self.agent.snapshot_collected(snapshot, self.now)

    def run_exchanges(self, limit: int = 50) -> int:
        """Send whatever the agent wants to send now; returns how many exchanges ran."""
        count = 0
        while count < limit and (request := self.agent.next_request(self.now)) is not None:
            count += 1
            self._exchange(request)
        self.events += self.agent.poll_events()
        return count

    def _exchange(self, request: Request) -> None:
        overhead = self.config.overhead
        if self.rng.random() < self.faults.loss:
            self.wire_bytes.append((self.now, len(request.body) + overhead))
            self.events += self.agent.fail(request, self.now, "lost")
            return
        body = request.body
        truncated = False
        if isinstance(request.message, Chunk) and self.rng.random() < self.faults.truncate:
            body = _truncated_chunk(request.message, self.rng)
            truncated = True
        reply = self.server.handle(ENV, request.path, body, self.now)
        if self.rng.random() < self.faults.duplicate:
            reply = self.server.handle(ENV, request.path, body, self.now)
        self.wire_bytes.append((self.now, len(request.body) + len(reply.body) + overhead))
        if truncated or self.rng.random() < self.faults.answer_loss:
            self.events += self.agent.fail(request, self.now, "connection dropped")
            return
        self.events += self.agent.receive(request, reply.status, reply.body, self.now)

    def restart_agent(self) -> None:
        """A new agent process from what the old one persisted (state + snapshots)."""
        state = msgpack.unpackb(msgpack.packb(self.agent.export_state()), strict_map_key=False)
        snapshots = {s.digest: s for s in self.agent.snapshots_to_keep()}
        self.agent = AgentProtocol(self.config, seed=self.rng.randrange(2**32))
        self.agent.restore_state(state, snapshots)

    def restart_server(self) -> None:
        self.server = ServerProtocol(self.store)

    def bytes_in_period(self, start: float, end: float) -> int:
        return sum(size for when, size in self.wire_bytes if start <= when < end)


def _truncated_chunk(chunk: Chunk, rng: random.Random) -> bytes:
    keep = rng.randrange(0, max(1, len(chunk.data)))
    return Chunk(
        chunk.upload, chunk.base, chunk.target, chunk.total, chunk.offset, chunk.data[:keep]
    ).encode()
