"""Watch mode against the emulator: the watched cache must equal a fresh LIST after any changes."""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support_kube import (  # noqa: F401  (fixtures)
    CountingBuilder,
    cluster_objects,
    collect,
    config_map,
    emulator_fixture,
    errors_by_kind,
    expected,
    fast_options,
    kube_objects_fixture,
    kubeconfig_fixture,
    pod,
    put_nameless_config_map,
)

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, SnapshotBuilder, build_snapshot
from snapsync.collect.backoff import Backoff
from snapsync.collect.kube import KubeOptions
from snapsync.collect.kubeapi import stream_lines
from snapsync.collect.watch import KubeWatchCollector
from snapsync.sim.sample_cluster import SampleCluster
from tools.kube_emulator import ClusterState, KubeEmulator

SYNC_TIMEOUT = 20.0  # generous upper bound on a shared machine; normally milliseconds


def _options(kubeconfig: Path, **overrides: object) -> KubeOptions:
    return fast_options(kubeconfig, page_size=4, watch_timeout=30.0, **overrides)


@pytest.fixture
def watcher(kubeconfig: Path) -> Iterator[KubeWatchCollector]:
    collector = KubeWatchCollector(_options(kubeconfig), rng=random.Random(0))
    try:
        yield collector
    finally:
        collector.close()


def _replay(watcher: KubeWatchCollector, builder: SnapshotBuilder | None = None) -> Snapshot:
    builder = builder or SnapshotBuilder(load_profile())
    watcher.collect(builder)
    return builder.build(collected_at="")


def _counted_replay(
    watcher: KubeWatchCollector, profile: str = "default", *, reveal_secrets: bool = False
) -> tuple[Snapshot, int]:
    """A replay and the number of objects canonicalized since the last one (the rest reused
    cached results): by the replay, or by a LIST as its pages came (initial list, relist)."""
    builder = CountingBuilder(load_profile(profile), reveal_secrets=reveal_secrets)
    before = watcher.canonicalized
    snapshot = _replay(watcher, builder)
    assert builder.canonicalized <= watcher.canonicalized - before
    return snapshot, watcher.canonicalized - before


def _assert_identical(watched: Snapshot, listed: Snapshot) -> None:
    """Same objects, same canonical bytes, same digest."""
    assert [(k, o.encoded) for k, o in watched] == [(k, o.encoded) for k, o in listed]
    assert watched.digest == listed.digest


def _churn(state: ClusterState, rng: random.Random, steps: int) -> None:
    """Adds, changes and deletes across kinds, as a cluster does between snapshot cycles."""
    for step in range(steps):
        choice = rng.random()
        if choice < 0.4:
            state.put(pod(f"web-{rng.randrange(12)}", phase=rng.choice(["Running", "Pending"])))
        elif choice < 0.6:
            state.put(config_map(f"cfg-{rng.randrange(8)}", value=str(step)))
        elif choice < 0.8:
            state.delete("v1", "Pod", "team-a", f"web-{rng.randrange(12)}")
        else:
            state.delete("v1", "ConfigMap", "team-a", f"cfg-{rng.randrange(8)}")


def test_watched_cache_equals_a_fresh_list_after_changes(
    emulator: KubeEmulator, kubeconfig: Path, watcher: KubeWatchCollector
):
    state = emulator.state
    first = _replay(watcher)
    assert first.digest == expected(state).digest
    initial_lists = watcher.lists
    rng = random.Random(7)
    for _ in range(3):
        _churn(state, rng, 25)
        assert watcher.synced(state.rv, SYNC_TIMEOUT)
        watched, counted = _counted_replay(watcher)
        listed = collect(_options(kubeconfig))
        _assert_identical(watched, listed)
        assert listed.digest == expected(state).digest
        assert counted <= 25  # at most one canonicalization per change
        assert watched.header.errors == ()
    assert watcher.lists == initial_lists  # the cache was kept by watching, never relisted
    assert watcher.relists() == 0


def test_unchanged_replay_canonicalizes_nothing(
    emulator: KubeEmulator, kubeconfig: Path, watcher: KubeWatchCollector
):
    state = emulator.state
    first, counted = _counted_replay(watcher)
    assert counted >= len(first)  # the first replay canonicalizes everything (some excluded)
    second, counted = _counted_replay(watcher)
    assert counted == 0
    _assert_identical(second, first)
    assert all(second.objects[k] is o for k, o in first)  # the very objects, reused
    state.put(config_map("cfg-1", value="changed"))
    state.put(config_map("cfg-new"))
    state.delete("v1", "Pod", "team-a", "web-3")
    assert watcher.synced(state.rv, SYNC_TIMEOUT)
    third, counted = _counted_replay(watcher)
    assert counted == 2  # the changed and the new ConfigMap; a delete costs nothing
    _assert_identical(third, collect(_options(kubeconfig)))


