"""The server's web face: an ASGI app (Starlette) around the protocol's server state machine.

This is where bytes meet the protocol: every agent request passes the request gate (gate.py:
declared size, then what the Authorization header alone proves before a byte of the body is read, a
share of a fixed body allowance, a deadline for the body, then the signature over it), and the
protocol gets the authenticated edge id, the kind of message its path stands for (`ROUTES`) and the
body; its `Outcome` goes back as a status (`STATUSES`), with no Content-Type (the path says what
the body is). Agent requests take a plain-ASGI path in front of Starlette (agentpath.py). A
storage outage is a 503 the agent retries; any other exception is a bug and a 500. One port
also carries the browse API and page (browse.py, page.py, behind the API token; websecurity.py
guards every path but the agent's), /metrics (metrics.py), /healthz (the process runs) and
/readyz (the database answers). With a SQL store every request runs in its own transactions, so
requests are not serialized here; the memory store is, as it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope

from snapsync.errors import InputError, StorageError
from snapsync.protocol.auth import CAPACITY, PER_EDGE, Claim, check_secret
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
from snapsync.server.agentpath import (
    AgentPath,
    Answer,
    Disconnected,
    client_host,
    read_body,
    request_headers,
)
from snapsync.server.browse import ApiAccess, Browser, api_routes
from snapsync.server.connections import HEAD_TIMEOUT, HeadDeadline
from snapsync.server.gate import (
    AUTH_FAILED,
    MAX_BODY,
    BodyDeadline,
    BodyGate,
    Refused,
    RequestGate,
    nonce_memory,
)
from snapsync.server.metrics import CONTENT_TYPE, ServerMetrics
from snapsync.server.page import page_routes
from snapsync.server.store import Stores
from snapsync.server.websecurity import WebGuard

log = logging.getLogger("snapsync.server")
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
class ServerSettings:
    secrets: Mapping[str, bytes]
    store: VersionStore | None = None  # the protocol's store without a database (MemoryStore)
    # The SQL repositories (server/store/): the protocol's store too, and the browse API and
    # page, the fleet metrics, traffic counts, and the replay memory of several processes.
    stores: Stores | None = None
    protocol: ServerConfig = field(default_factory=ServerConfig)
    clock: Callable[[], float] = time.time
    max_body: int = MAX_BODY
    api_token: str | None = None  # the browse API and page are off without one
    bodies: BodyGate = field(default_factory=BodyGate)
    body_deadline: BodyDeadline = field(default_factory=BodyDeadline)
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
    stores = settings.stores
    store: VersionStore | None = stores if stores is not None else settings.store
    if store is None or (stores is not None and settings.store is not None):
        raise InputError("a server needs one store: `store` (in memory) or `stores` (SQL)")
    protocol = ServerProtocol(store, settings.protocol)
    nonces = nonce_memory(
        stores.nonces if stores and stores.db.shared_by_processes else None,
        settings.nonces_per_edge,
        settings.nonces_capacity,
    )
    gate = RequestGate(
        settings.secrets, nonces, settings.max_body, settings.bodies, settings.body_deadline
    )
    serialized = threading.Lock() if stores is None else None
    metrics = ServerMetrics(stores.queries if stores else None, settings.clock)
    if stores is not None:
        stores.db.observe_batch = metrics.commit_batch.observe

    def handle(claim: Claim, path: str, body: bytes, size: int, now: float) -> _Handled | Refused:
        """Check the signature, then answer; in a worker thread (the registry and store are I/O)."""
        edge_id = gate.check_body(claim, path, body, size, now)
        if isinstance(edge_id, Refused):
            return edge_id
        started = time.perf_counter()
        if serialized is not None:
            with serialized:
                reply = protocol.handle(edge_id, ROUTES[path], body, now)
        else:
            reply = protocol.handle(edge_id, ROUTES[path], body, now)
        seconds = time.perf_counter() - started
        if stores is not None:
            stores.usage.record_traffic(edge_id, now, reply.usage(body), len(reply.body))
        return _Handled(edge_id, reply, seconds)

    def refused(path: str, client: str, refusal: Refused) -> Answer:
        """The refusal's answer; its detail goes to the log (a 401's names the failed check)."""
        if refusal.status == AUTH_FAILED:
            metrics.auth_refused.inc()
            log.warning("refused %s from %s: %s", path, client, refusal.detail)
        elif refusal.status == 429:
            log.warning("refused %s from %s for now: %s", path, client, refusal.detail)
        elif refusal.detail:
            log.warning("%s from %s", refusal.detail, client)
        return _refuse(refusal.status, refusal.reason, refusal.retry_after, refusal.close)

    async def agent_request(scope: Scope, receive: Receive) -> Answer:
        """A POST to an agent path, from the ASGI scope (agentpath.py says why)."""
        path, client, headers = scope["path"], client_host(scope), request_headers(scope)
        size = gate.declared_size(headers)
        if isinstance(size, Refused):
            return refused(path, client, size)
        try:
            claim = await run_in_threadpool(gate.check_header, headers, settings.clock())
        except StorageError as exc:
            return _storage_failed(exc)
        if isinstance(claim, Refused):
            return refused(path, client, claim)
        busy = gate.admit(size)
        if busy is not None:
            return refused(path, client, busy)
        try:
            return await body_then_answer(path, client, receive, claim, size)
        finally:
            gate.release(size)

    async def body_then_answer(
        path: str, client: str, receive: Receive, claim: Claim, size: int
    ) -> Answer:
        try:
            async with asyncio.timeout(gate.deadline(size)):
                body = await read_body(receive, size)
        except Disconnected:
            log.info("%s went away mid-body of %s (%d bytes declared)", client, path, size)
            return _refuse(400, "body cut short", close=True)
        except TimeoutError:
            log.warning("%s too slow: %d-byte body of %s not in time", client, size, path)
            return _refuse(408, "body too slow", close=True)
        metrics.received.inc(len(body))
        try:
            handled = await run_in_threadpool(handle, claim, path, body, size, settings.clock())
        except StorageError as exc:
            return _storage_failed(exc)
        if isinstance(handled, Refused):
            return refused(path, client, handled)
        edge_id = handled.edge_id
        reply = handled.reply
        _count(metrics, path, handled)
        if reply.applied is not None:
            log.info("%s: stored version %d", edge_id, reply.applied.seq)
        if reply.refused:
            log.warning("%s: frame refused (%s)", edge_id, reply.refused)
        return Answer(STATUSES[reply.outcome], reply.body)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        if stores is None:
            return PlainTextResponse("ready")
        try:
            await run_in_threadpool(stores.db.ping)
        except StorageError as exc:
            log.warning("not ready: the database does not answer (%s)", exc)
            return PlainTextResponse("database unavailable", 503)
        return PlainTextResponse("ready")

    async def prometheus(request: Request) -> Response:
        return Response(await run_in_threadpool(metrics.render), media_type=CONTENT_TYPE)

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    routes.append(Route("/readyz", readyz, methods=["GET"]))
    routes.append(Route("/metrics", prometheus, methods=["GET"]))
    if stores is not None:
        browser = Browser(stores, settings.clock)
        access = ApiAccess(settings.api_token, settings.clock)
        routes += api_routes(browser, access) + page_routes(browser, access)
    agents = Middleware(AgentPath, paths=ROUTES, handle=agent_request)
    guard = Middleware(WebGuard, exempt=ROUTES)
    return Starlette(routes=routes, middleware=[agents, guard])


def _storage_failed(exc: StorageError) -> Answer:
    """The database is away: the agent retries later."""
    log.error("storage failed: %s", exc)
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
    answer = decode(reply.body, UploadReply)
    return answer.status if isinstance(answer, UploadReply) else ""


def _refuse(status: int, reason: str, retry_after: float = 0.0, close: bool = False) -> Answer:
    """A refusal; `close` when the peer's body may be left unread, or the peer is unwelcome."""
    return Answer(status, Refusal(reason, retry_after).encode(), close)


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
