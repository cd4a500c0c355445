# The demo's cluster side: the sample-cluster generator turned into canonical snapshots, kept up
# to date object by object from each step's change set (re-canonicalizing every object every
# cycle would cost more than the whole protocol), and the naive baselines measured on the same
# states. Both ship in the package (snapsync.sim.sample_cluster, snapsync.sim.baselines), so an
# installed wheel runs the demo as a checkout does.
"""Snapshots of a simulated cluster, and the bytes the naive baselines would ship for them."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from snapsync.canonical.canonicalize import canonicalize
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.profile import Profile
from snapsync.canonical.snapshot import CanonicalObject, Snapshot, SnapshotHeader, rfc3339
from snapsync.sim import baselines
from snapsync.sim.sample_cluster import ChangeSet, Key, SampleCluster


class ClusterFeed:
    """A SampleCluster and its canonical snapshot, kept current object by object.

    A step marks what it touched; the next snapshot canonicalizes each of those once, however
    many steps touched it (a week of coarse steps at 10,000 objects stays cheap). `snapshot()`
    equals `build_snapshot(cluster.objects(), profile)` (tests check it) and is the same object
    while nothing changed, so an idle cycle costs nothing. The demo and tools.traces (the
    benchmark's churn traces) both replay the generator through it.
    """

    def __init__(self, cluster: SampleCluster, profile: Profile, environment_id: str = "") -> None:
        self.cluster = cluster
        self.profile = profile
        self.environment_id = environment_id
        self._objects: dict[ObjectKey, CanonicalObject] = {}
        self._keys: dict[Key, ObjectKey] = {}
        self._pending: set[Key] = set(cluster.object_keys())
        self._snapshot: Snapshot | None = None

    def step(self, churn: str, minutes: float) -> ChangeSet:
        """Advance the cluster; what the step touched is canonicalized at the next snapshot."""
        changes = self.cluster.step(churn=churn, minutes=minutes)
        for key in changes.deleted:
            self._pending.discard(key)
            self._drop(key)
        self._pending.update(changes.added, changes.modified)
        if len(changes):
            self._snapshot = None
        return changes

    def snapshot(self, collected_at: str | None = None) -> Snapshot:
        """The canonical snapshot now, stamped `collected_at` (default: the cluster's clock)."""
        if self._snapshot is None:
            for key in self._pending:
                self._put(key, self.cluster.get(key))
            self._pending.clear()
            stamp = collected_at or rfc3339(self.cluster.now.timestamp())
            counts = Counter(key.kind_ref for key in self._objects)
            header = SnapshotHeader(
                environment_id=self.environment_id,
                collected_at=stamp,
                profile_name=self.profile.name,
                profile_version=self.profile.version,
                counts=dict(sorted(counts.items())),
            )
            self._snapshot = Snapshot(header, dict(self._objects))
        return self._snapshot

    def _drop(self, key: Key) -> None:
        old = self._keys.pop(key, None)
        if old is not None:
            self._objects.pop(old, None)

    def _put(self, key: Key, raw: dict[str, Any] | None) -> None:
        self._drop(key)
        result = canonicalize(raw, self.profile) if raw is not None else None
        if result is not None:
            canonical_key, data = result
            self._objects[canonical_key] = CanonicalObject.from_data(data)
            self._keys[key] = canonical_key


def patch_stride(cycles: int, samples: int) -> int:
    """Every how many cycles the JSON Patch baseline is measured: about `samples` times, on a
    stride prime to 60, so that it does not keep landing on the same minute of the hour (the
    sample cluster's CronJobs fire every 5, 15 and 60 minutes: a stride of 12 five-minute
    cycles measured only the hour's heaviest cycle)."""
    stride = max(1, cycles // max(1, samples))
    while math.gcd(stride, 60) != 1:
        stride += 1
    return stride


@dataclass
class Baselines:
    """Bytes the naive approaches would ship for the same states, one payload per cycle.

    Payload bytes only: no HTTP overhead, no retries, no loss (snapsync's figure counts all of
    those). Full JSON + gzip is measured every cycle (an unchanged state reuses the last size);
    JSON Patch + gzip of the whole state costs ~0.1 s a cycle at 1,000 objects, so it is measured
    on every `patch_every`-th cycle and extrapolated to the others.
    """

    patch_every: int
    cycles: int = 0
    full_json: int = 0
    patch_measured: list[int] = field(default_factory=list)
    first: int = 0  # the first cycle ships the whole state in both baselines
    _last: tuple[Snapshot, dict[str, Any], int] | None = None

    def add(self, snapshot: Snapshot) -> None:
        self.cycles += 1
        last = self._last
        if last is not None and last[0] is snapshot:
            self.full_json += last[2]
            if self._patch_due():
                self.patch_measured.append(len(baselines.json_patch_gzip(last[1], last[1])))
            return
        doc = baselines.state_doc(snapshot)
        size = len(baselines.full_json_gzip(doc))
        self.full_json += size
        if last is None:
            self.first = size
        elif self._patch_due():
            self.patch_measured.append(len(baselines.json_patch_gzip(last[1], doc)))
        self._last = (snapshot, doc, size)

    def _patch_due(self) -> bool:
        return (self.cycles - 2) % self.patch_every == 0

    @property
    def json_patch(self) -> int:
        """Estimated: the first full state, then the mean measured patch for every later cycle."""
        if not self.patch_measured:
            return self.first
        mean = sum(self.patch_measured) / len(self.patch_measured)
        return self.first + round(mean * (self.cycles - 1))
