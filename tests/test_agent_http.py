"""A real Agent (file collector, httpx transport, state directory) against a real server on
loopback: convergence, deltas, restarts without a full resend, and refused credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snapsync.agent import Agent, HttpTransport
from snapsync.agent.transport import PATHS, outcome_of
from snapsync.collect import FileCollector
from snapsync.protocol import AgentConfig, Intervals, MemoryStore
from snapsync.protocol.events import Acked, AuthRejected
from snapsync.protocol.outcome import Outcome
from snapsync.protocol.server import ServerProtocol
from snapsync.server import ServerSettings, SharedSecret
from snapsync.server.app import ROUTES, STATUSES
from snapsync.sim.sample_cluster import SampleCluster
from tests.support_server import live_server

SECRET = b"correct horse battery staple"
EDGE = "shop-17"


class Clock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def server_url(store: MemoryStore) -> str:
    with live_server(ServerSettings(secrets=SharedSecret(SECRET), store=store)) as url:
        yield url  # type: ignore[misc]


def make_agent(url: str, dump: Path, state: Path, clock: Clock, secret: bytes = SECRET) -> Agent:
    return Agent(
        FileCollector([dump]),
        HttpTransport(url, EDGE, secret),
        state,
        AgentConfig(intervals=Intervals(jitter=0.0)),
        environment_id=EDGE,
        clock=clock,
        seed=1,
    )


def write_dump(cluster: SampleCluster, path: Path) -> None:
    path.write_text(json.dumps(cluster.list_document()))


def test_agent_converges_ships_deltas_and_survives_restart(
    tmp_path: Path, server_url: str, store: MemoryStore
) -> None:
    cluster = SampleCluster(objects=200, shape="application", seed=5)
    dump = tmp_path / "dump.json"
    write_dump(cluster, dump)
    clock = Clock()
    agent = make_agent(server_url, dump, tmp_path / "state", clock)
    report = agent.step()
    assert report.in_sync and report.frame_kind == "full"
    assert store.current(EDGE).digest == agent.protocol.latest.digest  # type: ignore[union-attr]

    cluster.step(churn="steady")
    write_dump(cluster, dump)
    clock.now += 61
    report = agent.step()
    assert report.in_sync and report.frame_kind in ("delta", "patch-from")
    agent.close()

    cluster.step(churn="steady")
    write_dump(cluster, dump)
    clock.now += 61
    restarted = make_agent(server_url, dump, tmp_path / "state", clock)
    report = restarted.step()
    acks = [e for e in report.events if isinstance(e, Acked)]
    assert report.in_sync and [a.kind for a in acks] != ["full"]
    assert store.current(EDGE).digest == restarted.protocol.latest.digest  # type: ignore[union-attr]
    assert report.wire_bytes > 0
    restarted.close()


def test_wrong_secret_is_refused_and_nothing_is_stored(
    tmp_path: Path, server_url: str, store: MemoryStore
) -> None:
    dump = tmp_path / "dump.json"
    write_dump(SampleCluster(objects=50, seed=1), dump)
    agent = make_agent(server_url, dump, tmp_path / "state", Clock(), secret=b"wrong")
    report = agent.step()
    assert any(isinstance(e, AuthRejected) for e in report.events)
    assert not report.in_sync
    assert store.current(EDGE) is None
    agent.close()


def test_unreachable_server_backs_off(tmp_path: Path) -> None:
    dump = tmp_path / "dump.json"
    write_dump(SampleCluster(objects=50, seed=1), dump)
    agent = make_agent("http://127.0.0.1:9", dump, tmp_path / "state", Clock())
    report = agent.step()
    assert report.exchanges == 1 and not report.in_sync
    assert agent.protocol.backoff_until > agent.clock()
    agent.close()


def test_the_agents_http_binding_matches_the_servers() -> None:
    """Paths and statuses live only in the two HTTP bindings: they must agree, both ways."""
    assert {kind: path for path, kind in ROUTES.items()} == PATHS
    assert set(PATHS) == set(ServerProtocol.KINDS)
    assert all(outcome_of(status) is outcome for outcome, status in STATUSES.items())
    assert set(STATUSES) == set(Outcome)
