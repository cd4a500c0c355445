"""A lean HTTP/1.1 keep-alive client for load benchmarks: one connection, asyncio streams, the
request written in one piece and the answer read by its Content-Length.

Why not httpx: a load client on the same 2 cores as the server it measures takes CPU from it;
httpx spends ~0.5 ms of Python per request and tens of kB per client, which at 20,000 sites
(one connection each) and hundreds of requests a second is a large share of the machine. This
speaks only what `snapsync serve` answers (a status line, headers, a Content-Length body; no
chunked answers, no TLS) and refuses anything else. Bounded: a head of at most 64 KiB, a body of
at most 64 MiB, every read under the caller's timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 2**20


class ClosedConnection(ConnectionError):
    """The server closed the connection before answering (a kept-alive one it timed out)."""


class Connection:
    """One keep-alive connection to host:port, opened on first use and after the server closed
    it. Not for concurrent use: one request at a time, as one agent sends them."""

    def __init__(self, host: str, port: int, timeout: float = 120.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, bytes]:
        """(status, body). ClosedConnection when a kept connection was closed under it (the
        caller decides whether to resend); OSError, TimeoutError as they come."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(data)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, data: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=MAX_HEAD
            )
        assert self._reader is not None
        self._writer.write(data)
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise ClosedConnection("closed before an answer") from exc
        except asyncio.LimitOverrunError as exc:
            raise ValueError("answer head over 64 KiB") from exc
        status_line, *fields = head[:-4].decode("latin-1").split("\r\n")
        if not status_line.startswith("HTTP/1.1 "):
            raise ValueError(f"not an HTTP/1.1 answer: {status_line[:40]!r}")
        status, length, close = int(status_line[9:12]), None, False
        for field in fields:
            name, _, value = field.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise ValueError("chunked answers are not spoken here")
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length is None or not 0 <= length <= MAX_BODY:
            raise ValueError(f"answer without a usable Content-Length ({length})")
        answer = await self._reader.readexactly(length)
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
