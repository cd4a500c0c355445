"""The `snapsync` command line: the top layer, a thin face over the library.

Every error a user can cause (a bad file, flag, profile or frame) is one line on stderr and exit
code 2; a traceback means a bug in snapsync.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from snapsync import __version__
from snapsync.client.commands import envs, get, server_options, show_health
from snapsync.codec.decode import snapshot_document
from snapsync.codec.encode import DEFAULT_SNAPSHOT_LEVEL, encode_snapshot
from snapsync.collect import Collector, FileCollector

if TYPE_CHECKING:
    from snapsync.agent.loop import CommandRunner
    from snapsync.collect.kube import KubeOptions
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, SnapshotBuilder
from snapsync.codec.frame import unpack_frame
from snapsync.errors import InputError, SnapsyncError
from snapsync.fileio import atomic_write, display_name, read_input
from snapsync.protocol.auth import check_secret
from snapsync.snapfile import load_snapshot, looks_like_json, parse_snapshot
from snapsync.summary import summarize_snapshot

EXIT_USER_ERROR = 2
AGENT_SECRET_SETTING = "--agent-secret (SNAPSYNC_AGENT_SECRET)"


class _UserError(click.ClickException):
    exit_code = EXIT_USER_ERROR

    def show(self, file: Any = None) -> None:
        click.echo(f"snapsync: error: {self.message}", err=True)


class _NotCurrent(_UserError):
    """`agent --once` ran, but the server does not hold our latest version."""

    exit_code = 1


class _Command(click.Command):
    """Every subcommand: `--help` shows each option's variable and default, and a usage error
    (a bad or missing flag) is one line and exit 2, as every other user error (no usage block).
    A missing option that a variable can also give names the variable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = {
            "show_default": True,
            **(kwargs.get("context_settings") or {}),
        }
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, click.Option) and param.envvar:
                param.show_envvar = True

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.MissingParameter as exc:
            param = exc.param
            if isinstance(param, click.Option) and isinstance(param.envvar, str):
                name = max(param.opts, key=len)
                raise _UserError(f"missing {name}: pass the flag or set {param.envvar}") from None
            raise _UserError(exc.format_message()) from None
        except click.UsageError as exc:
            raise _UserError(exc.format_message()) from None


class _Group(click.Group):
    """Turns SnapsyncError into one line and exit 2, for every subcommand."""

    command_class = _Command
    group_class = type  # subgroups (`env`) are _Groups too

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SnapsyncError as exc:
            raise _UserError(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="snapsync")
def cli() -> None:
    """Kubernetes cluster state over metered, flaky links, as tiny verified deltas."""


