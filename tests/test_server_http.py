"""The server app through HTTP (in-process ASGI client, SQLite): signed agent requests, the
security refusals, frame verification leaving stored state as it was, the browse and command
API, the page, /metrics, /healthz and /readyz."""

from __future__ import annotations

import base64
import hashlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from snapsync.agent.transport import PATHS
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.codec.encode import encode_delta, encode_snapshot
from snapsync.errors import StorageError
from snapsync.protocol.auth import sign
from snapsync.protocol.messages import Chunk, CommandResult, Ping, UploadReply, decode
from snapsync.server import ServerSettings, create_app
from snapsync.server.environments import AgentSecrets, enroll
from snapsync.server.storage import ObjectQuery
from snapsync.server.store import open_store
from tests.support_server import Clock

with warnings.catch_warnings():  # starlette suggests a successor of httpx; httpx is what we use
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SHARED = b"fleet-wide shared secret"
TOKEN = "api-token-for-tests"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Server:
    """The app with a SQLite store, a test client and a settable clock."""

    def __init__(
        self, tmp: Path, api_token: str | None = TOKEN, shared: bytes | None = SHARED
    ) -> None:
        tmp.mkdir(exist_ok=True)
        self.clock = Clock()
        self.store = open_store(str(tmp / "server.db"))
        self.shop = enroll(self.store.registry, "Shop 1", T0, group="eu", tags=("retail",))
        self.depot = enroll(self.store.registry, "Depot 2", T0, group="us", tags=("warehouse",))
        settings = ServerSettings(
            secrets=AgentSecrets(self.store.registry, shared),
            stores=self.store,
            clock=self.clock,
            api_token=api_token,
            max_body=2**20,
        )
        self.client = TestClient(create_app(settings))

    def secret(self, edge: str) -> bytes:
        return {
            self.shop.registration.edge_id: self.shop.token.encode(),
            self.depot.registration.edge_id: self.depot.token.encode(),
        }.get(edge, SHARED)

    def post(
        self,
        path: str,
        body: bytes,
        edge: str = "shop-1",
        secret: bytes | None = None,
        header: str | None = None,
    ) -> Any:
        auth = header or sign(secret or self.secret(edge), "POST", path, edge, body, self.clock())
        return self.client.post(path, content=body, headers={"Authorization": auth})

    def upload(self, frame: bytes, base: bytes, target: bytes, edge: str = "shop-1") -> UploadReply:
        chunk = Chunk(
            hashlib.blake2b(frame, digest_size=8).digest(), base, target, len(frame), 0, frame
        )
        answer = self.post(PATHS[Chunk.TYPE], chunk.encode(), edge)
        assert answer.status_code == 200, answer.content
        reply = decode(answer.content, UploadReply)
        assert isinstance(reply, UploadReply)
        return reply

    def api(self, path: str, **params: Any) -> Any:
        answer = self.client.get(path, params=params, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def state(self, edge: str = "shop-1") -> tuple[Any, ...]:
        """Everything stored for an environment that a bad request must not change."""
        return (
            list(self.store.queries.versions(edge)),
            [(r.key, r.digest) for r in self.store.queries.objects(edge, ObjectQuery())],
            list(self.store.held(edge)),
        )


def cluster(version: int, extra: int = 0) -> Snapshot:
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"replicas": version},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop"},
            "data": {"mode": "a"},
        },
    ]
    objects += [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{i}"}}
        for i in range(extra)
    ]
    return build_snapshot(objects, load_profile())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    made = Server(tmp_path)
    yield made
    made.client.close()
    made.store.close()


