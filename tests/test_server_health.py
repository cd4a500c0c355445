"""The server's health view (snapsync/server/health.py; not the agent's heartbeat, which is
tests/test_health.py): computed from a stored snapshot of broken pods, workloads, nodes, claims
and Events (tests/support_broken.py, real object shapes), served by a real server on loopback
through the API, the fleet list, the page and /metrics; and the object page's YAML and JSON."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import KindFailure, Snapshot, build_snapshot
from snapsync.kubeview import age, node_status, pod_state
from snapsync.server import ServerSettings
from snapsync.server.environments import AgentSecrets
from snapsync.server.health import EVENT_WINDOW, MAX_LISTED, assess
from snapsync.server.store import Stores, open_store
from tests.support_broken import (
    COLLECTED,
    COLLECTED_AT,
    broken_objects,
    crash_looping_pod,
    event,
    real,
    store_broken,
)
from tests.support_postgres import (  # noqa: F401 (fixtures)
    postgres_dsn,
    postgres_server,
    sql_store_fixture,
)
from tests.support_server import live_server

TOKEN = "health-test-token-0123"


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[tuple[ObjectKey, Any]]]:
    out: dict[str, list[tuple[ObjectKey, Any]]] = {}
    for obj in objects:
        key = ObjectKey.of(obj)
        out.setdefault(key.kind_ref, []).append((key, obj))
    return out


def listed(section: Any) -> list[tuple[str, str]]:
    return [(str(p.key), p.status) for p in section.problems]


# ----- the computation ---------------------------------------------------------------------------


def test_broken_objects_are_listed_and_healthy_ones_are_not() -> None:
    health = assess(by_kind(broken_objects()), COLLECTED)
    pods, workloads, nodes, claims, events = health.sections
    assert listed(pods) == [
        ("Pod/shop/checkout-6c9f7d5b8-crash", "CrashLoopBackOff"),  # crash-looping first
        ("Pod/shop/checkout-6c9f7d5b8-pend", "Pending"),  # then by key
        ("Pod/shop/checkout-6c9f7d5b8-pull", "ImagePullBackOff"),
    ]
    crash = pods.problems[0]
    assert (crash.restarts, crash.ready) == (14, "0/1")
    assert pods.problems[1].detail == "0/3 nodes are available: 3 Insufficient cpu."
    assert pods.checked == 5  # the running and the finished pod are fine
    assert listed(workloads) == [("Deployment.apps/shop/payments", "2 unavailable")]
    assert workloads.problems[0].ready == "1/3"
    assert listed(nodes) == [("Node/worker-3", "NotReady")]
    assert nodes.problems[0].detail == "Kubelet stopped posting node status."
    assert listed(claims) == [("PersistentVolumeClaim/shop/data-postgres-0", "Pending")]
    # the readiness-probe Warning 6 min before collection; not the one 3 h before, not Normal
    assert listed(events) == [("Pod/shop/checkout-6c9f7d5b8-q7w2x", "Unhealthy")]
    assert events.problems[0].count == 7
    assert str(events.problems[0].event).startswith("Event/shop/checkout-6c9f7d5b8-q7w2x.")
    assert (health.badge, events.checked) == ("failing", 3)


def test_the_event_window_is_the_hour_before_collection_not_now() -> None:
    """The same snapshot gives the same view a year later: time is the collection's."""
    inside = event("a.1", "2024-04-20T10:05:01Z", "2024-04-20T10:05:01Z")
    outside = event("a.2", "2024-04-20T10:04:59Z", "2024-04-20T10:04:59Z")
    health = assess(by_kind([inside, outside]), COLLECTED)
    assert [p.event for p in health.sections[4].problems] == [ObjectKey.of(inside)]
    assert COLLECTED - EVENT_WINDOW == 1713607500.0
    assert health.badge == "warning"  # only Events: a warning, not failing


def test_badges() -> None:
    healthy = [real(name) for name in ("pod", "deployment", "node", "service")]
    assert assess(by_kind(healthy), COLLECTED).badge == "ok"
    assert assess(by_kind([crash_looping_pod()]), COLLECTED).badge == "failing"
    assert assess({}, COLLECTED).badge == "ok"


