"""`snapsync demo`: flags into DemoOptions; snapsync.demo runs the whole product locally."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from snapsync.cli.command import Command, note
from snapsync.protocol.auth import check_secret


@click.command(cls=Command)
@click.option(
    "--objects",
    type=int,
    default=300,
    show_default=True,
    metavar="N",
    help="Cluster size, in objects.",
)
@click.option(
    "--churn",
    type=click.Choice(["quiet", "steady", "busy"]),
    default="steady",
    show_default=True,
    help="How fast the cluster changes.",
)
@click.option(
    "--link",
    type=click.Choice(["good", "flaky", "satellite", "dead-for-an-hour"]),
    default="flaky",
    show_default=True,
    help="Link profile (loss, bandwidth, latency, outages; see the README).",
)
@click.option(
    "--duration",
    default="1d",
    show_default=True,
    metavar="DURATION",
    help="Simulated time to run: 1d, 6h, 30m, 90s.",
)
@click.option(
    "--interval",
    default="5m",
    show_default=True,
    metavar="DURATION",
    help="Simulated time between collections: 5m, 30s, 1h.",
)
@click.option(
    "--speed",
    type=float,
    default=0.0,
    metavar="RATIO",
    help="At most this many simulated seconds per real second (e.g. 1440: a day in a minute); "
    "0 = as fast as the machine goes.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--budget",
    default="5MB",
    show_default=True,
    metavar="SIZE",
    help="Data budget per simulated day in bytes, with a unit: 5MB, 1GiB; 0 = unlimited.",
)
@click.option(
    "--database",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file to create [default: a new one in a temporary directory].",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the demo's database (created if missing).",
)
@click.option(
    "--keep-serving", is_flag=True, help="Afterwards, serve the result on 127.0.0.1 until Ctrl-C."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="TCP port with --keep-serving; 0 = a free one.",
)
@click.option("--api-token", help="With --keep-serving: the token to sign in to the page [random].")
def demo(
    objects: int,
    churn: str,
    link: str,
    duration: str,
    interval: str,
    speed: float,
    seed: int,
    budget: str,
    database: Path | None,
    directory: Path | None,
    keep_serving: bool,
    port: int,
    api_token: str | None,
) -> None:
    """The whole product on this machine: a simulated cluster, agent, flaky link and server.

    A simulated day of cluster churn goes through the real agent and server protocol over a
    lossy, data-capped link with outages, into a SQLite database you can browse afterwards;
    bytes shipped are compared with the naive baselines on the same states.
    """
    from snapsync.demo import DemoOptions, parse_duration, run_demo
    from snapsync.units import parse_size

    if api_token:
        check_secret(api_token, "--api-token")
    options = DemoOptions(
        objects=objects,
        churn=churn,
        link=link,
        duration=parse_duration(duration),
        interval=parse_duration(interval),
        speed=speed,
        seed=seed,
        budget=parse_size(budget),
    )
    console = Console()
    terminal = console.is_terminal and not console.is_dumb_terminal
    try:
        run_demo(
            options,
            click.echo,
            database=database,
            directory=directory,
            live=console if terminal else None,
            keep_serving=keep_serving,
            port=port,
            api_token=api_token,
        )
    except KeyboardInterrupt:
        note("interrupted")