def test_frames_applied_then_browsed_through_the_api(server: Server) -> None:
    v1, v2 = cluster(1), cluster(3, extra=2)
    assert server.upload(encode_snapshot(v1), b"", v1.digest).status == "ack"
    server.clock.now += 3600
    delta = encode_delta(v1, v2).frame
    assert server.upload(delta, v1.digest, v2.digest).status == "ack"
    server.clock.now += 60

    fleet = server.api("/api/v1/environments")["environments"]
    shop = next(e for e in fleet if e["edge_id"] == "shop-1")
    assert shop["name"] == "Shop 1" and shop["status"] == "fresh" and shop["version"] == 2
    assert shop["objects"] == 4 and shop["bytes_received"]["today"] > len(delta)
    assert [
        e["edge_id"] for e in server.api("/api/v1/environments", group="us")["environments"]
    ] == ["depot-2"]
    assert [
        e["name"] for e in server.api("/api/v1/environments", tag="retail")["environments"]
    ] == ["Shop 1"]
    detail = server.api("/api/v1/environments/shop-1")
    assert [v["version"] for v in detail["versions"]] == [2, 1]
    assert {"kind": "Node", "namespace": "", "objects": 2} in detail["kinds"]

    objects = server.api("/api/v1/environments/shop-1/objects", kind="Node")["objects"]
    assert [o["key"] for o in objects] == ["Node/node-0", "Node/node-1"]
    assert [
        o["name"]
        for o in server.api("/api/v1/environments/shop-1/objects", label="app=web")["objects"]
    ] == ["web"]
    assert (
        server.api("/api/v1/environments/shop-1/objects", namespace="shop", name="sett")["objects"][
            0
        ]["key"]
        == "ConfigMap/shop/settings"
    )
    web = server.api("/api/v1/environments/shop-1/objects/Deployment.apps/shop/web")
    assert web["object"]["spec"] == {"replicas": 3}
    old = server.api("/api/v1/environments/shop-1/objects/Deployment.apps/shop/web", version=1)
    assert old["object"]["spec"] == {"replicas": 1}
    as_of = server.api("/api/v1/environments/shop-1/objects", at="2026-01-01T00:30:00Z")
    assert as_of["version"] == 1 and len(as_of["objects"]) == 2
    history = server.api("/api/v1/environments/shop-1/history/Deployment.apps/shop/web")
    assert [h["version"] for h in history["history"]] == [2, 1]
    assert history["history"][0]["ops"] == [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    diff = server.api("/api/v1/environments/shop-1/diff", **{"from": 1, "to": 2})
    assert {(c["key"], c["change"]) for c in diff["changes"]} == {
        ("Deployment.apps/shop/web", "changed"),
        ("Node/node-0", "added"),
        ("Node/node-1", "added"),
    }
    missing = server.client.get(
        "/api/v1/environments/shop-1/objects/Node/nope",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert missing.status_code == 404 and "Node/nope" in missing.json()["error"]
    bad = server.client.get(
        "/api/v1/environments/shop-1/objects",
        params={"at": "yesterday"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert bad.status_code == 400


def test_command_queue_create_deliver_and_results(server: Server) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = "/api/v1/environments/shop-1/commands"
    made = server.client.post(
        url,
        json={
            "name": "scale",
            "args": {"kind": "Deployment", "namespace": "shop", "name": "web", "replicas": 2},
        },
        headers=auth,
    )
    assert made.status_code == 201 and made.json()["state"] == "queued"
    refused = server.client.post(url, json={"name": "rm-rf", "args": {}}, headers=auth)
    assert refused.status_code == 400 and "unknown command" in refused.json()["error"]
    pong = decode(server.post(PATHS[Ping.TYPE], Ping().encode()).content)
    assert [c.name for c in pong.commands] == ["scale"]  # type: ignore[attr-defined]
    command_id = made.json()["id"]
    report = Ping(cursor=command_id, results=(CommandResult(command_id, True, "scaled to 2"),))
    assert server.post(PATHS[Ping.TYPE], report.encode()).status_code == 200
    listed = server.api(url)["commands"]
    assert [(c["id"], c["state"], c["result"]["message"]) for c in listed] == [
        (command_id, "succeeded", "scaled to 2")
    ]
    assert server.api(f"{url}/{command_id}")["state"] == "succeeded"


def test_register_through_the_api_and_the_new_secret_works(server: Server) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    made = server.client.post(
        "/api/v1/environments",
        json={"name": "Kiosk 9", "group": "eu", "tags": ["kiosk"]},
        headers=auth,
    )
    assert made.status_code == 201
    doc = made.json()
    again = server.client.post("/api/v1/environments", json={"name": "Kiosk 9"}, headers=auth)
    assert again.status_code == 409
    answer = server.post(
        PATHS[Ping.TYPE], Ping().encode(), doc["edge_id"], doc["agent_secret"].encode()
    )
    assert answer.status_code == 200


def test_browse_api_and_page_need_the_token(tmp_path: Path) -> None:
    server = Server(tmp_path)
    assert server.client.get("/api/v1/environments").status_code == 401
    wrong = server.client.get("/api/v1/environments", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    page = server.client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"
    # HTTP Basic is no credential any more: a browser would send it on its own (CSRF)
    basic = base64.b64encode(f"me:{TOKEN}".encode()).decode()
    cached = server.client.get("/", headers={"Authorization": f"Basic {basic}"})
    assert cached.history and cached.url.path == "/login"
    assert server.client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    off = Server(tmp_path / "off", api_token=None)
    refused = off.client.get("/api/v1/environments", headers={"Authorization": "Bearer x"})
    assert refused.status_code == 403 and "--api-token" in refused.json()["error"]


def test_page_shows_fleet_environment_object_and_diff(server: Server) -> None:
    v1, v2 = cluster(1), cluster(2, extra=1)
    server.upload(encode_snapshot(v1), b"", v1.digest)
    server.upload(encode_delta(v1, v2).frame, v1.digest, v2.digest)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    fleet = server.client.get("/", headers=auth)
    assert fleet.status_code == 200 and "Shop 1" in fleet.text and "fresh" in fleet.text
    env = server.client.get("/env/shop-1", params={"kind": "Deployment.apps"}, headers=auth)
    assert env.status_code == 200 and ">web</a>" in env.text and "settings" not in env.text
    obj = server.client.get("/env/shop-1/object/Deployment.apps/shop/web", headers=auth)
    assert obj.status_code == 200 and "/spec/replicas" in obj.text
    diff = server.client.get("/env/shop-1/diff", params={"from": 1, "to": 2}, headers=auth)
    assert diff.status_code == 200 and "Node/node-0" in diff.text
    assert server.client.get("/env/nowhere", headers=auth).status_code == 404


def test_health_readiness_and_metrics(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = cluster(1)
    server.upload(encode_snapshot(v1), b"", v1.digest)
    server.upload(b"garbage" * 10, b"", cluster(5).digest)
    assert server.upload(b"delta", b"n" * 16, cluster(6).digest).status == "unknown-base"
    assert server.client.get("/healthz").text == "ok"
    assert server.client.get("/readyz").status_code == 200
    text = server.client.get("/metrics").text
    assert "snapsync_frames_applied_total 1.0" in text
    assert 'snapsync_frames_refused_total{reason="FrameUnsupported"} 1.0' in text
    assert 'snapsync_frames_refused_total{reason="unknown-base"} 1.0' in text
    assert 'snapsync_environments{freshness="fresh"} 1.0' in text
    assert 'snapsync_environments{freshness="never"} 1.0' in text  # depot-2 never called
    assert "snapsync_upload_seconds_count 3.0" in text and "snapsync_apply_seconds_count" in text
    assert "snapsync_commit_batch_size_count 1.0" in text  # one version, in one transaction
    assert "snapsync_received_bytes_total" in text

    def down() -> None:
        raise StorageError("OperationalError: database gone")

    monkeypatch.setattr(server.store.db, "ping", down)
    assert server.client.get("/readyz").status_code == 503


# -- security ----------------------------------------------------------------------------------


def test_refusals_are_all_alike_and_logged_without_secrets(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    body = Ping().encode()
    path = PATHS[Ping.TYPE]
    now = server.clock()
    good = sign(server.secret("shop-1"), "POST", path, "shop-1", body, now)
    attempts = {
        "unsigned": server.client.post(path, content=body),
        "wrong secret": server.post(path, body, secret=b"not the secret"),
        "other environment's secret": server.post(path, body, secret=server.secret("depot-2")),
        "shared secret for a registered edge": server.post(path, body, secret=SHARED),
        "stale": server.post(
            path,
            body,
            header=sign(server.secret("shop-1"), "POST", path, "shop-1", body, now - 3600),
        ),
        "signed for another path": server.post(PATHS[Chunk.TYPE], body, header=good),
        "body changed": server.post(path, Ping(cursor=5).encode(), header=good),
    }
    assert server.post(path, body, header=good).status_code == 200
    attempts["replayed"] = server.post(path, body, header=good)
    for what, answer in attempts.items():
        assert answer.status_code == 401, what
        assert answer.content == attempts["unsigned"].content, what  # says nothing of why
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged.count("refused") >= len(attempts)
    for secret in (SHARED, server.shop.token.encode(), server.depot.token.encode()):
        assert secret.decode() not in logged


def test_unknown_edge_needs_the_shared_secret(tmp_path: Path) -> None:
    server = Server(tmp_path)
    assert server.post(PATHS[Ping.TYPE], Ping().encode(), edge="walk-in").status_code == 200
    strict = Server(tmp_path / "strict", shared=None)
    refused = strict.post(PATHS[Ping.TYPE], Ping().encode(), edge="walk-in", secret=SHARED)
    assert refused.status_code == 401
    assert strict.post(PATHS[Ping.TYPE], Ping().encode(), edge="shop-1").status_code == 200


def test_bad_frames_and_bodies_leave_stored_state_as_it_was(server: Server) -> None:
    v1, v2 = cluster(1), cluster(2)
    server.upload(encode_snapshot(v1), b"", v1.digest)
    before = server.state()
    delta = encode_delta(v1, v2).frame
    flipped = bytearray(delta)
    flipped[-10] ^= 0xFF  # a payload byte: the checksum no longer matches
    wrong_target = encode_delta(v1, cluster(7)).frame  # a good frame, claimed for v2
    other_base = encode_delta(cluster(9), v2).frame  # a good frame against another base
    for frame in (bytes(flipped), wrong_target, other_base, b"\x00" * 64):
        reply = server.upload(frame, v1.digest, v2.digest)
        assert reply.status in ("rejected", "unknown-base"), reply
        assert server.state() == before
    malformed = [
        b"\xc1",  # not msgpack
        msgpack.packb({"v": 1, "t": "chunk", "u": b"x"}),  # missing fields
        msgpack.packb([1, 2, 3]),
    ]
    for body in malformed:
        assert server.post(PATHS[Chunk.TYPE], body).status_code == 400
    assert server.post("/v1/upload", b"x" * (2**20 + 1)).status_code == 413
    huge = Chunk(b"u" * 8, v1.digest, v2.digest, 2**40, 0, b"abc").encode()
    assert server.post(PATHS[Chunk.TYPE], huge).status_code == 413
    no_length = server.client.post(PATHS[Chunk.TYPE], content=iter([b"abc"]))
    assert no_length.status_code in (411, 413)
    assert server.state() == before
    assert server.store.partial("shop-1", b"u" * 8) is None
    # and the good frame still applies afterwards
    assert server.upload(delta, v1.digest, v2.digest).status == "ack"


def test_logs_never_carry_a_secret_even_at_debug(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    v1 = cluster(1)
    server.upload(encode_snapshot(v1), b"", v1.digest)
    server.post(PATHS[Ping.TYPE], Ping().encode(), secret=b"wrong")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert server.shop.token not in logged and TOKEN not in logged
