"""The safety invariants of the sync protocol over the simulated link (snapsync.sim.link.Sim),
shared by the two state machines that drive it (tests/test_protocol_sim.py, the short one, and
tests/test_flaky_link.py, the VOPR), so they check the same things the same way."""

from __future__ import annotations

from collections import Counter

from snapsync.codec.decode import decode_snapshot
from snapsync.codec.encode import encode_snapshot
from snapsync.protocol.budget import period_start
from snapsync.sim.link import ENV, Sim


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
