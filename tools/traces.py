# Churn traces: seeded sequences of canonical cluster snapshots, one per simulated minute, made
# from the sample-cluster generator and streamed (one live cluster, one snapshot at a time), so a
# day at 50,000 objects never needs 1,440 states in memory. Same spec, same snapshots, same bytes.
"""Named churn scenarios over the sample-cluster generator, replayed as canonical snapshots.

    from tools.traces import TraceSpec, replay
    for cycle in replay(TraceSpec("steady", objects=1000, cycles=60)):
        cycle.index, cycle.snapshot, cycle.changes     # cycle 0 is the starting state

Scenarios (the generator's churn levels, snapsync.sim.sample_cluster):
- quiet:  heartbeats (Node conditions, Leases) and now and then an Event bump;
- steady: pods restarting and flapping readiness, pods replaced, Events bumped and appended,
          CronJobs firing, a rollout or an HPA rescale now and then;
- busy:   steady plus large rollouts, node drains and CrashLoopBackOff storms;
- fleet:  several clusters of one shape and size that differ only in their seed (names, counts,
          which workloads churn when), each under steady churn; see `fleet_specs`.

Snapshots are maintained incrementally (snapsync.demo.feed.ClusterFeed, which the demo uses too):
each step's ChangeSet re-canonicalizes only the objects it touched, which is what makes a
10,000-object day affordable (a full rebuild is ~1.6 s).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType

from snapsync.canonical.profile import Profile, load_profile
from snapsync.canonical.snapshot import Snapshot
from snapsync.demo.feed import ClusterFeed
from snapsync.sim.sample_cluster import ChangeSet, SampleCluster


@dataclass(frozen=True)
class Scenario:
    name: str
    churn: str  # the generator's churn level
    description: str


SCENARIOS = MappingProxyType(
    {
        s.name: s
        for s in (
            Scenario("quiet", "quiet", "heartbeats and the odd Event bump"),
            Scenario("steady", "steady", "pod restarts, replacements, Events, a few rollouts/HPA"),
            Scenario("busy", "busy", "large rollouts, node drains, CrashLoopBackOff storms"),
            Scenario("fleet", "steady", "clusters of one shape and size differing by seed"),
        )
    }
)
CYCLES_PER_DAY = 1440


@dataclass(frozen=True)
class TraceSpec:
    scenario: str
    objects: int
    cycles: int = CYCLES_PER_DAY  # snapshots after the starting state
    seed: int = 0
    shape: str = "application"
    minutes: float = 1.0  # simulated minutes per cycle

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; expected {', '.join(SCENARIOS)}")

    @property
    def churn(self) -> str:
        return SCENARIOS[self.scenario].churn

    @property
    def label(self) -> str:
        return f"{self.scenario}, {self.objects:,} objects, seed {self.seed}"


@dataclass(frozen=True)
class Cycle:
    index: int  # 0 = the starting state
    snapshot: Snapshot
    changes: ChangeSet | None  # the generator's change set (None for cycle 0)


def start(spec: TraceSpec, profile: Profile | None = None) -> ClusterFeed:
    """The trace's cluster at its starting state, canonicalized incrementally from then on."""
    cluster = SampleCluster(spec.objects, spec.shape, spec.seed)
    return ClusterFeed(cluster, profile or load_profile())


def replay(spec: TraceSpec, profile: Profile | None = None) -> Iterator[Cycle]:
    """The starting state, then one snapshot per cycle; only the current one is held."""
    live = start(spec, profile)
    yield Cycle(0, live.snapshot(), None)
    for index in range(1, spec.cycles + 1):
        changes = live.step(spec.churn, spec.minutes)
        yield Cycle(index, live.snapshot(), changes)


def fleet_specs(objects: int, clusters: int, cycles: int, seed: int = 0) -> list[TraceSpec]:
    """A fleet: `clusters` application-shaped clusters of one size, seeds seed, seed+1, ..."""
    return [TraceSpec("fleet", objects, cycles, seed + i) for i in range(clusters)]


def offline_snapshots(
    spec: TraceSpec, offsets_minutes: list[float], step_minutes: float = 120.0
) -> Iterator[tuple[float, Snapshot, Snapshot]]:
    """(offset, base, now) pairs: the state at the start and after each offset of churn.

    Long outages are simulated with coarse steps (the generator scales its rates by `minutes`),
    so a week at 10,000 objects takes seconds instead of 10,080 one-minute steps.
    """
    live = start(spec)
    base = live.snapshot()
    elapsed = 0.0
    for offset in sorted(offsets_minutes):
        while elapsed < offset:
            minutes = min(step_minutes, offset - elapsed)
            live.step(spec.churn, minutes)
            elapsed += minutes
        yield offset, base, live.snapshot()


def main(argv: list[str] | None = None) -> None:
    """Print a trace's per-cycle change counts (a quick look at what a scenario does)."""
    parser = argparse.ArgumentParser(description="replay a churn trace and print its changes")
    parser.add_argument("scenario", choices=list(SCENARIOS))
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    spec = TraceSpec(args.scenario, args.objects, args.cycles, args.seed)
    for cycle in replay(spec):
        c = cycle.changes
        counts = f"+{len(c.added)} ~{len(c.modified)} -{len(c.deleted)}" if c else "start"
        when = cycle.snapshot.header.collected_at
        print(f"{cycle.index:5d} {when} {len(cycle.snapshot):7,d} objects {counts}")


if __name__ == "__main__":
    main()
