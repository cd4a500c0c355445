"""A real `snapsync serve` process and a real agent, through the fault-injecting proxy.

The second layer of the flaky-link tests (the first is tests/test_flaky_link.py, in simulation):
real sockets, HTTP, signatures and SQLite, under scripted fault schedules (tools/fault_proxy.py).
Each test checks convergence (the server's newest snapshot is the agent's latest) and, by opening
the server's database afterwards, that nothing stored was ever corrupted: every kept snapshot
decodes and has its version's digest, and every version is a snapshot the agent produced.
Everything has a timeout; the agent's protocol clock is simulated so backoff costs no real time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapsync.agent import Agent, HttpTransport
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import build_snapshot
from snapsync.codec.decode import decode_snapshot
from snapsync.codec.encode import encode_snapshot
from snapsync.collect import FileCollector
from snapsync.protocol import AgentConfig, Intervals
from snapsync.server.store import open_store
from snapsync.sim.sample_cluster import SampleCluster
from tools.fault_proxy import Fault, FaultProxy, ProxyThread, Window
from tools.serving import serving

SECRET = "fault proxy test secret"
EDGE = "edge-proxy"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    url: str
    port: int
    database: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """`snapsync serve` as its own process, SQLite in tmp; stopped (then killed) at the end."""
    database = tmp_path / "server.db"
    with serving(str(database), tmp_path / "serve.log", secret=SECRET) as served:
        yield Server(served.url, served.port, database)


class Clock:
    """The agent's protocol clock: advanced by hand, so backoff and intervals cost no real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make_agent(url: str, dump: Path, state: Path, clock: Clock, chunk_size: int = 4096) -> Agent:
    # One connection per request (no keep-alive), so the proxy's per-connection faults hit
    # requests one by one; signatures use the real clock, which the server checks.
    return Agent(
        FileCollector([dump]),
        HttpTransport(url, EDGE, SECRET.encode(), timeout=2.0, keep_alive=0.0),
        state,
        AgentConfig(intervals=Intervals(jitter=0.0), chunk_size=chunk_size),
        environment_id=EDGE,
        clock=clock,
        seed=1,
    )


def write_dump(cluster: SampleCluster, path: Path) -> None:
    path.write_text(json.dumps(cluster.list_document()))


def run_until_current(agent: Agent, clock: Clock, produced: set[bytes], steps: int = 40) -> int:
    """Step the agent (jumping its clock to each wake-up) until the server holds its latest."""
    for step in range(steps):
        report = agent.step()
        if agent.protocol.latest is not None:
            produced.add(agent.protocol.latest.digest)
        if report.in_sync:
            return step
        clock.now = max(clock.now + 1, agent.protocol.wakeup_at(clock.now))
    raise AssertionError(f"the agent did not get its latest snapshot through in {steps} steps")


def idle_until_taken(proxy: FaultProxy, agent: Agent, clock: Clock, steps: int = 10) -> None:
    """Idle cycles (a ping each, when due) until every queued fault has met a connection."""
    for _ in range(steps):
        if not proxy.waiting:
            return
        clock.now = max(clock.now + 61, agent.protocol.wakeup_at(clock.now))
        agent.step()
    raise AssertionError(f"{proxy.waiting} queued faults met no connection in {steps} steps")


def check_database(database: Path, produced: set[bytes]) -> bytes:
    """Every stored version is one the agent produced, and every kept snapshot is intact.

    Reads the version history straight from the file (seq and digest only), and the kept
    snapshots through Stores (held/snapshot/current); returns the newest version's digest.
    """
    with sqlite3.connect(database, timeout=10) as db:
        rows = db.execute(
            "SELECT seq, digest FROM versions WHERE env = ? ORDER BY seq", (EDGE,)
        ).fetchall()
    assert rows, "the server stored nothing"
    for seq, digest in rows:
        assert bytes(digest) in produced, f"version {seq} is not a snapshot the agent produced"
    store = open_store(str(database))
    held = store.held(EDGE)
    assert held and held[0].seq == rows[-1][0] and held[0].digest == bytes(rows[-1][1])
    for version in held:
        snapshot = store.snapshot(EDGE, version.digest)
        assert snapshot is not None, f"version {version.seq} is held but unreadable"
        fresh = decode_snapshot(encode_snapshot(snapshot, 1))  # digest recomputed from objects
        assert fresh.digest == version.digest, f"version {version.seq} is corrupt"
    current = store.versions.current(EDGE)
    assert current is not None and current.digest == held[0].digest
    return current.digest


