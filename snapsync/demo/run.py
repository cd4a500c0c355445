# The demo's run loop: the real agent and server protocol machines over the simulated link
# (snapsync.sim.link), the server side committing into a SQLite database that `snapsync serve`
# can browse afterwards, simulated time jumping from one wake-up to the next. It reports what
# happened as frozen Progress values; showing them is view.py's job.
"""One `snapsync demo` run: simulated cluster + agent + flaky link + server on SQLite."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import rfc3339
from snapsync.demo.feed import Baselines, ClusterFeed, patch_stride
from snapsync.demo.scenario import DAY, DemoOptions
from snapsync.errors import InputError
from snapsync.protocol import AgentConfig, BudgetConfig, Intervals, Reply, ServerProtocol
from snapsync.protocol.events import Acked, BudgetDeferred
from snapsync.server.environments import enroll
from snapsync.server.store import Stores
from snapsync.server.store.sqlite import SQLiteDatabase
from snapsync.sim.link import ENV, Sim
from snapsync.sim.sample_cluster import SampleCluster

EDGE_NAME = "demo cluster"


@dataclass
class DemoSim(Sim):
    """The simulated link with a latency: each way of every exchange takes `latency` seconds."""

    latency: float = 0.0

    def _transfer_time(self, size: int) -> float:
        return super()._transfer_time(size) + self.latency


@dataclass(frozen=True)
class Progress:
    """What the view shows after each wake-up of the agent."""

    started: float  # simulated time of the start (unix seconds)
    clock: float  # simulated now
    duration: float
    phase: str  # "running", then "settling" (cluster frozen, waiting to converge), "done"
    cycles: int  # collections during the run
    objects: int
    kinds: tuple[tuple[str, int], ...]  # frames acknowledged, by kind
    recent: tuple[int, ...]  # wire bytes of the last cycles, oldest first
    wire: int  # everything snapsync sent and received, headers and retries included
    frames: int  # bytes of acknowledged frames
    full_json: int
    json_patch: int  # estimated from `patch_samples` cycles
    patch_samples: int
    budget: int  # bytes per day, 0: unlimited
    budget_left: int | None
    deferred: int  # uploads the budget held back
    link: str  # up, flaky or down
    converged: bool
    server_seq: int | None
    faults: tuple[tuple[str, int], ...]

    @property
    def elapsed(self) -> float:
        return self.clock - self.started


@dataclass(frozen=True)
class Result:
    options: DemoOptions
    progress: Progress
    database: Path
    real_seconds: float
    outages: tuple[tuple[float, float], ...]  # (start offset, length) in seconds
    catch_ups: tuple[float, ...]  # seconds from each return of the link to convergence
    busiest_day: int  # wire bytes of the UTC day with the most traffic
    agent_digest: str
    server_digest: str


# Every run simulates the same day: a seed then gives the same bytes on any date (the
# collection times inside the frames are part of what is compressed and timed on the link).
SIM_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class RecordingServer(ServerProtocol):
    """The server protocol, counting each request's bytes per day as the web layer does, so
    the browse page shows the environment's data use."""

    def __init__(self, stores: Stores) -> None:
        super().__init__(stores)
        self.usage = stores.usage

    def handle(self, env: str, kind: str, body: bytes, now: float) -> Reply:
        reply = super().handle(env, kind, body, now)
        self.usage.record_traffic(env, now, reply.usage(body), len(reply.body))
        return reply


def prepare_database(path: Path) -> Stores:
    """A new SQLite database: never one that exists, whose history would mix with the run's."""
    if path.exists():
        raise InputError(f"database {path} already exists: the demo writes a new one")
    if not path.parent.is_dir():
        raise InputError(f"database {path}: directory {path.parent} does not exist")
    return Stores.over(SQLiteDatabase(path))


