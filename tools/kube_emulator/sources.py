# Where the emulator's objects come from: kubectl List dumps (read with snapsync's own file
# collector, so both accept the same inputs) or a generated cluster from
# snapsync.sim.sample_cluster, imported only when asked for (the emulator itself does not
# depend on the generator).
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from snapsync.collect.files import iter_objects, read_documents
from snapsync.errors import InputError
from tools.kube_emulator.resources import Resource, is_builtin_group


def load_fixture(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Objects of kubectl `get -o json|yaml` dumps (Lists, single objects, YAML streams)."""
    objects: list[dict[str, Any]] = []
    for path in paths:
        try:
            objects.extend(iter_objects(read_documents(path)))
        except InputError as exc:  # the readers leave naming the file to their caller
            raise InputError(f"{path}: {exc}") from exc
    return objects


def sample_objects(
    count: int, *, shape: str = "application", seed: int = 0
) -> tuple[list[dict[str, Any]], list[Resource], Any]:
    """(objects, the resources the generator declares, the generator for churn steps)."""
    from snapsync.sim.sample_cluster import RESOURCES, SampleCluster

    cluster = SampleCluster(objects=count, shape=shape, seed=seed)
    resources = [
        Resource(
            r.group,
            r.version,
            r.kind,
            r.plural,
            r.namespaced,
            tuple(r.short_names),
            tuple(r.verbs),
            builtin=is_builtin_group(r.group),
        )
        for r in RESOURCES
    ]
    return cluster.objects(), resources, cluster
