"""The `snapsync` group: every command module registered under one root, and the entry point."""

from __future__ import annotations

import sys

import click

from snapsync.cli.agent import agent
from snapsync.cli.client import envs, get
from snapsync.cli.command import Group
from snapsync.cli.demo import demo
from snapsync.cli.environments import env_group
from snapsync.cli.health import health
from snapsync.cli.inspection import inspect
from snapsync.cli.serve import serve
from snapsync.cli.snapshots import apply_command, diff, dump


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="snapsync", prog_name="snapsync")
def cli() -> None:
    """Kubernetes cluster state over metered, flaky links, as tiny verified deltas."""


for command in (
    dump,
    inspect,
    diff,
    apply_command,
    agent,
    health,
    serve,
    env_group,
    demo,
    get,
    envs,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="snapsync")
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
