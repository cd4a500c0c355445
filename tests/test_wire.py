"""The real wire: the agent's count against a proxy's, the budget on the wire, kept and resumed
TLS connections, lean heads, and a hostile server's answers (issue 15, issue 16 item 13).

Everything runs on loopback: a real uvicorn server with TLS, tools.fault_proxy between it and
the real Agent over HttpTransport. Byte counts are asserted, never timings.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from snapsync.agent import Agent, HttpTransport
from snapsync.agent.transport import HEAD_ALLOWANCE
from snapsync.agent.wire import HEADER_IPV4
from snapsync.cli import cli
from snapsync.collect import FileCollector
from snapsync.errors import AuthError, TransportError
from snapsync.protocol import AgentConfig, BudgetConfig, Intervals, MemoryStore
from snapsync.protocol.auth import NonceMemory, parse, sign, verify
from snapsync.protocol.events import BackingOff
from snapsync.protocol.messages import MAX_PONG, Ping
from snapsync.protocol.outcome import Outcome
from snapsync.server import ServerSettings, SharedSecret
from snapsync.server.store import open_store
from snapsync.sim.sample_cluster import SampleCluster
from tests.support_server import live_server
from tools.certs import self_signed
from tools.fault_proxy import FaultProxy, ProxyThread

SECRET = b"correct horse battery staple"
EDGE = "shop-17"
PING = 60.0


class Clock:
    """The protocol's clock, jumped from cycle to cycle; signatures use the real one."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"), "rsa")


@pytest.fixture
def server_url(certificate: tuple[Path, Path]) -> Iterator[str]:
    settings = ServerSettings(secrets=SharedSecret(SECRET), store=MemoryStore())
    with live_server(settings, certificate) as url:
        yield url


@pytest.fixture
def proxy(server_url: str) -> Iterator[FaultProxy]:
    port = int(server_url.rsplit(":", 1)[1])
    with ProxyThread(target=("127.0.0.1", port)) as running:
        yield running


class Site:
    """A cluster written as a dump, and an agent collecting it through the proxy."""

    def __init__(self, url: str, tmp: Path, budget: int = 0, objects: int = 40) -> None:
        self.cluster = SampleCluster(objects=objects, seed=5)
        self.dump = tmp / "dump.json"
        self.write()
        self.clock = Clock()
        self.transport = HttpTransport(url, EDGE, SECRET, insecure=True, timeout=10)
        intervals = Intervals(ping=PING, snapshot=PING, jitter=0.0)
        self.agent = Agent(
            FileCollector([self.dump]),
            self.transport,
            tmp / "state",
            AgentConfig(intervals=intervals, budget=BudgetConfig(limit=budget, period="month")),
            environment_id=EDGE,
            clock=self.clock,
            seed=1,
        )

    def write(self) -> None:
        self.dump.write_text(json.dumps(self.cluster.list_document()))

    def cycle(self, churn: bool = False) -> int:
        """One cycle a minute later (changed, or idle); what the agent counted."""
        if churn:
            self.cluster.step("steady", 1.0)
            self.write()
        self.clock.now += PING
        return self.agent.step().wire_bytes


def proxied(proxy: FaultProxy) -> tuple[int, int]:
    """(payload, payload + TCP/IP headers) the proxy has seen, once the relay has settled."""
    payload = proxy.settled()
    return payload, payload + proxy.segments() * HEADER_IPV4


def within(agent: int, outside: int) -> bool:
    """The issue's bound: the agent's count within -10%/+25% of the proxy's."""
    return 0.9 * outside <= agent <= 1.25 * outside


