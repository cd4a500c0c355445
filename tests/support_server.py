"""A real snapsync server (uvicorn) on a loopback port, for integration tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from snapsync.server import ServerSettings, create_app, uvicorn_config


class Clock:
    """A server's clock that a test sets (`now`), starting at 2026-01-01T00:00:00Z."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextmanager
def live_server(
    settings: ServerSettings,
    tls: tuple[Path, Path] | None = None,
    port: int = 0,
    **options: Any,
) -> Iterator[str]:
    """Serve the app on 127.0.0.1 in a thread; yields its base URL; stops it on exit.

    `tls`: (certificate, key) to serve HTTPS; `port`: a fixed port (to restart a server where
    agents expect it); `options`: more uvicorn_config arguments.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    if tls is not None:
        options.update(ssl_certfile=str(tls[0]), ssl_keyfile=str(tls[1]))
    config = uvicorn_config(
        create_app(settings), "127.0.0.1", port, log_level="warning", lifespan="off", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
