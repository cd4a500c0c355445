"""The `snapsync` command line: the top layer, a thin face over the library.

Every error a user can cause (a bad file, flag, profile or frame) is one line on stderr and exit
code 2; a traceback means a bug in snapsync.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from snapsync import __version__
from snapsync.codec import DEFAULT_SNAPSHOT_LEVEL, encode_snapshot, snapshot_document
from snapsync.collect import Collector, FileCollector
from snapsync.errors import InputError, SnapsyncError
from snapsync.fileio import atomic_write
from snapsync.frame import FrameKind, unpack_frame
from snapsync.profile import load_profile
from snapsync.snapfile import display_name, looks_like_json, parse_snapshot, read_input
from snapsync.snapshot import Snapshot, SnapshotBuilder
from snapsync.summary import summarize_snapshot

EXIT_USER_ERROR = 2


class _UserError(click.ClickException):
    exit_code = EXIT_USER_ERROR

    def show(self, file: Any = None) -> None:
        click.echo(f"snapsync: error: {self.message}", err=True)


class _Group(click.Group):
    """Turns SnapsyncError into one line and exit 2, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SnapsyncError as exc:
            raise _UserError(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="snapsync")
def cli() -> None:
    """Kubernetes cluster state over metered, flaky links, as tiny verified deltas."""


@cli.command()
@click.option(
    "--from-file",
    "from_files",
    multiple=True,
    metavar="PATH",
    help="kubectl get -o json|yaml output (List, object or YAML stream); - for stdin. Repeatable.",
)
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
    from_files: Sequence[str],
    profile: str,
    fmt: str,
    output: str | None,
    environment: str,
    reveal_secrets: bool,
    level: int,
) -> None:
    """Collect cluster state and write a canonical snapshot."""
    if fmt == "snap" and output in (None, "-") and sys.stdout.isatty():
        raise InputError("refusing to write a binary snapshot to a terminal: use -o FILE")
    collector: Collector = _collector(from_files)
    builder = SnapshotBuilder(
        load_profile(profile),
        environment_id=environment,
        reveal_secrets=reveal_secrets,
        measure_source=True,
    )
    collector.collect(builder)
    snapshot = builder.build()
    if fmt == "snap":
        data = encode_snapshot(snapshot, level=level)
    else:
        data = (
            json.dumps(snapshot_document(snapshot), indent=2, ensure_ascii=False) + "\n"
        ).encode()
    _write(output, data)
    if output not in (None, "-"):
        _note(f"wrote {output}: {_describe(snapshot)}, {len(data):,} bytes")


def _collector(from_files: Sequence[str]) -> Collector:
    if from_files:
        return FileCollector(from_files)
    raise InputError("no source: give --from-file PATH (live collection: see `snapsync dump -h`)")


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
def inspect(file: str, as_json: bool) -> None:
    """Summarize a snapshot or delta FILE (- for stdin)."""
    data = read_input(file)
    name = display_name(file)
    frame_bytes = None
    if not looks_like_json(data):
        try:
            kind = unpack_frame(data).kind
        except SnapsyncError as exc:
            raise type(exc)(f"{name}: {exc}") from None
        if kind is not FrameKind.SNAPSHOT:
            raise InputError(f"{name}: inspecting {kind.name.lower()} frames is not supported yet")
        frame_bytes = len(data)
    summary = summarize_snapshot(parse_snapshot(data, name), frame_bytes)
    if as_json:
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _render_snapshot_summary(summary)


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


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="snapsync")
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
