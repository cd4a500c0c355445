"""The pacer plans each upload at what it will cost on the wire: a reconnect once the server has
closed the idle connection (snapsync.protocol.metering, AgentConfig.keep_alive), the kept-alive
cost before. A wrong keep-alive assumption moves the plan, never the budget."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapsync.agent.transport import Answer
from snapsync.protocol import AgentConfig, Intervals
from snapsync.protocol.budget import BudgetConfig, period_start
from snapsync.protocol.messages import Chunk, decode
from snapsync.protocol.pacing import AHEAD, Cost, TokenBucket, Window, schedule
from snapsync.protocol.request import SERVER_KEEP_ALIVE
from snapsync.protocol.upload import UPLOAD_REPLY_ALLOWANCE
from snapsync.server.app import KEEP_ALIVE
from snapsync.sim.link import Sim
from tests.support_hypothesis import expensive
from tests.test_pacing import churning


def test_an_upload_planned_past_the_keep_alive_is_planned_with_a_reconnect() -> None:
    window = Window(rate=100.0, floor=10.0, ceiling=600.0)
    low = TokenBucket(capacity=50_000, tokens=500, stamp=0.0)
    warm = schedule(low, Cost(1_000, 2_540, closes=150.0), 100.0, window, last_start=0.0)
    assert warm.reason == AHEAD and warm.ready_at == pytest.approx(105.0) and warm.need == 1_000
    # the connection closes before the bucket covers the kept-alive cost: a reconnect's worth
    cold = schedule(low, Cost(1_000, 2_540, closes=102.0), 100.0, window, last_start=0.0)
    assert cold.ready_at == pytest.approx(120.4) and cold.need == 2_540
    closed = schedule(low, Cost(1_000, 2_540, closes=50.0), 100.0, window, last_start=0.0)
    assert closed.need == 2_540  # already closed
    assert Cost.flat(7).at(math.inf) == 7


def test_the_agent_assumes_the_servers_default_keep_alive() -> None:
    assert AgentConfig().keep_alive == SERVER_KEEP_ALIVE == KEEP_ALIVE


@dataclass
class PlannedSim(Sim):
    """The simulated link, noting for each upload start what the pacer planned and what the
    exchange cost on the link."""

    starts: list[tuple[int, int, bool]] = field(default_factory=list)  # planned, wire, reconnect

    def exchange(self, kind: str, body: bytes) -> Answer:
        pace = self.agent.gate.pace
        answer = super().exchange(kind, body)
        message = decode(body)
        single = isinstance(message, Chunk) and message.offset == 0
        if single and len(message.data) == message.total and pace is not None:
            beyond = answer.wire_bytes - len(body) - len(answer.body)
            self.starts.append((pace.need, answer.wire_bytes, beyond > self.config.overhead))
        return answer


def run(
    limit: int, ping: float, assumed: float, server: float, minutes: int, every: int
) -> PlannedSim:
    """An hourly paced budget the churn overruns, a snapshot every `every` minutes; the agent
    assumes the server keeps idle connections `assumed` s, the server keeps them `server` s."""
    budget = BudgetConfig(limit=limit, period="3600", policy="paced", interval_ceiling=900.0)
    config = AgentConfig(Intervals(ping=ping, jitter=0.0), budget, keep_alive=assumed)
    sim = PlannedSim(config, keep_alive=server)
    sim.now -= sim.now % 3600
    for snapshot in churning(minutes)[::every]:
        sim.collect(snapshot)
        for _ in range(every * 6):  # the agent wakes within the minutes as it asks
            sim.run_exchanges()
            sim.now += 10
    return sim


@expensive(0.1)  # ~1 s an example: an hour of the agent, server and link
@given(
    limit=st.integers(20_000, 80_000),
    ping=st.sampled_from([60.0, 300.0, 900.0]),
    assumed=st.sampled_from([30.0, 150.0, 400.0, math.inf]),
    server=st.sampled_from([30.0, 150.0, 400.0]),
    every=st.sampled_from([1, 3]),
)
def test_the_budget_holds_whatever_keep_alive_the_agent_assumes(
    limit: int, ping: float, assumed: float, server: float, every: int
) -> None:
    sim = run(limit, ping, assumed, server, 60, every)
    hours: Counter[float] = Counter()
    for when, size in sim.wire_bytes:
        hours[period_start("3600", when)] += size
    assert max(hours.values()) <= limit
    if assumed == server:  # every start planned at what it cost (its reply within allowance)
        for planned, wire, _ in sim.starts:
            assert 0 <= planned - wire <= UPLOAD_REPLY_ALLOWANCE


def test_uploads_spaced_past_the_keep_alive_are_planned_with_their_reconnect() -> None:
    """Pings every 15 min, churn above an hourly budget: the pacer spaces uploads past the
    server's 150 s keep-alive, so most starts pay a reconnect, and it plans each one's."""
    sim = run(25_000, 900.0, SERVER_KEEP_ALIVE, SERVER_KEEP_ALIVE, 120, 1)
    reconnects = sum(reconnect for _, _, reconnect in sim.starts)
    assert reconnects >= len(sim.starts) // 2 > 0 and reconnects < len(sim.starts)
    # each start planned at what it cost, reconnect or not (its reply within the allowance)
    assert all(0 <= p - w <= UPLOAD_REPLY_ALLOWANCE for p, w, _ in sim.starts)