def test_relist_keeps_the_results_of_unchanged_objects(
    emulator: KubeEmulator, kubeconfig: Path, watcher: KubeWatchCollector
):
    """After 410 Gone the relisted objects are new dicts, but an unchanged uid and
    resourceVersion says the cached result still holds: only real changes are canonicalized."""
    state = emulator.state
    _replay(watcher)
    before = watcher.canonicalized
    state.add_fault(kind="Pod", on="watch", delay=0.2, times=1)  # reconnect late
    emulator.drop_watches()
    state.put(pod("web-1", phase="Pending"))
    state.put(config_map("cfg-new"))
    state.delete("v1", "Pod", "team-a", "web-2")
    state.compact()  # the Pod watcher's resourceVersion is now too old: 410 on reconnect
    emulator.drop_watches()
    state.put(pod("web-late"))
    assert watcher.synced(state.rv, SYNC_TIMEOUT)
    assert watcher.relists() >= 1
    watched, _ = _counted_replay(watcher)
    # web-1, cfg-new and web-late, by the relist (as its pages came) or by the replay
    assert watcher.canonicalized - before == 3
    _assert_identical(watched, collect(_options(kubeconfig)))


def test_the_cache_holds_no_raw_object_once_canonicalized(
    emulator: KubeEmulator, kubeconfig: Path, watcher: KubeWatchCollector
):
    """LIST pages are canonicalized as they come, watch events' objects at the next replay; a
    relist after 410 Gone keeps nothing raw either."""
    state = emulator.state
    _replay(watcher)
    assert watcher.raw_objects() == 0
    state.put(config_map("cfg-new"))
    assert watcher.synced(state.rv, SYNC_TIMEOUT)
    assert watcher.raw_objects() == 1  # until the next replay canonicalizes it
    _replay(watcher)
    assert watcher.raw_objects() == 0
    state.add_fault(kind="Pod", on="watch", delay=0.2, times=1)
    emulator.drop_watches()
    state.put(pod("web-1", phase="Pending"))
    state.compact()
    emulator.drop_watches()
    assert watcher.synced(state.rv, SYNC_TIMEOUT)
    assert watcher.relists() >= 1
    # relisted objects are canonical; only web-1 may be held raw, when the Pods' watch came back
    # in time to see its event before the compaction (Pods are then not relisted)
    assert watcher.raw_objects() <= 1
    _assert_identical(_replay(watcher), collect(_options(kubeconfig)))


def test_profile_change_canonicalizes_again(
    emulator: KubeEmulator, kubeconfig: Path, watcher: KubeWatchCollector
):
    """A cached result holds for one canonical form: another profile or secret setting
    lists and recomputes every object (the raw objects are not kept), and switching back
    recomputes them again."""
    state = emulator.state
    default, counted = _counted_replay(watcher)
    revealed, recounted = _counted_replay(watcher, reveal_secrets=True)
    assert recounted == counted
    assert revealed.digest != default.digest  # the Secret's value is kept this time
    fresh = build_snapshot(state.served_objects(), load_profile(), reveal_secrets=True)
    _assert_identical(revealed, fresh)
    minimal, recounted = _counted_replay(watcher, "minimal")
    assert recounted == counted
    _assert_identical(minimal, collect(_options(kubeconfig), profile="minimal"))
    again, recounted = _counted_replay(watcher)
    assert recounted == counted
    _assert_identical(again, default)


def test_replay_makes_no_list_requests(emulator: KubeEmulator, watcher: KubeWatchCollector):
    state = emulator.state
    _replay(watcher)
    lists, watches = state.stats.requests["list"], state.stats.requests["watch"]
    state.put(config_map("cfg-new"))
    assert watcher.synced(state.rv, SYNC_TIMEOUT)
    snapshot = _replay(watcher)
    assert state.stats.requests["list"] == lists
    assert "cfg-new" in {key.name for key in snapshot.objects}
    assert state.stats.requests["watch"] >= watches  # only watches (reconnects) may have happened


def test_compacted_resource_version_relists(
    emulator: KubeEmulator, kubeconfig: Path, watcher: KubeWatchCollector
):
    state = emulator.state
    _replay(watcher)
    emulator.state.add_fault(kind="Pod", on="watch", delay=0.2, times=1)  # reconnect late
    emulator.drop_watches()
    _churn(state, random.Random(3), 30)
    state.compact()  # the watchers' resourceVersions are now too old: 410 on reconnect
    emulator.drop_watches()
    state.put(pod("web-late"))
    assert watcher.synced(state.rv, SYNC_TIMEOUT)
    assert watcher.relists() >= 1
    _assert_identical(_replay(watcher), collect(_options(kubeconfig)))