def source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Where state comes from: kubectl dumps, or a live cluster (kubeconfig or in-cluster)."""
    options = [
        click.option(
            "--from-file",
            "from_files",
            multiple=True,
            metavar="PATH",
            help="kubectl get -o json|yaml output (List, object or stream); - for stdin. "
            "Repeatable. Without it, a live cluster is collected.",
        ),
        click.option("--kubeconfig", envvar="KUBECONFIG", metavar="FILE", help="Kubeconfig file."),
        click.option("--context", help="Kubeconfig context (default: the current one)."),
        click.option(
            "--in-cluster",
            is_flag=True,
            envvar="SNAPSYNC_IN_CLUSTER",
            help="Use the pod's service account.",
        ),
        click.option(
            "--page-size",
            type=click.IntRange(1, 10_000),
            default=500,
            show_default=True,
            metavar="OBJECTS",
            help="Objects per LIST page (watch mode: at most 100, to bound memory).",
        ),
        click.option(
            "--kind", "kinds", multiple=True, help="Collect only these kinds (Kind[.group])."
        ),
        click.option("--exclude-kind", "exclude_kinds", multiple=True, help="Skip these kinds."),
        click.option("--namespace", "namespaces", multiple=True, help="Only these namespaces."),
        click.option("--exclude-namespace", "exclude_namespaces", multiple=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@dataclass(frozen=True)
class Source:
    from_files: tuple[str, ...]
    kubeconfig: str | None
    context: str | None
    in_cluster: bool
    page_size: int
    kinds: tuple[str, ...]
    exclude_kinds: tuple[str, ...]
    namespaces: tuple[str, ...]
    exclude_namespaces: tuple[str, ...]

    def collector(self, *, watch: bool = False, cache_dir: Path | None = None) -> Collector:
        if self.from_files:
            return FileCollector(self.from_files)
        from snapsync.collect import KubeCollector, KubeWatchCollector

        options = self.kube_options(cache_dir)
        return KubeWatchCollector(options) if watch else KubeCollector(options)

    def kube_options(self, cache_dir: Path | None = None) -> KubeOptions:
        from snapsync.collect import KubeOptions

        return KubeOptions(
            kubeconfig=self.kubeconfig,
            context=self.context,
            in_cluster=self.in_cluster,
            page_size=self.page_size,
            include_kinds=self.kinds,
            exclude_kinds=self.exclude_kinds,
            include_namespaces=self.namespaces,
            exclude_namespaces=self.exclude_namespaces,
            discovery_cache_dir=cache_dir,
        )


def _source(kwargs: dict[str, Any]) -> Source:
    names = [f.name for f in fields(Source)]
    values = {name: kwargs.pop(name) for name in names}
    for name in ("from_files", "kinds", "exclude_kinds", "namespaces", "exclude_namespaces"):
        values[name] = tuple(values[name])
    return Source(**values)


@cli.command()
@source_options
@click.option("--profile", default="default", show_default=True, help="Built-in name or file.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["snap", "json"]),
    default="snap",
    show_default=True,
    help="snap: framed binary; json: the decoded canonical snapshot.",
)
@click.option("-o", "--output", metavar="FILE", help="Where to write (default: stdout).")
@click.option("--environment", default="local", show_default=True, help="Environment id.")
@click.option(
    "--reveal-secrets",
    is_flag=True,
    help="Keep Secret values. Default: each value becomes sha256:<hex> and never leaves.",
)
@click.option(
    "--level",
    type=click.IntRange(1, 22),
    default=DEFAULT_SNAPSHOT_LEVEL,
    show_default=True,
    help="zstd level for .snap output.",
)
def dump(
    profile: str,
    fmt: str,
    output: str | None,
    environment: str,
    reveal_secrets: bool,
    level: int,
    **kwargs: Any,
) -> None:
    """Collect cluster state and write a canonical snapshot."""
    if fmt == "snap" and output in (None, "-") and sys.stdout.isatty():
        raise InputError("refusing to write a binary snapshot to a terminal: use -o FILE")
    collector = _source(kwargs).collector()
    builder = SnapshotBuilder(
        load_profile(profile),
        environment_id=environment,
        reveal_secrets=reveal_secrets,
        measure_source=True,
    )
    collector.collect(builder)
    snapshot = builder.build()
    data = _snapshot_bytes(snapshot, fmt, level)
    _write(output, data)
    if output not in (None, "-"):
        _note(f"wrote {output}: {_describe(snapshot)}, {len(data):,} bytes")


def _write(output: str | None, data: bytes) -> None:
    if output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write(output, data)


def _note(message: str) -> None:
    click.echo(message, err=True)


def _describe(snapshot: Snapshot) -> str:
    text = f"{len(snapshot):,} objects, digest {snapshot.digest.hex()}"
    if snapshot.header.errors:
        text += f", {len(snapshot.header.errors)} kind(s) not collected"
    return text


@cli.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--base", metavar="SNAPSHOT", help="The base a patch-from frame needs to be counted.")
def inspect(file: str, as_json: bool, base: str | None) -> None:
    """Summarize a snapshot or delta FILE (- for stdin)."""
    data = read_input(file)
    name = display_name(file)
    frame_bytes = None
    if not looks_like_json(data):
        try:
            frame = unpack_frame(data)
        except SnapsyncError as exc:
            raise type(exc)(f"{name}: {exc}") from None
        frame_bytes = len(data)
        if frame.needs_base:  # deltas, repairs and patch-from snapshots
            _inspect_frame(data, name, base, as_json)
            return
    summary = summarize_snapshot(parse_snapshot(data, name), frame_bytes)
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _render_snapshot_summary(summary)


def _inspect_frame(data: bytes, name: str, base: str | None, as_json: bool) -> None:
    """Deltas and patch-from frames: header, sizes, what changed (counted without the base)."""
    from snapsync.codec.decode import inspect_frame

    base_snapshot = load_snapshot(base) if base else None
    try:
        summary = inspect_frame(data, base_snapshot)
    except SnapsyncError as exc:
        raise type(exc)(f"{name}: {exc}") from None
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    console = Console(highlight=False)
    console.print(f"[bold]{summary['type']}[/bold] -> {summary['target_digest']}")
    console.print(
        f"  base {summary['base_digest'] or '-'} · codec {summary['codec']}"
        f" · dictionary {summary['dictionary_id'] or '-'}"
    )
    sizes = Table(title="sizes", title_justify="left", show_edge=False)
    sizes.add_column("part")
    sizes.add_column("bytes", justify="right")
    for part, size in summary["sizes"].items():
        sizes.add_row(part.replace("_", " "), f"{size:,}")
    console.print(sizes)
    delta = summary.get("delta")
    if delta:
        console.print(
            f"objects: {delta['added']} added ({delta['added_from_exemplar']} from an exemplar), "
            f"{delta['changed']} changed, {delta['removed']} removed"
        )
        ops = ", ".join(f"{count} {op}" for op, count in sorted(delta["operations"].items()))
        console.print(f"operations: {ops or 'none'}")
    elif "contents" in summary:
        console.print(f"contents: {summary['contents']} (pass --base)")


def _render_snapshot_summary(summary: dict[str, Any]) -> None:
    console = Console(highlight=False)
    profile = summary["profile"]
    console.print(f"[bold]snapshot[/bold] {summary['digest']}")
    console.print(
        f"  environment {summary['environment_id'] or '-'} · collected {summary['collected_at']}"
        f" · profile {profile['name']} v{profile['version']} · {summary['objects']:,} objects"
    )
    sizes = Table(title="sizes", title_justify="left", show_edge=False)
    sizes.add_column("stage")
    sizes.add_column("bytes", justify="right")
    labels = {
        "source_json": "collected objects, JSON",
        "canonical_json": "canonical, JSON",
        "canonical_msgpack": "canonical, msgpack",
        "compressed": "frame (zstd)",
    }
    for field, label in labels.items():
        value = summary["sizes"][field]
        sizes.add_row(label, "-" if value is None else f"{value:,}")
    console.print(sizes)
    console.print(_count_table("objects by kind", "kind", summary["counts"]["by_kind"]))
    console.print(
        _count_table("objects by namespace", "namespace", summary["counts"]["by_namespace"])
    )
    if summary["errors"]:
        errors = Table(title="kinds not collected", title_justify="left", show_edge=False)
        for column in ("kind", "reason", "message"):
            errors.add_column(column)
        for error in summary["errors"]:
            errors.add_row(error["kind"], error["reason"], error["message"])
        console.print(errors)
    else:
        console.print("complete: every listed kind was collected")


def _count_table(title: str, column: str, counts: dict[str, int]) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column(column)
    table.add_column("objects", justify="right")
    for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(name, f"{count:,}")
    return table


@cli.command()
@click.argument("base")
@click.argument("new")
@click.option("-o", "--output", required=True, metavar="FILE", help="Where to write the frame.")
@click.option("--json", "as_json", is_flag=True, help="Candidate sizes as JSON on stdout.")
def diff(base: str, new: str, output: str, as_json: bool) -> None:
    """Write the smallest correct frame taking snapshot BASE to snapshot NEW.

    Every candidate is computed (compact delta, patch-from, full snapshot) and its size shown;
    the agent skips the ones that cannot win, this command does not.
    """
    from snapsync.codec.encode import EncodeOptions, encode_delta

    base_snapshot, new_snapshot = load_snapshot(base), load_snapshot(new)
    everything = EncodeOptions(
        patch_from_min_share=0.0, patch_from_max_base=2**62, full_skip_ratio=0
    )
    encoded = encode_delta(base_snapshot, new_snapshot, everything, timer=time.process_time)
    atomic_write(output, encoded.frame)
    summary = {
        "chosen": encoded.chosen,
        "candidates": dict(encoded.candidates),
        "cpu_ms": {step: round(ms, 1) for step, ms in encoded.cpu_ms.items()},
        "base_digest": base_snapshot.digest.hex(),
        "target_digest": new_snapshot.digest.hex(),
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"candidates for {output}", title_justify="left", show_edge=False)
    table.add_column("candidate")
    table.add_column("bytes", justify="right")
    for name, size in sorted(encoded.candidates.items(), key=lambda item: item[1]):
        table.add_row(name + (" (chosen)" if name == encoded.chosen else ""), f"{size:,}")
    Console(stderr=True, highlight=False).print(table)


@cli.command(name="apply")
@click.argument("base")
@click.argument("delta")
@click.option("-o", "--output", required=True, metavar="FILE", help="Where to write the result.")
@click.option(
    "--format", "fmt", type=click.Choice(["snap", "json"]), default="snap", show_default=True
)
def apply_command(base: str, delta: str, output: str, fmt: str) -> None:
    """Apply frame DELTA to snapshot BASE; the result must have the frame's target digest."""
    from snapsync.codec.decode import apply_frame

    base_snapshot = load_snapshot(base)
    try:
        result = apply_frame(base_snapshot, read_input(delta))
    except SnapsyncError as exc:
        raise type(exc)(f"{display_name(delta)}: {exc}") from None
    _write(output, _snapshot_bytes(result, fmt, DEFAULT_SNAPSHOT_LEVEL))
    _note(f"wrote {output}: {_describe(result)} (target digest verified)")


