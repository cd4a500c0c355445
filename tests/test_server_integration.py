"""Real agents against real servers on loopback, with SQLite and with PostgreSQL: plain HTTP (the
app in a thread), HTTPS with a self-signed certificate and the insecure-poll setting, and a
`snapsync serve` process killed mid-upload and restarted — nothing is lost and the agent
converges, continuing the upload where the server's database says it stopped; two servers
sharing one PostgreSQL database refuse each other's replays."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from snapsync.agent import Agent, HttpTransport
from snapsync.agent.transport import PATHS, Answer
from snapsync.collect import FileCollector
from snapsync.protocol import AgentConfig, Intervals
from snapsync.protocol.auth import sign
from snapsync.protocol.messages import Chunk, Ping, decode
from snapsync.server import ServerSettings
from snapsync.server.environments import AgentSecrets, enroll
from snapsync.server.storage import ObjectQuery
from snapsync.server.store import Stores, open_store
from snapsync.sim.sample_cluster import SampleCluster
from tests.support_postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)
from tests.support_server import live_server
from tools.certs import self_signed
from tools.serving import ServeProcess

SHARED = "integration shared secret"


class Clock:
    """Real time plus an offset the test moves forward (to skip backoff and intervals)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "server.db")
    return str(request.getfixturevalue("postgres_dsn"))


def write_dump(cluster: SampleCluster, path: Path) -> None:
    path.write_text(json.dumps(cluster.list_document()))


def make_agent(
    url: str, edge: str, secret: str, dump: Path, state: Path, clock: Clock, **options: Any
) -> Agent:
    transport = options.pop("transport", None) or HttpTransport(
        url, edge, secret.encode(), insecure=options.pop("insecure", False), timeout=20
    )
    return Agent(
        FileCollector([dump]),
        transport,
        state,
        AgentConfig(intervals=Intervals(jitter=0.0), **options),
        environment_id=edge,
        clock=clock,
        seed=1,
    )


def assert_converged(store: Stores, edge: str, agent: Agent) -> None:
    latest = agent.protocol.latest
    current = store.versions.current(edge)
    assert latest is not None and current is not None and current.digest == latest.digest
    rows = store.queries.objects(edge, ObjectQuery(limit=100_000))
    assert {(r.key, r.digest) for r in rows} == {(k, o.digest) for k, o in current}


def test_agent_and_server_over_http(database: str, tmp_path: Path) -> None:
    store = open_store(database)
    made = enroll(store.registry, "Shop 5", time.time(), group="eu")
    edge, token = made.registration.edge_id, made.token
    cluster = SampleCluster(objects=150, shape="application", seed=5)
    dump = tmp_path / "dump.json"
    write_dump(cluster, dump)
    clock = Clock()
    settings = ServerSettings(secrets=AgentSecrets(store.registry, None), stores=store)
    with live_server(settings) as url:
        agent = make_agent(url, edge, token, dump, tmp_path / "state", clock)
        assert agent.step().in_sync
        assert_converged(store, edge, agent)
        for _ in range(2):
            cluster.step(churn="busy", minutes=5)
            write_dump(cluster, dump)
            clock.offset += 61
            report = agent.step()
            assert report.in_sync and report.frame_kind != "full"
        assert_converged(store, edge, agent)
        command = store.commands.queue_command(edge, "collect-now", {}, time.time())
        clock.offset += 61
        agent.step()
        clock.offset += 11
        agent.step()  # the result rides on the next ping
        assert command.id in store.commands.results(edge)
        agent.close()
    versions = store.queries.versions(edge)
    assert [v.seq for v in versions] == [3, 2, 1]
    assert versions[-1].frame_bytes > versions[0].frame_bytes  # deltas after the first full
    store.close()


# -- a real `snapsync serve` process ------------------------------------------------------------


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(database: str, tls: tuple[Path, Path] | None = None) -> ServeProcess:
        options = ("--tls-cert", str(tls[0]), "--tls-key", str(tls[1])) if tls else ()
        log = tmp_path / f"serve-{len(started)}.log"
        process = ServeProcess(database, log, options, secret=SHARED)
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()