class _Adding(SnapshotBuilder):
    """A SnapshotBuilder that counts the objects a collector gives it and takes back."""

    def __init__(self, profile: Any, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.given = 0

    def add_canonical(self, canonical: object) -> Any:
        self.given += 1
        return super().add_canonical(canonical)

    def remove_canonical(self, canonical: object) -> None:
        self.given += 1
        super().remove_canonical(canonical)


def test_a_resumed_builder_is_given_only_the_changes_and_equals_a_fresh_list(
    emulator: KubeEmulator, kubeconfig: Path, watcher: KubeWatchCollector
):
    """The agent's next builder (SnapshotBuilder.successor) resumes from the last one: the
    collector gives it what changed since, through churn, a malformed object, a relist after
    410 and a collection of a builder that does not resume (which the next must not resume
    from either), and every snapshot is byte for byte a fresh LIST's, errors included."""
    state, rng = emulator.state, random.Random(5)
    put_nameless_config_map(state)  # listed, then refused by every replay
    builder = _Adding(load_profile())
    watcher.collect(builder)
    for cycle in range(7):
        _churn(state, rng, 5)
        if cycle == 4:
            state.compact()
            emulator.drop_watches()
        assert watcher.synced(state.rv, SYNC_TIMEOUT)
        if cycle == 5:
            _replay(watcher)  # another sink in between: the next builder cannot resume
        following = builder.successor()
        watcher.collect(following)
        snapshot = following.build(collected_at="")
        listed = collect(_options(kubeconfig))
        _assert_identical(snapshot, listed)
        assert snapshot.header.errors == listed.header.errors
        assert snapshot.header.counts == listed.header.counts
        # five changes (and the malformed object, tried again): a kind relisted after 410 is
        # given whole, and so is every kind to a builder after another sink
        resumed = cycle not in (4, 5)
        assert (following.given <= 2 * 5 + 1) == resumed
        builder = following
    assert watcher.relists() >= 1


def test_bookmarks_keep_idle_kinds_current(emulator: KubeEmulator, watcher: KubeWatchCollector):
    state = emulator.state
    _replay(watcher)
    for i in range(5):
        state.put(config_map(f"bump-{i}"))  # only ConfigMaps change
    # every kind, including the untouched ones, reaches the latest version through bookmarks
    assert watcher.synced(state.rv, SYNC_TIMEOUT)


def test_broken_watch_is_reported_stale_then_recovers(
    emulator: KubeEmulator, watcher: KubeWatchCollector
):
    state = emulator.state
    _replay(watcher)
    fault = state.add_fault(kind="ConfigMap", on="watch", status=500)
    emulator.drop_watches()
    state.put(config_map("while-broken"))
    for _ in range(200):
        if fault.fired >= 2:
            break
        watcher.synced(state.rv + 10**6, 0.02)  # just waits a little
    stale = _replay(watcher)
    assert errors_by_kind(stale) == {"ConfigMap": "stale"}
    state.clear_faults()
    assert watcher.synced(state.rv, SYNC_TIMEOUT)
    recovered = _replay(watcher)
    assert recovered.header.errors == ()
    assert "while-broken" in {key.name for key in recovered.objects}


def test_forbidden_kind_is_recorded_and_not_watched(
    emulator: KubeEmulator, watcher: KubeWatchCollector
):
    emulator.state.add_fault(kind="Secret", status=403)
    snapshot = _replay(watcher)
    assert errors_by_kind(snapshot) == {"Secret": "forbidden"}
    assert "Secret" not in watcher.watched_kinds()
    assert "Pod" in watcher.watched_kinds()


def test_a_malformed_object_is_recorded_and_the_rest_replayed(
    emulator: KubeEmulator, watcher: KubeWatchCollector
):
    put_nameless_config_map(emulator.state)
    for _ in range(2):  # the first cycle lists, the second replays the cache
        snapshot = _replay(watcher)
        assert errors_by_kind(snapshot) == {"ConfigMap": "invalid"}
        assert snapshot.header.counts["ConfigMap"] == 5
        assert snapshot.header.counts["Pod"] == 9


def test_sample_cluster_churn(tmp_path: Path):
    cluster = SampleCluster(objects=300, shape="application", seed=1)
    state = ClusterState(cluster.objects())
    with KubeEmulator(state, bookmark_interval=0.05) as emu:
        kc = emu.write_kubeconfig(tmp_path / "kubeconfig")
        with KubeWatchCollector(_options(kc), rng=random.Random(0)) as watcher:
            _replay(watcher)
            for _ in range(3):
                state.apply_changes(cluster, cluster.step(churn="steady", minutes=1.0))
                assert watcher.synced(state.rv, SYNC_TIMEOUT)
                assert _replay(watcher).digest == collect(_options(kc)).digest


def _crds(count: int) -> list[dict[str, Any]]:
    """`count` CustomResourceDefinitions, one object each: that many more kinds to watch."""
    objects: list[dict[str, Any]] = []
    for i in range(count):
        group, kind = f"g{i}.example.com", f"Thing{i}"
        objects.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"things{i}.{group}"},
                "spec": {
                    "group": group,
                    "names": {"kind": kind, "plural": f"things{i}", "singular": f"thing{i}"},
                    "scope": "Namespaced",
                    "versions": [{"name": "v1", "served": True, "storage": True}],
                },
            }
        )
        objects.append(
            {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": "a", "namespace": "x"}}
        )
    return objects


def test_backoff_follows_client_go_reflector() -> None:
    """0.8 s doubling to 30 s, each stretched by up to 100%, started over after 2 quiet minutes."""
    backoff = Backoff(rng=random.Random(1))
    now = 0.0
    steps = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    for step in steps:
        delay = backoff.delay(now)
        assert step <= delay < 2 * step
        now += delay
    assert backoff.delay(now + 121) < 1.6  # quiet for longer than 2 minutes: from the start


def test_watches_the_server_ends_at_once_are_backed_off(tmp_path: Path) -> None:
    """Against a server that ends every watch at once, reopens follow the reflector backoff:
    a handful of requests per kind in seconds (without backoff: hundreds per second)."""
    state = ClusterState(cluster_objects())
    kinds = ("Pod", "ConfigMap")
    with KubeEmulator(state, close_watches=True) as emu:
        kc = emu.write_kubeconfig(tmp_path / "kubeconfig")
        options = fast_options(
            kc, include_kinds=kinds, watch_backoff_initial=0.8, watch_backoff_max=30.0
        )
        with KubeWatchCollector(options, rng=random.Random(0)) as watcher:
            started = time.monotonic()
            first = _replay(watcher)
            assert first.header.errors == ()
            deadline = started + 60.0  # generous bound on a shared machine; normally ~3 s
            while state.stats.requests["watch"] < 3 * len(kinds) and time.monotonic() < deadline:
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            watches = state.stats.requests["watch"]
            assert watches >= 3 * len(kinds)  # a watch the server ended is reopened
            # delays of at least 0.8, 1.6, 3.2, ... s: n watches take 0.8 * (2^(n-1) - 1) s
            most = 1 + int(math.log2(elapsed / 0.8 + 1))
            assert watches <= most * len(kinds), (watches, elapsed)
            assert state.stats.requests["list"] == len(kinds)  # an empty watch is no relist
            stale = _replay(watcher)  # three empty watches in a row: changes may be missed
            assert errors_by_kind(stale) == {"ConfigMap": "stale", "Pod": "stale"}


def test_expired_watch_request_relists(
    emulator: KubeEmulator, kubeconfig: Path, watcher: KubeWatchCollector
) -> None:
    """An HTTP 410 to the WATCH request itself (not an ERROR event) also means: relist."""
    state = emulator.state
    _replay(watcher)
    state.add_fault(kind="Pod", on="watch", action="expire", times=1)
    emulator.drop_watches()
    state.put(pod("web-new"))
    assert watcher.synced(state.rv, SYNC_TIMEOUT)
    assert watcher.relists() == 1
    _assert_identical(_replay(watcher), collect(_options(kubeconfig)))


def test_watching_more_kinds_than_64_logs_no_pool_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One connection per watched kind is kept: none is discarded when watches end together."""
    state = ClusterState(cluster_objects() + _crds(70))
    with KubeEmulator(state, bookmark_interval=0.05) as emu:
        kc = emu.write_kubeconfig(tmp_path / "kubeconfig")
        watcher = KubeWatchCollector(_options(kc), rng=random.Random(0))
        with caplog.at_level(logging.DEBUG, logger="urllib3"), watcher:
            _replay(watcher)
            assert len(watcher.watched_kinds()) > 64
            for _ in range(2):  # every watch ends and is reopened on a pooled connection
                emu.drop_watches()
                state.put(config_map("cfg-1", value=str(state.rv)))
                assert watcher.synced(state.rv, SYNC_TIMEOUT)
    noisy = [
        r for r in caplog.records if r.name.startswith("urllib3") and r.levelno >= logging.INFO
    ]
    assert noisy == []


class _Chunked:
    """A streamed response body, cut into given chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def stream(self, amt: object = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self.chunks


@given(
    lines=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_watch_lines_survive_any_chunking(lines: list[bytes], cuts: list[int]) -> None:
    body = b"".join(line + b"\n" for line in lines)
    points = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    chunks = [body[a:b] for a, b in itertools.pairwise(points)]
    assert list(stream_lines(_Chunked(chunks))) == lines
    assert list(stream_lines(_Chunked([b"a\nb", b"c"]))) == [b"a", b"bc"]  # unterminated last
