"""The delta engine on real-shaped objects: what a cycle of Kubernetes churn looks like as ops."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import jsonschema
import pytest

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import build_snapshot
from snapsync.delta.diff import (
    apply,
    apply_ops,
    delta_document,
    delta_from_document,
    diff,
    diff_objects,
)
from snapsync.delta.jsondiff import same
from snapsync.delta.patch import apply_patch
from snapsync.errors import DeltaError, InputError
from snapsync.resources import schema


def _condition(kind: str, status: str = "True") -> dict[str, Any]:
    return {
        "lastProbeTime": None,
        "lastTransitionTime": "2026-11-25T10:00:00Z",
        "status": status,
        "type": kind,
    }


def _pod(name: str = "web-7d4b9c-x2x9q") -> dict[str, Any]:
    env = [{"name": f"VAR_{i}", "value": str(i)} for i in range(8)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": {"prometheus.io/scrape": "true"},
            "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
            "name": name,
            "namespace": "shop",
        },
        "spec": {
            "containers": [
                {
                    "env": env,
                    "image": "registry.example/web:1.4.2",
                    "name": "web",
                    "ports": [
                        {"containerPort": 8080, "protocol": "TCP"},
                        {"containerPort": 9090, "protocol": "TCP"},
                    ],
                    "volumeMounts": [{"mountPath": "/etc/web", "name": "config"}],
                },
                {"image": "registry.example/proxy:2.0", "name": "proxy"},
            ],
            "nodeName": "node-3",
            "volumes": [{"configMap": {"name": "web"}, "name": "config"}],
        },
        "status": {
            "conditions": [
                _condition("Initialized"),
                _condition("Ready"),
                _condition("ContainersReady"),
                _condition("PodScheduled"),
            ],
            "containerStatuses": [
                {"name": "web", "ready": True, "restartCount": 0, "state": {"running": {}}},
            ],
            "phase": "Running",
        },
    }


def _check(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Our ops, after checking both appliers reproduce `new` exactly and leave `old` alone."""
    frozen = copy.deepcopy(old)
    ops = diff_objects(old, new)
    assert same(jsonpatch.apply_patch(old, ops), new)
    assert same(apply_ops(old, ops), new)
    assert same(old, frozen)
    return ops


def test_pod_gains_a_container_status() -> None:
    old, new = _pod(), _pod()
    status = {"name": "proxy", "ready": False, "restartCount": 0, "state": {"waiting": {}}}
    new["status"]["containerStatuses"].append(status)
    assert _check(old, new) == [
        {"op": "add", "path": "/status/containerStatuses/1", "value": status}
    ]


def test_env_var_inserted_at_front_is_one_add() -> None:
    old, new = _pod(), _pod()
    new["spec"]["containers"][0]["env"].insert(0, {"name": "FIRST", "value": "1"})
    ops = _check(old, new)
    assert ops == [
        {"op": "add", "path": "/spec/containers/0/env/0", "value": {"name": "FIRST", "value": "1"}}
    ]


def test_container_inserted_at_front_then_changed_below() -> None:
    old, new = _pod(), _pod()
    new["spec"]["containers"].insert(0, {"image": "istio/proxyv2:1.20", "name": "istio-proxy"})
    new["spec"]["containers"][1]["env"][3]["value"] = "changed"
    new["spec"]["containers"][2]["image"] = "registry.example/proxy:2.1"
    ops = _check(old, new)
    assert [op["op"] for op in ops] == ["add", "replace", "replace"]
    assert ops[1]["path"] == "/spec/containers/1/env/3/value"  # final indices, after the add
    assert ops[2]["path"] == "/spec/containers/2/image"
    positional = jsonpatch.make_patch(old, new).patch  # rewrites the shifted containers
    assert len(json.dumps(positional)) > 3 * len(json.dumps(ops))


def test_conditions_reordered_and_one_flipped() -> None:
    old, new = _pod(), _pod()
    conditions = new["status"]["conditions"]
    conditions.append(conditions.pop(0))  # Initialized goes last
    conditions[0]["status"] = "False"  # Ready
    ops = _check(old, new)
    assert ops == [
        {"op": "move", "from": "/status/conditions/0", "path": "/status/conditions/3"},
        {"op": "replace", "path": "/status/conditions/0/status", "value": "False"},
    ]


def test_ports_keyed_by_container_port_and_protocol() -> None:
    old, new = _pod(), _pod()
    ports = new["spec"]["containers"][0]["ports"]
    ports.insert(0, {"containerPort": 8443, "protocol": "TCP"})
    ports[2]["name"] = "metrics"
    ops = _check(old, new)
    assert [op["op"] for op in ops] == ["add", "add"]
    assert ops[1]["path"] == "/spec/containers/0/ports/2/name"


def test_removals_run_from_the_end_backward() -> None:
    old, new = _pod(), _pod()
    env = new["spec"]["containers"][0]["env"]
    del env[5], env[3], env[1]
    ops = _check(old, new)
    assert [op["path"].rsplit("/", 1)[1] for op in ops] == ["5", "3", "1"]
    assert {op["op"] for op in ops} == {"remove"}