def test_long_lists_keep_the_worst_and_count_the_rest() -> None:
    pods = []
    for i in range(MAX_LISTED + 5):
        pod = crash_looping_pod()
        pod["metadata"]["name"] = f"crash-{i:03d}"
        pod["status"]["containerStatuses"][0]["restartCount"] = i
        pods.append(pod)
    section = assess(by_kind(pods), COLLECTED).sections[0]
    assert section.total == MAX_LISTED + 5 and len(section.problems) == MAX_LISTED
    assert section.problems[0].restarts == MAX_LISTED + 4


def test_malformed_objects_are_read_without_raising() -> None:
    junk: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "status": "nope"},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "b"}, "status": []},
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "c"}, "type": "Warning"},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": 3},
    ]
    health = assess(by_kind(junk), COLLECTED)
    assert health.counts() == {"pods": 1, "workloads": 1, "nodes": 1, "claims": 0, "events": 0}


def test_kubectl_readings() -> None:
    init = real("pod")
    init["spec"]["initContainers"] = [{"name": "migrate"}, {"name": "seed"}]
    init["status"]["initContainerStatuses"] = [
        {"name": "migrate", "restartCount": 2, "state": {"terminated": {"exitCode": 0}}},
        {"name": "seed", "restartCount": 1, "state": {"running": {}}},
    ]
    state = pod_state(init)
    assert (state.status, state.restarts) == ("Init:1/2", 3)
    gone = real("pod")
    gone["metadata"]["deletionTimestamp"] = "2024-04-20T11:00:00Z"
    assert pod_state(gone).status == "Terminating"
    assert pod_state(real("pod")).status == "Running"
    cordoned = real("node")
    cordoned["spec"] = {"unschedulable": True}
    assert node_status(cordoned) == "Ready,SchedulingDisabled"
    assert node_status({"kind": "Node"}) == "Unknown"
    spans = [59, 150, 600, 3 * 3600 - 60, 5 * 3600 + 120, 30 * 3600, 3 * 86400 + 7200, 40 * 86400]
    assert [age(s) for s in spans] == ["59s", "2m30s", "10m", "179m", "5h2m", "30h", "3d2h", "40d"]
    assert [age(s * 86400) for s in (730, 800, 365 * 9)] == ["2y", "2y70d", "9y"]
    assert age(None) == "<unknown>"


# ----- the store keeps the newest header ---------------------------------------------------------


def test_each_environment_shows_its_newest_collection_time_and_errors(sql_store: Stores) -> None:
    forbidden = KindFailure("Secret", "forbidden", "no")
    first = build_snapshot([real("pod")], load_profile("default"), collected_at=COLLECTED_AT)
    first = Snapshot(replace(first.header, errors=(forbidden,)), first.objects)
    later = "2024-04-20T12:00:00Z"
    second = build_snapshot([real("node")], load_profile("default"), collected_at=later)
    sql_store.commit("a", first, b"f", None, COLLECTED)
    sql_store.commit("b", first, b"f", None, COLLECTED)
    (a,) = sql_store.queries.environments(COLLECTED, only="a")
    assert (a.collected_at, a.errors) == (COLLECTED_AT, (forbidden,))
    sql_store.commit("a", second, b"f", None, COLLECTED + 60)
    found = {e.edge_id: e for e in sql_store.queries.environments(COLLECTED + 60)}
    assert (found["a"].collected_at, found["a"].errors) == (later, ())
    assert found["b"].errors == (forbidden,)  # one environment's upload leaves the other's


