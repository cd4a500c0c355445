"""The agent's transition table, tested as data and against the real AgentProtocol.

As data: every phase has a row, every phase can be reached from the start, answers and transport
failures are only defined while a request is in flight, and the printed table shows it all. As
law: random input sequences, fed to a real agent talking to a real server protocol, only ever take
the transitions the table lists, and every input the table does not define for the phase is a
LocalProtocolError that changes nothing.
"""

from __future__ import annotations

import random
import subprocess
import sys
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.errors import LocalProtocolError
from snapsync.protocol import AgentConfig, BudgetConfig, Intervals, Request
from snapsync.protocol.messages import Ping, Refusal
from snapsync.protocol.outcome import Outcome
from snapsync.protocol.table import TRANSITIONS, Input, Phase, allowed, render
from snapsync.sim.link import ENV, Sim
from snapsync.sim.sample_cluster import SampleCluster

CONFIG = AgentConfig(
    intervals=Intervals(ping=60, snapshot=60, command=10, jitter=0.1),
    budget=BudgetConfig(limit=600_000, period="day"),  # two comparisons a day, then waiting
    chunk_size=16384,  # a few chunks per upload
    reconcile_min=1,  # anti-entropy whenever the agent shares no version with the server
)
ACTIONS = (
    "due",
    "snapshot",
    "collection failed",
    "answer",
    "refused",
    "garbled",
    "transport failed",
    "wait",
    "restart",
)
INPUT_OF = {
    "due": Input.DUE,
    "snapshot": Input.SNAPSHOT,
    "collection failed": Input.COLLECTION_FAILED,
    "answer": Input.ANSWER,
    "refused": Input.ANSWER,
    "garbled": Input.ANSWER,
    "transport failed": Input.TRANSPORT_FAILED,
}
# How often each action comes in the long walks: mostly what a working agent sees.
WEIGHTS = (8, 2, 1, 8, 1, 1, 1, 2, 1)
STRAY = Request(Ping(), Ping().encode())  # a request the agent never handed out


@cache
def snapshots() -> list[Snapshot]:
    cluster = SampleCluster(objects=200, shape="application", seed=3)
    out = []
    for _ in range(4):
        out.append(build_snapshot(cluster.objects(), load_profile()))
        cluster.step(churn="steady")
    return out


class Driver:
    """Feeds one action at a time to a real agent over a perfect link to a real server."""

    def __init__(self, seed: int) -> None:
        self.sim = Sim(CONFIG, seed=seed)
        self.rng = random.Random(seed)
        self.pending: Request | None = None
        self.seen: set[Phase] = {self.sim.agent.phase}

    def act(self, action: str) -> None:
        """Perform `action`, checking the transition it takes against the table."""
        agent, before = self.sim.agent, self.sim.agent.phase
        event = INPUT_OF.get(action)
        if event is None:
            self._aside(action)
            return
        defined = event in TRANSITIONS[before]
        try:
            self._input(action)
        except LocalProtocolError:
            assert not defined, f"{action} when {before.value} is in the table, yet refused"
            assert agent.phase is before
            return
        assert defined, f"{action} when {before.value} is not in the table, yet taken"
        assert agent.phase in allowed(before, event)
        self.seen.add(agent.phase)

    def _aside(self, action: str) -> None:
        if action == "wait":
            self.sim.now += self.rng.choice([1.0, 30.0, 90.0, 900.0, 86_400.0])
        else:  # a restart from the state directory, sometimes without its snapshots
            self.sim.restart_agent(lose_snapshots=self.rng.random() < 0.5)
            self.pending = None
            self.seen.add(self.sim.agent.phase)

    def _input(self, action: str) -> None:
        agent, now = self.sim.agent, self.sim.now
        if action == "due":
            request = agent.next_request(now)
            self.pending = request or self.pending
        elif action == "snapshot":
            agent.snapshot_collected(self.rng.choice(snapshots()), now)
        elif action == "collection failed":
            agent.collection_failed(now)
        elif action == "transport failed":
            agent.fail(self.pending or STRAY, now, "connection refused")
            self.pending = None
        else:
            request = self.pending or STRAY
            outcome, body = Outcome.OK, b"\xc1 not msgpack"
            if action == "answer" and self.pending is not None:
                reply = self.sim.server.handle(ENV, request.kind, request.body, now)
                outcome, body = reply.outcome, reply.body
            elif action == "refused":
                outcome = self.rng.choice([o for o in Outcome if o is not Outcome.OK])
                body = Refusal("no", retry_after=self.rng.choice([0.0, 30.0])).encode()
            agent.receive(request, outcome, body, now)
            self.pending = None


# -- the table as data -------------------------------------------------------------------------


def test_every_phase_has_a_row_and_every_row_the_inputs_that_can_always_come() -> None:
    assert set(TRANSITIONS) == set(Phase)
    for phase, row in TRANSITIONS.items():
        assert {Input.DUE, Input.SNAPSHOT, Input.COLLECTION_FAILED} <= set(row), phase
        assert all(row.values()), phase  # every defined input leads somewhere


def test_answers_and_transport_failures_only_while_a_request_is_in_flight() -> None:
    for phase, row in TRANSITIONS.items():
        in_flight = phase is Phase.AWAITING_ANSWER
        assert (Input.ANSWER in row) == in_flight
        assert (Input.TRANSPORT_FAILED in row) == in_flight
    for phase in Phase:
        if phase is not Phase.AWAITING_ANSWER:
            with pytest.raises(LocalProtocolError, match="cannot take 'answer'"):
                allowed(phase, Input.ANSWER)


def test_every_phase_is_reachable_from_the_start() -> None:
    reached, frontier = {Phase.GREETING}, [Phase.GREETING]
    while frontier:
        for after in TRANSITIONS[frontier.pop()].values():
            frontier += sorted(after - reached, key=lambda p: p.value)
            reached |= after
    assert reached == set(Phase)


def test_the_table_prints_one_line_per_transition() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "snapsync.protocol"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert printed.strip() == render()
    assert len(printed.strip().splitlines()) == sum(len(row) for row in TRANSITIONS.values())
    assert all(phase.value in printed for phase in Phase)


# -- the table as law --------------------------------------------------------------------------


@given(seed=st.integers(0, 2**16), actions=st.lists(st.sampled_from(ACTIONS), max_size=60))
def test_random_inputs_take_only_the_transitions_in_the_table(
    seed: int, actions: list[str]
) -> None:
    driver = Driver(seed)
    for action in actions:
        driver.act(action)


def test_the_real_agent_reaches_every_phase() -> None:
    """A bounded random walk, seed after seed, until the real agent has been in every phase."""
    seen: set[Phase] = set()
    for seed in range(40):
        driver = Driver(seed)
        for _ in range(400):
            driver.act(driver.rng.choices(ACTIONS, WEIGHTS)[0])
        seen |= driver.seen
        if seen == set(Phase):
            break
    assert seen == set(Phase), f"never reached: {sorted(p.value for p in set(Phase) - seen)}"
