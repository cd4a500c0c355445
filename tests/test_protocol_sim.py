"""Agent and server state machines over a simulated flaky link, driven by hypothesis.

Safety after every step, the invariants tests/test_flaky_link.py checks too (tests/support_sim.py):
the server only ever holds versions the agent produced, intact (digest recomputed from the
objects); the agent's acknowledged base is one the server holds; the budget is never exceeded;
commands run at most once. Liveness: once the link heals, the server has the agent's latest
digest within a few cycles plus T, the time the pace takes to let the upload go (the budget is
paced and binds: busy churn costs more than it accrues; support_sim.paced_bound says how T
follows from the pace).
"""

from __future__ import annotations

from collections import Counter
from functools import cache

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from snapsync.canonical.profile import Profile, load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.protocol import AgentConfig, BudgetConfig, CommandResult, Intervals
from snapsync.protocol.events import CommandReceived
from snapsync.sim.link import ENV, LinkFaults, Sim
from snapsync.sim.sample_cluster import SampleCluster
from tests import support_sim as invariants

# Bytes per day, paced: pings at a minute take ~11 B/s of its ~22 B/s pace; busy churn at a
# snapshot a minute needs more than what is left, so uploads wait for the pace.
BUDGET = 2_000_000
CONFIG = AgentConfig(
    intervals=Intervals(ping=60, snapshot=60, command=10, jitter=0.1),
    budget=BudgetConfig(limit=BUDGET, period="day"),
    chunk_size=4096,  # several chunks per full snapshot, so resumption is exercised
)


@cache
def profile() -> Profile:
    return load_profile()


class FlakyLink(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**16))
    def start(self, seed: int) -> None:
        self.cluster = SampleCluster(objects=60, shape="application", seed=seed)
        self.sim = Sim(CONFIG, seed=seed)
        self.executed: Counter[int] = Counter()
        self.verified: set[tuple[int, bytes]] = set()
        self._collect()
        self.sim.run_exchanges()

    def _collect(self) -> None:
        snapshot: Snapshot = build_snapshot(self.cluster.objects(), profile())
        self.sim.collect(snapshot)

    def _cycle(self, seconds: float) -> None:
        self.sim.now += seconds
        if self.sim.agent.snapshot_due(self.sim.now):
            self._collect()
        self.sim.run_exchanges()
        self._run_commands()

    def _run_commands(self) -> None:
        for event in self.sim.events:
            if isinstance(event, CommandReceived):
                self.executed[event.command.id] += 1
                self.sim.agent.command_finished(CommandResult(event.command.id, True, "done"))
        self.sim.events.clear()

    @rule(churn=st.sampled_from(["quiet", "steady", "busy"]))
    def cluster_changes(self, churn: str) -> None:
        self.cluster.step(churn=churn)

    @rule(seconds=st.sampled_from([5, 30, 60, 61, 600, 3600, 6 * 3600]))
    def time_passes(self, seconds: float) -> None:
        self._cycle(seconds)

    @rule(
        loss=st.sampled_from([0, 0.3, 1]),
        answer_loss=st.sampled_from([0, 0.3, 1]),
        duplicate=st.sampled_from([0, 0.5]),
        truncate=st.sampled_from([0, 0.5]),
    )
    def link_degrades(
        self, loss: float, answer_loss: float, duplicate: float, truncate: float
    ) -> None:
        self.sim.faults = LinkFaults(loss, answer_loss, duplicate, truncate)

    @rule()
    def agent_restarts(self) -> None:
        self.sim.restart_agent()

    @rule()
    def server_restarts(self) -> None:
        self.sim.restart_server()

    @rule(name=st.sampled_from(["collect-now", "full-snapshot", "delete-pod", "bogus"]))
    def server_queues_a_command(self, name: str) -> None:
        args = {"namespace": "shop", "name": "web-0"} if name == "delete-pod" else {}
        self.sim.store.queue_command(ENV, name, args)

    @precondition(lambda self: hasattr(self, "sim"))
    @rule()
    def link_heals_and_the_server_converges(self) -> None:
        sim = self.sim
        sim.faults = LinkFaults()
        self._collect()
        latest = sim.agent.latest
        assert latest is not None
        frame = invariants.full_frame_cost(sim, latest)
        deadline = sim.now + 6 * CONFIG.intervals.ping * 1.2 + invariants.paced_bound(sim, frame)
        while sim.now <= deadline and not (sim.agent.in_sync and sim.agent.upload is None):
            self._cycle(max(1.0, sim.agent.wakeup_at(sim.now) - sim.now))
        current = self.sim.store.current(ENV)
        assert current is not None
        assert current.digest == self.sim.agent.latest.digest  # type: ignore[union-attr]

    # -- safety, after every step (tests/support_sim.py) -------------------------------------

    @invariant()
    def server_holds_only_intact_versions_the_agent_produced(self) -> None:
        invariants.server_holds_only_intact_versions_the_agent_produced(self.sim, self.verified)

    @invariant()
    def agent_base_is_held_by_the_server(self) -> None:
        invariants.agent_base_is_held_by_the_server(self.sim)

    @invariant()
    def budget_is_never_exceeded(self) -> None:
        invariants.budget_is_never_exceeded(self.sim, BUDGET)

    @invariant()
    def commands_run_at_most_once(self) -> None:
        invariants.commands_run_at_most_once(self.executed)


TestFlakyLink = FlakyLink.TestCase
