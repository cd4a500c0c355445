"""The agent endpoint's gate, over HTTP against a real server (uvicorn on loopback): what the
header alone proves is checked before any body byte is read, and the log names the failed check
while the peer's 401 stays byte-identical; bodies in memory are bounded and slow ones cut off; a
client leaving mid-body is one log line; the replay memory is never flushed; abandoned uploads
are capped per environment and expire; a storage outage is a 503 and a bug is a 500."""

from __future__ import annotations

import hashlib
import logging
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from snapsync.agent.transport import PATHS
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import build_snapshot
from snapsync.codec.encode import encode_snapshot
from snapsync.protocol.auth import NonceMemory, sign
from snapsync.protocol.memory import MemoryStore
from snapsync.protocol.messages import Chunk, Ping, Refusal, UploadReply, decode
from snapsync.protocol.server import PartialLimits, ServerConfig
from snapsync.server import ServerSettings
from snapsync.server.app import Limits
from snapsync.server.environments import AgentSecrets, enroll
from snapsync.server.gate import BodyDeadline, BodyGate
from snapsync.server.store import Stores, open_store
from snapsync.server.store.postgres import PostgreSQLDatabase
from snapsync.server.store.sqlite import SQLiteDatabase
from tests.support_postgres import (  # noqa: F401 (fixtures)
    postgres_dsn,
    postgres_server,
    sql_store_fixture,
)
from tests.support_server import live_server
from tests.test_server_http import T0, Clock

SHARED = b"gate test shared secret"
MiB = 2**20


class Gate:
    """A live server over a SQL store, its clock, and a signing client for one environment."""

    def __init__(self, store: Stores, url: str, clock: Clock, edge: str, secret: bytes) -> None:
        self.store, self.url, self.clock, self.edge, self.secret = store, url, clock, edge, secret
        self.port = int(url.rsplit(":", 1)[1])

    def post(self, path: str, body: bytes, header: str | None = None) -> httpx.Response:
        auth = header or sign(self.secret, "POST", path, self.edge, body, self.clock())
        return httpx.post(self.url + path, content=body, headers={"Authorization": auth})

    def raw(self, head: str, body: bytes = b"") -> bytes:
        """Send `head` (and `body`) on a new connection; everything the server sends until it
        closes. A response that arrives without the body sent proves it was not waited for."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=20) as sock:
            sock.sendall(head.encode() + body)
            return _until_closed(sock)

    def state(self) -> tuple[Any, ...]:
        """What a refused request must leave as it was."""
        env = self.edge
        return (list(self.store.queries.versions(env)), list(self.store.held(env)), self.partials())

    def partials(self) -> list[tuple[bytes, int]]:
        rows = self.store.db.read("SELECT upload, received FROM uploads ORDER BY upload")
        return [(bytes(u), n) for u, n in rows]


def _until_closed(sock: socket.socket) -> bytes:
    out = b""
    while piece := sock.recv(65536):
        out += piece
    return out


def _head(path: str, length: int, auth: str) -> str:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/msgpack\r\n"
        f"Content-Length: {length}\r\nAuthorization: {auth}\r\n\r\n"
    )


@contextmanager
def gate(store: Stores, shared: bytes | None = SHARED, **options: Any) -> Iterator[Gate]:
    clock = Clock()
    shop = enroll(store.registry, "Shop 1", T0)
    settings = ServerSettings(
        secrets=AgentSecrets(store.registry, shared), stores=store, clock=clock, **options
    )
    with live_server(settings) as url:
        yield Gate(store, url, clock, shop.registration.edge_id, shop.token.encode())


def _messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


# -- item 4 and issue 21 item 3: header checks first, the reason logged, the 401 alike ---------


def test_the_header_is_checked_before_the_body_and_each_reason_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every check the header alone allows answers 401 without waiting for an 8 MiB body (none
    is sent); the bad signature needs the body. All answers are byte-identical, the log names
    the check, and no secret reaches the log."""
    caplog.set_level(logging.INFO, logger="snapsync.server")
    store = open_store(str(tmp_path / "gate.db"))
    with gate(store, shared=None) as g:
        path, now = PATHS[Ping.TYPE], g.clock()
        body = Ping().encode()
        good = sign(g.secret, "POST", path, g.edge, body, now)
        assert g.post(path, body, header=good).status_code == 200
        before = g.state()
        early = {
            "malformed": "Snapsync e=shop-1,t=x",
            "unknown edge id 'walk-in'": sign(SHARED, "POST", path, "walk-in", body, now),
            "stale timestamp": sign(g.secret, "POST", path, g.edge, body, now - 3600),
            "replayed nonce": good,
        }
        answers = {why: g.raw(_head(path, 8 * MiB, auth)) for why, auth in early.items()}
        wrong = sign(b"not the shop's secret!", "POST", path, g.edge, body, now)
        answers["bad signature"] = g.raw(_head(path, len(body), wrong), body)
        assert g.state() == before
    first = answers["malformed"]
    assert first.startswith(b"HTTP/1.1 401 ")
    for why, answer in answers.items():
        assert answer == first, why  # the peer learns nothing of which check failed
    logged = _messages(caplog)
    for why in answers:
        assert why in logged, why
    assert g.secret.decode() not in logged and SHARED.decode() not in logged


