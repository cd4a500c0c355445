"""The protocol state machines driven directly, case by case (no sockets, no clocks)."""

from __future__ import annotations

import contextlib
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.errors import LocalProtocolError, RemoteProtocolError
from snapsync.protocol import AgentConfig, BudgetConfig, CommandResult, Intervals, Request
from snapsync.protocol.events import (
    Acked,
    BaseUnknown,
    BudgetDeferred,
    CommandReceived,
    PeerMisbehaved,
    UploadRejected,
)
from snapsync.protocol.messages import (
    BucketQuery,
    Chunk,
    Command,
    Differences,
    Ping,
    Pong,
    Refusal,
    Summary,
    UploadReply,
    Version,
    decode,
)
from snapsync.protocol.outcome import Outcome
from snapsync.protocol.pacing import CREDIT, REPAYING
from snapsync.protocol.reconcile import BucketSet, kind_digests
from snapsync.protocol.schedule import backoff_delay
from snapsync.sim.link import ENV, LinkFaults, Sim
from snapsync.sim.sample_cluster import SampleCluster

NO_JITTER = Intervals(ping=60, snapshot=60, command=10, jitter=0.0)
CONFIG = AgentConfig(intervals=NO_JITTER)
DIGESTS = st.binary(min_size=16, max_size=16)


@cache
def states(count: int, objects: int = 80, seed: int = 7) -> list[Snapshot]:
    cluster = SampleCluster(objects=objects, shape="application", seed=seed)
    out = []
    for _ in range(count):
        out.append(build_snapshot(cluster.objects(), load_profile()))
        cluster.step(churn="steady")
    return out


def synced(config: AgentConfig = CONFIG) -> Sim:
    sim = Sim(config)
    sim.collect(states(1)[0])
    sim.run_exchanges()
    assert sim.agent.in_sync
    sim.events.clear()
    return sim


def greet(sim: Sim) -> None:
    """The first exchange after a start is always a ping."""
    request = sim.agent.next_request(sim.now)
    assert request is not None and isinstance(request.message, Ping)
    reply = sim.server.handle(ENV, request.kind, request.body, sim.now)
    sim.agent.receive(request, reply.outcome, reply.body, sim.now)


def cycle(sim: Sim, snapshot: Snapshot, seconds: float = 60) -> None:
    sim.now += seconds
    sim.collect(snapshot)
    sim.run_exchanges()


def upload_due(sim: Sim) -> Request:
    """A minute on, with a new snapshot: the agent's upload request."""
    sim.now += 60
    sim.collect(states(2)[1])
    request = sim.agent.next_request(sim.now)
    assert request is not None and isinstance(request.message, Chunk)
    return request


def sent(sim: Sim) -> list[str]:
    """Send what the agent wants to now, over a perfect link; the types of what it sent."""
    types = []
    while (request := sim.agent.next_request(sim.now)) is not None:
        types.append(request.message.TYPE)
        reply = sim.server.handle(ENV, request.kind, request.body, sim.now)
        sim.events += sim.agent.receive(request, reply.outcome, reply.body, sim.now)
    return types


def answered(sim: Sim, reply: bytes) -> Request:
    """The agent's next request, answered with `reply` instead of the server's answer."""
    request = sim.agent.next_request(sim.now)
    assert request is not None
    sim.server.handle(ENV, request.kind, request.body, sim.now)
    sim.events += sim.agent.receive(request, Outcome.OK, reply, sim.now)
    return request


# -- messages ----------------------------------------------------------------------------------


@given(
    st.lists(DIGESTS, max_size=3),
    DIGESTS,
    st.booleans(),
    st.integers(0, 2**40),
    st.lists(st.tuples(st.integers(0, 2**31), st.booleans(), st.text(max_size=20)), max_size=3),
)
def test_ping_round_trips(
    have: list[bytes],
    other: bytes,
    latest_is_acked: bool,
    cursor: int,
    results: list[tuple[int, bool, str]],
) -> None:
    """An agent with acknowledged versions always has a latest snapshot too."""
    latest = have[0] if have and latest_is_acked else other
    ping = Ping(
        have=tuple(have),
        latest=latest,
        cursor=cursor,
        results=tuple(CommandResult(*r) for r in results),
    )
    assert decode(ping.encode()) == ping


