from __future__ import annotations

from pathlib import Path

import pytest

from snapsync.canonical.canonicalize import canonicalize
from snapsync.canonical.profile import load_profile
from snapsync.errors import ProfileError
from snapsync.resources import builtin_profile_names

NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "n1",
        "resourceVersion": "42",
        "selfLink": "/api/v1/nodes/n1",
        "managedFields": [{"manager": "kubelet"}],
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        "labels": {"kubernetes.io/hostname": "n1"},
    },
    "status": {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": "2026-01-01T00:00:10Z",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
        "images": [{"names": ["nginx"], "sizeBytes": 1}],
    },
}


def test_builtin_profiles_load_and_every_rule_says_why() -> None:
    assert {"default", "minimal"} <= set(builtin_profile_names())
    for name in builtin_profile_names():
        profile = load_profile(name)
        assert profile.rules
        assert all(rule.why for rule in profile.rules)


def test_default_profile_removes_volatile_fields_and_keeps_the_rest() -> None:
    result = canonicalize(NODE, load_profile())
    assert result is not None
    _, node = result
    assert node["metadata"] == {"labels": {"kubernetes.io/hostname": "n1"}, "name": "n1"}
    assert node["status"]["conditions"] == [
        {"lastTransitionTime": "2026-01-01T00:00:00Z", "status": "True", "type": "Ready"}
    ]
    assert node["status"]["images"]


def test_minimal_extends_default() -> None:
    minimal = load_profile("minimal")
    assert {r.id for r in load_profile().rules} < {r.id for r in minimal.rules}
    assert not minimal.keeps_kind("", "Event")
    assert load_profile().keeps_kind("", "Event")
    result = canonicalize(NODE, minimal)
    assert result is not None and "images" not in result[1]["status"]


def test_user_profile_extends_and_turns_a_kind_back_on(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nversion: 3\nextends: minimal\ninclude_kinds: [Event]\n"
        "rules:\n  - id: no-labels\n    why: test\n    kinds: [Node]\n"
        "    remove: [metadata, labels]\n"
    )
    profile = load_profile(str(path))
    assert (profile.name, profile.version) == ("mine", 3)
    assert profile.keeps_kind("", "Event")
    result = canonicalize(NODE, profile)
    assert result is not None and "labels" not in result[1]["metadata"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n", "invalid profile at \\(top level\\): 'version' is a required property"),
        ("name: x\nversion: 1\nrules: [{id: a, remove: [m]}]\n", "rules/0"),
        ("name: x\nversion: 1\nbogus: 1\n", "Additional properties"),
        ("name: x\nversion: 1\nextends: nothere\n", "extends unknown profile 'nothere'"),
        ("name: [\n", "not valid YAML"),
        (
            "name: x\nversion: 1\n"
            "rules: [{id: a, why: w, remove: [m]}, {id: a, why: w, remove: [n]}]\n",
            "rule id 'a' is defined twice",
        ),
        (
            "name: x\nversion: 1\nextends: default\nwithout_rules: [event-uid, nope]\n",
            "without_rules names no inherited rule: nope",
        ),
    ],
)
def test_bad_profiles_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message):
        load_profile(str(path))


def test_unknown_profile_lists_the_builtins() -> None:
    with pytest.raises(ProfileError, match="default, endpoints, minimal"):
        load_profile("no-such-profile")


def test_profiles_extending_each_other_in_a_loop(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\nversion: 1\nextends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("name: b\nversion: 1\nextends: a.yaml\n")
    with pytest.raises(ProfileError, match="loop"):
        load_profile(str(tmp_path / "a.yaml"))


def test_profile_namespace_exclusions_apply_to_dumps_too(tmp_path: Path) -> None:
    path = tmp_path / "ns.yaml"
    path.write_text(
        "name: ns\nversion: 1\nextends: default\n"
        "exclude_namespaces: [{namespace: kube-system, why: platform noise}]\n"
    )
    profile = load_profile(str(path))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "kube-system"}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}
    kept = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"}}
    assert canonicalize(pod, profile) is None
    assert canonicalize(namespace, profile) is None
    assert canonicalize(kept, profile) is not None


EVENT = {
    "apiVersion": "v1",
    "kind": "Event",
    "metadata": {
        "name": "web-0.17a3",
        "namespace": "shop",
        "uid": "8d0c2d9e-1b7e-4c55-9d8f-0e9c1f4b2a11",
    },
    "involvedObject": {"kind": "Pod", "name": "web-0", "uid": "u-1", "resourceVersion": "4711"},
    "reason": "Started",
}


def test_default_profile_drops_event_uid_and_subject_revision() -> None:
    result = canonicalize(EVENT, load_profile())
    assert result is not None
    assert "uid" not in result[1]["metadata"]
    assert result[1]["involvedObject"] == {"kind": "Pod", "name": "web-0", "uid": "u-1"}


def test_an_extending_profile_can_turn_an_inherited_rule_off(tmp_path: Path) -> None:
    path = tmp_path / "uids.yaml"
    path.write_text("name: uids\nversion: 1\nextends: default\nwithout_rules: [event-uid]\n")
    profile = load_profile(str(path))
    assert "event-uid" not in {rule.id for rule in profile.rules}
    result = canonicalize(EVENT, profile)
    assert result is not None
    assert result[1]["metadata"]["uid"] == EVENT["metadata"]["uid"]
    assert "resourceVersion" not in result[1]["involvedObject"]


def test_minimal_profile_drops_container_ids_and_keeps_the_restart_story() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop"},
        "status": {
            "containerStatuses": [
                {
                    "name": "web",
                    "containerID": "containerd://ab12",
                    "restartCount": 1,
                    "lastState": {
                        "terminated": {"containerID": "containerd://cd34", "exitCode": 1}
                    },
                }
            ],
            "initContainerStatuses": [{"name": "init", "containerID": "containerd://ef56"}],
        },
    }
    result = canonicalize(pod, load_profile("minimal"))
    assert result is not None
    status = result[1]["status"]
    assert "containerd://" not in str(status)
    assert status["containerStatuses"][0]["restartCount"] == 1
    assert status["containerStatuses"][0]["lastState"] == {"terminated": {"exitCode": 1}}


def test_default_keeps_endpoint_slices_and_the_endpoints_profile_swaps_them() -> None:
    """Core v1 Endpoints are deprecated (1.33): the default keeps EndpointSlices, which name the
    same backends; the `endpoints` profile keeps Endpoints instead. Neither keeps both."""
    default, endpoints = load_profile("default"), load_profile("endpoints")
    assert default.version == 3  # v2 kept Endpoints and dropped EndpointSlices
    assert default.keeps_kind("discovery.k8s.io", "EndpointSlice")
    assert not default.keeps_kind("", "Endpoints")
    assert endpoints.keeps_kind("", "Endpoints")
    assert not endpoints.keeps_kind("discovery.k8s.io", "EndpointSlice")
    assert endpoints.rules == default.rules
    assert not load_profile("minimal").keeps_kind("", "Endpoints")
