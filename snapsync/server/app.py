"""The server's web face: an ASGI app (Starlette) around the protocol's server state machine.

This is where bytes meet the protocol: it authenticates each agent request (snapsync.protocol.
auth), bounds the body before reading it whole, and hands edge id, path and body to
ServerProtocol. A failed check is a 401 that says nothing of what failed; the log says it.
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
from starlette.routing import Route

from snapsync.errors import AuthError
from snapsync.protocol.auth import HEADER, NonceMemory, verify
from snapsync.protocol.messages import Refusal
from snapsync.protocol.server import Reply, ServerConfig, ServerProtocol, VersionStore

log = logging.getLogger("snapsync.server")
MEDIA_TYPE = "application/msgpack"
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


def create_app(settings: ServerSettings) -> Starlette:
    protocol = ServerProtocol(settings.store, settings.protocol)
    nonces = NonceMemory()
    serialized = threading.Lock()  # the memory store is not thread-safe; SQLite has transactions

    def handle(edge_id: str, path: str, body: bytes, now: float) -> Reply:
        with serialized:
            return protocol.handle(edge_id, path, body, now)

    async def agent_endpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit() or int(declared) > settings.max_body:
            return _refuse(413 if declared and declared.isdigit() else 411, "body size")
        body = await request.body()
        if len(body) != int(declared):
            return _refuse(400, "body shorter than declared")
        now = settings.clock()
        try:
            edge_id = verify(
                request.headers.get(HEADER, ""),
                settings.secrets,
                "POST",
                request.url.path,
                body,
                now,
                nonces,
            )
        except AuthError as exc:
            log.warning("refused %s from %s: %s", request.url.path, _client(request), exc)
            return _refuse(401, "authentication failed")
        reply = await run_in_threadpool(handle, edge_id, request.url.path, body, now)
        if reply.applied is not None:
            log.info("%s: stored version %d", edge_id, reply.applied.seq)
        if reply.refused:
            log.warning("%s: frame refused (%s)", edge_id, reply.refused)
        return Response(reply.body, status_code=reply.status, media_type=MEDIA_TYPE)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [Route(path, agent_endpoint, methods=["POST"]) for path in ServerProtocol.PATHS]
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    return Starlette(routes=routes)


def _refuse(status: int, reason: str) -> Response:
    return Response(Refusal(reason).encode(), status_code=status, media_type=MEDIA_TYPE)


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def uvicorn_config(app: Starlette, host: str, port: int, **options: Any) -> uvicorn.Config:
    """No Server or Date header: an idle agent pays for every response byte."""
    return uvicorn.Config(
        app, host=host, port=port, server_header=False, date_header=False, **options
    )