def test_drops_refusals_and_lost_answers_converge_without_corruption(
    tmp_path: Path, server: Server
) -> None:
    cluster = SampleCluster(objects=120, shape="application", seed=11)
    dump, clock, produced = tmp_path / "dump.json", Clock(), set[bytes]()
    write_dump(cluster, dump)
    with ProxyThread(target=("127.0.0.1", server.port)) as proxy:
        proxy.queue(
            Fault("refuse"),
            Fault("drop", after=150),  # cut inside the first request
            Fault("drop-answer", after=20),  # the server acted, the answer is lost
            Fault("truncate", after=400),
            Fault("drop", after=3000),  # mid-way through an upload
        )
        agent = make_agent(proxy.url, dump, tmp_path / "state", clock)
        try:
            run_until_current(agent, clock, produced)
            for round_ in range(3):  # churn, each cycle's first connection dropped
                cluster.step(churn="busy")
                write_dump(cluster, dump)
                proxy.queue(Fault("drop-answer", after=10 + round_), Fault("refuse"))
                clock.now += 61
                run_until_current(agent, clock, produced)
        finally:
            agent.close()
        assert proxy.stats.faults["refuse"] >= 4 and proxy.stats.faults["drop-answer"] >= 4
    latest = agent.protocol.latest
    assert latest is not None and check_database(server.database, produced) == latest.digest


def test_corrupted_bytes_are_refused_and_never_stored(tmp_path: Path, server: Server) -> None:
    """Flipped bits in requests fail the signature; in answers, they fail decoding: no damage."""
    cluster = SampleCluster(objects=80, shape="platform", seed=12)
    dump, clock, produced = tmp_path / "dump.json", Clock(), set[bytes]()
    write_dump(cluster, dump)
    with ProxyThread(target=("127.0.0.1", server.port)) as proxy:
        agent = make_agent(proxy.url, dump, tmp_path / "state", clock)
        try:
            for offset in (300, 700, 1500, 3500):  # headers, signature, body
                proxy.queue(Fault("corrupt", after=offset), Fault("corrupt-answer", after=offset))
                run_until_current(agent, clock, produced)
                # an upload cycle may end with its ack (no ping): idle pings take what is left
                idle_until_taken(proxy, agent, clock)
                cluster.step(churn="steady")
                write_dump(cluster, dump)
                clock.now += 61
            run_until_current(agent, clock, produced)
        finally:
            agent.close()
        assert proxy.stats.faults["corrupt"] == 4 and proxy.stats.faults["corrupt-answer"] == 4
    latest = agent.protocol.latest
    assert latest is not None and check_database(server.database, produced) == latest.digest


def test_a_slow_stalling_link_still_gets_a_full_snapshot_through(
    tmp_path: Path, server: Server
) -> None:
    """At 6 kB/s with a 2 s timeout, 16 KiB chunks time out: the agent shrinks them and gets
    through; a stalled connection times out and is retried."""
    cluster = SampleCluster(objects=60, shape="application", seed=13)
    dump, clock, produced = tmp_path / "dump.json", Clock(), set[bytes]()
    write_dump(cluster, dump)
    with ProxyThread(target=("127.0.0.1", server.port)) as proxy:
        proxy.default = Fault("throttle", rate=6000)
        proxy.queue(Fault("stall", seconds=3.0))
        agent = make_agent(proxy.url, dump, tmp_path / "state", clock, chunk_size=16384)
        try:
            retries = run_until_current(agent, clock, produced)
        finally:
            agent.close()
        assert proxy.stats.faults["stall"] == 1 and retries >= 2  # the stall, a too-large chunk
    latest = agent.protocol.latest
    assert latest is not None and check_database(server.database, produced) == latest.digest


def test_the_cli_agent_gets_through_a_refusing_then_flaky_link(
    tmp_path: Path, server: Server
) -> None:
    """`snapsync agent --once --from-file` processes, configured by SNAPSYNC_* variables, run
    until one exits 0 (the server holds its latest), through refusals and random faults."""
    cluster = SampleCluster(objects=60, shape="application", seed=14)
    dump = tmp_path / "dump.json"
    write_dump(cluster, dump)
    with ProxyThread(target=("127.0.0.1", server.port), flaky=0.4, seed=14) as proxy:
        proxy.windows.append(Window(0.0, 1.0, Fault("refuse")))
        env = {
            **os.environ,
            "SNAPSYNC_SERVER_URL": proxy.url,
            "SNAPSYNC_EDGE_ID": EDGE,
            "SNAPSYNC_AGENT_SECRET": SECRET,
            "SNAPSYNC_STATE_DIR": str(tmp_path / "cli-state"),
        }
        codes = []
        for _ in range(8):
            done = subprocess.run(
                [sys.executable, "-m", "snapsync", "agent", "--once", "--from-file", str(dump)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                timeout=60,
            )
            codes.append(done.returncode)
            if done.returncode == 0:
                break
        assert codes[-1] == 0, codes
        assert proxy.stats.connections >= len(codes)
    expected = build_snapshot(cluster.list_document()["items"], load_profile())
    assert check_database(server.database, {expected.digest}) == expected.digest
