"""The server's web face: an ASGI app (Starlette) around the protocol's server state machine.

This is where bytes meet the protocol: it authenticates each agent request (snapsync.protocol.
auth) and hands edge id, the kind its path stands for (`ROUTES`) and body to ServerProtocol,
whose `Outcome` it answers with as a status (`STATUSES`). Nobody unauthenticated costs more
than a bounded read: the declared size is checked first, then everything the header alone
proves (well-formed, known edge, fresh timestamp, unused nonce) before a byte of the body is
read; bodies being read or handled hold a share of a fixed allowance (`BodyGate`: a request
that does not fit is refused with a retry-after, as a busy server), and must arrive within a
deadline that grows with their size. A failed check is a 401 that says nothing of what failed;
the log says which check, and never a secret. A storage outage is a 503 the agent retries; any
other exception is a bug and a 500. One port also carries the browse API and page (browse.py,
page.py, behind the API token; websecurity.py guards every path but the agent's), /metrics
(metrics.py), /healthz (the process runs) and /readyz (the database answers). With a SQL store
every request runs in its own transactions, so requests are not serialized here; the memory
store is, as it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from snapsync.errors import AuthError, ReplayMemoryFull
from snapsync.protocol.auth import (
    CAPACITY,
    HEADER,
    PER_EDGE,
    Claim,
    NonceMemory,
    Remembered,
    check_body,
    check_header,
    check_secret,
)
from snapsync.protocol.messages import (
    BucketQuery,
    Chunk,
    Ping,
    Refusal,
    Summary,
    UploadReply,
    decode,
)
from snapsync.protocol.outcome import Outcome
from snapsync.protocol.server import Reply, ServerConfig, ServerProtocol, VersionStore
from snapsync.server.browse import ApiAccess, Browser, api_routes
from snapsync.server.connections import HEAD_TIMEOUT, HeadDeadline
from snapsync.server.metrics import CONTENT_TYPE, ServerMetrics
from snapsync.server.page import page_routes
from snapsync.server.sqlstore import SQLStore
from snapsync.server.websecurity import WebGuard

log = logging.getLogger("snapsync.server")
# Agent answers carry no Content-Type: the path says what the body is, and an idle agent pays
# for every response byte (schemas/wire.md).
MEDIA_TYPE = None
MAX_BODY = 8 * 2**20  # one request: a chunk of at most a few MiB, or a ping
# The server's HTTP binding: the path of each kind of agent request (the agent's transport posts
# to the same ones), and the status that carries each outcome of the server protocol.
ROUTES = {
    "/v1/ping": Ping.TYPE,
    "/v1/upload": Chunk.TYPE,
    "/v1/reconcile": Summary.TYPE,
    "/v1/reconcile/buckets": BucketQuery.TYPE,
}
STATUSES = {
    Outcome.OK: 200,
    Outcome.MALFORMED: 400,
    Outcome.AUTH: 401,
    Outcome.NOT_FOUND: 404,
    Outcome.TOO_LARGE: 413,
    Outcome.REFUSED: 422,
    Outcome.UNAVAILABLE: 500,
    Outcome.BUSY: 503,
}


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


@dataclass
class ServerSettings:
    secrets: Mapping[str, bytes]
    store: VersionStore
    protocol: ServerConfig = field(default_factory=ServerConfig)
    clock: Callable[[], float] = time.time
    max_body: int = MAX_BODY
    api_token: str | None = None  # the browse API and page are off without one
    bodies: BodyGate = field(default_factory=BodyGate)
    body_deadline: BodyDeadline = BodyDeadline()
    nonces_per_edge: int = PER_EDGE  # replay memory: live nonces per edge, then 429
    nonces_capacity: int = CAPACITY  # and over all edges (in memory; the database has no cap)


@dataclass(frozen=True)
class _Handled:
    edge_id: str
    reply: Reply
    seconds: float


def create_app(settings: ServerSettings) -> Starlette:
    if settings.api_token is not None:
        check_secret(settings.api_token, "the API token")
    protocol = ServerProtocol(settings.store, settings.protocol)
    store = settings.store if isinstance(settings.store, SQLStore) else None
    nonces: NonceMemory = (
        _DatabaseNonces(store, settings.nonces_per_edge)
        if store and store.shared_by_processes
        else _SharedNonces(settings.nonces_per_edge, settings.nonces_capacity)
    )
    serialized = threading.Lock() if store is None else None
    metrics = ServerMetrics(store, settings.clock)
    if store is not None:
        store.observe_batch = metrics.commit_batch.observe

    unavailable = store.unavailable if store is not None else ()
    gate = settings.bodies

    def handle(claim: Claim, path: str, body: bytes, now: float) -> _Handled:
        """Check the signature, then answer; in a worker thread (the registry and store are I/O)."""
        edge_id = check_body(claim, "POST", path, body, now, nonces)
        started = time.perf_counter()
        if serialized is not None:
            with serialized:
                reply = protocol.handle(edge_id, ROUTES[path], body, now)
        else:
            reply = protocol.handle(edge_id, ROUTES[path], body, now)
        seconds = time.perf_counter() - started
        if store is not None:
            store.record_traffic(edge_id, now, reply.usage(body), len(reply.body))
        return _Handled(edge_id, reply, seconds)

    def refused(request: Request, exc: AuthError) -> Response:
        metrics.auth_refused.inc()
        log.warning("refused %s from %s: %s", request.url.path, _client(request), exc)
        return _refuse(401, "authentication failed", close=True)

    async def agent_endpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit() or int(declared) > settings.max_body:
            status = 413 if declared and declared.isdigit() else 411
            return _refuse(status, "body size", close=True)
        size = int(declared)
        header = request.headers.get(HEADER, "")
        try:
            claim = await run_in_threadpool(
                check_header, header, settings.secrets, settings.clock(), nonces
            )
        except AuthError as exc:
            return refused(request, exc)
        except unavailable as exc:
            return _storage_failed(exc)
        if not gate.admit(size):
            log.warning("busy: no room for a body of %d bytes from %s", size, _client(request))
            return _refuse(503, "busy", retry_after=10.0, close=True)
        try:
            return await body_then_answer(request, claim, size)
        finally:
            gate.release(size)

    async def body_then_answer(request: Request, claim: Claim, size: int) -> Response:
        path, client = request.url.path, _client(request)
        try:
            async with asyncio.timeout(settings.body_deadline.seconds(size)):
                body = await _read_body(request, size)
        except ClientDisconnect:
            log.info("%s went away mid-body of %s (%d bytes declared)", client, path, size)
            return _refuse(400, "body cut short", close=True)
        except TimeoutError:
            log.warning("%s too slow: %d-byte body of %s not in time", client, size, path)
            return _refuse(408, "body too slow", close=True)
        metrics.received.inc(len(body))
        if len(body) != size:
            return _refuse(400, "body not as long as declared", close=True)
        try:
            handled = await run_in_threadpool(handle, claim, path, body, settings.clock())
        except ReplayMemoryFull as exc:
            log.warning("refused %s from %s for now: %s", path, client, exc)
            return _refuse(429, "too many requests", retry_after=30.0)
        except AuthError as exc:
            return refused(request, exc)
        except unavailable as exc:
            return _storage_failed(exc)
        edge_id = handled.edge_id
        reply = handled.reply
        _count(metrics, path, handled)
        if reply.applied is not None:
            log.info("%s: stored version %d", edge_id, reply.applied.seq)
        if reply.refused:
            log.warning("%s: frame refused (%s)", edge_id, reply.refused)
        return Response(reply.body, status_code=STATUSES[reply.outcome], media_type=MEDIA_TYPE)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if store is None:
            return PlainTextResponse("ready")
        try:
            await run_in_threadpool(store.ping)
        except Exception as exc:
            log.warning("not ready: the database does not answer (%s)", type(exc).__name__)
            return PlainTextResponse("database unavailable", 503)
        return PlainTextResponse("ready")

    async def prometheus(request: Request) -> Response:
        return Response(await run_in_threadpool(metrics.render), media_type=CONTENT_TYPE)

    routes: list[BaseRoute] = [Route(path, agent_endpoint, methods=["POST"]) for path in ROUTES]
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    routes.append(Route("/readyz", readyz, methods=["GET"]))
    routes.append(Route("/metrics", prometheus, methods=["GET"]))
    if store is not None:
        browser = Browser(store, settings.clock)
        access = ApiAccess(settings.api_token, settings.clock)
        routes += api_routes(browser, access) + page_routes(browser, access)
    guard = Middleware(WebGuard, exempt=ROUTES)
    return Starlette(routes=routes, middleware=[guard])


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

    def __init__(self, store: SQLStore, per_edge: int) -> None:
        super().__init__(per_edge=per_edge)
        self.store = store

    def seen(self, edge_id: str, nonce: str, now: float) -> bool:
        return self.store.nonce_seen(edge_id, nonce, now, self.window)

    def remember(self, edge_id: str, nonce: str, timestamp: float, now: float) -> Remembered:
        return self.store.remember_nonce(edge_id, nonce, timestamp, now, self.window, self.per_edge)


async def _read_body(request: Request, size: int) -> bytes:
    """The body, read no further than one byte past `size` (the declared length)."""
    pieces: list[bytes] = []
    received = 0
    async for piece in request.stream():
        pieces.append(piece)
        received += len(piece)
        if received > size:
            break
    return b"".join(pieces)


def _storage_failed(exc: Exception) -> Response:
    """The database is away: the agent retries later."""
    log.error("storage failed: %s", type(exc).__name__)
    return _refuse(503, "storage unavailable", retry_after=30.0)


def _count(metrics: ServerMetrics, path: str, handled: _Handled) -> None:
    reply = handled.reply
    metrics.sent.inc(len(reply.body))
    metrics.requests.labels(path, str(STATUSES[reply.outcome])).inc()
    if ROUTES[path] != Chunk.TYPE:
        return
    metrics.upload_seconds.observe(handled.seconds)
    if reply.applied is not None:
        metrics.applied.inc()
        metrics.apply_seconds.observe(handled.seconds)
    elif reply.refused:
        metrics.refused.labels(reply.refused).inc()
    elif reply.outcome is Outcome.OK and _upload_status(reply) == "unknown-base":
        metrics.refused.labels("unknown-base").inc()  # the agent resends against a held base
    elif reply.outcome is Outcome.TOO_LARGE:
        metrics.refused.labels("too-large").inc()
    elif reply.outcome is Outcome.MALFORMED:
        metrics.refused.labels("malformed").inc()


def _upload_status(reply: Reply) -> str:
    answer = decode(reply.body, (UploadReply,))
    return answer.status if isinstance(answer, UploadReply) else ""


def _refuse(status: int, reason: str, retry_after: float = 0.0, close: bool = False) -> Response:
    """A refusal; `close` when the peer's body may be left unread, or the peer is unwelcome."""
    body = Refusal(reason, retry_after).encode()
    headers = {"Connection": "close"} if close else None
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


