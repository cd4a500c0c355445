"""The agent endpoints' plumbing in plain ASGI, in front of the Starlette app.

Why: an upload's own work is a few milliseconds, and Starlette's router (a regular expression per
route, browse and page routes included), Request, Response and exception wrappers took ~12 % of
the server's GIL samples at 1,500-object environments, uploads and as many /healthz together
(py-spy --gil, bench/results/server_load.md). Agent
requests are one POST of a declared-size body answered with a status, a Content-Length and maybe
`Connection: close`: this middleware takes the four agent paths straight from the ASGI scope
and hands everything else (browse API, page, /metrics, /healthz, /readyz) to the app. The checks
are the app's own (app.py, the request gate): only the framework around them is thinner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True)
class Answer:
    """What goes back to an agent: a status, a body, and whether the connection ends."""

    status: int
    body: bytes
    close: bool = False


class Disconnected(Exception):
    """The peer went away before its body arrived."""


AgentHandler = Callable[[Scope, Receive], Awaitable[Answer]]


class AgentPath:
    """POST to one of `paths` -> `handle`; another method there -> 405; anything else -> `app`."""

    def __init__(self, app: ASGIApp, paths: Mapping[str, str], handle: AgentHandler) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await send_answer(send, Answer(405, b"Method Not Allowed"), (b"allow", b"POST"))
            return
        await send_answer(send, await self.handle(scope, receive))


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the server's HTTP layer lower-cases them); of a
    repeated header the first, as Starlette's Headers.get gives."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


def client_host(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


async def read_body(receive: Receive, size: int) -> bytes:
    """The body, read no further than one byte past `size` (the declared length)."""
    pieces: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected()
        piece = message.get("body", b"")
        pieces.append(piece)
        received += len(piece)
        if received > size or not message.get("more_body", False):
            return b"".join(pieces)


async def send_answer(send: Send, answer: Answer, *extra: tuple[bytes, bytes]) -> None:
    """Status, Content-Length (and `Connection: close`), body: no Content-Type, as an idle agent
    pays for every response byte (schemas/wire.md)."""
    headers = [(b"content-length", str(len(answer.body)).encode()), *extra]
    if answer.close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
