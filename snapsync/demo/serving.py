# `snapsync demo --keep-serving`: the real server (the same app as `snapsync serve`) on the demo's
# database, on 127.0.0.1, until Ctrl-C.
"""Serve the demo's database with the real HTTP server, browse page and API included."""

from __future__ import annotations

import socket
from collections.abc import Callable

from snapsync.errors import InputError
from snapsync.server.store import Stores

HOST = "127.0.0.1"


def bind(port: int) -> socket.socket:
    """A listening-ready socket on 127.0.0.1 (port 0: a free one), bound before the URL is
    printed so the URL is right."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from None
    return sock


def serve(stores: Stores, token: str, sock: socket.socket, announce: Callable[[str], None]) -> None:
    """Run uvicorn on `sock` until interrupted; the browse page needs `token`."""
    import uvicorn

    from snapsync.server import ServerSettings, create_app, uvicorn_config
    from snapsync.server.environments import AgentSecrets

    port = sock.getsockname()[1]
    secrets = AgentSecrets(stores.registry, None)
    settings = ServerSettings(secrets=secrets, stores=stores, api_token=token)
    config = uvicorn_config(create_app(settings), HOST, port, log_level="warning")
    announce(f"serving http://{HOST}:{port}/ (sign in with the API token {token}); Ctrl-C stops")
    uvicorn.Server(config).run(sockets=[sock])