@given(st.lists(st.tuples(st.integers(1, 2**40), DIGESTS), max_size=3), st.booleans())
def test_pong_round_trips(holds: list[tuple[int, bytes]], separate_current: bool) -> None:
    versions = tuple(Version(*v) for v in holds)
    current = Version(999, b"c" * 16) if separate_current else (versions[0] if versions else None)
    pong = Pong(holds=versions, current=current, commands=(Command(3, "collect-now", {}),))
    assert decode(pong.encode()) == pong


@given(st.binary(max_size=200))
def test_hostile_bytes_raise_only_remote_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode(data)


@pytest.mark.parametrize(
    "doc",
    [
        {"v": 2, "t": "ping"},
        {"v": 1, "t": "nope"},
        {"v": 1, "t": "ping", "c": -1},
        {"v": 1, "t": "ping", "h": [b"short"]},
        {
            "v": 1,
            "t": "chunk",
            "u": b"12345678",
            "b": b"",
            "g": b"x" * 16,
            "n": 2,
            "o": 1,
            "d": b"ab",
        },
        {"v": 1, "t": "upload", "s": "ack"},
        {"v": 1, "t": "upload", "s": "maybe"},
    ],
)
def test_malformed_messages_are_remote_errors(doc: dict[str, object]) -> None:
    import msgpack

    with pytest.raises(RemoteProtocolError):
        decode(msgpack.packb(doc, use_bin_type=True))


def test_idle_ping_and_pong_are_tiny() -> None:
    sim = synced()
    sim.now += 61
    request = sim.agent.next_request(sim.now)
    assert request is not None and isinstance(request.message, Ping)
    reply = sim.server.handle(ENV, request.kind, request.body, sim.now)
    sim.agent.receive(request, reply.outcome, reply.body, sim.now)
    # deterministic: the acked digest (also the latest), the cursor and the wire bytes spent
    # since the last report (`s`, 5 bytes); the held version back
    assert (len(request.body), len(reply.body)) == (40, 34)
    assert 0 < request.message.spent < 2**16 and reply.spent == request.message.spent


# -- uploads -----------------------------------------------------------------------------------


def test_an_unchanged_cluster_costs_only_pings() -> None:
    sim = synced()
    for _ in range(5):
        cycle(sim, states(1)[0], seconds=61)
    sent = [type(e).__name__ for e in sim.events]
    assert sent == []
    assert sim.store.env(ENV).frames == 1


def test_changes_ship_as_deltas_and_converge() -> None:
    sim = synced()
    for snapshot in states(4)[1:]:
        cycle(sim, snapshot)
        current = sim.store.current(ENV)
        assert current is not None and current.digest == snapshot.digest
    kinds = [e.kind for e in sim.events if isinstance(e, Acked)]
    assert len(kinds) == 3 and "full" not in kinds


def test_after_an_outage_one_coalesced_delta_catches_up() -> None:
    snapshots = states(8)
    sim = synced()
    sim.faults = LinkFaults(loss=1.0)
    for snapshot in snapshots[1:]:
        cycle(sim, snapshot, seconds=600)
    assert sim.store.env(ENV).frames == 1
    sim.faults = LinkFaults()
    cycle(sim, snapshots[-1], seconds=3600)
    acks = [e for e in sim.events if isinstance(e, Acked)]
    assert len(acks) == 1 and acks[0].version.digest == snapshots[-1].digest
    assert acks[0].kind != "full"
    assert sim.store.env(ENV).frames == 2


