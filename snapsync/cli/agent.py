"""`snapsync agent`: the embeddable agent loop, configured by flags and SNAPSYNC_* variables."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from snapsync.canonical.profile import load_profile
from snapsync.cli.command import AGENT_SECRET_SETTING, Command, UserError
from snapsync.cli.source import pop_source, source_options
from snapsync.errors import InputError
from snapsync.protocol.auth import check_secret

if TYPE_CHECKING:
    from snapsync.agent.loop import CommandRunner


class _NotCurrent(UserError):
    """`agent --once` ran, but the server does not hold our latest version."""

    exit_code = 1


def _namespaces(text: str) -> frozenset[str] | None:
    """`--command-namespaces a,b`: None (any) when empty; each must be a namespace name."""
    from snapsync.protocol.commands import OBJECT_NAME

    names = frozenset(filter(None, (n.strip() for n in text.split(","))))
    bad = sorted(n for n in names if not OBJECT_NAME.fullmatch(n))
    if bad:
        raise InputError(f"--command-namespaces: {bad[0]!r} is not a namespace name")
    return names or None


def _default_state_dir(edge_id: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "snapsync" / edge_id


@click.command(cls=Command)
@source_options
@click.option(
    "--server-url",
    envvar="SNAPSYNC_SERVER_URL",
    required=True,
    metavar="URL",
    help="Server base URL.",
)
@click.option("--edge-id", envvar="SNAPSYNC_EDGE_ID", required=True, help="This environment's id.")
@click.option(
    "--agent-secret",
    envvar="SNAPSYNC_AGENT_SECRET",
    required=True,
    help="Shared secret that signs every request (never sent). Prefer the variable to the flag.",
)
@click.option(
    "--insecure-poll",
    is_flag=True,
    envvar="SNAPSYNC_INSECURE_POLL",
    help="Accept a self-signed server certificate (TLS is still used).",
)
@click.option(
    "--ping-interval",
    envvar="SNAPSYNC_PING_INTERVAL",
    type=float,
    default=60.0,
    metavar="SECONDS",
    help="Seconds between pings (heartbeat and command pick-up).",
)
@click.option(
    "--snapshot-interval",
    envvar="SNAPSYNC_SNAPSHOT_INTERVAL",
    type=float,
    default=60.0,
    metavar="SECONDS",
    help="Seconds between collections; an upload follows only a change.",
)
@click.option(
    "--command-interval",
    envvar="SNAPSYNC_COMMAND_INTERVAL",
    type=float,
    default=10.0,
    metavar="SECONDS",
    help="Seconds between pings while a command result is pending.",
)
@click.option(
    "--budget",
    envvar="SNAPSYNC_BUDGET",
    default="0",
    show_default=True,
    metavar="SIZE",
    help="Data budget per period in bytes, with a unit: 500MB, 1GiB (kB/MB/GB, KiB/MiB/GiB); "
    "0 = unlimited.",
)
@click.option(
    "--budget-period",
    envvar="SNAPSYNC_BUDGET_PERIOD",
    default="month",
    show_default=True,
    metavar="PERIOD",
    help="Budget period: day or month (UTC calendar), or a number of seconds.",
)
@click.option(
    "--state-dir",
    envvar="SNAPSYNC_STATE_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the acknowledged base is kept [default: $XDG_STATE_HOME/snapsync/EDGE_ID].",
)
@click.option(
    "--profile",
    envvar="SNAPSYNC_PROFILE",
    default="default",
    show_default=True,
    metavar="NAME|FILE",
    help="Canonical profile: a built-in name (default, minimal, endpoints) or a YAML file.",
)
@click.option(
    "--collect",
    "collect_mode",
    envvar="SNAPSYNC_COLLECT",
    type=click.Choice(["watch", "list"]),
    default="watch",
    show_default=True,
    help="watch: list once, then keep a cache current by WATCH (a cycle costs no relist); "
    "list: LIST every kind each cycle and hold nothing between cycles, for API servers or "
    "proxies that break watches and agents short of memory. --once always lists.",
)
@click.option(
    "--once",
    is_flag=True,
    help="One cycle, then exit: 0 only when the server confirmed our latest version.",
)
@click.option(
    "--allow-commands",
    is_flag=True,
    envvar="SNAPSYNC_ALLOW_COMMANDS",
    help="Run the cluster commands the server queues (scale, delete-pod, restart-rollout); "
    "needs the RBAC in deploy/agent/actions. Off: they are refused and reported.",
)
@click.option(
    "--command-namespaces",
    envvar="SNAPSYNC_COMMAND_NAMESPACES",
    default="",
    help="Comma-separated namespaces the allowed commands may act in; commands on objects "
    "elsewhere are refused and reported. Empty: any namespace the RBAC allows.",
)
@click.option(
    "--health-file",
    envvar="SNAPSYNC_HEALTH_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Heartbeat file renewed after every exchange and cycle; `snapsync health` checks it.",
)
def agent(
    server_url: str,
    edge_id: str,
    agent_secret: str,
    insecure_poll: bool,
    ping_interval: float,
    snapshot_interval: float,
    command_interval: float,
    budget: str,
    budget_period: str,
    state_dir: Path | None,
    profile: str,
    collect_mode: str,
    once: bool,
    allow_commands: bool,
    command_namespaces: str,
    health_file: Path | None,
    **kwargs: Any,
) -> None:
    """Keep a server current with this cluster: collect, diff, ship, obey commands."""
    from snapsync.agent import Agent, HttpTransport, format_report, refuse_cluster_commands
    from snapsync.protocol import AgentConfig, BudgetConfig, Intervals
    from snapsync.protocol.budget import parse_size

    secret = check_secret(agent_secret, AGENT_SECRET_SETTING)
    source = pop_source(kwargs)
    namespaces = _namespaces(command_namespaces)
    state = state_dir or _default_state_dir(edge_id)
    config = AgentConfig(
        intervals=Intervals(
            ping=ping_interval, snapshot=snapshot_interval, command=command_interval
        ),
        budget=BudgetConfig(limit=parse_size(budget), period=budget_period),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # per-request noise; failures raise
    commands: CommandRunner = refuse_cluster_commands
    if allow_commands:
        if source.from_files:
            raise InputError("--allow-commands needs a live cluster, not --from-file")
        from snapsync.agent import KubeCommandRunner

        commands = KubeCommandRunner(source.kube_options(), namespaces=namespaces)
        where = f" in namespaces {', '.join(sorted(namespaces))}" if namespaces else ""
    logging.getLogger("snapsync.agent").info(
        "cluster commands: %s",
        f"allowed{where}" if allow_commands else "refused (see --allow-commands)",
    )
    runner = Agent(
        source.collector(watch=collect_mode == "watch" and not once, cache_dir=state / "discovery"),
        HttpTransport(
            server_url,
            edge_id,
            secret,
            insecure=insecure_poll,
            keep_alive=config.intervals.longest + 60.0,
        ),
        state,
        config,
        profile=load_profile(profile),
        environment_id=edge_id,
        commands=commands,
        heartbeat=health_file,
    )
    try:
        if once:
            report = runner.step()
            click.echo(format_report(report), err=True)
            problem = _once_problem(report)
            if problem:
                raise _NotCurrent(problem)
            return
        runner.run()
    except KeyboardInterrupt:
        runner.stop()
    finally:
        runner.close()
        close = getattr(commands, "close", None)
        if close is not None:
            close()


def _once_problem(report: Any) -> str:
    """Why `--once` did not end with the server confirming our latest version ("" if it did).

    What the agent believes (a restored ack of an unchanged cluster) is not enough: only an
    answer of the server during this run counts, so a dead server or a wrong secret fails.
    """
    from snapsync.protocol.events import AuthRejected, BackingOff

    if report.confirmed:
        return ""
    for event in report.events:
        if isinstance(event, AuthRejected):
            return "the server refused our credentials: check --edge-id and --agent-secret"
    for event in report.events:
        if isinstance(event, BackingOff):
            return f"the server did not confirm our latest version: {event.reason}"
    if report.collect_error:
        return f"collection failed: {report.collect_error}"
    return "the server is not current yet (budget or pending upload; see the log line above)"
