"""The memory and SQLite stores keep the same contract (the protocol runs over either; the SQL
stores split it into repositories: `Stores` is the protocol's view of them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.protocol import MemoryStore
from snapsync.protocol.messages import CommandResult
from snapsync.protocol.server import PartialLimits, PartialUpload
from snapsync.server.store import Stores, open_store
from snapsync.server.store.commands import Commands


def snapshot(n: int) -> Snapshot:
    objs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": "x"}}
        for i in range(n)
    ]
    return build_snapshot(objs, load_profile())


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore | Stores]:
    yield MemoryStore() if request.param == "memory" else open_store(str(tmp_path / "s.db"))


def test_versions_are_numbered_and_old_ones_pruned_but_the_base(store: MemoryStore) -> None:
    snaps = [snapshot(n) for n in range(1, 7)]
    versions = [store.commit("e", snaps[0], b"f", None, 1.0)]
    for snap in snaps[1:5]:
        versions.append(store.commit("e", snap, b"f", versions[-1], 1.0))
    assert [v.seq for v in versions] == [1, 2, 3, 4, 5]
    assert [v.seq for v in store.held("e")] == [5, 4, 3]
    pinned = store.commit("e", snaps[5], b"f", versions[2], 2.0)  # base 3 is kept
    assert [v.seq for v in store.held("e")] == [pinned.seq, 5, 4, 3]
    got = store.snapshot("e", snaps[2].digest)
    assert got is not None and got.digest == snaps[2].digest
    assert store.snapshot("e", snaps[0].digest) is None
    assert store.held("other") == []


def _commands(store: MemoryStore | Stores) -> MemoryStore | Commands:
    return store.commands if isinstance(store, Stores) else store


def test_partials_and_commands(store: MemoryStore | Stores) -> None:
    limits = PartialLimits()
    meta = PartialUpload(b"", b"t" * 16, 10, 0)
    assert store.append_partial("e", b"u" * 8, meta, b"abc", 1.0, limits) == 3
    assert store.partial("e", b"u" * 8) == PartialUpload(b"", b"t" * 16, 10, 3)
    # a chunk that raced another (stale offset) appends nothing and learns the offset
    assert store.append_partial("e", b"u" * 8, meta, b"abc", 1.0, limits) == 3
    more = PartialUpload(b"", b"t" * 16, 10, 3)
    assert store.append_partial("e", b"u" * 8, more, b"de", 2.0, limits) == 5
    assert store.append_partial("e", b"u" * 8, more, b"xy", 2.0, limits) == 5
    assert store.partial_data("e", b"u" * 8) == b"abcde"
    store.drop_partial("e", b"u" * 8)
    assert store.partial("e", b"u" * 8) is None
    first = _commands(store).queue_command("e", "collect-now")
    second = _commands(store).queue_command("e", "delete-pod", {"namespace": "a", "name": "b"})
    assert [c.id for c in store.commands_after("e", 0, 10)] == [first.id, second.id]
    assert list(store.commands_after("e", first.id, 10)) == [second]
    store.record_results("e", [CommandResult(first.id, True, "ok")], 2.0)
    store.record_results("e", [CommandResult(first.id, False, "late duplicate")], 3.0)
    assert _commands(store).results("e") == {first.id: CommandResult(first.id, True, "ok")}


def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    snap = snapshot(3)
    open_store(str(path)).commit("e", snap, b"frame", None, 1.0)
    reopened = open_store(str(path))
    assert [v.digest for v in reopened.held("e")] == [snap.digest]
    current = reopened.versions.current("e")
    assert current is not None and current.digest == snap.digest


def test_partial_uploads_are_bounded_per_environment_and_expire(store: MemoryStore) -> None:
    """Beyond the count or byte cap the oldest other uploads go; the one being written stays,
    however large; uploads untouched past the cutoff expire in every environment."""
    limits = PartialLimits(max_uploads=3, max_bytes=100)
    for i in range(5):  # five abandoned uploads of 30 bytes, one a second
        meta = PartialUpload(b"", bytes([i]) * 16, 1000, 0)
        store.append_partial("e", bytes([i]) * 8, meta, b"x" * 30, float(i), limits)
    held = [i for i in range(5) if store.partial("e", bytes([i]) * 8) is not None]
    assert held == [2, 3, 4]  # three uploads, 90 bytes: the two oldest evicted
    big = PartialUpload(b"", b"b" * 16, 1000, 0)
    store.append_partial("e", b"b" * 8, big, b"y" * 150, 10.0, limits)  # alone over the cap
    assert store.partial("e", b"b" * 8) == PartialUpload(b"", b"b" * 16, 1000, 150)
    assert all(store.partial("e", bytes([i]) * 8) is None for i in range(5))
    other = PartialUpload(b"", b"o" * 16, 1000, 0)
    store.append_partial("other", b"o" * 8, other, b"z", 20.0, limits)
    assert store.expire_partials(15.0) == 1  # only the "e" upload last written at 10 s
    assert store.partial("e", b"b" * 8) is None
    assert store.partial_data("e", b"b" * 8) == b""
    assert store.partial("other", b"o" * 8) is not None