def test_chunked_upload_resumes_from_the_confirmed_offset() -> None:
    config = AgentConfig(intervals=NO_JITTER, chunk_size=2048)
    sim = Sim(config, seed=1)
    sim.collect(states(1)[0])
    greet(sim)
    request = sim.agent.next_request(sim.now)
    assert request is not None and isinstance(request.message, Chunk)
    total = request.message.total
    assert total > 4 * 2048
    for _ in range(2):  # two chunks get through
        reply = sim.server.handle(ENV, request.kind, request.body, sim.now)
        sim.agent.receive(request, reply.outcome, reply.body, sim.now)
        request = sim.agent.next_request(sim.now)
        assert request is not None
    sim.server.handle(ENV, request.kind, request.body, sim.now)  # third arrives, answer lost
    sim.agent.fail(request, sim.now, "connection reset")
    sim.now += 3600
    resent = sim.agent.next_request(sim.now)
    assert resent is not None and isinstance(resent.message, Chunk)
    assert resent.message.offset == 2 * 2048  # the agent does not know the third arrived
    reply = sim.server.handle(ENV, resent.kind, resent.body, sim.now)
    assert decode(reply.body) == UploadReply("partial", offset=3 * 2048)  # duplicate: no change
    sim.agent.receive(resent, reply.outcome, reply.body, sim.now)
    sim.run_exchanges()
    assert sim.agent.in_sync


def test_server_that_lost_the_base_gets_a_full_snapshot() -> None:
    sim = synced()
    sim.store.environments.clear()  # restored from an old backup
    cycle(sim, states(2)[1])
    names = [type(e).__name__ for e in sim.events]
    assert "BaseUnknown" in names
    assert [e.kind for e in sim.events if isinstance(e, Acked)] == ["full"]
    assert sim.agent.in_sync