# ----- over HTTP ---------------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    store: Stores
    client: httpx.Client


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A real server on loopback whose SQLite store holds the broken cluster as shop-17 and a
    healthy one, with a kind it could not collect, as shop-18."""
    store = open_store(str(tmp_path / "server.db"))
    store_broken(store, "shop-17", time.time())
    healthy = build_snapshot(
        [real(name) for name in ("pod", "deployment", "node")],
        load_profile("default"),
        collected_at=COLLECTED_AT,
    )
    forbidden = KindFailure(
        "Secret", "forbidden", 'secrets is forbidden: cannot list resource "secrets"'
    )
    hostile = KindFailure("Widget.example.com", "x" * 5000, "y" * 5000)
    healthy = Snapshot(replace(healthy.header, errors=(forbidden, hostile)), healthy.objects)
    store.commit("shop-18", healthy, b"frame", None, time.time())
    settings = ServerSettings(
        secrets=AgentSecrets(store.registry, None), stores=store, api_token=TOKEN
    )
    with (
        live_server(settings) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20
        ) as client,
    ):
        yield Served(url, store, client)
    store.close()


def test_health_api(served: Served) -> None:
    doc = served.client.get("/api/v1/environments/shop-17/health").json()
    assert doc["health"] == "failing" and doc["collected_at"] == COLLECTED_AT
    assert doc["counts"] == {"pods": 3, "workloads": 1, "nodes": 1, "claims": 1, "events": 1}
    crash = doc["sections"]["pods"]["problems"][0]
    assert crash == {
        "key": "Pod/shop/checkout-6c9f7d5b8-crash",
        "kind": "Pod",
        "namespace": "shop",
        "name": "checkout-6c9f7d5b8-crash",
        "status": "CrashLoopBackOff",
        "detail": "back-off 5m0s restarting failed container=checkout",
        "restarts": 14,
        "ready": "0/1",
    }
    assert served.client.get("/api/v1/environments/shop-18/health").json()["health"] == "ok"
    missing = served.client.get("/api/v1/environments/nope/health")
    assert missing.status_code == 404 and missing.json() == {"error": "no environment 'nope'"}
    assert httpx.get(served.url + "/api/v1/environments/shop-17/health").status_code == 401


def test_fleet_list_carries_health_and_collection_errors(served: Served) -> None:
    fleet = {
        e["edge_id"]: e for e in served.client.get("/api/v1/environments").json()["environments"]
    }
    assert fleet["shop-17"]["health"] == "failing" and fleet["shop-17"]["errors"] == []
    assert fleet["shop-17"]["health_counts"]["pods"] == 3
    shop18 = fleet["shop-18"]
    assert shop18["health"] == "ok" and shop18["collected_at"] == COLLECTED_AT
    assert shop18["errors"][0] == {
        "kind": "Secret",
        "reason": "forbidden",
        "message": 'secrets is forbidden: cannot list resource "secrets"',
    }
    # what an agent sends is bounded before it is stored
    assert [len(shop18["errors"][1][f]) for f in ("reason", "message")] == [500, 500]
    one = served.client.get("/api/v1/environments/shop-18").json()
    assert one["errors"] == shop18["errors"] and one["health"] == "ok"


def test_metrics_count_collection_errors_without_naming_environments(served: Served) -> None:
    text = httpx.get(served.url + "/metrics").text
    assert "snapsync_environments_with_collection_errors 1.0" in text
    assert 'snapsync_collection_errors{reason="forbidden"} 1.0' in text
    assert 'snapsync_collection_errors{reason="other"} 1.0' in text  # the hostile reason
    assert 'snapsync_collection_errors{reason="timeout"} 0.0' in text
    assert "shop-18" not in text and "xxxx" not in text


def test_pages_show_health_errors_and_yaml(served: Served) -> None:
    fleet = served.client.get("/").text
    assert re.search(
        r'href="/env/shop-17/health" title="[^"]*Pods not ready[^"]*: 3;[^"]*">failing<', fleet
    )
    assert re.search(r'href="/env/shop-18/health" title="[^"]*">ok<', fleet)
    assert "2 kinds not collected" in fleet
    page = served.client.get("/env/shop-17/health").text
    for expected in (
        "Pods not ready or crash-looping",
        'href="/env/shop-17/object/Pod/shop/checkout-6c9f7d5b8-crash">',
        "CrashLoopBackOff",
        "Kubelet stopped posting node status.",
        'href="/env/shop-17/object/PersistentVolumeClaim/shop/data-postgres-0">',
        'href="/env/shop-17/object/Deployment.apps/shop/payments">',
        "Readiness probe failed",
    ):
        assert expected in page, expected
    assert "style=" not in page and "<script" not in page  # a strict CSP stays possible
    environment = served.client.get("/env/shop-18").text
    assert 'id="errors"' in environment and "secrets is forbidden" in environment
    object_page = served.client.get("/env/shop-17/object/Deployment.apps/shop/payments")
    shown = object_page.text.split("<pre>")[1].split("</pre>")[0]
    assert (
        yaml.safe_load(shown.replace("&#39;", "'").replace("&#34;", '"'))["spec"]["replicas"] == 3
    )
    assert shown.startswith("apiVersion: apps/v1\nkind: Deployment\n")
    assert 'href="?format=json">JSON</a>' in object_page.text
    as_json = served.client.get("/env/shop-17/object/Deployment.apps/shop/payments?format=json")
    assert (
        '"replicas": 3' in unescape(as_json.text) and 'href="?format=yaml">YAML</a>' in as_json.text
    )
