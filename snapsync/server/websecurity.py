"""What a browser may do with the server: one ASGI middleware in front of the API and the page.

A browser sends what it holds (cookies) with requests that another site's page makes, and a
form of another site can POST `text/plain` anywhere. So, for every path but the agent's (signed
requests that no browser can make; their answers stay as small as they are):

- A write (any method but GET/HEAD/OPTIONS) from another site is refused (403): the browser's
  `Sec-Fetch-Site` must say `same-origin` (or `none`: typed by the user), or, from a browser too
  old to send it, `Origin` must be this server's host. Scripts and the CLI send neither and
  authenticate with a bearer token, which no browser sends on its own.
- A write to the API must be `application/json` (415 otherwise): a cross-site form cannot send
  that without a CORS preflight, which the server never grants.
- A NUL in the path or query is refused (400): no stored text holds one (PostgreSQL refuses it).
- Every answer carries a strict Content-Security-Policy (no script at all, styles from this
  server only, no framing), nosniff, X-Frame-Options, a same-origin Referrer-Policy and
  `Cache-Control: no-store` (snapshots of clusters must not linger in shared caches).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # not no-referrer: with it a browser sends `Origin: null` on a same-origin form POST
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class WebGuard:
    """The browser-facing checks above, for every path not in `exempt` (the agent endpoints)."""

    def __init__(self, app: ASGIApp, exempt: Iterable[str] = (), api_prefix: str = "/api/"):
        self.app = app
        self.exempt = frozenset(exempt)
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        problem = self.problem(scope)
        if problem is not None:
            status, message = problem
            await self._refuse(scope, send, status, message)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = secured(message.get("headers") or [])
            await send(message)

        await self.app(scope, receive, with_headers)

    def problem(self, scope: Scope) -> tuple[int, str] | None:
        """(status, why) when the request is refused, else None."""
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower():
            return 400, "NUL is not allowed in a URL"
        if scope["method"] in SAFE_METHODS:
            return None
        headers = _headers(scope)
        if not same_site(headers):
            return 403, "cross-site request refused: write from this server's own pages"
        if scope["path"].startswith(self.api_prefix):
            media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
            if media_type != "application/json":
                return 415, "the body must be JSON (Content-Type: application/json)"
        return None

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str) -> None:
        if scope["path"].startswith(self.api_prefix):
            body, media_type = json.dumps({"error": message}).encode(), b"application/json"
        else:
            body, media_type = message.encode() + b"\n", b"text/plain; charset=utf-8"
        headers = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": secured(headers)})
        await send({"type": "http.response.body", "body": body})


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The body of a browse API or page request, or None past `limit` bytes (stops reading)."""
    body = b""
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            return None
    return body


def same_site(headers: dict[str, str]) -> bool:
    """Whether a browser made this request from this server's own page (or no browser did).

    `Sec-Fetch-Site` is set by the browser and cannot be forged by a page; `Origin` covers
    browsers from before it (2020). A request with neither comes from no browser, so it carries
    no ambient credential: it still needs the bearer token.
    """
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return True
    return _netloc(origin) == _host(headers.get("host", ""))


def secured(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` plus each security header the response does not set itself."""
    present = {name.lower() for name, _ in headers}
    return [*headers, *((n, v) for n, v in SECURITY_HEADERS if n not in present)]


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _netloc(origin: str) -> str | None:
    """`host[:port]` of an Origin, without its scheme's default port; None for `null` or junk."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host if port is None or str(port) == _DEFAULT_PORTS[parts.scheme] else f"{host}:{port}"


def _host(host: str) -> str:
    host = host.strip().lower()
    for port in _DEFAULT_PORTS.values():
        host = host.removesuffix(":" + port)
    return host
