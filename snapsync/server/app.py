"""The server's web face: an ASGI app (Starlette) around the protocol's server state machine.

This is where bytes meet the protocol: it authenticates each agent request (snapsync.protocol.
auth), bounds the body before reading it whole, and hands edge id, path and body to
ServerProtocol. A failed check is a 401 that says nothing of what failed; the log says it,
and never a secret. One port also carries the browse API and page (browse.py, page.py, behind
the API token), /metrics (metrics.py), /healthz (the process runs) and /readyz (the database
answers). With a SQL store every request runs in its own transactions, so requests are not
serialized here; the memory store is, as it is not thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from snapsync.errors import AuthError
from snapsync.protocol.auth import HEADER, NonceMemory, verify
from snapsync.protocol.messages import Chunk, Refusal, UploadReply, decode
from snapsync.protocol.server import Reply, ServerConfig, ServerProtocol, VersionStore
from snapsync.server.browse import ApiAccess, Browser, api_routes
from snapsync.server.metrics import CONTENT_TYPE, ServerMetrics
from snapsync.server.page import page_routes
from snapsync.server.sqlstore import SQLStore

log = logging.getLogger("snapsync.server")
# Agent answers carry no Content-Type: the path says what the body is, and an idle agent pays
# for every response byte (schemas/wire.md).
MEDIA_TYPE = None
MAX_BODY = 8 * 2**20  # one request: a chunk of at most a few MiB, or a ping


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


@dataclass(frozen=True)
class _Handled:
    edge_id: str
    reply: Reply
    seconds: float


def create_app(settings: ServerSettings) -> Starlette:
    protocol = ServerProtocol(settings.store, settings.protocol)
    store = settings.store if isinstance(settings.store, SQLStore) else None
    nonces = _DatabaseNonces(store) if store and store.shared_by_processes else _SharedNonces()
    serialized = threading.Lock() if store is None else None
    metrics = ServerMetrics(store, settings.clock)

    def handle(header: str, path: str, body: bytes, now: float) -> _Handled:
        """Authenticate, then answer; in a worker thread (the registry and store are I/O)."""
        edge_id = verify(header, settings.secrets, "POST", path, body, now, nonces)
        started = time.perf_counter()
        if serialized is not None:
            with serialized:
                reply = protocol.handle(edge_id, path, body, now)
        else:
            reply = protocol.handle(edge_id, path, body, now)
        seconds = time.perf_counter() - started
        if store is not None:
            store.record_traffic(edge_id, now, reply.usage(body), len(reply.body))
        return _Handled(edge_id, reply, seconds)

    async def agent_endpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit() or int(declared) > settings.max_body:
            return _refuse(413 if declared and declared.isdigit() else 411, "body size")
        body = await request.body()
        metrics.received.inc(len(body))
        if len(body) != int(declared):
            return _refuse(400, "body shorter than declared")
        now = settings.clock()
        header = request.headers.get(HEADER, "")
        try:
            handled = await run_in_threadpool(handle, header, request.url.path, body, now)
        except AuthError as exc:
            metrics.auth_refused.inc()
            log.warning("refused %s from %s: %s", request.url.path, _client(request), exc)
            return _refuse(401, "authentication failed")
        except Exception as exc:  # the database is away: the agent retries later
            log.error("storage failed: %s", type(exc).__name__)
            return _refuse(503, "storage unavailable", retry_after=30.0)
        path, edge_id = request.url.path, handled.edge_id
        reply = handled.reply
        _count(metrics, path, handled)
        if reply.applied is not None:
            log.info("%s: stored version %d", edge_id, reply.applied.seq)
        if reply.refused:
            log.warning("%s: frame refused (%s)", edge_id, reply.refused)
        return Response(reply.body, status_code=reply.status, media_type=MEDIA_TYPE)

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

    routes: list[BaseRoute] = [
        Route(path, agent_endpoint, methods=["POST"]) for path in ServerProtocol.PATHS
    ]
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    routes.append(Route("/readyz", readyz, methods=["GET"]))
    routes.append(Route("/metrics", prometheus, methods=["GET"]))
    if store is not None:
        browser = Browser(store, settings.clock)
        access = ApiAccess(settings.api_token)
        routes += api_routes(browser, access) + page_routes(browser, access)
    return Starlette(routes=routes)


class _SharedNonces(NonceMemory):
    """The nonce memory, safe to use from the worker threads that verify requests."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def check_and_remember(self, key: str, timestamp: float, now: float) -> bool:
        with self._lock:
            return super().check_and_remember(key, timestamp, now)


class _DatabaseNonces(NonceMemory):
    """Nonces remembered in the database that several server processes share."""

    def __init__(self, store: SQLStore) -> None:
        super().__init__()
        self.store = store

    def check_and_remember(self, key: str, timestamp: float, now: float) -> bool:
        return self.store.remember_nonce(key, timestamp, now, self.window)


def _count(metrics: ServerMetrics, path: str, handled: _Handled) -> None:
    reply = handled.reply
    metrics.sent.inc(len(reply.body))
    metrics.requests.labels(path, str(reply.status)).inc()
    if path != Chunk.PATH:
        return
    metrics.upload_seconds.observe(handled.seconds)
    if reply.applied is not None:
        metrics.applied.inc()
        metrics.apply_seconds.observe(handled.seconds)
    elif reply.refused:
        metrics.refused.labels(reply.refused).inc()
    elif reply.status == 200 and _upload_status(reply) == "unknown-base":
        metrics.refused.labels("unknown-base").inc()  # the agent resends against a held base
    elif reply.status == 413:
        metrics.refused.labels("too-large").inc()
    elif reply.status == 400:
        metrics.refused.labels("malformed").inc()


def _upload_status(reply: Reply) -> str:
    answer = decode(reply.body, (UploadReply,))
    return answer.status if isinstance(answer, UploadReply) else ""


def _refuse(status: int, reason: str, retry_after: float = 0.0) -> Response:
    body = Refusal(reason, retry_after).encode()
    return Response(body, status_code=status, media_type=MEDIA_TYPE)


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


def uvicorn_config(
    app: Starlette, host: str, port: int, limits: Limits | None = None, **options: Any
) -> uvicorn.Config:
    """No Server or Date header (an idle agent pays for every response byte); one TLS session
    ticket per handshake instead of OpenSSL's two (each is ~250 bytes on the wire, and the agent
    keeps only the newest)."""
    limits = limits or Limits()
    return _Config(
        app,
        host=host,
        port=port,
        server_header=False,
        date_header=False,
        timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]  # a float works
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_head,
        **options,
    )


class _Config(uvicorn.Config):
    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            self.ssl.num_tickets = 1