# -- item 4: bodies in memory are bounded, slow ones cut off --------------------------------------


def test_large_bodies_beyond_the_allowance_are_refused_and_pings_still_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Connections holding large unsigned bodies take the large allowance (3 MiB here); the
    next is refused at once with a retry-after (503, before its body), a ping still gets
    through, and the holders are cut off at their deadline (408) with nothing stored."""
    store = open_store(str(tmp_path / "gate.db"))
    bodies = BodyGate(large_bytes=3 * MiB)
    with gate(store, bodies=bodies, body_deadline=BodyDeadline(base=3.0, rate=1e12)) as g:
        before = g.state()
        now = g.clock()
        forged = [sign(SHARED, "POST", PATHS[Chunk.TYPE], f"x{i}", b"?", now) for i in range(4)]
        holders = [socket.create_connection(("127.0.0.1", g.port), timeout=20) for _ in range(3)]
        for sock, auth in zip(holders, forged, strict=False):
            sock.sendall(_head(PATHS[Chunk.TYPE], MiB, auth).encode() + b"\x00" * 1000)
        deadline = time.monotonic() + 10
        while bodies.large_in_use < 3 * MiB and time.monotonic() < deadline:
            time.sleep(0.02)  # until the holders' requests reach the gate
        refused = g.raw(_head(PATHS[Chunk.TYPE], MiB, forged[3]))
        assert refused.startswith(b"HTTP/1.1 503 ")
        answer = decode(refused.split(b"\r\n\r\n", 1)[1], Refusal)
        assert isinstance(answer, Refusal) and answer.retry_after > 0
        assert g.post(PATHS[Ping.TYPE], Ping().encode()).status_code == 200
        cut = [_until_closed(sock) for sock in holders]
        for sock in holders:
            sock.close()
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in cut), cut
        assert g.state()[:2] == before[:2] and g.partials() == []


# -- item 7: a client leaving mid-body ------------------------------------------------------------


def test_a_client_leaving_mid_body_is_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    store = open_store(str(tmp_path / "gate.db"))
    with gate(store) as g:
        auth = sign(g.secret, "POST", PATHS[Chunk.TYPE], g.edge, b"?", g.clock())
        with socket.create_connection(("127.0.0.1", g.port), timeout=20) as sock:
            sock.sendall(_head(PATHS[Chunk.TYPE], MiB, auth).encode() + b"\x00" * 70_000)
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "went away" not in _messages(caplog):
            time.sleep(0.05)
    lines = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    assert "Exception in ASGI application" not in _messages(caplog)


# -- item 6: the replay memory is never flushed ---------------------------------------------------


def test_nonce_memory_never_forgets_inside_the_window() -> None:
    """However many requests follow, a nonce is remembered until its timestamp leaves the
    window; past the per-edge or total bound new requests are refused, not old ones forgotten."""
    memory = NonceMemory(window=300.0, per_edge=1000, capacity=2500)
    assert memory.remember("a", "first", T0, T0) == "new"
    for i in range(999):
        assert memory.remember("a", f"n{i}", T0 + 1, T0 + 1) == "new"
    assert memory.remember("a", "one-more", T0 + 2, T0 + 2) == "edge-full"
    assert memory.remember("a", "first", T0, T0 + 2) == "replayed"
    assert memory.seen("a", "first", T0 + 2)
    for edge in ("b", "c"):
        for i in range(750):
            memory.remember(edge, f"n{i}", T0 + 3, T0 + 3)
    assert len(memory) == 2500 and memory.remember("d", "n", T0 + 3, T0 + 3) == "full"
    assert not memory.seen("a", "first", T0 + 300.5)  # its timestamp is now refused anyway
    assert memory.remember("d", "n", T0 + 301.5, T0 + 301.5) == "new"
    assert len(memory) == 1500 + 1


def test_a_flood_of_signed_requests_cannot_make_an_old_one_replayable(
    sql_store: Stores,
) -> None:
    """Over HTTP, in memory (SQLite) and in the database (PostgreSQL): past the per-edge bound
    the edge gets 429 with a retry-after, never a replay; other edges go on; after the window
    the edge is served again."""
    with gate(sql_store, nonces_per_edge=40) as g:
        body = Ping().encode()
        first = sign(g.secret, "POST", PATHS[Ping.TYPE], g.edge, body, g.clock())
        assert g.post(PATHS[Ping.TYPE], body, header=first).status_code == 200
        answers = [g.post(PATHS[Ping.TYPE], body).status_code for _ in range(45)]
        assert answers == [200] * 39 + [429] * 6
        refusal = decode(g.post(PATHS[Ping.TYPE], body).content, Refusal)
        assert isinstance(refusal, Refusal) and refusal.retry_after > 0
        assert g.post(PATHS[Ping.TYPE], body, header=first).status_code == 401
        other = sign(SHARED, "POST", PATHS[Ping.TYPE], "walk-in", body, g.clock())
        assert g.post(PATHS[Ping.TYPE], body, header=other).status_code == 200
        g.clock.now += 301
        assert g.post(PATHS[Ping.TYPE], body).status_code == 200
        assert g.post(PATHS[Ping.TYPE], body, header=first).status_code == 401  # stale now


# -- item 5: abandoned uploads are capped per environment, appended, expired ----------------------


def _chunk(upload: bytes, total: int, offset: int, data: bytes, target: bytes) -> bytes:
    return Chunk(upload, b"", target, total, offset, data).encode()


def test_abandoned_uploads_are_capped_appended_and_expired(sql_store: Stores) -> None:
    """Twenty abandoned uploads hold no more than the cap; an upload in many chunks is stored
    as appended chunks and completes; untouched uploads go after the time to live."""
    limits = PartialLimits(max_uploads=3, max_bytes=600_000, ttl=3600.0, sweep_every=60.0)
    with gate(sql_store, protocol=ServerConfig(partials=limits)) as g:
        for i in range(20):
            upload = hashlib.blake2b(bytes([i]), digest_size=8).digest()
            body = _chunk(upload, 2 * MiB, 0, bytes([i]) * 256_000, bytes([i]) * 16)
            reply = decode(g.post(PATHS[Chunk.TYPE], body).content, UploadReply)
            assert isinstance(reply, UploadReply) and reply.offset == 256_000
            g.clock.now += 1
        held = g.partials()
        assert len(held) == 2 and sum(n for _, n in held) <= limits.max_bytes
        (stored,) = sql_store.db.read("SELECT SUM(LENGTH(data)) FROM upload_chunks")[0]
        assert stored <= limits.max_bytes

        snapshot = build_snapshot(
            [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}}
                for i in range(300)
            ],
            load_profile(),
        )
        frame = encode_snapshot(snapshot, 1)
        size = len(frame) // 5 + 1
        upload = b"whole-up"
        for offset in range(0, len(frame), size):
            body = Chunk(
                upload, b"", snapshot.digest, len(frame), offset, frame[offset : offset + size]
            )
            reply = decode(g.post(PATHS[Chunk.TYPE], body.encode()).content, UploadReply)
            assert isinstance(reply, UploadReply)
            if offset + size < len(frame):
                assert reply.status == "partial" and reply.offset == offset + size
                empty = Chunk(upload, b"", snapshot.digest, len(frame), offset + size, b"")
                again = decode(g.post(PATHS[Chunk.TYPE], empty.encode()).content, UploadReply)
                assert isinstance(again, UploadReply) and again.offset == offset + size
                rows = sql_store.db.read(
                    "SELECT COUNT(*) FROM upload_chunks WHERE upload = ?", (upload,)
                )
                assert rows[0][0] == offset // size + 1  # one row per chunk: appended
        assert reply.status == "ack" and sql_store.held(g.edge)[0].digest == snapshot.digest
        assert (upload, len(frame)) not in g.partials()

        g.clock.now += 3601 + 60
        assert g.post(PATHS[Ping.TYPE], Ping().encode()).status_code == 200  # the sweep runs
        assert g.partials() == []
        assert sql_store.db.read("SELECT COUNT(*) FROM upload_chunks")[0][0] == 0


# -- a storage outage is a 503 the agent waits out; a bug is not ----------------------------------


def test_storage_outage_is_503_and_a_bug_is_500(
    sql_store: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real outage, made by a second client: SQLite's file stays locked by another writer past
    the store's busy timeout, PostgreSQL terminates the server's connections. The agent gets a
    503 with a retry-after, and the next request after the outage is answered; a store method
    that raises anything else (a bug) is a 500, as is a readiness probe that hits one."""
    body = Ping().encode()
    if isinstance(sql_store.db, SQLiteDatabase):
        sql_store.db.busy_timeout = 0.2  # before the server's threads make their connections
    with gate(sql_store) as g:
        assert g.post(PATHS[Ping.TYPE], body).status_code == 200
        with _outage(sql_store):
            outage = g.post(PATHS[Ping.TYPE], body)
            assert outage.status_code == 503
            refusal = decode(outage.content, Refusal)
            assert isinstance(refusal, Refusal) and refusal.reason == "storage unavailable"
            assert refusal.retry_after > 0
        assert g.post(PATHS[Ping.TYPE], body).status_code == 200
        monkeypatch.setattr(
            sql_store.versions, "held", lambda env: (_ for _ in ()).throw(ValueError("bug"))
        )
        assert g.post(PATHS[Ping.TYPE], body).status_code == 500
        monkeypatch.setattr(sql_store.db, "ping", lambda: (_ for _ in ()).throw(ValueError("bug")))
        assert httpx.get(g.url + "/readyz").status_code == 500


