"""What the agent asks of the server, and the configuration that shapes how it asks.

A `Request` is a message with its encoded body and what it may cost on the wire; the transport
routes it by its kind (snapsync.agent.transport knows the paths). `AgentConfig` holds every knob
of the agent's protocol: intervals, data budget, chunk size, bases kept, encoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from snapsync.codec.encode import EncodeOptions, encode_delta
from snapsync.protocol.budget import BudgetConfig
from snapsync.protocol.messages import MAX_PONG, BucketQuery, Chunk, Message, Summary
from snapsync.protocol.schedule import Intervals
from snapsync.protocol.upload import UPLOAD_REPLY_ALLOWANCE, DeltaEncoder

# What one exchange costs on the wire beyond its two bodies, on a kept-alive TLS connection: HTTP
# heads, TLS record framing and TCP/IP headers; measured by bench/bench_wire.py. Where the
# transport counts the wire (`receive(..., wire=)`), the budget is charged what it counted and
# budgets each exchange for the largest overhead seen; before the first count, for this plus
# `connect_allowance` (a full TLS handshake with a certificate chain).
DEFAULT_OVERHEAD = 520
CONNECT_ALLOWANCE = 6 * 1024
# How long the server keeps an idle connection open (`snapsync serve --keep-alive`'s default):
# the agent plans an exchange after longer idle as one on a new connection (protocol/metering).
SERVER_KEEP_ALIVE = 150.0


@dataclass(frozen=True)
class AgentConfig:
    intervals: Intervals = field(default_factory=Intervals)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    chunk_size: int = 256 * 1024
    keep_versions: int = 3  # acknowledged versions kept as possible bases
    overhead: int = DEFAULT_OVERHEAD
    connect_allowance: int = CONNECT_ALLOWANCE
    # The server's idle keep-alive as the agent assumes it (SERVER_KEEP_ALIVE): the pacer plans
    # an upload after longer idle at a new connection's cost. Plans only: the budget holds anyway.
    keep_alive: float = SERVER_KEEP_ALIVE
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    full_level: int = 9
    # Canonical bytes of a snapshot above which, with no version shared with the server, the
    # agent compares digests (anti-entropy) before resending everything.
    reconcile_min: int = 64 * 1024
    # The delta encoder (snapsync.protocol.upload.DeltaEncoder): encode_delta; a simulation may
    # pass a shared memo of it (snapsync.sim.frames.FrameMemo). Not a knob: not compared.
    encoder: DeltaEncoder = field(default=encode_delta, compare=False, repr=False)


@dataclass(frozen=True)
class Request:
    """What to send: `body` (`message.encode()`) as a request of `kind`; the transport knows
    where that goes.

    `allowance`: the most it may cost on the wire (its body, the overhead budgeted per exchange
    and the largest answer), charged to the budget when it is handed out and settled to what
    it cost when it ends, so a crash in between leaves the budget charged, never short.
    """

    message: Message
    body: bytes
    allowance: int = 0

    @property
    def kind(self) -> str:
        """The message's type word ("ping", "chunk", ...): all a transport needs to route it."""
        return self.message.TYPE

    @property
    def answer_limit(self) -> int:
        """The largest answer body the agent reads (and budgets for); more is a bad server."""
        if isinstance(self.message, Summary | BucketQuery):
            return self.message.limit
        if isinstance(self.message, Chunk):
            return UPLOAD_REPLY_ALLOWANCE
        return MAX_PONG