@dataclass
class DemoRun:
    """The scenario wired up. The demo environment is registered in the database, so
    `snapsync serve` starts on it without an agent secret and shows it by name."""

    options: DemoOptions
    store: Stores
    database: Path
    start: float = 0.0  # simulated start; 0: SIM_START

    def __post_init__(self) -> None:
        options = self.options
        self.start = self.start or SIM_START
        enroll(
            self.store.registry,
            EDGE_NAME,
            self.start,
            group="demo",
            tags=("simulated", f"link={options.link}", f"churn={options.churn}"),
            edge_id=ENV,
        )
        profile = options.profile
        config = AgentConfig(
            intervals=Intervals(ping=options.interval, snapshot=options.interval),
            budget=BudgetConfig(limit=options.budget, period="day"),
        )
        self.sim = DemoSim(
            config,
            seed=options.seed,
            now=self.start,
            faults=profile.faults,
            latency=profile.latency,
        )
        self.sim.server = RecordingServer(self.store)
        cluster = SampleCluster(objects=options.objects, shape=options.shape, seed=options.seed)
        self.feed = ClusterFeed(cluster, load_profile(), ENV)
        cycles = max(1, round(options.duration / options.interval))
        self.baselines = Baselines(patch_every=patch_stride(cycles, options.patch_samples))
        self.outages = tuple(profile.outages(options.duration, options.seed))

    def run(self, on_progress: Callable[[Progress], None]) -> Result:
        options, sim = self.options, self.sim
        end = self.start + options.duration
        pending = [(self.start + at, length) for at, length in self.outages]
        kinds: Counter[str] = Counter()
        recent: list[int] = []
        catch_ups: list[float] = []
        cycles = deferred = frames = wire = seen_wire = faults_seen = 0
        last_step, last_fault, back_at = self.start, -1e18, 0.0
        real_start = time.monotonic()
        converged = False
        while True:
            now = sim.now
            running = now < end
            while pending and pending[0][0] <= now:
                sim.outage(pending[0][1])
                back_at = sim.down_until
                pending.pop(0)
            if sim.agent.snapshot_due(now):
                if running and now > last_step:
                    self.feed.step(options.churn, (now - last_step) / 60.0)
                    last_step = now
                snapshot = self.feed.snapshot(rfc3339(now))
                sim.collect(snapshot)
                if running:
                    cycles += 1
                    self.baselines.add(snapshot)
                    recent = [*recent[-39:], 0]
            sim.run_exchanges()
            for event in sim.events:
                if isinstance(event, Acked):
                    kinds[event.kind] += 1
                    frames += event.frame_bytes
                elif isinstance(event, BudgetDeferred):
                    deferred += 1
            sim.events.clear()
            new = sum(size for _, size in sim.wire_bytes[seen_wire:])
            seen_wire = len(sim.wire_bytes)
            wire += new
            if recent:
                recent[-1] += new
            fired = sum(sim.counters.values())
            if fired != faults_seen:
                faults_seen, last_fault = fired, sim.now
            was_converged, converged = converged, self._converged()
            if converged and not was_converged and back_at and sim.now >= back_at:
                catch_ups.append(sim.now - back_at)
                back_at = 0.0
            done = not running and (converged or sim.now >= end + options.settle)
            progress = self._progress(
                "done" if done else "running" if running else "settling",
                cycles,
                kinds,
                recent,
                wire,
                frames,
                deferred,
                last_fault,
                converged,
            )
            on_progress(progress)
            if done:
                break
            wake = [sim.agent.wakeup_at(sim.now)]
            if pending:
                wake.append(pending[0][0])
            if running:
                wake.append(end)
            target = max(min(wake), sim.now + 1.0)
            self._pace(target, real_start)
            sim.advance(target - sim.now)
        return self._result(progress, time.monotonic() - real_start, catch_ups)

    def _converged(self) -> bool:
        agent = self.sim.agent
        held = self.store.held(ENV)
        return (
            agent.latest is not None
            and agent.in_sync
            and bool(held)
            and held[0].digest == agent.latest.digest
        )

    def _pace(self, target: float, real_start: float) -> None:
        """With --speed, simulated time runs at most `speed` times as fast as real time."""
        if self.options.speed:
            due = (target - self.start) / self.options.speed
            wait = due - (time.monotonic() - real_start)
            if wait > 0:
                time.sleep(min(wait, 1.0))

    def _progress(
        self,
        phase: str,
        cycles: int,
        kinds: Counter[str],
        recent: list[int],
        wire: int,
        frames: int,
        deferred: int,
        last_fault: float,
        converged: bool,
    ) -> Progress:
        sim, options = self.sim, self.options
        held = self.store.held(ENV)
        if not sim.link_up:
            link = "down"
        elif sim.now - last_fault < 2 * options.interval:
            link = "flaky"
        else:
            link = "up"
        return Progress(
            started=self.start,
            clock=sim.now,
            duration=options.duration,
            phase=phase,
            cycles=cycles,
            objects=len(self.feed.snapshot(rfc3339(sim.now))),
            kinds=tuple(sorted(kinds.items())),
            recent=tuple(recent),
            wire=wire,
            frames=frames,
            full_json=self.baselines.full_json,
            json_patch=self.baselines.json_patch,
            patch_samples=len(self.baselines.patch_measured),
            budget=options.budget,
            budget_left=sim.agent.budget.remaining(sim.now),
            deferred=deferred,
            link=link,
            converged=converged,
            server_seq=held[0].seq if held else None,
            faults=tuple(sorted(sim.counters.items())),
        )

    def _result(self, progress: Progress, real_seconds: float, catch_ups: list[float]) -> Result:
        held = self.store.held(ENV)
        latest = self.sim.agent.latest
        days: Counter[int] = Counter()
        for when, size in self.sim.wire_bytes:
            days[int(when // DAY)] += size
        return Result(
            options=self.options,
            progress=progress,
            database=self.database,
            real_seconds=real_seconds,
            outages=self.outages,
            catch_ups=tuple(catch_ups),
            busiest_day=max(days.values(), default=0),
            agent_digest=latest.digest.hex() if latest is not None else "",
            server_digest=held[0].digest.hex() if held else "",
        )