def test_the_agent_counts_what_a_proxy_sees_idle_upload_and_reconnecting(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    site = Site(f"https://127.0.0.1:{proxy.address[1]}", tmp_path)
    meter = site.transport.meter
    site.clock.now -= PING
    for kind in ("first", "idle", "upload", "idle", "cut", "idle", "upload"):
        if kind == "cut":
            proxy.cut()
        before_payload, before_wire = proxied(proxy)
        agent_payload = meter.payload
        counted = site.cycle(churn=kind == "upload")
        after_payload, after_wire = proxied(proxy)
        assert meter.payload - agent_payload == after_payload - before_payload, kind
        assert within(counted, after_wire - before_wire), (kind, counted, after_wire - before_wire)
    assert site.agent.protocol.in_sync
    assert (meter.connections, meter.full_handshakes, meter.resumed_handshakes) == (2, 1, 1)
    assert (proxy.stats.connections, proxy.stats.full, proxy.stats.resumed) == (2, 1, 1)
    site.agent.close()


def test_the_servers_usage_figures_are_the_agents_wire_count(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    store = open_store(str(tmp_path / "server.db"))
    settings = ServerSettings(secrets=SharedSecret(SECRET), stores=store)
    with live_server(settings, certificate) as url:
        site = Site(url, tmp_path)
        for churn in (False, False, True, False, True):
            site.cycle(churn)
        meter, protocol = site.transport.meter, site.agent.protocol
        (environment,) = store.queries.environments(time.time())
        # every exchange is reported with the next one: all but the last are in the figures
        assert environment.bytes_today == meter.total - protocol.meter.unreported
        assert 0 < protocol.meter.unreported < 4000
        site.agent.close()


def test_an_idle_cycle_on_a_kept_connection_is_small(proxy: FaultProxy, tmp_path: Path) -> None:
    site = Site(f"https://127.0.0.1:{proxy.address[1]}", tmp_path)
    site.cycle()
    before, _ = proxied(proxy)
    site.cycle()
    after, _ = proxied(proxy)
    assert after - before <= 400  # TLS records of one ping and its pong (issue 15's target)
    assert proxy.stats.connections == 1
    site.agent.close()


def test_the_budget_is_never_exceeded_on_the_wire_even_reconnecting_every_cycle(
    proxy: FaultProxy, tmp_path: Path
) -> None:
    budget = 40_000
    site = Site(f"https://127.0.0.1:{proxy.address[1]}", tmp_path, budget=budget, objects=12)
    for minute in range(40):
        proxy.cut()  # a NAT that forgets every connection between cycles
        site.cycle(churn=minute % 4 == 0)
    _, wire = proxied(proxy)
    meter = site.transport.meter
    assert wire <= budget
    assert meter.total == site.agent.protocol.budget.used <= budget
    reconnects = meter.connections - 1
    assert reconnects >= 5 and meter.resumed_handshakes == reconnects
    assert site.agent.protocol.budget.remaining(site.clock.now) < 4000  # it ran out: stopped
    # every reconnect a full handshake (as before resumption) would have spent more than it has
    assert meter.total + reconnects * 800 > budget
    site.agent.close()


def test_a_dropped_connection_is_resumed(proxy: FaultProxy, tmp_path: Path) -> None:
    site = Site(f"https://127.0.0.1:{proxy.address[1]}", tmp_path)
    site.cycle()
    assert proxy.cut() == 1
    site.cycle()
    meter = site.transport.meter
    assert (meter.full_handshakes, meter.resumed_handshakes) == (1, 1)
    assert proxy.stats.resumed == 1  # the ServerHello accepted the session: seen outside too
    assert site.agent.protocol.in_sync
    site.agent.close()


def test_a_server_that_refuses_resumption_still_works_with_a_full_handshake(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    store = MemoryStore()
    settings = ServerSettings(secrets=SharedSecret(SECRET), store=store)
    with live_server(settings, certificate) as url:
        site = Site(url, tmp_path)
        site.cycle()
    port = int(url.rsplit(":", 1)[1])
    # the same server restarted: new ticket keys, so the session the agent offers is refused
    with live_server(settings, certificate, port=port):
        site.cycle(churn=True)
        meter = site.transport.meter
        assert (meter.full_handshakes, meter.resumed_handshakes) == (2, 0)
        assert meter.refused_resumptions == 1
        assert site.agent.protocol.in_sync
        site.agent.close()


def test_requests_and_answers_carry_only_the_headers_they_need(server_url: str) -> None:
    transport = HttpTransport(server_url, EDGE, SECRET, insecure=True)
    body = Ping().encode()
    answer = transport.post("ping", body, MAX_PONG)
    assert answer.outcome is Outcome.OK
    with transport.client.stream("GET", "/healthz") as response:
        request_headers = {k.lower() for k, _ in response.request.headers.raw}
    assert request_headers == {b"host"}  # no User-Agent, Accept, Accept-Encoding, Connection
    # ping: request line, Host, Content-Length, Authorization (S1 form); answer: status line
    # and Content-Length only
    assert answer.http_bytes <= 215 + len(body) + len(answer.body)
    transport.close()


@pytest.mark.parametrize("declared", [True, False])
def test_a_hostile_server_cannot_make_the_agent_read_more_than_the_cap(declared: bool) -> None:
    with hostile_server(declared) as url:
        transport = HttpTransport(url, EDGE, SECRET, timeout=10)
        with pytest.raises(TransportError, match="exceeds 1024") as raised:
            transport.post("ping", Ping().encode(), MAX_PONG)
        meter = transport.meter
        assert meter.received <= MAX_PONG + HEAD_ALLOWANCE
        assert raised.value.wire_bytes == meter.total  # charged what was read, no more
        transport.close()


def test_an_agent_facing_a_hostile_server_backs_off_and_pays_only_what_it_read(
    tmp_path: Path,
) -> None:
    with hostile_server(declared=False) as url:
        site = Site(url, tmp_path)
        report = site.agent.step()
        assert any(isinstance(e, BackingOff) and "exceeds" in e.reason for e in report.events)
        meter = site.transport.meter
        assert site.agent.protocol.budget.used == report.wire_bytes == meter.total
        assert meter.received <= MAX_PONG + HEAD_ALLOWANCE
        site.agent.close()


def test_the_compact_signature_header_and_the_earlier_form_both_verify() -> None:
    body, now = Ping().encode(), 1_767_225_600.0
    header = sign(SECRET, "POST", "/v1/ping", EDGE, body, now)
    signed = parse(header)
    assert header.startswith("S1 ") and len(header) <= 81 + len(EDGE) - 6
    earlier = (
        f"Snapsync e={signed.edge_id},t={signed.timestamp},n={signed.nonce},s={signed.signature}"
    )
    for form in (header, earlier):
        assert verify(form, {EDGE: SECRET}, "POST", "/v1/ping", body, now, NonceMemory()) == EDGE
    with pytest.raises(AuthError):
        verify(header, {EDGE: b"another secret"}, "POST", "/v1/ping", body, now, NonceMemory())


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", "1e9", "60s"])
def test_keep_alive_is_validated(value: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["serve", "--database", str(tmp_path / "s.db"), "--agent-secret", "x" * 32],
        env={"SNAPSYNC_KEEP_ALIVE": value},
    )
    assert result.exit_code == 2
    assert "--keep-alive" in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


class _Hostile(threading.Thread):
    """Answers every request with 200 and an endless body, declared huge or not declared."""

    def __init__(self, declared: bool) -> None:
        super().__init__(daemon=True)
        self.declared = declared
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stopping = threading.Event()

    def run(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                length = b"Content-Length: 314572800\r\n" if self.declared else b""
                conn.settimeout(5)
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\n" + length + b"\r\n")
                    for _ in range(5000):  # 320 MB at most, until the agent hangs up
                        conn.sendall(b"\0" * 65536)
                except OSError:
                    pass


class hostile_server:
    def __init__(self, declared: bool) -> None:
        self.thread = _Hostile(declared)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.thread.listener.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.thread.stopping.set()
        self.thread.join(timeout=10)
        self.thread.listener.close()