def test_corrupted_frame_is_rejected_and_a_full_snapshot_follows() -> None:
    sim = synced()
    request = upload_due(sim)
    assert isinstance(request.message, Chunk)
    chunk = request.message
    damaged = bytearray(chunk.data)
    damaged[len(damaged) // 2] ^= 0x40
    body = Chunk(chunk.upload, chunk.base, chunk.target, chunk.total, 0, bytes(damaged)).encode()
    reply = sim.server.handle(ENV, request.kind, body, sim.now)
    assert reply.refused
    events = sim.agent.receive(request, reply.outcome, reply.body, sim.now)
    assert any(isinstance(e, UploadRejected) for e in events)
    assert sim.store.current(ENV).digest == states(1)[0].digest  # type: ignore[union-attr]
    sim.now += 3600
    sim.run_exchanges()
    assert [e.kind for e in sim.events if isinstance(e, Acked)] == ["full"]


def test_an_ack_for_another_version_moves_nothing() -> None:
    sim = synced()
    request = upload_due(sim)
    stray = UploadReply("ack", version=Version(99, b"z" * 16)).encode()
    events = sim.agent.receive(request, Outcome.OK, stray, sim.now)
    assert any(isinstance(e, PeerMisbehaved) for e in events)
    assert sim.agent.acked is not None and sim.agent.acked.digest == states(1)[0].digest


def test_answers_for_requests_not_in_flight_are_a_local_error() -> None:
    sim = synced()
    sim.now += 61
    request = sim.agent.next_request(sim.now)
    assert request is not None
    assert sim.agent.next_request(sim.now) is None  # one request at a time
    reply = sim.server.handle(ENV, request.kind, request.body, sim.now)
    sim.agent.receive(request, reply.outcome, reply.body, sim.now)
    with pytest.raises(LocalProtocolError):
        sim.agent.receive(request, reply.outcome, reply.body, sim.now)


def test_restart_resumes_without_a_full_resend() -> None:
    sim = synced()
    sim.restart_agent()
    cycle(sim, states(2)[1])
    assert [e.kind for e in sim.events if isinstance(e, Acked)] in (["delta"], ["patch-from"])


def test_server_refusals_back_off() -> None:
    sim = synced()
    sim.now += 61
    request = sim.agent.next_request(sim.now)
    assert request is not None
    sim.agent.receive(
        request, Outcome.BUSY, Refusal("overloaded", retry_after=300).encode(), sim.now
    )
    assert sim.agent.next_request(sim.now + 299) is None
    assert sim.agent.next_request(sim.now + 301) is not None


def test_backoff_doubles_up_to_its_cap() -> None:
    import random

    intervals = Intervals(backoff_base=5, backoff_cap=60, jitter=0.0)
    delays = [backoff_delay(n, intervals, random.Random(0)) for n in range(1, 8)]
    assert delays == [5, 10, 20, 40, 60, 60, 60]


# -- budget ------------------------------------------------------------------------------------


def test_budget_defers_an_upload_and_never_overspends() -> None:
    snapshots = states(3)
    config = AgentConfig(intervals=NO_JITTER, budget=BudgetConfig(limit=8_000, period="day"))
    sim = Sim(config)
    sim.collect(snapshots[0])  # a full snapshot does not fit 8 kB
    sim.run_exchanges()
    deferred = [e for e in sim.events if isinstance(e, BudgetDeferred)]
    assert deferred and deferred[0].needed > 8_000
    assert sim.store.current(ENV) is None
    for hour in range(30):
        sim.now += 3600
        sim.run_exchanges()
        assert sim.agent.budget.used <= 8_000
        if hour == 0:
            assert sim.store.env(ENV).waiting > 0  # the next ping says an upload waits
    day = sim.now - sim.now % 86400
    assert sim.bytes_in_period(day, day + 86400) <= 8_000


def test_the_fixed_window_lets_a_delta_through_when_it_fits() -> None:
    """The fixed policy, chosen: whatever the period's remaining budget carries goes at once
    (paced, this delta would wait for the pace to repay the full snapshot's credit)."""
    budget = BudgetConfig(limit=10**6, period="month", policy="fixed")
    sim = synced(AgentConfig(intervals=NO_JITTER, budget=budget))
    cycle(sim, states(2)[1])
    assert sim.agent.in_sync


def test_paced_a_delta_waits_for_the_pace_and_the_agent_wakes_when_it_may_go() -> None:
    """Paced (the default): the full snapshot went on credit; the next delta waits while the pace
    repays it, the agent asks to be woken when the budget says it may go, and it goes then."""
    budget = BudgetConfig(limit=10**6, period="month", interval_ceiling=600.0)
    daily = Intervals(ping=86400, snapshot=86400, jitter=0)
    sim = synced(AgentConfig(intervals=daily, budget=budget))
    cycle(sim, states(2)[1])
    assert not sim.agent.in_sync and sim.agent.waiting > 0
    pace = sim.agent.gate.pace
    assert pace is not None and pace.reason == REPAYING
    wake = sim.agent.wakeup_at(sim.now)
    assert wake == sim.agent.gate.ready_at < sim.agent.next_snapshot
    sim.now = wake - 1
    sim.run_exchanges()
    assert not sim.agent.in_sync  # not a second early
    sim.now = wake
    sim.run_exchanges()
    assert sim.agent.in_sync and sim.agent.waiting == 0


def test_the_later_chunks_of_an_upload_never_wait_for_the_pace() -> None:
    """The pace spaces upload starts: the first full snapshot starts on credit, and its later
    chunks go although the bucket is in debt, in the same instant."""
    budget = BudgetConfig(limit=10**6, period="month")
    sim = synced(AgentConfig(intervals=NO_JITTER, budget=budget, chunk_size=1024))
    assert len(sim.uploaded) > 3 and sim.agent.budget.bucket.tokens < 0
    assert sim.agent.gate.pace is not None and sim.agent.gate.pace.reason == CREDIT


# -- commands ----------------------------------------------------------------------------------


def test_commands_run_at_most_once_and_results_reach_the_server() -> None:
    sim = synced()
    command = sim.store.queue_command(ENV, "delete-pod", {"namespace": "shop", "name": "web-0"})
    sim.store.queue_command(ENV, "format-disk", {})
    sim.now += 61
    sim.run_exchanges()
    received = [e.command for e in sim.events if isinstance(e, CommandReceived)]
    assert received == [command]
    sim.agent.command_finished(CommandResult(command.id, True, "deleted"))
    store = sim.store
    every_command = store.env(ENV).commands
    store.commands_after = lambda env, cursor, limit: every_command  # type: ignore[method-assign]
    sim.now += 11  # a server that delivers everything again...
    sim.run_exchanges()
    received = [e.command for e in sim.events if isinstance(e, CommandReceived)]
    assert received == [command]  # ...runs nothing twice
    results = sim.store.env(ENV).results
    assert results[command.id].ok
    assert not results[2].ok and "unknown command" in results[2].message


def test_a_command_interrupted_by_a_restart_is_reported_not_rerun() -> None:
    sim = synced()
    sim.store.queue_command(
        ENV, "restart-rollout", {"kind": "Deployment", "namespace": "a", "name": "b"}
    )
    sim.now += 61
    sim.run_exchanges()
    assert len([e for e in sim.events if isinstance(e, CommandReceived)]) == 1
    sim.restart_agent()
    sim.now += 61
    sim.run_exchanges()
    assert len([e for e in sim.events if isinstance(e, CommandReceived)]) == 1
    result = sim.store.env(ENV).results[1]
    assert not result.ok and "interrupted" in result.message


def test_full_snapshot_command() -> None:
    sim = synced()
    sim.store.queue_command(ENV, "full-snapshot")
    sim.now += 61
    sim.run_exchanges()
    acks = [e for e in sim.events if isinstance(e, Acked)]
    assert [e.kind for e in acks] == ["full"]
    assert acks[0].version.digest == states(1)[0].digest
    assert not any(isinstance(e, BaseUnknown) for e in sim.events)
    cycle(sim, states(2)[1], seconds=1)  # and deltas again after it
    assert [e.kind for e in sim.events if isinstance(e, Acked)][1:] != ["full"]


def test_an_agent_that_lost_its_state_adopts_what_the_server_holds() -> None:
    sim = synced()
    sim.wipe_agent_state(seed=2)  # state directory wiped
    sim.now += 61
    sim.collect(states(1)[0])
    sim.run_exchanges()
    assert sim.agent.in_sync
    assert sim.store.env(ENV).frames == 1  # nothing uploaded again


# -- an ack stands in for the next ping -----------------------------------------------------------


def test_an_upload_cycle_needs_no_ping() -> None:
    """The ack says what the pong would: one exchange per upload cycle, pings when idle."""
    sim = synced()
    sim.now += 60
    sim.collect(states(2)[1])
    assert sent(sim) == ["chunk"]
    record = sim.store.env(ENV)
    assert (record.last_seen, record.agent_latest, record.waiting) == (
        sim.now,
        states(2)[1].digest,
        0,
    )
    sim.now += 59
    assert sent(sim) == []
    sim.now += 1  # a ping interval after the ack, with nothing new to upload
    sim.collect(states(2)[1])
    assert sent(sim) == ["ping"]


def test_commands_waiting_at_an_ack_are_fetched_at_once() -> None:
    sim = synced()
    command = sim.store.queue_command(ENV, "delete-pod", {"namespace": "shop", "name": "web-0"})
    sim.now += 60
    sim.collect(states(2)[1])
    assert sent(sim) == ["chunk", "ping"]
    assert [e.command for e in sim.events if isinstance(e, CommandReceived)] == [command]


def test_a_command_queued_after_an_ack_waits_at_most_a_ping_interval() -> None:
    sim = synced()
    sim.now += 60
    sim.collect(states(2)[1])
    assert sent(sim) == ["chunk"]
    sim.now += 30
    command = sim.store.queue_command(ENV, "collect-now")
    assert sent(sim) == []
    sim.now += 30
    assert sent(sim) == ["ping"]
    assert sim.agent.commands.cursor == command.id


def test_an_ack_that_does_not_say_what_a_pong_would_keeps_the_ping() -> None:
    """A server that answers without `q` (an older one): the ping goes as scheduled."""
    sim = synced()
    request = upload_due(sim)
    reply = decode(sim.server.handle(ENV, request.kind, request.body, sim.now).body)
    assert isinstance(reply, UploadReply) and reply.queued is False
    plain = UploadReply("ack", version=reply.version).encode()
    sim.agent.receive(request, Outcome.OK, plain, sim.now)
    assert sent(sim) == ["ping"]


def test_an_ack_naming_a_newer_server_version_makes_the_agent_reassert() -> None:
    """What a pong's `cur` triggers (tests below), an ack's does at once."""
    sim = synced()
    stale = Version(99, states(1)[0].digest)
    acked = sim.store.held(ENV)[0]
    reply = UploadReply("ack", version=Version(acked.seq + 1, states(2)[1].digest), current=stale)
    request = upload_due(sim)
    sim.server.handle(ENV, request.kind, request.body, sim.now)
    sim.agent.receive(request, Outcome.OK, reply.encode(), sim.now)
    reassert = sim.agent.next_request(sim.now)
    assert reassert is not None and isinstance(reassert.message, Chunk)
    assert reassert.message.base == reassert.message.target == states(2)[1].digest


def test_an_ack_does_not_stand_in_for_a_ping_that_verifies_bases() -> None:
    """After an unknown base the next ping lists every base; an ack does not push it back."""
    sim = synced()
    sim.store.environments.clear()  # restored from an old backup
    sim.now += 30
    sim.collect(states(2)[1])
    assert sent(sim) == ["chunk", "chunk"]  # unknown base, then a whole snapshot
    sim.now += 31  # a ping interval after the last pong
    assert sent(sim) == ["ping"]


# -- found by the flaky-link simulation (tests/test_flaky_link.py) ------------------------------


def test_a_stale_upload_landing_late_does_not_leave_the_server_behind() -> None:
    """An upload the agent gave up on reaches the server after a newer one was acked.

    The server commits it as its newest version (it cannot tell it is stale), so its current
    snapshot is older than the agent's latest while the agent, holding an ack for its latest,
    believes it is in sync. The pong says what the server's newest version is: the agent sees it
    is not its latest and re-asserts the latest (an empty upload), which the server commits anew.
    """
    _, s2, s3 = states(3)
    sim = synced()
    sim.now += 61
    sim.collect(s2)
    stale = sim.agent.next_request(sim.now)
    assert stale is not None and isinstance(stale.message, Chunk)
    sim.agent.fail(stale, sim.now, "timed out")  # held in the network, not lost
    sim.now += 61
    cycle(sim, s3, seconds=0)
    assert sim.agent.in_sync and sim.store.current(ENV).digest == s3.digest  # type: ignore[union-attr]
    late = sim.server.handle(ENV, stale.kind, stale.body, sim.now)  # nobody listens
    assert late.applied is not None and sim.store.current(ENV).digest == s2.digest  # type: ignore[union-attr]
    for _ in range(3):
        sim.now += 61
        sim.collect(s3)
        sim.run_exchanges()
    current = sim.store.current(ENV)
    assert current is not None and current.digest == s3.digest
    assert sim.agent.in_sync and sim.agent.acked == sim.store.held(ENV)[0]
    assert sim.store.env(ENV).frames == 4  # s1, s3, the stale s2, and s3 again (no resend)


def test_chunks_too_large_for_a_slow_link_shrink_until_they_cross() -> None:
    """A chunk that cannot cross within the request timeout used to fail forever (livelock).

    At 100 B/s with a 30 s timeout, 4 KiB chunks never arrive; a failed chunk now halves the
    chunk size, so the upload completes, and the next upload starts at full size again.
    """
    config = AgentConfig(intervals=NO_JITTER, chunk_size=4096)
    sim = Sim(config, seed=3, reconnect=0)  # at 100 B/s a TLS handshake alone takes 15 s
    sim.faults = LinkFaults(bandwidth=100, timeout=30)
    sim.collect(states(1)[0])
    for _ in range(40):
        sim.advance(max(0.0, sim.agent.wakeup_at(sim.now) - sim.now))
        sim.run_exchanges()
        if sim.agent.in_sync:
            break
    assert sim.agent.in_sync
    assert sim.store.current(ENV).digest == states(1)[0].digest  # type: ignore[union-attr]
    assert sim.counters["timeout"] >= 1
    assert sim.agent.chunks.size == 4096


# -- anti-entropy ------------------------------------------------------------------------------


def test_no_shared_version_ships_only_the_objects_that_differ() -> None:
    """Agent state lost while the cluster changed: digests are compared, not everything resent."""
    config = AgentConfig(intervals=NO_JITTER, reconcile_min=1)
    sim = synced(config)
    full = sim.store.env(ENV).frame_bytes
    sim.wipe_agent_state(seed=2)  # state directory wiped
    sim.now += 61
    sim.collect(states(2)[1])  # and the cluster moved on meanwhile
    sim.run_exchanges()
    acks = [e for e in sim.events if isinstance(e, Acked)]
    assert [a.kind for a in acks] == ["repair"]
    assert acks[0].frame_bytes < full / 4
    current = sim.store.current(ENV)
    assert current is not None and current.digest == states(2)[1].digest
    assert sim.agent.in_sync


def test_a_failed_repair_falls_back_to_a_full_snapshot() -> None:
    config = AgentConfig(intervals=NO_JITTER, reconcile_min=1)
    sim = synced(config)
    sim.wipe_agent_state(seed=2)
    sim.now += 61
    sim.collect(states(2)[1])
    greet(sim)
    request = sim.agent.next_request(sim.now)
    assert request is not None and request.kind == "summary"
    while request is not None and request.kind in ("summary", "buckets"):
        reply = sim.server.handle(ENV, request.kind, request.body, sim.now)
        sim.agent.receive(request, reply.outcome, reply.body, sim.now)
        request = sim.agent.next_request(sim.now)
    chunk = request
    assert chunk is not None and isinstance(chunk.message, Chunk)
    sim.agent.receive(chunk, Outcome.OK, UploadReply("rejected", reason="test").encode(), sim.now)
    sim.now += 3600
    sim.run_exchanges()
    assert [e.kind for e in sim.events if isinstance(e, Acked)] == ["full"]


def diverged_agent(objects: int = 400, budget: BudgetConfig | None = None) -> tuple[Sim, Snapshot]:
    """The server holds a state; the agent lost its own while the cluster moved on."""
    config = AgentConfig(intervals=NO_JITTER, reconcile_min=1, budget=budget or BudgetConfig())
    first, second = states(2, objects=objects)
    sim = Sim(config)
    sim.collect(first)
    sim.run_exchanges()
    sim.events.clear()
    sim.wipe_agent_state(seed=2)
    sim.now += 61
    sim.collect(second)
    return sim, second


def test_a_large_kind_that_differs_is_narrowed_to_its_differing_buckets() -> None:
    sim, latest = diverged_agent()
    assert sent(sim) == ["ping", "summary", "buckets", "chunk"]
    assert [e.kind for e in sim.events if isinstance(e, Acked)] == ["repair"]
    current = sim.store.current(ENV)
    assert current is not None and current.digest == latest.digest


def test_a_budget_too_small_for_anti_entropy_gets_a_full_snapshot() -> None:
    """Anti-entropy budgets for its largest answer (256 KiB); a budget that can never fit it
    must not wait for it forever."""
    sim, latest = diverged_agent(objects=80, budget=BudgetConfig(limit=200_000, period="day"))
    assert sent(sim) == ["ping", "chunk"]
    assert [e.kind for e in sim.events if isinstance(e, Acked)] == ["full"]
    assert sim.agent.in_sync and sim.agent.latest is latest


def reconciling() -> Sim:
    """An agent whose summary was answered: its next request asks for buckets."""
    sim, _ = diverged_agent()
    assert sent_until(sim, "buckets") == ["ping", "summary"]
    return sim


def sent_until(sim: Sim, kind: str) -> list[str]:
    types = []
    while (request := sim.agent.next_request(sim.now)) is not None:
        if kind == request.message.TYPE:
            sim.agent.fail(request, sim.now, "put back")  # keep it for the test
            sim.now = sim.agent.backoff_until
            return types
        types.append(request.message.TYPE)
        reply = sim.server.handle(ENV, request.kind, request.body, sim.now)
        sim.events += sim.agent.receive(request, reply.outcome, reply.body, sim.now)
    raise AssertionError(f"no {kind} request after {types}")


def test_a_declined_bucket_query_falls_back_to_a_full_snapshot() -> None:
    sim = reconciling()
    request = answered(sim, Differences(None, {}).encode())
    assert isinstance(request.message, BucketQuery)
    sim.run_exchanges()
    assert [e.kind for e in sim.events if isinstance(e, Acked)] == ["full"]


def test_a_refused_bucket_query_falls_back_to_a_full_snapshot() -> None:
    sim = reconciling()
    request = sim.agent.next_request(sim.now)
    assert request is not None and isinstance(request.message, BucketQuery)
    sim.agent.receive(request, Outcome.MALFORMED, Refusal("malformed").encode(), sim.now)
    sim.now += 3600
    sim.run_exchanges()
    assert [e.kind for e in sim.events if isinstance(e, Acked)] == ["full"]


def test_objects_outside_the_buckets_asked_for_lead_to_a_full_snapshot() -> None:
    sim = reconciling()
    base = sim.store.held(ENV)[0]
    stray = Differences(base, {"Nothing.example.com": [("ns", "x", b"d" * 8)]}).encode()
    answered(sim, stray)
    assert any(isinstance(e, PeerMisbehaved) for e in sim.events)
    sim.now += 3600
    sim.run_exchanges()
    assert [e.kind for e in sim.events if isinstance(e, Acked)] == ["full"]


def test_the_server_declines_what_it_cannot_answer() -> None:
    sim = synced()
    latest = states(2)[1]
    summary = Summary(latest.digest, kind_digests(latest), limit=16)
    assert decode(sim.server.handle(ENV, Summary.TYPE, summary.encode(), sim.now).body) == (
        Differences(None, {})
    )
    gone = BucketQuery(Version(7, b"g" * 16), {"Pod": BucketSet.of(4, {1})})
    assert decode(sim.server.handle(ENV, BucketQuery.TYPE, gone.encode(), sim.now).body) == (
        Differences(None, {})
    )


def test_a_cluster_back_in_an_earlier_state_becomes_the_servers_newest_once() -> None:
    """A reverted edit: the agent's new state is one the server holds as an older version. The
    server must make it its newest (not merely ack the old version), or the agent would upload
    the same delta at every wake-up."""
    first, second = states(2)
    sim = synced()
    cycle(sim, second)
    cycle(sim, first)
    current = sim.store.current(ENV)
    assert current is not None and current.digest == first.digest
    assert sim.agent.in_sync
    sim.events.clear()
    for _ in range(5):
        cycle(sim, first, seconds=61)
    assert [type(e).__name__ for e in sim.events] == []


# -- a hostile server's retry-after (issue 16, item 13) -----------------------------------------


@pytest.mark.parametrize("outcome", [Outcome.OK, Outcome.BUSY])
def test_a_servers_retry_after_is_capped_at_the_agents_longest_backoff(outcome: Outcome) -> None:
    sim = synced()
    sim.now += 61
    request = sim.agent.next_request(sim.now)
    assert request is not None and isinstance(request.message, Ping)
    answer = Pong(retry_after=9e8) if outcome is Outcome.OK else Refusal("busy", retry_after=9e8)
    sim.agent.receive(request, outcome, answer.encode(), sim.now)
    cap = CONFIG.intervals.backoff_cap
    assert sim.now < sim.agent.backoff_until <= sim.now + cap
    assert sim.agent.next_request(sim.now + cap + 1) is not None
