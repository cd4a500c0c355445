"""`snapsync serve`: the server, its store and its listening socket(s)."""

from __future__ import annotations

import logging
import math
import socket
import sys
from contextlib import closing

import click

from snapsync.cli.command import Command
from snapsync.errors import InputError
from snapsync.protocol.auth import check_secret

AGENT_SECRET_SETTING = "--agent-secret (SNAPSYNC_AGENT_SECRET)"


@click.command(cls=Command)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="SNAPSYNC_HOST",
    help="Address to listen on.",
)
@click.option(
    "--port",
    type=int,
    default=8480,
    show_default=True,
    envvar="SNAPSYNC_PORT",
    help="TCP port to listen on.",
)
@click.option(
    "--database",
    default="snapsync.db",
    show_default=True,
    envvar="SNAPSYNC_DATABASE",
    help="SQLite file, or postgresql://user@host/db to share one database between servers.",
)
@click.option(
    "--agent-secret",
    envvar="SNAPSYNC_AGENT_SECRET",
    help="Shared secret for environments not registered with `snapsync env add`.",
)
@click.option(
    "--api-token",
    envvar="SNAPSYNC_API_TOKEN",
    help="Token for the browse API (Bearer) and page (signed in once). Without it both are off.",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    envvar="SNAPSYNC_TLS_CERT",
    help="PEM certificate (chain): serve HTTPS. Needs --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    envvar="SNAPSYNC_TLS_KEY",
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--keep-versions",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    envvar="SNAPSYNC_KEEP_VERSIONS",
    metavar="VERSIONS",
    help="History kept per environment, in versions.",
)
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0, min_open=True),
    default=90.0,
    show_default=True,
    envvar="SNAPSYNC_KEEP_DAYS",
    metavar="DAYS",
    help="History kept per environment, in days.",
)
@click.option(
    "--keep-alive",
    envvar="SNAPSYNC_KEEP_ALIVE",
    default="150",
    show_default=True,
    help="Seconds an idle agent connection is kept open (1-3600); outlive the agents' "
    "ping interval, or every ping pays a new TLS handshake.",
)
@click.option(
    "--max-connections",
    envvar="SNAPSYNC_MAX_CONNECTIONS",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Connections open at once, idle kept-alive ones included (503 beyond): one per agent, "
    "plus browsers. Raise `ulimit -n` to match.",
)
@click.option("--access-log", is_flag=True, help="Log every HTTP request (noisy with many agents).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    envvar="SNAPSYNC_WORKERS",
    help="Server processes sharing the port (each with its own cache; SQLite or PostgreSQL).",
)
@click.option(
    "--state-cache-mb",
    type=click.IntRange(min=0),
    default=512,
    show_default=True,
    envvar="SNAPSYNC_STATE_CACHE_MB",
    metavar="MiB",
    help="Memory per process for environments' newest versions (a delta to a cached one costs "
    "no read); about 6x a snapshot's msgpack size each.",
)
def serve(
    host: str,
    port: int,
    database: str,
    agent_secret: str | None,
    api_token: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    keep_versions: int,
    keep_days: float,
    keep_alive: str,
    max_connections: int,
    access_log: bool,
    workers: int,
    state_cache_mb: int,
) -> None:
    """Receive agents' frames, keep every environment's snapshots, serve the browse API."""
    import uvicorn

    from snapsync.server import ServerSettings, create_app, uvicorn_config
    from snapsync.server.app import Limits
    from snapsync.server.environments import AgentSecrets
    from snapsync.server.storage import Retention
    from snapsync.server.store import open_store

    if bool(tls_cert) != bool(tls_key):
        raise InputError("--tls-cert and --tls-key go together")
    shared = check_secret(agent_secret, AGENT_SECRET_SETTING) if agent_secret else None
    if api_token:
        check_secret(api_token, "--api-token (SNAPSYNC_API_TOKEN)")
    limits = Limits(keep_alive=_keep_alive(keep_alive), max_connections=max_connections)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    retention = Retention(keep_versions, keep_days * 86400.0)
    cache_bytes = state_cache_mb * 2**20
    with closing(open_store(database, retention, cache_bytes)) as stores:  # checked up front
        if not agent_secret and not stores.registry.registrations():
            raise InputError(
                "no agent can authenticate: pass --agent-secret or register an environment "
                "with `snapsync env add NAME`"
            )
    if not api_token:
        logging.getLogger("snapsync.server").warning(
            "no --api-token: the browse API and page are off"
        )

    def run(sock: socket.socket | None) -> None:
        # several processes: replays refused across them
        stores = open_store(database, retention, cache_bytes, shared_by_processes=workers > 1)
        settings = ServerSettings(
            secrets=AgentSecrets(stores.registry, shared),
            stores=stores,
            api_token=api_token or None,
        )
        config = uvicorn_config(
            create_app(settings),
            host,
            port,
            limits,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
            access_log=access_log,
        )
        uvicorn.Server(config).run(sockets=[sock] if sock else None)

    if workers == 1:
        run(None)
        return
    from snapsync.server.workers import bind, run_workers

    try:
        sock = bind(host, port)
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sys.exit(run_workers(workers, sock, run))


def _keep_alive(text: str) -> float:
    """--keep-alive: finite seconds from 1 to an hour (longer holds sockets for dead peers)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 1 <= seconds <= 3600:  # also refuses nan and inf
        raise InputError(
            f"--keep-alive {text!r}: expected seconds from 1 to 3600 (SNAPSYNC_KEEP_ALIVE)"
        )
    return seconds
