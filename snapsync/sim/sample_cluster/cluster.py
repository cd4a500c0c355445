# SampleCluster: the public face of the generator. It owns one World, builds it once from
# (objects, shape, seed) and advances it with step(); callers only ever get deep copies, so
# nothing they do to returned objects can change the simulation.
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from snapsync.sim.sample_cluster import plan
from snapsync.sim.sample_cluster.api import RESOURCES, ChangeSet, Key
from snapsync.sim.sample_cluster.churn import step as advance
from snapsync.sim.sample_cluster.pods import clone
from snapsync.sim.sample_cluster.world import World

SHAPES: tuple[str, ...] = tuple(plan.SHAPES)
_KIND_ORDER = {info.kind: i for i, info in enumerate(RESOURCES)}


class SampleCluster:
    """A deterministic, seeded Kubernetes cluster state that changes as a real one does.

    Same (objects, shape, seed) and the same sequence of step() calls give byte-identical
    objects.
    """

    def __init__(self, objects: int = 500, shape: str = "application", seed: int = 0) -> None:
        if shape not in plan.SHAPES:
            raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
        if objects < 1:
            raise ValueError("objects must be positive")
        self.shape = shape
        self.seed = seed
        self._world = World(seed)
        with _no_cyclic_gc():
            plan.build(self._world, objects, plan.SHAPES[shape])
        self._world.event_target = len(self._world.event_order)
        self._world.store.begin()

    def __len__(self) -> int:
        return len(self._world.store.objects)

    @property
    def now(self) -> datetime:
        """The simulated clock (UTC)."""
        return datetime.fromtimestamp(self._world.now, UTC)

    @property
    def resource_version(self) -> int:
        """The last resourceVersion written (etcd's revision: every write bumps it)."""
        return self._world.store.resource_version

    def object_keys(self) -> list[Key]:
        """Object keys (apiVersion, kind, namespace, name), in listing order."""
        return sorted(self._world.store.objects, key=_listing_order)

    def get(self, key: Key) -> dict[str, Any] | None:
        """A deep copy of one object, or None."""
        obj = self._world.store.objects.get(key)
        return None if obj is None else clone(obj)

    def objects(self) -> list[dict[str, Any]]:
        """Deep copies of every object, grouped by kind as `kubectl get` lists them."""
        store = self._world.store.objects
        with _no_cyclic_gc():
            return [clone(store[key]) for key in self.object_keys()]

    def list_document(self) -> dict[str, Any]:
        """The objects as `kubectl get ... -o json` prints them: a v1 List."""
        return {
            "apiVersion": "v1",
            "items": self.objects(),
            "kind": "List",
            "metadata": {"resourceVersion": ""},
        }

    def step(self, churn: str = "steady", minutes: float = 1.0) -> ChangeSet:
        """Advance the clock by `minutes` and apply that much change of the given level."""
        with _no_cyclic_gc():
            return advance(self._world, churn, minutes)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic GC while millions of acyclic dicts are made: with a large cluster alive,
    each full collection rescans all of it and multiplies the time (2-4x at 50k objects)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _listing_order(key: Key) -> tuple[int, str, str]:
    return (_KIND_ORDER.get(key[1], len(_KIND_ORDER)), key[2], key[3])
