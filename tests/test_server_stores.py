"""The store contract over all three stores, and what the SQL stores keep for browsing:
per-object rows maintained incrementally, history, versions as of a time, diffs, retention,
traffic, the registry; PostgreSQL's per-environment lock under concurrent commits."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.errors import InputError
from snapsync.protocol import MemoryStore
from snapsync.protocol.messages import Version
from snapsync.server.environments import AgentSecrets, enroll
from snapsync.server.storage import ObjectQuery, Retention
from snapsync.server.store import Stores, open_store
from tests import test_stores
from tests.support_postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)

DAY = 86400.0


def config_map(name: str, ns: str = "x", data: str = "1", labels: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": data}}


def snap(*objects: dict[str, Any]) -> Snapshot:
    return build_snapshot(list(objects), load_profile())


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Every store, for the contract tests of tests/test_stores.py run here too."""
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "sqlite":
        yield open_store(str(tmp_path / "s.db"))
    else:
        made = open_store(request.getfixturevalue("postgres_dsn"))
        yield made
        made.close()


@pytest.fixture(params=["sqlite", "postgres"])
def sql(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    retention = Retention(keep_versions=4, keep_seconds=30 * DAY)
    if request.param == "sqlite":
        made: Stores = open_store(str(tmp_path / "s.db"), retention)
    else:
        made = open_store(request.getfixturevalue("postgres_dsn"), retention)
    yield made
    made.close()


# The contract, unchanged, over memory, SQLite and PostgreSQL.
test_versions_are_numbered_and_old_ones_pruned_but_the_base = (
    test_stores.test_versions_are_numbered_and_old_ones_pruned_but_the_base
)
test_partials_and_commands = test_stores.test_partials_and_commands
test_partial_uploads_are_bounded_per_environment_and_expire = (
    test_stores.test_partial_uploads_are_bounded_per_environment_and_expire
)


def commit_all(store: Stores, snaps: list[Snapshot], start: float = 1000.0) -> list[Version]:
    versions: list[Version] = []
    for i, s in enumerate(snaps):
        versions.append(
            store.commit("e", s, b"frame", versions[-1] if versions else None, start + i * 60)
        )
    return versions


def test_object_rows_follow_each_commit_and_history_reconstructs_any_version(
    sql: Stores,
) -> None:
    a, b, c = config_map("a", labels={"app": "web"}), config_map("b"), config_map("c", ns="y")
    v1, v2, v3 = commit_all(
        sql,
        [snap(a, b), snap(a, config_map("b", data="2"), c), snap(config_map("b", data="2"), c)],
    )
    # only what changed is written
    assert [v.changed for v in sql.queries.versions("e")] == [1, 2, 2]
    current = sql.queries.objects("e", ObjectQuery())
    assert [str(r.key) for r in current] == ["ConfigMap/x/b", "ConfigMap/y/c"]
    assert current[0].data["data"] == {"v": "2"} and current[0].seq == v2.seq
    as_of_v1 = sql.queries.objects("e", ObjectQuery(), seq=v1.seq)
    assert [(str(r.key), r.data["data"]["v"]) for r in as_of_v1] == [
        ("ConfigMap/x/a", "1"),
        ("ConfigMap/x/b", "1"),
    ]
    assert sql.queries.version_at("e", 1000.0 + 61).seq == v2.seq  # type: ignore[union-attr]
    assert sql.queries.version_at("e", 999.0) is None
    key_b = ObjectKey("", "ConfigMap", "x", "b")
    history = sql.queries.object_history("e", key_b)
    assert [(h.seq, h.data["data"]["v"] if h.data else None) for h in history] == [
        (v2.seq, "2"),
        (v1.seq, "1"),
    ]
    removed_a = sql.queries.object_history("e", ObjectKey("", "ConfigMap", "x", "a"))
    assert [h.data is None for h in removed_a] == [True, False]
    changes = {str(k): (old, new) for k, old, new in sql.queries.changes("e", v1.seq, v3.seq)}
    assert set(changes) == {"ConfigMap/x/a", "ConfigMap/x/b", "ConfigMap/y/c"}
    assert changes["ConfigMap/x/a"][1] is None and changes["ConfigMap/y/c"][0] is None
    assert sql.queries.object_at("e", key_b, v1.seq).data["data"] == {"v": "1"}  # type: ignore[union-attr]
    assert sql.queries.kinds("e") == [("ConfigMap", "x", 1), ("ConfigMap", "y", 1)]


def test_object_filters(sql: Stores) -> None:
    objs = [
        config_map("web-1", labels={"app": "web", "tier": "front"}),
        config_map("web_2", ns="y", labels={"app": "web"}),
        config_map("db-1", labels={"app": "db"}),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "x"},
        },
    ]
    commit_all(sql, [snap(*objs)])

    def names(**query: Any) -> list[str]:
        return [r.key.name for r in sql.queries.objects("e", ObjectQuery(**query))]

    assert names(kind="Deployment") == ["web"]
    assert names(kind="Deployment.apps") == ["web"] and names(kind="Deployment.x") == []
    assert names(kind="ConfigMap", namespace="x") == ["db-1", "web-1"]
    assert names(name="web_") == ["web_2"]  # LIKE wildcards are literal
    assert names(labels=ObjectQuery.parse_labels("app=web")) == ["web-1", "web_2"]
    assert names(labels=ObjectQuery.parse_labels("app=web,tier")) == ["web-1"]
    assert names(limit=2, offset=1) == ["web-1", "web_2"]