@contextmanager
def _outage(store: Stores) -> Iterator[None]:
    """The database away for the store, from outside it."""
    if isinstance(store.db, SQLiteDatabase):
        with closing(sqlite3.connect(store.db.path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            yield
            other.execute("ROLLBACK")
        return
    assert isinstance(store.db, PostgreSQLDatabase)
    with psycopg.connect(store.db.dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    yield


def test_a_silent_or_dribbling_request_head_is_cut_and_kept_connections_are_not() -> None:
    """uvicorn waits for a head forever; the server closes a connection whose head is late,
    however it trickles in, while an idle kept-alive connection lives out its keep-alive."""
    settings = ServerSettings(secrets={"edge-1": SHARED}, store=MemoryStore())
    limits = Limits(head_timeout=0.5, keep_alive=60.0)
    with live_server(settings, limits=limits) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=20) as silent:
            assert _until_closed(silent) == b""  # closed by the server, before the 20 s timeout
        with socket.create_connection(("127.0.0.1", port), timeout=20) as dribbling:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
                try:
                    dribbling.sendall(bytes([byte]))
                except OSError:
                    break  # the server hung up mid-head
                time.sleep(0.1)
            assert _until_closed(dribbling) == b""
        with httpx.Client(base_url=url) as client:
            first = client.get("/healthz")
            time.sleep(1.5)  # three head deadlines pass while the connection idles
            second = client.get("/healthz")
        assert first.status_code == second.status_code == 200
        assert first.extensions["network_stream"] is second.extensions["network_stream"]
