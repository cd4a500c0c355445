"""`snapsync inspect`: what a snapshot or delta file holds, as tables or JSON."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from snapsync.cli.command import Command
from snapsync.cli.snapfile import load_snapshot, looks_like_json, parse_snapshot
from snapsync.cli.summary import summarize_snapshot
from snapsync.codec.frame import unpack_frame
from snapsync.errors import SnapsyncError
from snapsync.fileio import display_name, read_input


@click.command(cls=Command)
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