def test_small_value_replaced_whole_when_shorter() -> None:
    old = {"spec": {"args": ["--port=1", "--v=2", "--x=3"]}}
    new = {"spec": {"args": ["--a", "--b"]}}
    assert _check(old, new) == [{"op": "replace", "path": "/spec/args", "value": ["--a", "--b"]}]


def test_types_are_kept_apart() -> None:
    unchanged = "x" * 200  # so that replacing the whole object is not the cheaper form
    old = {"a": 1, "b": True, "c": 0.0, "d": [1], "e": {"x": 1}, "z": unchanged}
    new = {"a": 1.0, "b": 1, "c": -0.0, "d": [True], "e": {"x": 1.0}, "z": unchanged}
    ops = _check(old, new)
    assert len(ops) == 5
    assert all(op["op"] == "replace" for op in ops)


def test_keys_with_slash_and_tilde_are_escaped() -> None:
    old = _pod()
    new = _pod()
    new["metadata"]["annotations"]["example.com/a~b"] = "1"
    ops = _check(old, new)
    assert ops[0]["path"] == "/metadata/annotations/example.com~1a~0b"


def test_patched_maps_keep_sorted_keys_and_share_the_rest() -> None:
    old = _pod()
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": "/metadata/labels/aaa", "value": {"z": 1, "b": 2}},
        {"op": "copy", "from": "/spec/nodeName", "path": "/spec/a"},
    ]
    patched = apply_ops(old, ops)
    assert list(patched["metadata"]["labels"]) == ["aaa", "app", "pod-template-hash"]
    assert list(patched["metadata"]["labels"]["aaa"]) == ["b", "z"]
    assert next(iter(patched["spec"])) == "a"
    assert patched["status"] is old["status"]  # untouched subtrees are not copied
    assert "aaa" not in old["metadata"]["labels"]


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "remove", "path": "/status/nope"}],
        [{"op": "replace", "path": "/spec/containers/9/image", "value": "x"}],
        [{"op": "add", "path": "/spec/containers/01", "value": {}}],
        [{"op": "move", "from": "/spec", "path": "/spec/x"}],
        [{"op": "add", "path": "/x", "value": {1: "not a JSON key"}}],
        [{"op": "add", "path": "/x", "value": float("nan")}],
        [{"op": "replace", "path": "", "value": ["not", "an", "object"]}],
        [{"op": "add", "path": "/metadata/labels/new", "value": "1"}, {"op": "frobnicate"}],
        ["not an operation"],
    ],
)
def test_bad_operations_raise_delta_error(ops: list[Any]) -> None:
    old = _pod()
    frozen = copy.deepcopy(old)
    with pytest.raises(DeltaError):
        apply_ops(old, ops)
    assert old == frozen


def test_deep_value_is_an_error_not_a_crash() -> None:
    value: Any = 1
    for _ in range(5000):
        value = [value]
    with pytest.raises(DeltaError):
        apply_patch({}, [{"op": "add", "path": "/deep", "value": value}])


# --- snapshots and the decoded document ---------------------------------------------------------


def _snapshots() -> tuple[Any, Any]:
    profile = load_profile()
    base_objs = [_pod("web-0"), _pod("web-1"), _pod("web-2")]
    new_objs = [*copy.deepcopy(base_objs[:2]), _pod("web-3")]
    new_objs[0]["status"]["containerStatuses"][0]["restartCount"] = 1
    new_objs[1]["spec"]["containers"][0]["env"].insert(0, {"name": "A", "value": "b"})
    base = build_snapshot(base_objs, profile, environment_id="edge-1")
    new = build_snapshot(new_objs, profile, environment_id="edge-1")
    return base, new


def test_snapshot_delta_applies_and_documents() -> None:
    base, new = _snapshots()
    delta = diff(base, new)
    assert [str(k) for k in delta.removed] == ["Pod/shop/web-2"]
    assert [str(k) for k in delta.added] == ["Pod/shop/web-3"]
    assert delta.operation_count == 2
    assert apply(base, delta).digest == new.digest
    doc = delta_document(delta)
    jsonschema.validate(doc, schema("delta"))
    assert doc["summary"] == {"removed": 1, "added": 1, "changed": 2, "operations": 2}
    assert json.loads(json.dumps(doc)) == doc  # plain JSON
    again = delta_from_document(json.loads(json.dumps(doc)))
    assert apply(base, again).digest == new.digest


def test_empty_delta_between_equal_snapshots() -> None:
    base, _ = _snapshots()
    delta = diff(base, base)
    assert delta.is_empty
    assert apply(base, delta).digest == base.digest
    jsonschema.validate(delta_document(delta), schema("delta"))


def test_added_object_that_cannot_be_encoded_is_a_delta_error() -> None:
    base, new = _snapshots()
    delta = diff(base, new)
    key = next(iter(delta.added))
    broken = {**delta.added[key], "big": 2**70}
    with pytest.raises(DeltaError):
        apply(base, type(delta)(**{**delta.__dict__, "added": {key: broken}}))


def test_malformed_document_is_an_input_error() -> None:
    with pytest.raises(InputError):
        delta_from_document({"base_digest": "zz"})
