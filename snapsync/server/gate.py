"""The server's request gate: what an agent request must pass before the protocol sees it.

Nobody unauthenticated costs more than a bounded read. In order:

1. `declared_size(headers)`: a Content-Length is given (else 411) and at most `max_body`
   (else 413).
2. `check_header(headers, now)`: everything the Authorization header alone proves (well-formed,
   known edge, fresh timestamp, unused nonce: snapsync.protocol.auth) before a byte of the body
   is read. A failed check is a 401 that says nothing of what failed; `Refused.detail` says
   which check, for the log, never a secret.
3. `admit(size)`: the body takes a share of a fixed allowance (`BodyGate`) from before its
   first byte is read until `release(size)` after its answer; a body that does not fit is
   refused with a retry-after, as a busy server (503). `deadline(size)`: the seconds the body
   has to arrive (`BodyDeadline`; a body late is a 408, the caller's to time).
4. `check_body(claim, path, body, size, now)`: the body is as long as declared (else 400), the
   signature over it checks out and its nonce is remembered: the authenticated edge id, or a
   401, or a 429 when the replay memory is full (no proof of a bad peer: retry later).

`check(headers, path, body, now)` runs all four for a request whose body is already in hand:
the simulation (snapsync/sim/link.py) calls it with plain headers, bytes and its own clock, so
it refuses exactly what the web layer refuses. The web layer (app.py) calls the steps one by
one, reading the body between 3 and 4. A refusal is a value (`Refused`: status, reason for the
peer, retry-after, whether to close the connection); nothing here knows HTTP frameworks,
sockets or clocks. Storage errors from the secret map or the nonce table propagate: the caller
answers them. `admit`/`release` are not thread-safe (the web layer calls them from its event
loop); `check_header` and `check_body` may run in worker threads (the nonce memories here are).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from snapsync.errors import AuthError, ReplayMemoryFull
from snapsync.protocol.auth import (
    CAPACITY,
    HEADER,
    PER_EDGE,
    Claim,
    NonceMemory,
    Remembered,
)
from snapsync.protocol.auth import check_body as _check_body
from snapsync.protocol.auth import check_header as _check_header

MAX_BODY = 8 * 2**20  # one request: a chunk of at most a few MiB, or a ping
AUTH_FAILED = 401


@dataclass(frozen=True)
class Refused:
    """A request the gate turns away: `reason` and `retry_after` go to the peer (a protocol
    Refusal), `detail` only to the server's log; `close` when the peer's body may be left
    unread, or the peer is unwelcome."""

    status: int
    reason: str
    retry_after: float = 0.0
    close: bool = False
    detail: str = ""


@dataclass
class BodyGate:
    """How many request bodies may be in memory at once: every one counts from before its first
    byte is read until its answer, authenticated or not.

    Small bodies (pings, command results) have their own pool, so a flood of large bodies
    cannot starve the pings that keep agents in sync. Used from the event loop only.
    """

    large_bytes: int = 64 * 2**20  # 8 bodies of MAX_BODY
    small: int = 64 * 2**10  # a body this size or smaller takes a small slot
    small_slots: int = 64
    _large: int = field(default=0, init=False, repr=False)
    _small: int = field(default=0, init=False, repr=False)

    @property
    def large_in_use(self) -> int:
        """Bytes of large bodies admitted and not yet answered."""
        return self._large

    def admit(self, size: int) -> bool:
        if size <= self.small:
            if self._small >= self.small_slots:
                return False
            self._small += 1
        else:
            if self._large + size > self.large_bytes:
                return False
            self._large += size
        return True

    def release(self, size: int) -> None:
        if size <= self.small:
            self._small -= 1
        else:
            self._large -= size


@dataclass(frozen=True)
class BodyDeadline:
    """A body must arrive within `base` seconds plus its size at `rate` bytes a second: a slow
    client cannot hold its share of the gate for long. 256 KiB (the agent's chunk) gets 46 s;
    the agent halves its chunks after a failed one, so a slow link still gets through."""

    base: float = 30.0
    rate: float = 16 * 2**10

    def seconds(self, size: int) -> float:
        return self.base + size / self.rate


class SharedSecret(Mapping[str, bytes]):
    """One agent secret for every edge id (AGENT_SECRET style)."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def __getitem__(self, edge_id: str) -> bytes:
        return self.secret

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class NonceTable(Protocol):
    """Nonces kept in a database that several server processes share (server/store/nonces.py)."""

    def nonce_seen(self, edge: str, nonce: str, now: float, window: float) -> bool: ...

    def remember_nonce(
        self, edge: str, nonce: str, timestamp: float, now: float, window: float, per_edge: int
    ) -> Remembered: ...


def nonce_memory(
    table: NonceTable | None, per_edge: int = PER_EDGE, capacity: int = CAPACITY
) -> NonceMemory:
    """The replay memory of one server: in `table` when several processes share the database
    (bounded per edge; its size is on disk, so no bound over all edges), else in this process,
    safe to use from the worker threads that verify requests."""
    if table is not None:
        return _DatabaseNonces(table, per_edge)
    return _SharedNonces(per_edge, capacity)


class RequestGate:
    """Size, authentication, body allowance and deadline of agent requests (see the module)."""

    def __init__(
        self,
        secrets: Mapping[str, bytes],
        nonces: NonceMemory,
        max_body: int = MAX_BODY,
        bodies: BodyGate | None = None,
        body_deadline: BodyDeadline | None = None,
    ) -> None:
        self.secrets = secrets
        self.nonces = nonces
        self.max_body = max_body
        self.bodies = bodies if bodies is not None else BodyGate()
        self.body_deadline = body_deadline if body_deadline is not None else BodyDeadline()

    def declared_size(self, headers: Mapping[str, str]) -> int | Refused:
        declared = _header(headers, "content-length")
        if declared is None or not declared.isdigit() or int(declared) > self.max_body:
            status = 413 if declared and declared.isdigit() else 411
            return Refused(status, "body size", close=True)
        return int(declared)

    def check_header(self, headers: Mapping[str, str], now: float) -> Claim | Refused:
        try:
            return _check_header(_header(headers, HEADER) or "", self.secrets, now, self.nonces)
        except AuthError as exc:
            return _auth_failed(exc)

    def admit(self, size: int) -> Refused | None:
        """None when the body fits the allowance (then `release(size)` after its answer)."""
        if self.bodies.admit(size):
            return None
        detail = f"busy: no room for a body of {size} bytes"
        return Refused(503, "busy", retry_after=10.0, close=True, detail=detail)

    def release(self, size: int) -> None:
        self.bodies.release(size)

    def deadline(self, size: int) -> float:
        """Seconds a body of `size` bytes has to arrive."""
        return self.body_deadline.seconds(size)

    def check_body(
        self, claim: Claim, path: str, body: bytes, size: int, now: float
    ) -> str | Refused:
        """The authenticated edge id of a POST to `path` whose body was declared `size`."""
        if len(body) != size:
            return Refused(400, "body not as long as declared", close=True)
        try:
            return _check_body(claim, "POST", path, body, now, self.nonces)
        except ReplayMemoryFull as exc:
            return Refused(429, "too many requests", retry_after=30.0, detail=str(exc))
        except AuthError as exc:
            return _auth_failed(exc)

    def check(
        self, headers: Mapping[str, str], path: str, body: bytes, now: float
    ) -> str | Refused:
        """All the steps for a POST whose body is in hand (`headers` as the agent sent them,
        Content-Length and Authorization included): the edge id, or the refusal."""
        size = self.declared_size(headers)
        if isinstance(size, Refused):
            return size
        claim = self.check_header(headers, now)
        if isinstance(claim, Refused):
            return claim
        busy = self.admit(size)
        if busy is not None:
            return busy
        try:
            return self.check_body(claim, path, body, size, now)
        finally:
            self.release(size)


def _auth_failed(exc: AuthError) -> Refused:
    return Refused(AUTH_FAILED, "authentication failed", close=True, detail=str(exc))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by its name in any case (HTTP libraries give a case-insensitive mapping, a plain
    dict need not be)."""
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


class _SharedNonces(NonceMemory):
    """The nonce memory, safe to use from the worker threads that verify requests."""

    def __init__(self, per_edge: int, capacity: int) -> None:
        super().__init__(per_edge=per_edge, capacity=capacity)
        self._lock = threading.Lock()

    def seen(self, edge_id: str, nonce: str, now: float) -> bool:
        with self._lock:
            return super().seen(edge_id, nonce, now)

    def remember(self, edge_id: str, nonce: str, timestamp: float, now: float) -> Remembered:
        with self._lock:
            return super().remember(edge_id, nonce, timestamp, now)


class _DatabaseNonces(NonceMemory):
    """Nonces remembered in the database that several server processes share: bounded per edge
    like the memory (its size is on disk, so no bound over all edges)."""

    def __init__(self, table: NonceTable, per_edge: int) -> None:
        super().__init__(per_edge=per_edge)
        self.table = table

    def seen(self, edge_id: str, nonce: str, now: float) -> bool:
        return self.table.nonce_seen(edge_id, nonce, now, self.window)

    def remember(self, edge_id: str, nonce: str, timestamp: float, now: float) -> Remembered:
        return self.table.remember_nonce(edge_id, nonce, timestamp, now, self.window, self.per_edge)