# An idle agent pings every 60 s (±10% jitter): a connection kept 150 s outlives two pings.
KEEP_ALIVE = 150.0
# Connections open at once, idle keep-alive ones included (uvicorn answers 503 beyond): one per
# agent of the fleet, plus browsers. Each needs a file descriptor (`ulimit -n`).
MAX_CONNECTIONS = 4096
# Request line and headers: an agent's are ~200 bytes, a browser's a few kB.
MAX_HEAD = 16 * 1024


@dataclass(frozen=True)
class Limits:
    """The transport limits of a public server (`snapsync serve` flags)."""

    keep_alive: float = KEEP_ALIVE
    max_connections: int = MAX_CONNECTIONS
    max_head: int = MAX_HEAD
    head_timeout: float = HEAD_TIMEOUT


def uvicorn_config(
    app: Starlette, host: str, port: int, limits: Limits | None = None, **options: Any
) -> uvicorn.Config:
    """No Server or Date header (an idle agent pays for every response byte); one TLS session
    ticket per handshake instead of OpenSSL's two (each is ~250 bytes on the wire, and the agent
    keeps only the newest)."""
    limits = limits or Limits()
    config = _Config(
        app,
        host=host,
        port=port,
        http=HeadDeadline,
        server_header=False,
        date_header=False,
        timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]  # a float works
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_head,
        **options,
    )
    config.head_timeout = limits.head_timeout
    return config


class _Config(uvicorn.Config):
    head_timeout = HEAD_TIMEOUT  # read by HeadDeadline

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            self.ssl.num_tickets = 1
