"""How the agent reaches the server. Separate classes behind one interface (the httpx habit), so
tests and embedders swap the transport without monkeypatching.

`HttpTransport` posts each request with httpx: TLS verified unless insecure polling is asked for
(SNAPSYNC_INSECURE_POLL=1, for self-signed servers), a timeout on every request, proxy settings
from the environment honoured, every request signed (snapsync.protocol.auth).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from snapsync.errors import InputError, TransportError
from snapsync.protocol.auth import HEADER, sign

CONTENT_TYPE = "application/msgpack"  # short: headers are paid for on every ping


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    wire_bytes: int  # what crossed the link for this exchange, headers included, as far as known


class Transport(Protocol):
    def post(self, path: str, body: bytes) -> Answer: ...

    def close(self) -> None: ...


class HttpTransport:
    def __init__(
        self,
        server_url: str,
        edge_id: str,
        secret: bytes,
        *,
        insecure: bool = False,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        client: httpx.Client | None = None,
    ) -> None:
        if not server_url.startswith(("http://", "https://")):
            raise InputError(f"server URL {server_url!r} must start with http:// or https://")
        self.edge_id = edge_id
        self.secret = secret
        self.clock = clock
        self.client = client or httpx.Client(
            base_url=server_url.rstrip("/"),
            verify=not insecure,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            trust_env=True,
            headers={
                "User-Agent": "snapsync",
                "Accept": CONTENT_TYPE,
                "Accept-Encoding": "identity",
            },
        )
        self._prefix = httpx.URL(server_url).path.rstrip("/")

    def post(self, path: str, body: bytes) -> Answer:
        full_path = self._prefix + path
        headers = {
            HEADER: sign(self.secret, "POST", full_path, self.edge_id, body, self.clock()),
            "Content-Type": CONTENT_TYPE,
        }
        try:
            response = self.client.post(path, content=body, headers=headers)
            content = response.content
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        sent = _request_size(response.request)
        received = len(content) + sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 17
        return Answer(response.status_code, content, sent + received)

    def close(self) -> None:
        self.client.close()


def _request_size(request: httpx.Request) -> int:
    line = len(request.method) + len(request.url.raw_path) + 12
    headers = sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
    return line + headers + 2 + len(request.content)