def test_https_with_a_self_signed_certificate_needs_insecure_poll(
    database: str, tmp_path: Path, serve: Callable[..., ServeProcess]
) -> None:
    server = serve(database, self_signed(tmp_path))
    cluster = SampleCluster(objects=80, seed=2)
    dump = tmp_path / "dump.json"
    write_dump(cluster, dump)
    clock = Clock()
    verified = make_agent(server.url, "site-a", SHARED, dump, tmp_path / "a", clock)
    report = verified.step()
    assert not report.in_sync  # the certificate is not trusted: nothing was sent
    verified.close()
    agent = make_agent(server.url, "site-a", SHARED, dump, tmp_path / "b", clock, insecure=True)
    assert agent.step().in_sync
    cluster.step(churn="steady")
    write_dump(cluster, dump)
    clock.offset += 61
    assert agent.step().in_sync
    agent.close()
    store = open_store(database)
    assert_converged(store, "site-a", agent)
    store.close()


class Interrupting:
    """A transport that runs `trigger` once, just before sending the n-th upload chunk."""

    def __init__(self, inner: HttpTransport, before_chunk: int, trigger: Callable[[], None]):
        self.inner = inner
        self.before_chunk = before_chunk
        self.trigger = trigger
        self.offsets: list[int] = []

    def post(self, kind: str, body: bytes, limit: int) -> Answer:
        if kind == Chunk.TYPE:
            chunk = decode(body, Chunk)
            assert isinstance(chunk, Chunk)
            self.offsets.append(chunk.offset)
            if len(self.offsets) == self.before_chunk:
                self.before_chunk = 0  # once
                self.trigger()
        return self.inner.post(kind, body, limit)

    def close(self) -> None:
        self.inner.close()


def test_server_killed_mid_upload_loses_nothing_and_the_agent_converges(
    database: str, tmp_path: Path, serve: Callable[..., ServeProcess]
) -> None:
    server = serve(database)
    dump = tmp_path / "dump.json"
    write_dump(SampleCluster(objects=120, seed=1), dump)
    clock = Clock()
    transport = Interrupting(
        HttpTransport(server.url, "site-k", SHARED.encode(), timeout=20), 0, server.kill
    )
    agent = make_agent(
        server.url, "site-k", SHARED, dump, tmp_path / "state", clock,
        transport=transport, chunk_size=2048,
    )  # fmt: skip
    assert agent.step().in_sync  # version 1, before any trouble
    first = agent.protocol.latest
    # a different cluster: a big frame, many chunks; the server dies before the 4th
    write_dump(SampleCluster(objects=400, shape="platform", seed=9), dump)
    transport.offsets.clear()
    transport.before_chunk = 4
    clock.offset += 61
    report = agent.step()
    assert not report.in_sync and len(transport.offsets) == 4
    sent_before_kill = transport.offsets[3]
    assert sent_before_kill > 0

    server.start()  # same port, same database
    clock.offset = max(clock.offset, agent.protocol.backoff_until - time.time()) + 1
    transport.offsets.clear()
    report = agent.step()
    assert report.in_sync
    # resumed from what the server's database held, not from the start
    assert transport.offsets[0] == sent_before_kill
    agent.close()
    server.stop()
    store = open_store(database)
    assert_converged(store, "site-k", agent)
    assert first is not None and store.snapshot("site-k", first.digest) is not None
    assert [v.seq for v in store.queries.versions("site-k")] == [2, 1]
    store.close()


