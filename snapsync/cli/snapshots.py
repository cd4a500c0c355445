"""Snapshot files by hand: `dump` collects one, `diff` and `apply` take one to another."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, SnapshotBuilder
from snapsync.cli.command import Command, note
from snapsync.cli.snapfile import load_snapshot
from snapsync.cli.source import pop_source, source_options
from snapsync.codec.decode import snapshot_document
from snapsync.codec.encode import DEFAULT_SNAPSHOT_LEVEL, encode_snapshot
from snapsync.errors import InputError, SnapsyncError
from snapsync.fileio import atomic_write, display_name, read_input


@click.command(cls=Command)
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
    collector = pop_source(kwargs).collector()
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
        note(f"wrote {output}: {_describe(snapshot)}, {len(data):,} bytes")


def _write(output: str | None, data: bytes) -> None:
    if output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write(output, data)


def _describe(snapshot: Snapshot) -> str:
    text = f"{len(snapshot):,} objects, digest {snapshot.digest.hex()}"
    if snapshot.header.errors:
        text += f", {len(snapshot.header.errors)} kind(s) not collected"
    return text


@click.command(cls=Command)
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


@click.command(cls=Command, name="apply")
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
    note(f"wrote {output}: {_describe(result)} (target digest verified)")


def _snapshot_bytes(snapshot: Snapshot, fmt: str, level: int) -> bytes:
    if fmt == "snap":
        return encode_snapshot(snapshot, level=level)
    return (json.dumps(snapshot_document(snapshot), indent=2, ensure_ascii=False) + "\n").encode()
