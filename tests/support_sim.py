"""The safety invariants of the sync protocol over the simulated link (snapsync.sim.link.Sim),
shared by the two state machines that drive it (tests/test_protocol_sim.py, the short one, and
tests/test_flaky_link.py, the VOPR), so they check the same things the same way; and the bound
of their liveness property under a paced budget that binds (`paced_bound`)."""

from __future__ import annotations

from collections import Counter

from snapsync.agent.settings import PING_COST
from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.decode import decode_snapshot
from snapsync.codec.encode import encode_snapshot
from snapsync.protocol.budget import period_start
from snapsync.protocol.upload import UPLOAD_REPLY_ALLOWANCE
from snapsync.sim.link import ENV, Sim

# Upload starts a catch-up may need, each of which the pace may hold back: a summary of the
# kinds, a query of the buckets that differ (anti-entropy), the upload itself.
STARTS = 3
# What pings may take from the pace beyond one in-sync ping per ping interval: faster pings
# while a command result is pending, a reconnect, a longer pong.
PING_MARGIN = 1.5


def server_holds_only_intact_versions_the_agent_produced(
    sim: Sim, verified: set[tuple[int, bytes]]
) -> None:
    """Every version the server holds or committed is one the agent produced, and its stored
    snapshot is intact: the digest is recomputed from the objects (encoded and decoded again),
    never read back from the object the store returns. `verified` caches versions checked."""
    for version in sim.store.held(ENV):
        assert version.digest in sim.produced, "the server holds a version never produced"
        key = (version.seq, version.digest)
        if key in verified:
            continue
        snapshot = sim.store.snapshot(ENV, version.digest)
        assert snapshot is not None
        fresh = decode_snapshot(encode_snapshot(snapshot, 1))
        assert fresh.digest == version.digest, "a stored version is corrupt or half-applied"
        verified.add(key)
    for digest in sim.applied:
        assert digest in sim.produced


def agent_base_is_held_by_the_server(sim: Sim) -> None:
    """The base the agent diffs against (its newest ack); older ones are only fallbacks, which a
    pong or an unknown-base answer prunes when the server no longer has them.

    Held by digest, as the protocol names bases: a re-assertion commits a held state anew under
    a newer version number, and the older number may then be pruned while the state stays (the
    agent learns the new number from its next pong)."""
    acked = sim.agent.acked
    if acked is not None:
        held = {v.digest for v in sim.store.held(ENV)}
        assert acked.digest in held, f"agent's base v{acked.seq} is not held by the server"


def budget_is_never_exceeded(sim: Sim, budget: int) -> None:
    """The bytes on the link in any budget period (a day) stay within the budget (0: none)."""
    if not budget:
        return
    per_period: Counter[float] = Counter()
    for when, size in sim.wire_bytes:
        per_period[period_start("day", when)] += size
    worst = max(per_period.values(), default=0)
    assert worst <= budget, f"{worst} bytes in one day, budget {budget}"
    assert sim.agent.budget.used <= budget


def commands_run_at_most_once(executed: Counter[int]) -> None:
    assert all(count == 1 for count in executed.values()), executed


def net_pace(sim: Sim) -> float:
    """Bytes per second the agent's bucket gains while only pings go: the pace less what pings
    at the ping interval take from it (pings are paid from the same bucket)."""
    budget = sim.agent.budget
    pings = PING_MARGIN * PING_COST / sim.config.intervals.ping
    return budget.rate(sim.now) - pings


def paced_bound(sim: Sim, frame: int) -> float:
    """T in the liveness property "a new version within T after the link returns and the budget
    accrues", from the pace (0 when the budget does not pace).

    The pacer lets an upload start once the bucket covers it, or on credit once the bucket is out
    of debt and `interval_ceiling` has passed since the previous start (snapsync.protocol.pacing);
    its later chunks never wait. So the starts of a catch-up (at most STARTS) go within one
    ceiling each, plus the time the net pace takes to repay what the bucket owes before the
    last of them: its debt when the link returns, plus what the earlier starts cost, at most
    `frame` (the most a start can put on credit: a full snapshot with its allowances). A period
    that ends sooner opens the bucket afresh (debt forgiven, and the next period for an upload
    this one's hard check refused): at most its end plus the same without the debt.
    """
    budget = sim.agent.budget
    if not budget.paced:
        return 0.0
    net = net_pace(sim)
    assert net > 0, "the budget does not pay for its pings: uploads could never be paced"
    budget.pace(1, sim.now)  # accrue the bucket to now
    debt = max(0.0, -budget.bucket.tokens)
    ceiling = budget.config.interval_ceiling
    this_period = STARTS * ceiling + (debt + frame) / net
    next_period = budget.next_period(sim.now) - sim.now + STARTS * ceiling + frame / net
    return min(this_period, next_period)


def full_frame_cost(sim: Sim, latest: Snapshot) -> int:
    """The most one upload start can cost the bucket: a full snapshot of `latest`, its reply
    allowance and an exchange on a new connection."""
    config = sim.config
    full = len(encode_snapshot(latest, config.full_level))
    return full + UPLOAD_REPLY_ALLOWANCE + config.overhead + config.connect_allowance