def _snapshot_bytes(snapshot: Snapshot, fmt: str, level: int) -> bytes:
    if fmt == "snap":
        return encode_snapshot(snapshot, level=level)
    return (json.dumps(snapshot_document(snapshot), indent=2, ensure_ascii=False) + "\n").encode()


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


@cli.command()
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
    source = _source(kwargs)
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


class _Unhealthy(_UserError):
    """`snapsync health`: the agent's heartbeat is missing or too old."""

    exit_code = 1


@cli.command()
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
        raise _UserError("give --file (the agent's heartbeat) or -e ENV (a server's view)")

    try:
        modified = health_file.stat().st_mtime
    except OSError as exc:
        raise _Unhealthy(f"{health_file}: no heartbeat ({exc.strerror})") from None
    age = time.time() - modified
    if age > max_age:
        raise _Unhealthy(f"{health_file}: last heartbeat {age:.0f} s ago (limit {max_age:g} s)")
    click.echo(f"alive: last heartbeat {max(age, 0.0):.0f} s ago")


@cli.command()
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
    from snapsync.server.database import open_store
    from snapsync.server.environments import AgentSecrets
    from snapsync.server.storage import Retention

    if bool(tls_cert) != bool(tls_key):
        raise InputError("--tls-cert and --tls-key go together")
    shared = check_secret(agent_secret, AGENT_SECRET_SETTING) if agent_secret else None
    if api_token:
        check_secret(api_token, "--api-token (SNAPSYNC_API_TOKEN)")
    limits = Limits(keep_alive=_keep_alive(keep_alive), max_connections=max_connections)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    retention = Retention(keep_versions, keep_days * 86400.0)
    cache_bytes = state_cache_mb * 2**20
    with closing(open_store(database, retention, cache_bytes)) as store:  # checked up front
        if not agent_secret and not store.registrations():
            raise InputError(
                "no agent can authenticate: pass --agent-secret or register an environment "
                "with `snapsync env add NAME`"
            )
    if not api_token:
        logging.getLogger("snapsync.server").warning(
            "no --api-token: the browse API and page are off"
        )

    def run(sock: socket.socket | None) -> None:
        store = open_store(database, retention, cache_bytes)
        if workers > 1:
            store.shared_by_processes = True  # replays refused across the processes
        settings = ServerSettings(
            secrets=AgentSecrets(store, shared),
            store=store,
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


@cli.group(name="env")
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

    from snapsync.server.database import open_store
    from snapsync.server.environments import enroll

    made = enroll(open_store(database), name, time.time(), group, tags, edge_id)
    edge = made.registration.edge_id
    click.echo(f"edge id:    {edge}")
    click.echo(f"join token: {made.token}")
    click.echo(
        f"agent:      SNAPSYNC_EDGE_ID={edge} SNAPSYNC_AGENT_SECRET={made.token} "
        "snapsync agent --server-url https://SERVER:8480"
    )
    _note("the join token is shown only now; keep it like a password")


@env_group.command(name="list")
@click.option("--database", default="snapsync.db", show_default=True, envvar="SNAPSYNC_DATABASE")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def env_list(database: str, as_json: bool) -> None:
    """Environments the server knows: registered ones and any agent heard from."""
    import time

    from snapsync.server.browse import environment_json
    from snapsync.server.database import open_store

    now = time.time()
    found = [environment_json(e, now) for e in open_store(database).environments(now)]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table(show_edge=False)
    for column in ("edge id", "name", "group", "tags", "status", "last seen", "version"):
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
        )
    Console().print(table)


@cli.command()
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
    from snapsync.protocol.budget import parse_size

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
        _note("interrupted")


cli.add_command(get)
cli.add_command(envs)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="snapsync")
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
