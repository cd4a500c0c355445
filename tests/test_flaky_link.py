"""The sync protocol over a simulated flaky mobile link, VOPR style: chaos, then recovery.

Hypothesis drives snapsync.sim.link.Sim (the real agent and server state machines, a simulated
link and clock, one seeded generator) through cluster churn, link faults (loss, lost answers,
duplicates, late and stale deliveries, cut uploads, bandwidth caps with timeouts, outages of hours
to days), crashes of either side, and an agent that lost its snapshots (anti-entropy). Chaos
steps check safety after every step; the recovery step turns the faults off and checks liveness
within a bound, and what the catch-up cost.

Safety (every step): the server holds only versions the agent produced, each intact (its digest
recomputed from its objects); the agent's acknowledged base is a version the server holds; the
bytes on the link in any budget period stay within the budget; no command runs twice.
Liveness (recovery): within a bounded number of wake-ups, and a bounded simulated time (backoff
cap, late deliveries draining, and the budget's wait: under a paced budget that binds, T from
the pace (tests/support_sim.py, `paced_bound`), under a fixed window the next period), the
server's newest digest is the agent's latest; the catch-up ships at most one frame to now
(plus the rest of an upload the server had started receiving), never a backlog, checked on
byte counts.

A failure prints the steps as a scenario, with the link's trace per step (`note`). Replay it with
the printed `@reproduce_failure` blob, or just rerun: the example database keeps it. Set
SNAPSYNC_SIM_STATS=FILE to append per-example statistics (steps, catch-up ratios) as JSON lines.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from functools import cache

from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from snapsync.canonical.profile import Profile, load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.codec.encode import encode_delta, encode_snapshot
from snapsync.protocol import AgentConfig, BudgetConfig, Command, CommandResult, Intervals
from snapsync.protocol.budget import period_start
from snapsync.protocol.messages import Chunk
from snapsync.sim.link import ENV, LinkFaults, Sim
from snapsync.sim.sample_cluster import SampleCluster
from tests import support_sim as invariants

INTERVALS = Intervals(ping=60, snapshot=60, command=10, jitter=0.1, backoff_cap=900)
HOUR, DAY = 3600.0, 86_400.0
MAX_DELAY = 240.0  # late copies land within this (LinkFaults.max_delay)
WAKEUPS = 40  # recovery bound: agent wake-ups after the link heals
STEPS = 30


@cache
def profile() -> Profile:
    return load_profile()


# Bytes per day, and the policy. Paced, pings at a minute take ~11 B/s of the pace (~33 and
# ~22 B/s), the bucket saves at most BURST (a few full snapshots of this cluster), and churn at
# a snapshot a minute soon needs more than what is left: the budget binds. The fixed windows
# are too small to pay for those pings out of a pace (the CLI would refuse them paced): they
# spend the period and wait for the next.
BUDGETS = {0: "paced", 3_000_000: "paced", 2_000_000: "paced", 400_000: "fixed", 120_000: "fixed"}
BURST = 20_000


def config(budget: int) -> AgentConfig:
    return AgentConfig(
        intervals=INTERVALS,
        budget=BudgetConfig(
            limit=budget,
            period="day",
            policy=BUDGETS[budget],
            burst=BURST if BUDGETS[budget] == "paced" else None,
        ),
        chunk_size=4096,  # a full snapshot takes several chunks, so resumption is exercised
    )


FAULTS = st.builds(
    LinkFaults,
    loss=st.sampled_from([0, 0.2, 1]),
    answer_loss=st.sampled_from([0, 0.3, 1]),
    duplicate=st.sampled_from([0, 0.5]),
    truncate=st.sampled_from([0, 0.5]),
    delay=st.sampled_from([0, 0.3, 0.8]),
    late_duplicate=st.sampled_from([0, 0.5]),
    agent_crash=st.sampled_from([0, 0.1]),
    bandwidth=st.sampled_from([0, 2000, 300, 100]),
)


def _faults(faults: LinkFaults) -> str:
    """Only the faults that are on, for a readable scenario."""
    on = {k: v for k, v in vars(faults).items() if v and k not in ("max_delay", "timeout")}
    return ", ".join(f"{k}={v}" for k, v in on.items()) or "healthy"


class FlakyLinkVOPR(RuleBasedStateMachine):
    """One agent, one server, one link; every step says what it did (see `note`)."""

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        budget=st.sampled_from(list(BUDGETS)),
        shape=st.sampled_from(["application", "platform"]),
    )
    def start(self, seed: int, budget: int, shape: str) -> None:
        self.budget = budget
        self.cluster = SampleCluster(objects=40, shape=shape, seed=seed)
        self.executed: Counter[int] = Counter()
        self.sim = Sim(config(budget), seed=seed, command_runner=self._run_command)
        self.produced: dict[bytes, Snapshot] = {}
        self.verified: set[tuple[int, bytes]] = set()
        self.snapshot: Snapshot | None = None
        self.steps = 0
        self.ratios: list[float] = []  # catch-up / one delta, when no upload was under way
        self.bound_ratios: list[float] = []  # catch-up / (rest of an upload + one frame)
        self._cycle(0)

    # -- helpers ---------------------------------------------------------------------------

    def _run_command(self, command: Command) -> CommandResult:
        self.executed[command.id] += 1
        return CommandResult(command.id, True, "done")

    def _latest(self) -> Snapshot:
        if self.snapshot is None:
            self.snapshot = build_snapshot(self.cluster.objects(), profile())
            self.produced[self.snapshot.digest] = self.snapshot
        return self.snapshot

    def _cycle(self, seconds: float) -> None:
        """Time passes in one jump; the agent collects if due and sends what it wants."""
        self.sim.advance(seconds)
        if self.sim.agent.snapshot_due(self.sim.now):
            self.sim.collect(self._latest())
        self.sim.run_exchanges()
        self.sim.events.clear()

    def _tell(self, what: str) -> None:
        self.steps += 1
        trace, self.sim.trace[:] = list(self.sim.trace), []
        note(f"[{self.steps}] {what}")
        for line in trace:
            note(f"      {line}")

    # -- chaos -------------------------------------------------------------------------------

    @rule(churn=st.sampled_from(["quiet", "steady", "busy"]))
    def cluster_changes(self, churn: str) -> None:
        self.cluster.step(churn=churn)
        self.snapshot = None
        self._tell(f"cluster churn: {churn}")

    @rule(seconds=st.sampled_from([5, 30, 61, 600, HOUR, 6 * HOUR]))
    def time_passes(self, seconds: float) -> None:
        self._cycle(seconds)
        self._tell(f"{seconds:.0f}s pass")

    @rule(hours=st.sampled_from([1, 6, 30, 72, 7 * 24]), churn=st.sampled_from(["quiet", "busy"]))
    def long_outage(self, hours: int, churn: str) -> None:
        """Hours to days without a link while the cluster keeps changing."""
        self.sim.outage(hours * HOUR)
        for _ in range(4):
            self.cluster.step(churn=churn)
            self.snapshot = None
            self._cycle(hours * HOUR / 4)
        self._tell(f"{hours}h outage, {churn} cluster")

    @rule(faults=FAULTS, minutes=st.sampled_from([1, 5, 20]), churn=st.booleans())
    def link_degrades(self, faults: LinkFaults, minutes: int, churn: bool) -> None:
        """New link conditions, then some minutes of operation under them."""
        self.sim.faults = faults
        for _ in range(minutes):
            if churn:
                self.cluster.step(churn="steady", minutes=1.0)
                self.snapshot = None
            self._cycle(61)
        self._tell(f"link: {_faults(faults)}; {minutes} min{' of churn' if churn else ''}")

    @rule(lose_snapshots=st.booleans())
    def agent_restarts(self, lose_snapshots: bool) -> None:
        """With its snapshots lost the agent shares no version with the server: anti-entropy."""
        self.sim.restart_agent(lose_snapshots=lose_snapshots)
        self._tell(f"agent restarts{' and has lost its snapshots' if lose_snapshots else ''}")

    @rule(lose_partials=st.booleans())
    def server_restarts(self, lose_partials: bool) -> None:
        self.sim.restart_server(lose_partials=lose_partials)
        self._tell(f"server restarts{' and loses partial uploads' if lose_partials else ''}")

    @rule(name=st.sampled_from(["collect-now", "full-snapshot", "delete-pod", "bogus"]))
    def server_queues_a_command(self, name: str) -> None:
        args = {"namespace": "shop", "name": "web-0"} if name == "delete-pod" else {}
        self.sim.store.queue_command(ENV, name, args)
        self._tell(f"server queues {name}")

    # -- recovery ----------------------------------------------------------------------------

    @precondition(lambda self: hasattr(self, "sim"))
    @rule()
    def link_heals_and_the_server_converges(self) -> None:
        sim = self.sim
        bandwidth = sim.faults.bandwidth
        sim.faults = LinkFaults(bandwidth=bandwidth)  # faults off; a capped link stays capped
        sim.down_until = sim.now
        latest = self._latest()
        bound = self._catch_up_bound(latest)
        pure = self._single_frame(latest) if self.sim.agent.upload is None else None
        sent_before, applied_before = len(sim.uploaded), len(sim.applied)
        timeouts_before = sim.counters.get("timeout", 0)
        # Stale copies still in the network may land and be committed during the recovery; the
        # agent then re-asserts its latest (an empty delta) once per such commit.
        stale = len(sim.in_network)
        reassert = len(encode_delta(latest, latest, sim.config.encode).frame)
        # The agent learns how much of an upload the server holds only from a chunk's answer: a
        # partial it does not know of (it restarted without its state, or a late copy landed)
        # costs one chunk that overlaps what the server has; so may each chunk still in flight.
        known = sim.agent.upload.confirmed if sim.agent.upload is not None else 0
        held = [h.meta.received for h in sim.store.env(ENV).partials.values()]
        unknown_partial = any(received > known for received in held)
        in_flight_chunks = sum(1 for d in sim.in_network if d.kind == Chunk.TYPE)
        started = sim.now
        wait = self._budget_wait(latest)
        if sim.agent.snapshot_due(sim.now) or sim.agent.latest is not latest:
            sim.collect(latest)
        wakeups = 0
        # while the budget holds an upload back, the agent still wakes to ping and collect
        most = WAKEUPS + int(2 * wait / (INTERVALS.ping * (1 - INTERVALS.jitter)))
        while wakeups < most and not self._converged(latest):
            wakeups += 1
            self._cycle(max(0.0, sim.agent.wakeup_at(sim.now) - sim.now))
        self._tell(f"link heals (bandwidth {bandwidth or 'unlimited'}); {wakeups} wake-ups")
        current = sim.store.current(ENV)
        assert self._converged(latest), (
            f"not converged after {wakeups} wake-ups and {sim.now - started:.0f}s: server at "
            f"{current.digest.hex()[:6] if current else None}, agent at {latest.digest.hex()[:6]}"
        )
        limit = INTERVALS.backoff_cap + MAX_DELAY + 12 * INTERVALS.ping + wait
        assert sim.now - started <= limit, f"{sim.now - started:.0f}s to converge, T {wait:.0f}s"
        catch_up = sum(size for _, size in sim.uploaded[sent_before:])
        frames = len(sim.applied) - applied_before
        note(f"      catch-up: {catch_up} B in {frames} frame(s); bound {bound} B")
        if bound is not None:
            bound += stale * reassert
            bound += (unknown_partial + in_flight_chunks) * sim.config.chunk_size
            # a capped link times out chunks too large to cross (the chunk size then halves)
            bound += (sim.counters.get("timeout", 0) - timeouts_before) * sim.config.chunk_size
            assert catch_up <= bound, f"catch-up of {catch_up} B exceeds one frame ({bound} B)"
            # the rest of a started upload, then one frame to now; stale commits and re-assertions
            assert frames <= 2 + 2 * stale
            if pure is not None and catch_up:
                self.ratios.append(catch_up / pure)
            if catch_up:
                self.bound_ratios.append(catch_up / bound)

    def _converged(self, latest: Snapshot) -> bool:
        current = self.sim.store.current(ENV)
        return (
            current is not None
            and current.digest == latest.digest
            and self.sim.agent.in_sync
            and not self.sim.in_network  # nothing stale can still land
        )

    def _budget_wait(self, latest: Snapshot) -> float:
        """Time a budget-deferred upload may wait: T from the pace when paced (support_sim), until
        the next period starts under a fixed window."""
        sim = self.sim
        if not self.budget:
            return 0.0
        if sim.agent.budget.paced:
            return invariants.paced_bound(sim, invariants.full_frame_cost(sim, latest))
        return period_start("day", sim.now) + DAY - sim.now + INTERVALS.ping

    def _single_frame(self, latest: Snapshot) -> int:
        """The one frame a well-behaved agent ships to catch up: from its newest ack, or whole."""
        agent = self.sim.agent
        acked = agent.acked
        if acked is None or agent.need_full:
            return len(encode_snapshot(latest, agent.config.full_level))
        return len(encode_delta(agent.bases[acked.digest][1], latest, agent.config.encode).frame)

    def _catch_up_bound(self, latest: Snapshot) -> int | None:
        """Upload bytes the catch-up may cost: the rest of a started upload plus one frame.

        None when the server has queued a full-snapshot command the agent has not seen: then a
        whole snapshot on top is what was asked for.
        """
        agent = self.sim.agent
        record = self.sim.store.env(ENV)
        if any(c.name == "full-snapshot" and c.id > agent.commands.cursor for c in record.commands):
            return None
        upload = agent.upload
        if upload is not None and upload.target.digest == latest.digest:
            return len(upload.frame) + self._single_frame(latest)  # resume or, at worst, redo it
        started = len(upload.frame) if upload is not None and upload.confirmed else 0
        if started:
            full = len(encode_snapshot(latest, agent.config.full_level))
            return started + max(full, self._single_frame(latest))
        return self._single_frame(latest)

    # -- safety, after every step (tests/support_sim.py) -------------------------------------

    @invariant()
    def server_holds_only_intact_versions_the_agent_produced(self) -> None:
        invariants.server_holds_only_intact_versions_the_agent_produced(self.sim, self.verified)

    @invariant()
    def agent_base_is_held_by_the_server(self) -> None:
        invariants.agent_base_is_held_by_the_server(self.sim)

    @invariant()
    def budget_is_never_exceeded(self) -> None:
        invariants.budget_is_never_exceeded(self.sim, self.budget)

    @invariant()
    def commands_run_at_most_once(self) -> None:
        invariants.commands_run_at_most_once(self.executed)

    def teardown(self) -> None:
        path = os.environ.get("SNAPSYNC_SIM_STATS")
        if path and hasattr(self, "sim"):
            with open(path, "a", encoding="utf-8") as out:
                line = {
                    "steps": self.steps,
                    "simulated_days": round((self.sim.now - 1_767_225_600.0) / DAY, 2),
                    "ratios": self.ratios,
                    "bound_ratios": self.bound_ratios,
                    "faults": self.sim.counters,
                }
                out.write(json.dumps(line) + "\n")


FlakyLinkVOPR.TestCase.settings = settings(stateful_step_count=STEPS)
TestFlakyLink = FlakyLinkVOPR.TestCase


def test_after_a_week_offline_the_catch_up_is_one_delta_to_now() -> None:
    """Byte counts, not timings: a week of outage with a busy cluster costs exactly one delta
    (from the last acknowledged version to the newest collection) once the link is back."""
    cluster = SampleCluster(objects=60, shape="platform", seed=5)
    sim = Sim(config(0), seed=5)
    sim.collect(build_snapshot(cluster.objects(), profile()))
    sim.run_exchanges()
    assert sim.agent.in_sync
    base = sim.agent.latest
    assert base is not None
    sim.outage(7 * DAY)
    snapshots = 0
    while sim.now + 6 * HOUR < sim.down_until:
        cluster.step(churn="busy")
        sim.advance(6 * HOUR)
        sim.collect(build_snapshot(cluster.objects(), profile()))
        snapshots += 1
        sim.run_exchanges()
    assert sim.store.env(ENV).frames == 1 and snapshots >= 27
    before = len(sim.uploaded)
    sim.advance(sim.down_until - sim.now)
    sim.advance(max(0.0, sim.agent.wakeup_at(sim.now) - sim.now))
    sim.run_exchanges()
    latest = sim.agent.latest
    assert latest is not None and sim.agent.in_sync
    one_delta = len(encode_delta(base, latest, sim.config.encode).frame)
    assert sum(size for _, size in sim.uploaded[before:]) == one_delta
    assert sim.store.env(ENV).frames == 2


@given(st.none())  # a build context for `note`; one value, so one example under any profile
def test_a_base_recommitted_under_a_newer_number_still_counts_as_held(_: None) -> None:
    """Found by CI (seed 171110): a late re-assertion commits the agent's state anew as v12, the
    next upload is based on v12, and v10 - the same state, the number the agent knows - is pruned.
    The server holds the agent's base by digest; the agent converges."""
    machine = FlakyLinkVOPR()
    machine.start(seed=171110, shape="application", budget=0)
    machine.server_queues_a_command(name="collect-now")
    machine.server_queues_a_command(name="collect-now")
    shared = {"loss": 0, "duplicate": 0, "truncate": 0, "max_delay": 240.0, "bandwidth": 0}
    slow = LinkFaults(answer_loss=0.3, delay=0.3, late_duplicate=0, agent_crash=0.1, **shared)
    machine.link_degrades(faults=slow, minutes=20, churn=True)
    late = LinkFaults(answer_loss=0.3, delay=0, late_duplicate=0.5, agent_crash=0.1, **shared)
    machine.link_degrades(faults=late, minutes=1, churn=False)
    acked = machine.sim.agent.acked
    assert acked is not None and acked not in machine.sim.store.held(ENV)  # the case itself
    machine.agent_base_is_held_by_the_server()
    machine.teardown()


