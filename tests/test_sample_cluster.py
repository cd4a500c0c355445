"""The sample-cluster generator (snapsync/sample_cluster): real shapes, sizes, mixes and churn.

tests/fixtures/real/ holds small objects written in the shape `kubectl get -o json` prints
(sorted keys, 4-space indent), from knowledge of real API output: a Deployment's Pod with
managedFields and ownerReferences, the Deployment, a Node, a Secret, a ConfigMap, an Event, a
Service, its Endpoints and a cert-manager Certificate. The generator must produce at least the
structure each of them has.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import build_snapshot
from snapsync.sim.sample_cluster import (
    CHURN_LEVELS,
    RESOURCES,
    ChangeSet,
    ResourceInfo,
    SampleCluster,
)
from snapsync.sim.sample_cluster.__main__ import main

FIXTURES = Path(__file__).parent / "fixtures" / "real"
EXAMPLE = Path(__file__).parent.parent / "examples" / "sample-cluster.json"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")
HEARTBEAT_KINDS = {"Node", "Lease"}

Key = tuple[str, str, str, str]


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def by_key(objects: list[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    return {key_of(o): o for o in objects}


def dump(cluster: SampleCluster) -> str:
    return json.dumps(cluster.objects(), sort_keys=True)


@pytest.fixture(scope="module")
def application() -> SampleCluster:
    cluster = SampleCluster(objects=1500, shape="application", seed=1)
    cluster.step("steady")
    return cluster


@pytest.fixture(scope="module")
def app_objects(application: SampleCluster) -> list[dict[str, Any]]:
    return application.objects()


@pytest.fixture(scope="module")
def platform() -> SampleCluster:
    return SampleCluster(objects=1500, shape="platform", seed=1)


# --- real shapes ------------------------------------------------------------------------------


def structure(obj: dict[str, Any]) -> set[str]:
    """The key paths that make up an object's shape: top level, metadata, spec and status."""
    paths = set(obj)
    for part in ("metadata", "spec", "status"):
        if isinstance(obj.get(part), dict):
            paths.update(f"{part}.{k}" for k in obj[part])
    for entry in obj["metadata"].get("managedFields", ()):
        paths.update(f"managedFields.{k}" for k in entry)
    return paths


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_generated_objects_have_the_structure_of_real_ones(
    fixture: Path, app_objects: list[dict[str, Any]]
) -> None:
    real = json.loads(fixture.read_text())
    wanted = structure(real)
    candidates = [o for o in app_objects if o["kind"] == real["kind"]]
    assert candidates, f"the generator makes no {real['kind']}"
    best = min(candidates, key=lambda o: len(wanted - structure(o)))
    assert wanted <= structure(best), f"{real['kind']} lacks {sorted(wanted - structure(best))}"
    assert best["apiVersion"] == real["apiVersion"]


def test_values_are_formatted_as_the_api_serves_them(app_objects: list[dict[str, Any]]) -> None:
    for obj in app_objects:
        meta = obj["metadata"]
        uuid.UUID(meta["uid"])
        assert meta["resourceVersion"].isdigit()
        for path, value in leaves(obj):
            if path.endswith(("Time", "Timestamp", "startedAt", "finishedAt", "time")):
                assert value is None or TIMESTAMP.fullmatch(value), (key_of(obj), path, value)
    pods = [o for o in app_objects if o["kind"] == "Pod"]
    for pod in pods:
        for status in pod["status"]["containerStatuses"]:
            assert re.fullmatch(r"[\w./-]+@sha256:[0-9a-f]{64}", status["imageID"])
            assert status["containerID"].startswith("containerd://")
    generated = [p for p in pods if "generateName" in p["metadata"]]
    assert generated
    for pod in generated:
        suffix = pod["metadata"]["name"].removeprefix(pod["metadata"]["generateName"])
        assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{5}", suffix)