def test_retention_prunes_by_count_and_age_but_keeps_bases_and_state(sql: Stores) -> None:
    snaps = [snap(config_map("a", data=str(i)), config_map("b")) for i in range(10)]
    versions = commit_all(sql, snaps)
    kept = [v.seq for v in sql.queries.versions("e")]
    assert kept == [10, 9, 8, 7]  # keep_versions=4
    oldest = min(kept)
    # the state of the oldest retained version is complete: b was last written in version 1
    assert {r.key.name for r in sql.queries.objects("e", ObjectQuery(), seq=oldest)} == {"a", "b"}
    history = sql.queries.object_history("e", ObjectKey("", "ConfigMap", "x", "b"))
    assert [h.seq for h in history] == [1] and history[0].received_at is None
    assert len(sql.queries.object_history("e", ObjectKey("", "ConfigMap", "x", "a"))) == 4
    # age: a commit 40 days later prunes everything older than 30 days except held bases
    late = sql.commit("e", snap(config_map("a", data="x")), b"f", versions[-1], 1000 + 40 * DAY)
    remaining = [v.seq for v in sql.queries.versions("e")]
    assert remaining == [late.seq, *[v.seq for v in sql.held("e")][1:]]
    assert all(v.held for v in sql.queries.versions("e"))
    assert sql.versions.current("e").digest == late.digest  # type: ignore[union-attr]