def test_servers_sharing_postgres_refuse_each_others_replays(
    request: pytest.FixtureRequest,
) -> None:
    """Two server processes' worth of apps behind a load balancer, one PostgreSQL database."""
    dsn = request.getfixturevalue("postgres_dsn")
    stores = [open_store(dsn), open_store(dsn)]
    made = enroll(stores[0].registry, "Shop 8", time.time())
    edge, secret = made.registration.edge_id, made.token.encode()
    body = Ping().encode()
    header = sign(secret, "POST", PATHS[Ping.TYPE], edge, body, time.time())
    settings = [ServerSettings(secrets=AgentSecrets(s.registry, None), stores=s) for s in stores]
    with live_server(settings[0]) as first, live_server(settings[1]) as second:
        headers = {"Authorization": header, "Content-Type": "application/msgpack"}
        assert (
            httpx.post(first + PATHS[Ping.TYPE], content=body, headers=headers).status_code == 200
        )
        replayed = httpx.post(second + PATHS[Ping.TYPE], content=body, headers=headers)
        assert replayed.status_code == 401
        fresh = sign(secret, "POST", PATHS[Ping.TYPE], edge, body, time.time())
        headers["Authorization"] = fresh
        assert (
            httpx.post(second + PATHS[Ping.TYPE], content=body, headers=headers).status_code == 200
        )
    for store in stores:
        store.close()


def _upload(url: str, edge: str, frame: bytes, base: bytes, target: bytes) -> Any:
    """One whole frame as one signed chunk; the server's UploadReply."""
    body = Chunk(target[:8], base, target, len(frame), 0, frame).encode()
    headers = {
        "Authorization": sign(SHARED.encode(), "POST", PATHS[Chunk.TYPE], edge, body, time.time()),
        "Content-Type": "application/msgpack",
    }
    answer = httpx.post(url + PATHS[Chunk.TYPE], content=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.content
    return decode(answer.content)


def test_two_server_processes_on_postgres_take_interleaved_uploads_for_one_environment(
    request: pytest.FixtureRequest, serve: Callable[..., ServeProcess]
) -> None:
    """Uploads for one environment alternate between two `snapsync serve` processes, each with
    its own cache of newest versions (so each sees the other's commits only in the database);
    some pairs race (the same base, two targets, at once). Every version is stored once, in
    order, and each rebuilds from the rows with its digest."""
    from concurrent.futures import ThreadPoolExecutor

    from snapsync.canonical.profile import load_profile
    from snapsync.canonical.snapshot import build_snapshot
    from snapsync.codec.encode import encode_delta, encode_snapshot

    dsn = request.getfixturevalue("postgres_dsn")
    servers = [serve(dsn), serve(dsn)]
    cluster = SampleCluster(objects=60, seed=3)
    states = [build_snapshot(cluster.objects(), load_profile())]
    while len(states) < 12:
        cluster.step(churn="steady", minutes=5)
        new = build_snapshot(cluster.objects(), load_profile())
        if new.digest not in {s.digest for s in states}:
            states.append(new)
    first = _upload(servers[0].url, "edge-1", encode_snapshot(states[0]), b"", states[0].digest)
    assert first.status == "ack"
    stored = [states[0].digest]
    for i in range(1, len(states)):
        base, new = states[i - 1], states[i]
        reply = _upload(
            servers[i % 2].url, "edge-1", encode_delta(base, new).frame, base.digest, new.digest
        )
        assert (reply.status, reply.version.digest) == ("ack", new.digest)
        stored.append(new.digest)
    # a race: both processes get a delta against the newest version at once
    base, left, right = states[-1], states[3], states[5]
    with ThreadPoolExecutor(2) as pool:
        replies = list(
            pool.map(
                lambda job: _upload(job[0].url, "edge-1", *job[1:]),
                [
                    (servers[0], encode_delta(base, left).frame, base.digest, left.digest),
                    (servers[1], encode_delta(base, right).frame, base.digest, right.digest),
                ],
            )
        )
    assert [r.status for r in replies] == ["ack", "ack"]
    store = open_store(dsn)
    versions = list(reversed(store.queries.versions("edge-1", 1000)))
    assert [v.seq for v in versions] == list(range(1, len(stored) + 3))
    assert [v.digest for v in versions[: len(stored)]] == stored
    assert {v.digest for v in versions[len(stored) :]} == {left.digest, right.digest}
    current = store.versions.current("edge-1")
    assert current is not None and current.digest == versions[-1].digest
    rows = store.queries.objects("edge-1", ObjectQuery(limit=1000))
    assert {(r.key, r.digest) for r in rows} == {(k, o.digest) for k, o in current}
    store.close()
