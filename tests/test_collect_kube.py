"""Live collection through the official `kubernetes` client, over HTTP, against the API emulator.

Each test scripts the emulator (faults, changes between requests) and checks what the collector
delivered against the snapshot of the emulator's own objects built without HTTP.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient
from support_kube import (  # noqa: F401  (fixtures)
    RecordingSink,
    RecordingSleep,
    collect,
    config_map,
    emulator_fixture,
    errors_by_kind,
    expected,
    fast_options,
    kube_objects_fixture,
    kubeconfig_fixture,
    put_nameless_config_map,
)

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import SnapshotBuilder
from snapsync.collect.discovery import CACHE_FILE
from snapsync.collect.files import FileCollector
from snapsync.collect.kube import KubeCollector, KubeOptions
from snapsync.collect.kubeapi import ClientSettings, build_client
from snapsync.errors import CollectionError, InputError
from tools.kube_emulator import ClusterState, KubeEmulator, RequestInfo, load_fixture


def _paths(state: ClusterState) -> list[RequestInfo]:
    """Record every request the emulator receives (appended as they arrive)."""
    seen: list[RequestInfo] = []
    state.hooks.append(seen.append)
    return seen


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


# ----- everything, once ----------------------------------------------------------------------


@pytest.mark.parametrize("aggregated", [True, False], ids=["aggregated", "legacy-discovery"])
def test_collects_every_listable_kind_like_the_file_path(
    emulator: KubeEmulator, kubeconfig: Path, aggregated: bool
):
    emulator.aggregated_discovery = aggregated
    seen = _paths(emulator.state)
    snapshot = collect(fast_options(kubeconfig, page_size=3))
    assert snapshot.digest == expected(emulator.state).digest
    assert snapshot.header.errors == ()
    counts = snapshot.header.counts
    assert counts["Pod"] == 9 and counts["Widget.example.com"] == 1
    assert counts["HorizontalPodAutoscaler.autoscaling"] == 1
    assert "Lease.coordination.k8s.io" not in counts  # excluded by the default profile
    lists = [i for i in seen if i.verb == "list"]
    listed = {i.resource.kind_ref for i in lists if i.resource}
    assert "Lease.coordination.k8s.io" not in listed  # excluded kinds cost no request
    assert "Binding" not in listed and "SelfSubjectAccessReview.authorization.k8s.io" not in listed
    hpa_paths = {
        i.path for i in lists if i.resource and i.resource.kind == "HorizontalPodAutoscaler"
    }
    assert hpa_paths == {"/apis/autoscaling/v2/horizontalpodautoscalers"}  # once, preferred
    subresources = {"binding", "eviction", "exec", "log", "proxy", "scale", "status"}
    assert not any(i.path.rpartition("/")[2] in subresources for i in seen)
    discovery = [i.path for i in seen if i.verb == "discovery"]
    if aggregated:
        assert discovery == ["/api", "/apis"]  # everything in two documents
    else:
        assert len(discovery) > 20 and "/apis/autoscaling/v1" in discovery


def test_the_official_typed_and_dynamic_clients_accept_the_emulator(
    emulator: KubeEmulator, tmp_path: Path
):
    api_client = build_client(ClientSettings(str(emulator.write_kubeconfig(tmp_path / "kc"))))
    try:
        version = k8s.VersionApi(api_client).get_code(_request_timeout=5)
        assert version.git_version.startswith("v1.") and isinstance(version.minor, str)
        pods = k8s.CoreV1Api(api_client).list_pod_for_all_namespaces(limit=4, _request_timeout=5)
        assert len(pods.items) == 4 and pods.metadata._continue
        deployments = k8s.AppsV1Api(api_client).list_namespaced_deployment(
            "team-a", _request_timeout=5
        )
        assert [d.metadata.name for d in deployments.items] == ["web"]
        groups = k8s.ApisApi(api_client).get_api_versions(_request_timeout=5)
        autoscaling = next(g for g in groups.groups if g.name == "autoscaling")
        assert autoscaling.preferred_version.version in [v.version for v in autoscaling.versions]
        # DynamicClient caches discovery in a file named after the host: give it its own.
        dynamic = DynamicClient(api_client, cache_file=str(tmp_path / "dynamic-discovery.json"))
        widgets = dynamic.resources.get(api_version="example.com/v1", kind="Widget")
        assert [w.metadata.name for w in widgets.get(_request_timeout=5).items] == ["gizmo"]
    finally:
        api_client.close()


@pytest.mark.parametrize("count", [0, 1, 3, 4])
def test_exact_page_boundaries(emulator: KubeEmulator, kubeconfig: Path, count: int):
    state = emulator.state
    for i in range(4):
        state.delete("v1", "ConfigMap", "team-a", f"cfg-{i}")
    state.delete("v1", "ConfigMap", "team-b", "cfg-b")
    for i in range(count):
        state.put(config_map(f"page-{i}"))
    seen = _paths(state)
    snapshot = collect(fast_options(kubeconfig, page_size=3, include_kinds=("ConfigMap",)))
    assert snapshot.header.counts.get("ConfigMap", 0) == count
    pages = [i for i in seen if i.verb == "list"]
    assert len(pages) == max(1, -(-count // 3))  # 0,1,3 -> one page; 4 -> two
    names = sorted(key.name for key in snapshot.objects)
    assert names == sorted(f"page-{i}" for i in range(count))


# ----- continue tokens -----------------------------------------------------------------------


def test_expired_token_mid_list_restarts_without_duplicates_or_gaps(
    emulator: KubeEmulator, kubeconfig: Path
):
    state = emulator.state
    for i in range(4, 12):
        state.put(config_map(f"cfg-{i}"))

    def churn(_: RequestInfo) -> None:
        # between pages: one delivered object goes, one is changed, one is new
        state.delete("v1", "ConfigMap", "team-a", "cfg-0")
        state.put(config_map("cfg-1", value="changed"))
        state.put(config_map("cfg-new"))

    state.add_fault(
        kind="ConfigMap", on="continue", action="expire", after=1, times=1, callback=churn
    )
    builder = SnapshotBuilder(load_profile())
    sink = RecordingSink(builder)
    with KubeCollector(fast_options(kubeconfig, page_size=3)) as collector:
        collector.collect(sink)
        assert collector.restarts == 1
    snapshot = builder.build(collected_at="")
    assert snapshot.digest == expected(state).digest  # nothing lost, nothing stale, no dupes
    assert sink.discards == 6  # the two pages delivered before the 410 were taken back


def test_expired_status_is_the_real_one(emulator: KubeEmulator):
    url = f"{emulator.url}/api/v1/configmaps?limit=2"
    with urllib.request.urlopen(url, timeout=5) as response:
        token = json.load(response)["metadata"]["continue"]
    emulator.state.expire_continue_tokens()
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{url}&continue={token}", timeout=5)
    body = json.loads(caught.value.read())
    assert caught.value.code == 410
    assert body["kind"] == "Status" and body["reason"] == "Expired" and body["code"] == 410
    assert body["message"].startswith("The provided continue parameter is too old")
    assert body["metadata"]["continue"]  # the inconsistent-continue token the real server sends


def test_token_that_keeps_expiring_is_recorded_and_the_rest_goes_on(
    emulator: KubeEmulator, kubeconfig: Path
):
    emulator.state.add_fault(kind="Pod", on="continue", action="expire")
    snapshot = collect(fast_options(kubeconfig, page_size=2, max_restarts=2))
    assert errors_by_kind(snapshot) == {"Pod": "expired"}
    assert "Pod" not in snapshot.header.counts  # partial pages were discarded
    assert snapshot.header.counts["ConfigMap"] == 5


# ----- per-kind failures ---------------------------------------------------------------------


def test_forbidden_and_missing_kinds_are_recorded(emulator: KubeEmulator, kubeconfig: Path):
    state = emulator.state
    state.add_fault(kind="Secret", status=403)
    state.add_fault(kind="Widget.example.com", status=404)
    snapshot = collect(fast_options(kubeconfig))
    errors = {e.kind: e for e in snapshot.header.errors}
    assert errors["Secret"].reason == "forbidden"
    assert 'cannot list resource "secrets"' in errors["Secret"].message
    assert errors["Widget.example.com"].reason == "not-found"
    assert "Secret" not in snapshot.header.counts
    assert snapshot.header.counts["Pod"] == 9 and snapshot.header.counts["ConfigMap"] == 5


def test_429_retry_after_is_honoured(emulator: KubeEmulator, kubeconfig: Path):
    emulator.state.add_fault(kind="Pod", status=429, retry_after=2, times=2)
    sleep = RecordingSleep()
    snapshot = collect(fast_options(kubeconfig), sleep=sleep)
    assert snapshot.header.errors == ()
    assert snapshot.header.counts["Pod"] == 9
    assert sleep.delays == [2.0, 2.0]


def test_throttling_beyond_the_kind_budget_is_recorded(emulator: KubeEmulator, kubeconfig: Path):
    emulator.state.add_fault(kind="Pod", status=429, retry_after=30)
    sleep = RecordingSleep()
    snapshot = collect(fast_options(kubeconfig, kind_budget=5.0), sleep=sleep)
    assert errors_by_kind(snapshot) == {"Pod": "throttled"}
    assert sleep.delays == []  # a Retry-After past the budget is not waited for
    assert snapshot.header.counts["ConfigMap"] == 5


def test_server_errors_back_off_with_jitter_then_succeed(emulator: KubeEmulator, kubeconfig: Path):
    emulator.state.add_fault(kind="ConfigMap", status=500, times=3)
    sleep = RecordingSleep()
    options = fast_options(kubeconfig, backoff_base=1.0, backoff_max=3.0)
    snapshot = collect(options, sleep=sleep)
    assert snapshot.header.errors == ()
    assert snapshot.header.counts["ConfigMap"] == 5
    assert len(sleep.delays) == 3
    for delay, cap in zip(sleep.delays, (1.0, 2.0, 3.0), strict=True):
        assert cap / 2 <= delay <= cap  # exponential, capped, jittered


def test_slow_responses_time_out_and_are_retried(emulator: KubeEmulator, kubeconfig: Path):
    emulator.state.add_fault(kind="ConfigMap", delay=1.0, times=1)
    emulator.state.add_fault(kind="Secret", delay=1.0)
    options = fast_options(
        kubeconfig, request_timeout=0.3, kind_budget=1.5, include_kinds=("ConfigMap", "Secret")
    )
    snapshot = collect(options)
    assert snapshot.header.counts["ConfigMap"] == 5  # one slow answer, then a good one
    assert errors_by_kind(snapshot) == {"Secret": "timeout"}


@pytest.mark.parametrize("aggregated", [True, False], ids=["aggregated", "legacy-discovery"])
def test_unavailable_aggregated_api_is_recorded(
    emulator: KubeEmulator, kubeconfig: Path, aggregated: bool
):
    emulator.aggregated_discovery = aggregated
    emulator.state.unavailable.add("metrics.k8s.io/v1beta1")  # metrics-server is down
    snapshot = collect(fast_options(kubeconfig), profile="minimal")
    assert errors_by_kind(snapshot) == {"*.metrics.k8s.io": "unavailable"}
    assert snapshot.header.counts["Pod"] == 9


def test_objects_that_fail_canonicalization_are_recorded_not_fatal(
    emulator: KubeEmulator, kubeconfig: Path
):
    put_nameless_config_map(emulator.state)
    snapshot = collect(fast_options(kubeconfig))
    assert errors_by_kind(snapshot) == {"ConfigMap": "invalid"}
    assert snapshot.header.counts["ConfigMap"] == 5


# ----- whole-collection failures -------------------------------------------------------------


def test_server_dying_mid_list_fails_the_collection(emulator: KubeEmulator, kubeconfig: Path):
    emulator.state.add_fault(kind="Pod", on="continue", action="die")
    builder = SnapshotBuilder(load_profile())
    with (
        pytest.raises(CollectionError) as caught,
        KubeCollector(fast_options(kubeconfig, page_size=2)) as collector,
    ):
        collector.collect(builder)
    assert "lost the connection to the API server" in _one_line(caught.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_one_clear_error(tmp_path: Path):
    port = _closed_port()
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    with pytest.raises(CollectionError) as caught:
        collect(fast_options(path, request_timeout=1.0))
    message = _one_line(caught.value)
    assert "cannot reach the Kubernetes API" in message and "refused" in message.lower()


@pytest.mark.parametrize(
    ("content", "context", "words"),
    [
        (None, None, "no such file"),
        ("clusters: [\n  - {", None, "cannot load kubeconfig"),
        ("apiVersion: v1\nkind: Config\ncontexts: []\nclusters: []\nusers: []\n", None, "context"),
        ("apiVersion: v1\nkind: Config\ncontexts: []\nclusters: []\nusers: []\n", "nope", "nope"),
    ],
)
def test_bad_kubeconfig_is_one_clear_error(
    tmp_path: Path, content: str | None, context: str | None, words: str
):
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CollectionError) as caught:
        collect(fast_options(path, context=context))
    assert words in _one_line(caught.value)


def test_rejected_credentials_are_one_clear_error(tmp_path: Path):
    with KubeEmulator(ClusterState([config_map("a")]), token="current") as emu:
        path = emu.write_kubeconfig(tmp_path / "kubeconfig", token="expired")
        with pytest.raises(CollectionError) as caught:
            collect(fast_options(path))
    assert "rejected the credentials (401 Unauthorized)" in _one_line(caught.value)


def test_in_cluster_outside_a_cluster_is_one_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(CollectionError) as caught:
        collect(KubeOptions(in_cluster=True))
    assert "in-cluster configuration" in _one_line(caught.value)


def test_bad_options_are_input_errors():
    with pytest.raises(InputError):
        KubeOptions(page_size=0)
    with pytest.raises(InputError):
        KubeOptions(in_cluster=True, context="x")
    with pytest.raises(InputError):
        KubeOptions(exclude_kinds=(".apps",))


# ----- scope ---------------------------------------------------------------------------------


def test_kind_filters(emulator: KubeEmulator, kubeconfig: Path):
    seen = _paths(emulator.state)
    options = fast_options(
        kubeconfig,
        include_kinds=("Pod", "ConfigMap", "Gadget.example.com"),
        exclude_kinds=("ConfigMap",),
    )
    snapshot = collect(options)
    assert set(snapshot.header.counts) == {"Pod"}
    assert errors_by_kind(snapshot) == {"Gadget.example.com": "not-found"}
    assert {i.resource.kind_ref for i in seen if i.verb == "list" and i.resource} == {"Pod"}


def test_namespace_filters(emulator: KubeEmulator, kubeconfig: Path):
    seen = _paths(emulator.state)
    only_b = collect(fast_options(kubeconfig, include_namespaces=("team-b",)))
    namespaces = {key.namespace for key in only_b.objects}
    assert namespaces == {"", "team-b"}
    assert {k.name for k in only_b.objects if k.kind == "Namespace"} == {"team-b"}
    assert "Node" in only_b.header.counts  # cluster-scoped kinds are not namespace-filtered
    assert any(i.path == "/api/v1/namespaces/team-b/pods" for i in seen)

    not_system = collect(fast_options(kubeconfig, exclude_namespaces=("kube-system",)))
    assert "kube-system" not in {key.namespace for key in not_system.objects}
    assert "kube-system" not in {k.name for k in not_system.objects if k.kind == "Namespace"}
    assert not_system.header.counts["Pod"] == 8


# ----- discovery cache, paging and memory ----------------------------------------------------


def test_discovery_cache_is_per_environment_and_invalidated(
    emulator: KubeEmulator, kubeconfig: Path, tmp_path: Path
):
    emulator.aggregated_discovery = False  # the cache serves servers without it (pre-1.26)
    state = emulator.state
    seen = _paths(state)
    options = fast_options(kubeconfig, discovery_cache_dir=tmp_path / "state")
    first = collect(options)
    full = sum(1 for i in seen if i.verb == "discovery")
    seen.clear()
    second = collect(options)
    assert sum(1 for i in seen if i.verb == "discovery") == 2  # /api and /apis only
    assert first.digest == second.digest
    assert json.loads((tmp_path / "state" / CACHE_FILE).read_text())["server"] == emulator.url
    # a kind that vanished from the server drops the cache; the next cycle rediscovers
    state.add_fault(kind="Widget.example.com", status=404, times=1)
    collect(options)
    assert not (tmp_path / "state" / CACHE_FILE).exists()
    seen.clear()
    collect(options)
    assert sum(1 for i in seen if i.verb == "discovery") == full


def test_pages_reach_the_sink_as_they_arrive(emulator: KubeEmulator, kubeconfig: Path):
    state = emulator.state
    for i in range(20):
        state.put(config_map(f"many-{i}"))
    sink = RecordingSink(SnapshotBuilder(load_profile()))
    state.hooks.append(lambda info: sink.events.append(f"request {info.verb}"))
    options = fast_options(kubeconfig, page_size=5, concurrency=1, include_kinds=("ConfigMap",))
    with KubeCollector(options) as collector:
        collector.collect(sink)
    trail = sink.events
    first_add = trail.index("add")
    last_list = max(i for i, e in enumerate(trail) if e == "request list")
    assert first_add < last_list  # objects were handed over before the last page was fetched
    assert sink.adds == 25


def test_concurrent_collections_of_two_environments(tmp_path: Path):
    first = ClusterState([config_map("only-in-first")])
    second = ClusterState([config_map("only-in-second")])
    with KubeEmulator(first) as a, KubeEmulator(second) as b:
        configs = [a.write_kubeconfig(tmp_path / "a"), b.write_kubeconfig(tmp_path / "b")]
        urls = (a.url, b.url)
        results: dict[int, Any] = {}

        def run(index: int) -> None:
            results[index] = collect(fast_options(configs[index], include_kinds=("ConfigMap",)))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [k.name for k in results[0].objects] == ["only-in-first"]
    assert [k.name for k in results[1].objects] == ["only-in-second"]
    assert k8s.Configuration.get_default_copy().host not in urls  # no process-wide default


def test_profile_scope_is_applied_before_listing(
    emulator: KubeEmulator, kubeconfig: Path, tmp_path: Path
):
    profile = tmp_path / "edge.yaml"
    profile.write_text(
        "name: edge\nversion: 1\nextends: default\n"
        "include_kinds: [Lease.coordination.k8s.io]\n"
        "exclude_namespaces:\n  - {namespace: kube-system, why: platform noise}\n"
    )
    seen = _paths(emulator.state)
    snapshot = collect(fast_options(kubeconfig), profile=str(profile))
    assert snapshot.header.counts["Lease.coordination.k8s.io"] == 1  # turned back on
    assert "kube-system" not in {key.namespace for key in snapshot.objects}
    pod_lists = [i for i in seen if i.verb == "list" and i.resource and i.resource.kind == "Pod"]
    assert [i.path for i in pod_lists] == ["/api/v1/pods"]
    assert pod_lists[0].query["fieldSelector"] == "metadata.namespace!=kube-system"
    assert load_profile(str(profile)).keeps_namespace("team-a")


# ----- the emulator as a tool ----------------------------------------------------------------


def _dump(tmp_path: Path) -> Path:
    """A kubectl List dump with a kind no built-in table knows (served from apiVersion/kind)."""
    items = [
        {
            **config_map(f"dumped-{i}"),
            "metadata": {
                "name": f"dumped-{i}",
                "namespace": "apps",
                "uid": f"00000000-0000-0000-0000-00000000000{i}",
                "creationTimestamp": "2024-05-01T10:00:00Z",
                "resourceVersion": str(100 + i),
            },
        }
        for i in range(3)
    ]
    items.append(
        {
            "apiVersion": "acme.io/v1alpha1",
            "kind": "Rocket",
            "metadata": {
                "name": "falcon",
                "uid": "00000000-0000-0000-0000-0000000000ff",
                "creationTimestamp": "2024-05-01T10:00:00Z",
            },
            "spec": {"stages": 2},
        }
    )
    path = tmp_path / "dump.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


def test_emulator_loaded_from_a_dump_collects_like_the_file_collector(tmp_path: Path):
    dump = _dump(tmp_path)
    state = ClusterState(load_fixture([str(dump)]))
    assert state.resource("acme.io", "v1alpha1", "rockets") is not None  # derived, cluster-scoped
    with KubeEmulator(state) as emu:
        live = collect(fast_options(emu.write_kubeconfig(tmp_path / "kc")))
    from_file = SnapshotBuilder(load_profile())
    FileCollector([dump]).collect(from_file)
    assert live.digest == from_file.build().digest
    assert live.header.counts == {"ConfigMap": 3, "Rocket.acme.io": 1}


def test_emulator_runs_by_hand(tmp_path: Path):
    dump = _dump(tmp_path)
    kc = tmp_path / "kc"
    command = [sys.executable, "-m", "tools.kube_emulator", "--fixture", str(dump), "--port", "0"]
    server = subprocess.Popen(
        [*command, "--kubeconfig", str(kc)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving 4 objects at http://127.0.0.1:")
        snapshot = collect(fast_options(kc))
        assert len(snapshot) == 4
    finally:
        server.terminate()
        server.wait(timeout=10)