def leaves(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        if path.endswith("fieldsV1"):
            return []
        return [leaf for k, v in node.items() for leaf in leaves(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [leaf for v in node for leaf in leaves(v, path)]
    return [(path, node)]


def test_owner_references_form_real_chains(app_objects: list[dict[str, Any]]) -> None:
    objects = app_objects
    uids = {o["metadata"]["uid"]: o for o in objects}
    chains: Counter[str] = Counter()
    for obj in objects:
        for ref in obj["metadata"].get("ownerReferences", ()):
            owner = uids.get(ref["uid"])
            assert owner is not None, f"{key_of(obj)} owned by a missing {ref['kind']}"
            assert (owner["kind"], owner["metadata"]["name"]) == (ref["kind"], ref["name"])
            if obj["kind"] == "Pod":
                grand = owner["metadata"].get("ownerReferences", [{}])[0].get("kind", "")
                chains["->".join(filter(None, (grand, owner["kind"], "Pod")))] += 1
    for chain in ("Deployment->ReplicaSet->Pod", "StatefulSet->Pod", "DaemonSet->Pod"):
        assert chains[chain], chain
    assert chains["CronJob->Job->Pod"]


def test_objects_are_valid_for_the_official_client_models(
    app_objects: list[dict[str, Any]],
) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    api = kubernetes.client.ApiClient()
    models = {
        "Pod": "V1Pod",
        "Node": "V1Node",
        "Deployment": "V1Deployment",
        "ReplicaSet": "V1ReplicaSet",
        "StatefulSet": "V1StatefulSet",
        "DaemonSet": "V1DaemonSet",
        "Job": "V1Job",
        "CronJob": "V1CronJob",
        "Service": "V1Service",
        "Endpoints": "V1Endpoints",
        "EndpointSlice": "V1EndpointSlice",
        "Event": "CoreV1Event",
        "Secret": "V1Secret",
        "ConfigMap": "V1ConfigMap",
        "PersistentVolume": "V1PersistentVolume",
        "PersistentVolumeClaim": "V1PersistentVolumeClaim",
        "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
        "PodDisruptionBudget": "V1PodDisruptionBudget",
        "Ingress": "V1Ingress",
        "Lease": "V1Lease",
        "CustomResourceDefinition": "V1CustomResourceDefinition",
    }
    first: dict[str, dict[str, Any]] = {}
    for obj in app_objects:
        first.setdefault(obj["kind"], obj)
    for kind, model in models.items():
        typed = deserialize(api, first[kind], model)
        assert typed.metadata.name == first[kind]["metadata"]["name"]


def deserialize(api: Any, obj: dict[str, Any], model: str) -> Any:
    """ApiClient.deserialize of a fake response, across client versions (text or response)."""
    text = json.dumps(obj)
    try:
        return api.deserialize(text, model, "application/json")
    except TypeError:

        class Response:
            data = text

        return api.deserialize(Response(), model)


def test_resources_describe_every_generated_kind(
    app_objects: list[dict[str, Any]], platform: SampleCluster
) -> None:
    served = {(r.api_version, r.kind): r for r in RESOURCES}
    assert all(isinstance(r, ResourceInfo) for r in RESOURCES)
    assert len(served) == len(RESOURCES)
    for obj in app_objects + platform.objects():
        info = served[(obj["apiVersion"], obj["kind"])]
        assert info.namespaced == bool(obj["metadata"].get("namespace"))
    for info in RESOURCES:
        assert info.plural == info.plural.lower() and info.plural.endswith("s")
        assert {"get", "list", "watch"} <= set(info.verbs)
    assert served[("v1", "Pod")].short_names == ("po",)
    assert served[("apps/v1", "Deployment")].short_names == ("deploy",)


# --- sizes and mixes ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["application", "platform"])
@pytest.mark.parametrize("objects", [300, 1200])
def test_size_is_what_was_asked(shape: str, objects: int) -> None:
    cluster = SampleCluster(objects=objects, shape=shape, seed=3)
    assert abs(len(cluster.objects()) - objects) <= objects * 0.02


def test_at_least_fifteen_kinds(app_objects: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in app_objects}
    assert len(kinds) >= 15
    assert {"CustomResourceDefinition", "Certificate", "Event", "Lease"} <= kinds


def test_platform_bytes_are_secrets_and_config_and_objects_are_events(
    platform: SampleCluster,
) -> None:
    size: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for obj in platform.objects():
        size[obj["kind"]] += len(json.dumps(obj))
        count[obj["kind"]] += 1
    assert (size["Secret"] + size["ConfigMap"]) / sum(size.values()) >= 0.6
    assert count["Event"] / sum(count.values()) >= 0.5
    helm = [o for o in platform.objects() if o.get("type") == "helm.sh/release.v1"]
    assert helm and all(o["metadata"]["name"].startswith("sh.helm.release.v1.") for o in helm)


def test_application_is_pod_heavy(app_objects: list[dict[str, Any]]) -> None:
    count = Counter(o["kind"] for o in app_objects)
    size: Counter[str] = Counter()
    for obj in app_objects:
        size[obj["kind"]] += len(json.dumps(obj))
    assert count.most_common(1)[0][0] == "Pod"
    assert size.most_common(1)[0][0] == "Pod"


# --- determinism and churn ------------------------------------------------------------------


def test_same_seed_same_bytes_after_the_same_steps() -> None:
    one = SampleCluster(objects=400, shape="platform", seed=9)
    two = SampleCluster(objects=400, shape="platform", seed=9)
    assert dump(one) == dump(two)
    for level in ("steady", "busy", "quiet", "steady"):
        assert one.step(level, 2.0) == two.step(level, 2.0)
    assert dump(one) == dump(two)
    assert one.now == two.now and one.resource_version == two.resource_version
    assert dump(one) != dump(SampleCluster(objects=400, shape="platform", seed=10))


@pytest.mark.parametrize("level", CHURN_LEVELS)
def test_change_set_is_the_diff_of_objects(level: str) -> None:
    cluster = SampleCluster(objects=600, shape="application", seed=4)
    for _ in range(2):
        start_rv, start_time = cluster.resource_version, cluster.now
        before = by_key(cluster.objects())
        changes = cluster.step(level)
        after = by_key(cluster.objects())
        assert isinstance(changes, ChangeSet)
        assert set(changes.added) == after.keys() - before.keys()
        assert set(changes.deleted) == before.keys() - after.keys()
        modified = {k for k in after.keys() & before.keys() if after[k] != before[k]}
        assert set(changes.modified) == modified
        assert (cluster.now - start_time).total_seconds() == 60
        for key in (*changes.added, *changes.modified):
            assert int(after[key]["metadata"]["resourceVersion"]) > start_rv
        versions = [o["metadata"]["resourceVersion"] for o in after.values()]
        assert len(set(versions)) == len(versions)
        assert max(map(int, versions)) <= cluster.resource_version


def test_steady_changes_a_few_percent() -> None:
    cluster = SampleCluster(objects=3000, shape="application", seed=5)
    pods = sum(1 for k in cluster.object_keys() if k[1] == "Pod")
    changed: list[float] = []
    pod_changes: list[int] = []
    for _ in range(5):
        changes = cluster.step("steady")
        keys = [k for k in (*changes.added, *changes.modified, *changes.deleted)]
        changed.append(sum(1 for k in keys if k[1] not in HEARTBEAT_KINDS) / len(cluster))
        pod_changes.append(sum(1 for k in changes.modified if k[1] == "Pod"))
    assert 0.01 <= sum(changed) / len(changed) <= 0.12
    assert 0.01 * pods <= sum(pod_changes) / len(pod_changes) <= 0.06 * pods


def test_quiet_changes_only_what_the_default_profile_drops_or_events() -> None:
    cluster = SampleCluster(objects=600, shape="application", seed=6)
    profile = load_profile()
    before = build_snapshot(cluster.objects(), profile, collected_at="")
    changes = cluster.step("quiet")
    assert {k[1] for k in changes.modified} >= {"Node", "Lease"}
    assert not changes.added and not changes.deleted
    after = build_snapshot(cluster.objects(), profile, collected_at="")
    differing = {k.kind for k in after.keys if before.objects[k].digest != after.objects[k].digest}
    assert differing <= {"Event"}


def test_deleted_pods_are_replaced_under_new_names() -> None:
    cluster = SampleCluster(objects=1000, shape="application", seed=7)
    replaced = 0
    for _ in range(3):
        changes = cluster.step("busy")
        gone = {k for k in changes.deleted if k[1] == "Pod"}
        new = {k for k in changes.added if k[1] == "Pod"}
        replaced += len(new)
        assert not gone & {k for k in new if not k[3].split("-")[-1].isdigit()}
        objects = cluster.objects()
        pods_of: Counter[str] = Counter(
            o["metadata"]["ownerReferences"][0]["uid"] for o in objects if o["kind"] == "Pod"
        )
        for rs in (o for o in objects if o["kind"] == "ReplicaSet"):
            assert pods_of[rs["metadata"]["uid"]] == rs["spec"]["replicas"], key_of(rs)
    assert replaced


def test_writes_stamp_the_managers_time() -> None:
    cluster = SampleCluster(objects=800, shape="application", seed=8)
    changes = cluster.step("steady")
    stamp = cluster.now.strftime("%Y-%m-%dT%H:%M")
    for key in changes.modified:
        if key[1] == "Node":
            node = cluster.get(key)
            assert node is not None
            kubelet = [e for e in node["metadata"]["managedFields"] if e.get("subresource")]
            beats = {c["lastHeartbeatTime"] for c in node["status"]["conditions"]}
            assert {e["time"] for e in kubelet} == beats
            assert all(b.startswith(stamp[:13]) for b in beats)


def test_callers_get_copies() -> None:
    cluster = SampleCluster(objects=200, shape="application", seed=1)
    first = cluster.objects()
    first[0]["metadata"]["name"] = "changed"
    first[0]["metadata"].get("managedFields", [{}])[0].clear()
    assert json.dumps(cluster.objects()) == json.dumps(cluster.list_document()["items"])
    assert cluster.objects()[0]["metadata"]["name"] != "changed"
    doc = cluster.list_document()
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List"
    assert doc["metadata"] == {"resourceVersion": ""}
    assert len(doc["items"]) == len(cluster)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        SampleCluster(objects=100, shape="moon")
    with pytest.raises(ValueError, match="churn"):
        SampleCluster(objects=200).step("hurricane")


# --- snapsync and the command line ----------------------------------------------------------------


@pytest.mark.parametrize("shape", ["application", "platform"])
def test_every_object_canonicalizes(shape: str) -> None:
    cluster = SampleCluster(objects=700, shape=shape, seed=2)
    cluster.step("busy")
    snapshot = build_snapshot(cluster.objects(), load_profile())
    assert len(snapshot) == len(cluster) - sum(
        1 for k in cluster.object_keys() if k[1] in ("Lease", "Endpoints")
    )


def test_command_line_writes_the_list(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    argv = ["--objects", "300", "--shape", "platform", "--seed", "2", "--steps", "2"]
    assert main([*argv, "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    cluster = SampleCluster(objects=300, shape="platform", seed=2)
    cluster.step("steady")
    cluster.step("steady")
    assert doc == cluster.list_document()


def test_the_example_dump_is_the_generator_output() -> None:
    doc = json.loads(EXAMPLE.read_text())
    cluster = SampleCluster(objects=300, shape="application", seed=1)
    for _ in range(3):
        cluster.step("steady")
    assert doc == cluster.list_document()
    assert EXAMPLE.stat().st_size < 1_500_000
