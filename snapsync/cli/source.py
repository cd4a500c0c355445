"""Where a command's cluster state comes from: `--from-file` dumps, or a live cluster."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from snapsync.collect import Collector, FileCollector

if TYPE_CHECKING:
    from snapsync.collect.kube import KubeOptions


def source_options(
    command: Callable[..., Any], env_option: type[click.Option] = click.Option
) -> Callable[..., Any]:
    """Where state comes from: kubectl dumps, or a live cluster (kubeconfig or in-cluster).

    `env_option`: the class of the options a variable can also give (the agent's are read by
    AgentSettings, not click)."""
    options = [
        click.option(
            "--from-file",
            "from_files",
            multiple=True,
            metavar="PATH",
            help="kubectl get -o json|yaml output (List, object or stream); - for stdin. "
            "Repeatable. Without it, a live cluster is collected.",
        ),
        click.option(
            "--kubeconfig",
            cls=env_option,
            envvar="KUBECONFIG",
            metavar="FILE",
            help="Kubeconfig file.",
        ),
        click.option("--context", help="Kubeconfig context (default: the current one)."),
        click.option(
            "--in-cluster",
            cls=env_option,
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


def pop_source(kwargs: dict[str, Any]) -> Source:
    names = [f.name for f in fields(Source)]
    values = {name: kwargs.pop(name) for name in names}
    for name in ("from_files", "kinds", "exclude_kinds", "namespaces", "exclude_namespaces"):
        values[name] = tuple(values[name])
    return Source(**values)