def test_failure_inside_a_commit_leaves_the_previous_version(
    sql: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = snap(config_map("a"))
    (v1,) = commit_all(sql, [first])

    def explode(*args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sql.versions, "_prune", explode)  # the last step of the transaction
    with pytest.raises(RuntimeError):
        sql.commit("e", snap(config_map("a", data="2"), config_map("z")), b"f", v1, 2000.0)
    monkeypatch.undo()
    assert [v.seq for v in sql.queries.versions("e")] == [1]
    assert [r.key.name for r in sql.queries.objects("e", ObjectQuery())] == ["a"]
    assert sql.queries.objects("e", ObjectQuery())[0].data["data"] == {"v": "1"}
    assert len(sql.queries.object_history("e", ObjectKey("", "ConfigMap", "x", "z"))) == 0
    again = sql.commit("e", snap(config_map("a", data="2")), b"f", v1, 2000.0)
    assert again.seq == 2


CRASHING_WRITER = """
import sys
from snapsync.canonical.profile import load_profile
from snapsync.server.store import Stores, open_store
from snapsync.canonical.snapshot import build_snapshot

store = open_store(str(sys.argv[1]))
base = None
for i in range(100_000):
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{j}", "namespace": "x"},
         "data": {"v": str(i if j % 3 == 0 else 0)}}
        for j in range(3000)
    ]
    base = store.commit("e", build_snapshot(objects, load_profile()), b"f" * 4096, base, float(i))
    print(base.seq, flush=True)
"""


def test_sqlite_killed_mid_commit_keeps_a_consistent_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    committed = [int(child.stdout.readline()) for _ in range(3)]
    time.sleep(random.uniform(0.0, 0.3))  # somewhere in the next commits (no assertion on time)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = open_store(str(path))
    seqs = [v.seq for v in store.queries.versions("e", 10_000)]
    assert seqs[-1] == 1 and seqs == list(range(seqs[0], 0, -1)) and seqs[0] >= committed[-1]
    current = store.versions.current("e")
    assert current is not None and current.digest == store.queries.versions("e", 1)[0].digest
    rows = store.queries.objects("e", ObjectQuery(limit=10_000))
    assert {(r.key, r.digest) for r in rows} == {(k, o.digest) for k, o in current}
    store.close()


GROUP_WRITER = """
import os, sys, threading
from snapsync.delta.diff import diff
from snapsync.delta.incremental import derive
from snapsync.canonical.profile import load_profile
from snapsync.server.store import Stores, open_store
from snapsync.canonical.snapshot import build_snapshot

store = open_store(str(sys.argv[1]))
printed = threading.Lock()

def state(i):
    return build_snapshot([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{j}", "namespace": "x"},
         "data": {"v": str(i if j % 7 == 0 else 0)}}
        for j in range(300)
    ], load_profile())

def site(env):
    base, version = None, None
    for i in range(100_000):
        new = state(i)
        snap = new if base is None else derive(base, diff(base, new))
        version = store.commit(env, snap, b"f" * 512, version, float(i))
        line = f"{env} {version.seq} {version.digest.hex()}\\n".encode()
        with printed:  # acknowledged: the commit returned, so it is durable
            os.write(1, line)  # one write, so SIGKILL never leaves half an acknowledgement
        base = new

for n in range(8):
    threading.Thread(target=site, args=(f"site-{n}",), daemon=True).start()
threading.Event().wait()
"""


def test_sqlite_group_commit_killed_mid_batch_loses_no_acknowledged_version(
    tmp_path: Path,
) -> None:
    """Eight sites commit at once (batches share a transaction); SIGKILL lands somewhere in a
    batch. Every version acknowledged before is there, and nothing unverified is."""
    path = tmp_path / "group.db"
    child = subprocess.Popen(
        [sys.executable, "-c", GROUP_WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acked = [child.stdout.readline().split() for _ in range(40)]
    time.sleep(random.uniform(0.0, 0.3))  # somewhere in the next batches (no assertion on time)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    acked += [line.split() for line in child.stdout.read().splitlines()]
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = open_store(str(path))
    for env, seq, digest in acked:
        stored = store.queries.version(env, int(seq))
        assert stored is not None and stored.digest.hex() == digest
    for n in range(8):
        env = f"site-{n}"
        versions = store.queries.versions(env, 10_000)
        assert [v.seq for v in versions] == list(range(len(versions), 0, -1))
        current = store.versions.current(env)  # rebuilt from the rows, and its digest checked
        assert current is not None and current.digest == versions[0].digest
        rows = store.queries.objects(env, ObjectQuery(limit=10_000))
        assert {(r.key, r.digest) for r in rows} == {(k, o.digest) for k, o in current}
    store.close()


def test_a_failing_write_in_a_group_commit_fails_alone(tmp_path: Path) -> None:
    """A batch of two behind a slow one: the write that raises is rolled back to its savepoint
    and gets its error; the other is committed in the same transaction."""
    store = open_store(str(tmp_path / "g.db"))
    sizes: list[int] = []
    store.db.observe_batch = sizes.append
    leading, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def write(name: str, fail: bool, hold: bool = False) -> None:
        def work(db: Any) -> Version:
            db.execute(
                "INSERT INTO usage (env, day, received, sent) VALUES (?, 'd', 1, 1)", (name,)
            )
            if hold:
                leading.set()
                release.wait(timeout=30)
            if fail:
                raise RuntimeError("this one is broken")
            return Version(1, name.encode())

        try:
            results[name] = store.db.durable(work)
        except RuntimeError as exc:
            results[name] = exc

    first = threading.Thread(target=write, args=("first", False, True))
    first.start()
    assert leading.wait(timeout=30)
    others = [threading.Thread(target=write, args=(n, n == "bad")) for n in ("bad", "good")]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 30
    while len(store.db._group._queue) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in (first, *others):
        thread.join(timeout=30)
    assert isinstance(results["bad"], RuntimeError)
    assert results["good"] == Version(1, b"good") and results["first"] == Version(1, b"first")
    assert sizes == [1, 2]
    stored = {env for (env,) in store.db.read("SELECT env FROM usage")}
    assert stored == {"first", "good"}
    store.close()


def test_registry_traffic_and_environment_summaries(sql: Stores) -> None:
    made = enroll(sql.registry, "Shop 17 (Berlin)", 5.0, group="eu", tags=("retail", "tier:1"))
    assert made.registration.edge_id == "shop-17-berlin"
    with pytest.raises(InputError, match="name"):
        enroll(sql.registry, "Shop 17 (Berlin)", 6.0, edge_id="other")
    with pytest.raises(InputError, match="edge id"):
        enroll(sql.registry, "Other", 6.0, edge_id="shop-17-berlin")
    secrets = AgentSecrets(sql.registry, shared=b"shared")
    assert secrets["shop-17-berlin"] == made.token.encode()
    assert secrets["anyone-else"] == b"shared"
    assert AgentSecrets(sql.registry, shared=None).get("anyone-else") is None
    day = 1_767_225_600.0  # 2026-01-01 00:00 UTC
    sql.usage.record_traffic("shop-17-berlin", day - DAY, 1000, 10)  # last year's December
    sql.usage.record_traffic("shop-17-berlin", day + 3 * DAY, 200, 10)
    sql.usage.record_traffic("shop-17-berlin", day + 4 * DAY, 30, 10)
    sql.commit("shop-17-berlin", snap(config_map("a")), b"f", None, day + 4 * DAY)
    sql.usage.record_traffic("unregistered", day, 5, 5)
    (other, env) = sql.queries.environments(day + 4 * DAY + 10)  # by group, then name
    assert (env.name, env.group, env.tags) == ("Shop 17 (Berlin)", "eu", ("retail", "tier:1"))
    assert (env.bytes_today, env.bytes_month, env.bytes_total) == (30, 230, 1230)
    assert env.version == 1 and env.objects == 1 and env.status(day + 4 * DAY + 10) == "fresh"
    assert (other.edge_id, other.registered, other.status(day + 4 * DAY)) == (
        "unregistered",
        False,
        "offline",
    )


def test_postgres_commits_for_one_environment_never_interleave(
    request: pytest.FixtureRequest,
) -> None:
    """Two server processes' worth of connections commit to one environment at once."""
    dsn = request.getfixturevalue("postgres_dsn")
    stores = [open_store(dsn) for _ in range(2)]
    snaps = [snap(config_map("a", data=str(i)), config_map(f"n{i}")) for i in range(24)]
    errors: list[BaseException] = []

    def worker(store: Stores, mine: list[Snapshot]) -> None:
        try:
            for s in mine:
                store.commit("e", s, b"f", None, 1000.0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(stores[i % 2], snaps[i::4])) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = [v.seq for v in stores[0].queries.versions("e", 1000)]
    assert seqs == list(range(24, 0, -1))  # no gap, no duplicate
    # the object rows are those of the newest version, whichever thread wrote it
    newest = stores[1].versions.current("e")
    assert newest is not None
    rows = stores[1].queries.objects("e", ObjectQuery())
    assert {(str(r.key), r.digest) for r in rows} == {
        (str(k), o.digest) for k, o in newest.objects.items()
    }
    for s in stores:
        s.close()


def test_versions_keep_headers_and_whole_snapshots_stored_before_still_serve(
    tmp_path: Path,
) -> None:
    """A held version's row keeps its snapshot header; the objects come from the rows, checked
    against the version's digest. A whole snapshot, as databases hold from before, is used as
    it is; rows that do not give the digest make the version unavailable (never a wrong one)."""
    from snapsync.codec.decode import decode_snapshot
    from snapsync.codec.encode import encode_snapshot

    store = open_store(str(tmp_path / "s.db"))
    v1 = store.commit("e", snap(config_map("a"), config_map("b")), b"f", None, 1.0)
    (blob,) = store.db.read("SELECT snapshot FROM versions WHERE seq = 1")[0]
    assert len(decode_snapshot(bytes(blob))) == 0  # the header alone
    cold = open_store(str(tmp_path / "s.db"))
    assert cold.snapshot("e", v1.digest).digest == v1.digest  # type: ignore[union-attr]
    whole = encode_snapshot(snap(config_map("a"), config_map("b")))
    with sqlite3.connect(tmp_path / "s.db") as raw:
        raw.execute("UPDATE versions SET snapshot = ?", (whole,))
        raw.execute("UPDATE objects SET data = '{}' WHERE key LIKE '%/b'")
    legacy = open_store(str(tmp_path / "s.db"))
    assert legacy.snapshot("e", v1.digest).digest == v1.digest  # type: ignore[union-attr]
    with sqlite3.connect(tmp_path / "s.db") as raw:
        raw.execute("UPDATE versions SET snapshot = ?", (blob,))
        raw.execute("UPDATE object_history SET data = '{}' WHERE key LIKE '%/b'")
    damaged = open_store(str(tmp_path / "s.db"))
    assert damaged.snapshot("e", v1.digest) is None
    for made in (store, cold, legacy, damaged):
        made.close()


def test_sqlite_stores_of_several_processes_take_turns_at_writing(tmp_path: Path) -> None:
    """`serve --workers` on SQLite: stores that share the file (as separate processes do, each
    with its own lock file handle) commit one at a time, every version numbered once."""
    stores = [open_store(str(tmp_path / "w.db"), shared_by_processes=True) for _ in range(3)]

    def site(store: Stores, env: str) -> None:
        base = None
        for i in range(8):
            base = store.commit(env, snap(config_map("a", data=str(i))), b"f", base, float(i))

    threads = [
        threading.Thread(target=site, args=(made, env)) for made in stores for env in ("e1", "e2")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert (tmp_path / "w.db-writer").exists()
    for env in ("e1", "e2"):
        assert [v.seq for v in stores[0].queries.versions(env)] == list(range(24, 0, -1))
    for made in stores:
        made.close()
