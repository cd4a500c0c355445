"""What one connection may cost the server before it has said what it wants.

uvicorn's h11 protocol arms its keep-alive timer only after a response, and stops it at the first
byte that arrives: a client that connects and says nothing, or dribbles a request head a byte a
minute, holds its connection (one of `Limits.max_connections`) for good. `HeadDeadline` gives
every request head a deadline from the moment it is awaited on a new connection or starts to
arrive on a kept one; a head still incomplete then closes the connection. Idle kept-alive
connections stay governed by the keep-alive timeout alone. Bodies have their own deadline in the
app (app.py), where the request is known.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

# Seconds a request head may take: an agent's is ~200 bytes in one segment, a browser's a few kB.
HEAD_TIMEOUT = 30.0


class HeadDeadline(H11Protocol):
    """uvicorn's h11 protocol, with a deadline on each request head (`config.head_timeout`)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.head_timeout: float = getattr(config, "head_timeout", HEAD_TIMEOUT)
        self._head_timer: asyncio.TimerHandle | None = None
        self._cycles = 0  # responses completed: a timer only judges the head it was armed for

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._cycles += 1
        self._disarm()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._expired, self._cycles)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self, cycle: int) -> None:
        self._head_timer = None
        head_incomplete = cycle == self._cycles and self.conn.their_state is h11.IDLE
        if head_incomplete and not self.transport.is_closing():
            self.logger.info("closed a connection: no request head within %ss", self.head_timeout)
            self.transport.close()