def test_a_paced_budget_that_binds_spaces_uploads_and_a_new_version_comes_within_t() -> None:
    """Byte counts and simulated time, no timings. Under the smaller paced budget, three hours
    of busy churn at a snapshot a minute outrun the pace: uploads wait (ahead of pace, or
    repaying credit), the day's bytes stay within the budget. Then two hours without a link,
    busy all along: once it returns, a new version (the newest collection) reaches the server
    within T of the pace (support_sim.paced_bound), plus the backoff and ping that find the
    link back."""
    budget = 2_000_000
    cluster = SampleCluster(objects=100, shape="application", seed=3)
    sim = Sim(config(budget), seed=3)
    waited: Counter[str] = Counter()
    for _ in range(180):
        cluster.step(churn="busy")
        sim.advance(61)
        if sim.agent.snapshot_due(sim.now):
            sim.collect(build_snapshot(cluster.objects(), profile()))
        sim.run_exchanges()
        pace = sim.agent.gate.pace
        if sim.agent.waiting and pace is not None:
            waited[pace.reason] += 1
    # the budget binds: uploads wait for the pace (in debt after credit: "repaying credit")
    assert waited["ahead of pace"] + waited["repaying credit"] >= 10, waited
    invariants.budget_is_never_exceeded(sim, budget)
    sim.outage(2 * HOUR)
    while sim.now + 600 < sim.down_until:
        cluster.step(churn="busy")
        sim.advance(600)
        sim.collect(build_snapshot(cluster.objects(), profile()))
        sim.run_exchanges()
    sim.advance(sim.down_until - sim.now)
    latest = sim.agent.latest
    assert latest is not None and not sim.agent.in_sync
    started, held = sim.now, sim.store.current(ENV)
    wait = invariants.paced_bound(sim, invariants.full_frame_cost(sim, latest))
    while sim.now - started <= INTERVALS.backoff_cap + INTERVALS.ping + wait:
        sim.advance(max(1.0, sim.agent.wakeup_at(sim.now) - sim.now))
        sim.run_exchanges()
        if sim.agent.in_sync:
            break
    current = sim.store.current(ENV)
    assert current is not None and current != held and current.digest == latest.digest
    invariants.budget_is_never_exceeded(sim, budget)
