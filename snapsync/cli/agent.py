"""`snapsync agent`: the embeddable agent loop, configured by flags and SNAPSYNC_* variables.

The variables are read by `AgentSettings.from_env` (snapsync.agent.settings), as an embedder
reads them: click only shows them in --help, and the flags given on the command line are laid
over a copy of the environment, so flags win and every value is parsed, defaulted and refused
in one place.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from snapsync.agent.settings import (
    AGENT_SECRET,
    ALLOW_COMMANDS,
    BUDGET,
    BUDGET_BURST,
    BUDGET_PERIOD,
    BUDGET_POLICY,
    COLLECT,
    COLLECT_MODES,
    COMMAND_INTERVAL,
    COMMAND_NAMESPACES,
    EDGE_ID,
    HEALTH_FILE,
    INSECURE_POLL,
    PING_INTERVAL,
    PROFILE,
    SERVER_URL,
    SNAPSHOT_INTERVAL,
    STATE_DIR,
    UPLOAD_INTERVAL_CEILING,
    UPLOAD_INTERVAL_FLOOR,
    AgentSettings,
    Variable,
)
from snapsync.cli.command import Command, UserError
from snapsync.cli.source import pop_source, source_options
from snapsync.errors import InputError
from snapsync.protocol.budget import POLICIES

_F = TypeVar("_F", bound=Callable[..., Any])


class _NotCurrent(UserError):
    """`agent --once` ran, but the server does not hold our latest version."""

    exit_code = 1


class _FromSettings(click.Option):
    """An option whose variable AgentSettings.from_env reads: --help shows its variable, default
    and [required] as any option's, but click neither reads the variable nor insists on the flag
    (from_env says what is missing)."""

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        return None

    def value_is_missing(self, value: Any) -> bool:
        return False


def _setting(variable: Variable, *decls: str, **kwargs: Any) -> Callable[[_F], _F]:
    """The option of `variable`: its flag, its variable (shown in --help) and its default."""
    if not kwargs.get("is_flag") and variable.default is not None:
        kwargs["default"] = variable.default
    return click.option(variable.flag, *decls, cls=_FromSettings, envvar=variable.name, **kwargs)


def _agent_source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    return source_options(command, env_option=_FromSettings)


def _settings(ctx: click.Context) -> AgentSettings:
    """The environment with the flags given on the command line laid over it, for from_env."""
    given: dict[str, str] = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name or "")
        if isinstance(param, _FromSettings) and source is ParameterSource.COMMANDLINE:
            value = ctx.params[param.name or ""]
            given[str(param.envvar)] = "1" if value is True else str(value)
    return AgentSettings.from_env({**os.environ, **given})


@click.command(cls=Command)
@_agent_source_options
@_setting(
    SERVER_URL,
    required=True,
    metavar="URL",
    help="Server base URL.",
)
@_setting(
    EDGE_ID,
    required=True,
    help="This environment's id.",
)
@_setting(
    AGENT_SECRET,
    required=True,
    help="Shared secret that signs every request (never sent). Prefer the variable to the flag.",
)
@_setting(
    INSECURE_POLL,
    is_flag=True,
    help="Accept a self-signed server certificate (TLS is still used).",
)
@_setting(
    PING_INTERVAL,
    type=float,
    metavar="SECONDS",
    help="Seconds between pings (heartbeat and command pick-up).",
)
@_setting(
    SNAPSHOT_INTERVAL,
    type=float,
    metavar="SECONDS",
    help="Seconds between collections; an upload follows only a change.",
)
@_setting(
    COMMAND_INTERVAL,
    type=float,
    metavar="SECONDS",
    help="Seconds between pings while a command result is pending.",
)
@_setting(
    BUDGET,
    show_default=True,
    metavar="SIZE",
    help="Data budget per period in bytes, with a unit: 500MB, 1GiB (kB/MB/GB, KiB/MiB/GiB); "
    "0 = unlimited.",
)
@_setting(
    BUDGET_PERIOD,
    show_default=True,
    metavar="PERIOD",
    help="Budget period: day or month (UTC calendar), or a number of seconds.",
)
@_setting(
    BUDGET_POLICY,
    type=click.Choice(POLICIES),
    show_default=True,
    help="paced: the budget accrues through the period, so uploads space out as churn grows "
    "and never stop while it accrues; fixed: upload until the period's budget is spent.",
)
@_setting(
    BUDGET_BURST,
    metavar="SIZE",
    help="Paced: the most saved-up budget one burst may draw on [default: a day of the "
    "period's pace, a quarter of the budget for periods of a day or less].",
)
@_setting(
    UPLOAD_INTERVAL_FLOOR,
    type=float,
    show_default=True,
    metavar="SECONDS",
    help="Paced: seconds between upload starts, at least.",
)
@_setting(
    UPLOAD_INTERVAL_CEILING,
    type=float,
    show_default=True,
    metavar="SECONDS",
    help="Paced: while churn runs ahead of the pace, an upload goes at least this often, "
    "on credit the pace repays.",
)
@_setting(
    STATE_DIR,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the acknowledged base is kept [default: $XDG_STATE_HOME/snapsync/EDGE_ID].",
)
@_setting(
    PROFILE,
    show_default=True,
    metavar="NAME|FILE",
    help="Canonical profile: a built-in name (default, minimal, endpoints) or a YAML file.",
)
@_setting(
    COLLECT,
    "collect_mode",
    type=click.Choice(COLLECT_MODES),
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
@_setting(
    ALLOW_COMMANDS,
    is_flag=True,
    help="Run the cluster commands the server queues (scale, delete-pod, restart-rollout); "
    "needs the RBAC in deploy/agent/actions. Off: they are refused and reported.",
)
@_setting(
    COMMAND_NAMESPACES,
    help="Comma-separated namespaces the allowed commands may act in; commands on objects "
    "elsewhere are refused and reported. Empty: any namespace the RBAC allows.",
)
@_setting(
    HEALTH_FILE,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Heartbeat file renewed after every exchange and cycle; `snapsync health` checks it.",
)
def agent(once: bool, **options: Any) -> None:
    """Keep a server current with this cluster: collect, diff, ship, obey commands."""
    from snapsync.agent import format_report

    settings = _settings(click.get_current_context())
    source = replace(
        pop_source(options), kubeconfig=settings.kubeconfig, in_cluster=settings.in_cluster
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # per-request noise; failures raise
    if settings.allow_commands and source.from_files:
        raise InputError("--allow-commands needs a live cluster, not --from-file")
    commands = settings.command_runner(source.kube_options() if settings.allow_commands else None)
    namespaces = settings.command_namespaces
    where = f" in namespaces {', '.join(sorted(namespaces))}" if namespaces else ""
    logging.getLogger("snapsync.agent").info(
        "cluster commands: %s",
        f"allowed{where}" if settings.allow_commands else "refused (see --allow-commands)",
    )
    watch = settings.collect == "watch" and not once
    runner = settings.agent(
        source.collector(watch=watch, cache_dir=settings.state_dir / "discovery"), commands
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
