"""`snapsync health`: the agent's heartbeat file (a liveness probe), or a server's view."""

from __future__ import annotations

from pathlib import Path

import click

from snapsync.cli.client import server_options, show_health
from snapsync.cli.command import Command, UserError


class _Unhealthy(UserError):
    """`snapsync health`: the agent's heartbeat is missing or too old."""

    exit_code = 1


@click.command(cls=Command)
@click.option(
    "--file",
    "health_file",
    envvar="SNAPSYNC_HEALTH_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The agent's --health-file.",
)
@click.option(
    "--max-age",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    envvar="SNAPSYNC_HEALTH_MAX_AGE",
    help="Seconds since the last heartbeat that still count as alive.",
)
@click.option("-e", "--env", help="An environment's health view on the server instead.")
@click.option("-o", "--output", type=click.Choice(["json"]), help="With -e: json.")
@server_options
def health(
    health_file: Path | None,
    max_age: float,
    env: str | None,
    output: str | None,
    server: str,
    api_token: str | None,
) -> None:
    """Agent liveness (--file), or what is broken in an environment (-e ENV, from a server).

    With --file: exit 0 if the agent's heartbeat is fresh, 1 if not (a container's liveness
    probe). The agent renews the file at least once a minute while its loop runs (more often
    while uploading), so --max-age must cover the slowest collection plus one request timeout.
    With -e ENV: the server's health view of ENV's newest snapshot.
    """
    import time

    if env:
        return show_health(env, server, api_token, output)
    if health_file is None:
        raise UserError("give --file (the agent's heartbeat) or -e ENV (a server's view)")

    try:
        modified = health_file.stat().st_mtime
    except OSError as exc:
        raise _Unhealthy(f"{health_file}: no heartbeat ({exc.strerror})") from None
    age = time.time() - modified
    if age > max_age:
        raise _Unhealthy(f"{health_file}: last heartbeat {age:.0f} s ago (limit {max_age:g} s)")
    click.echo(f"alive: last heartbeat {max(age, 0.0):.0f} s ago")
