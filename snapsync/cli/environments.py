"""`snapsync env add|list`: register environments in a server's database, and list them."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from snapsync.cli.command import Group, note
from snapsync.kubeview import age
from snapsync.units import format_size


@click.group(cls=Group, name="env")
def env_group() -> None:
    """Register environments: each gets an edge id and its own agent secret."""


@env_group.command(name="add")
@click.argument("name")
@click.option("--group", default="", help="Fleet group (site, region, customer…).")
@click.option("--tag", "tags", multiple=True, help="A tag; repeatable.")
@click.option("--edge-id", help="The environment's id [default: derived from NAME].")
@click.option("--database", default="snapsync.db", show_default=True, envvar="SNAPSYNC_DATABASE")
def env_add(
    name: str, group: str, tags: tuple[str, ...], edge_id: str | None, database: str
) -> None:
    """Register NAME; prints its edge id and join token (the agent secret) once."""
    import time

    from snapsync.server.environments import enroll
    from snapsync.server.store import open_store

    made = enroll(open_store(database).registry, name, time.time(), group, tags, edge_id)
    edge = made.registration.edge_id
    click.echo(f"edge id:    {edge}")
    click.echo(f"join token: {made.token}")
    click.echo(
        f"agent:      SNAPSYNC_EDGE_ID={edge} SNAPSYNC_AGENT_SECRET={made.token} "
        "snapsync agent --server-url https://SERVER:8480"
    )
    note("the join token is shown only now; keep it like a password")


@env_group.command(name="list")
@click.option("--database", default="snapsync.db", show_default=True, envvar="SNAPSYNC_DATABASE")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def env_list(database: str, as_json: bool) -> None:
    """Environments the server knows: registered ones and any agent heard from."""
    import time

    from snapsync.server.browse import environment_json
    from snapsync.server.store import open_store

    now = time.time()
    found = [environment_json(e, now) for e in open_store(database).queries.environments(now)]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table(show_edge=False)
    columns = ("edge id", "name", "group", "tags", "status", "last seen", "version")
    for column in (*columns, "snapshot age", "budget"):
        table.add_column(column)
    for e in found:
        table.add_row(
            e["edge_id"],
            e["name"],
            e["group"],
            ",".join(e["tags"]),
            e["status"],
            e["last_seen"] or "never",
            str(e["version"] or "-"),
            _age(e["freshness"]),
            _budget(e["budget"]),
        )
    Console().print(table)


def _age(freshness: dict[str, Any]) -> str:
    """The newest version's age as kubectl prints ages (`3m20s`), and a clock running ahead."""
    seconds = freshness["age_seconds"]
    if seconds is None:
        return "-"
    ahead = freshness["clock_ahead_seconds"]
    return age(seconds) + (f" (agent clock {age(ahead)} ahead)" if ahead else "")


def _budget(budget: dict[str, Any] | None) -> str:
    """`12.3 MB of 500.0 MB, ahead of pace, 2.00 MB waiting`: the agent's latest report."""
    if budget is None:
        return "-"
    text = f"{format_size(budget['spent'])} of {format_size(budget['limit'])}, {budget['reason']}"
    return text + (f", {format_size(budget['waiting'])} waiting" if budget["waiting"] else "")
