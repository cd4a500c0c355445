from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapsync.canonical.keys import ObjectKey
from snapsync.errors import CanonicalError, InputError

GROUP = st.sampled_from(["", "apps", "rbac.authorization.k8s.io", "cert-manager.io"])
KIND = st.from_regex(r"[A-Z][A-Za-z0-9]{0,15}", fullmatch=True)
NAME = st.from_regex(r"[a-z0-9]([a-z0-9.:_-]{0,20}[a-z0-9])?", fullmatch=True)


@given(GROUP, KIND, st.one_of(st.just(""), NAME), NAME)
def test_printable_form_round_trips(group: str, kind: str, namespace: str, name: str) -> None:
    key = ObjectKey(group, kind, namespace, name)
    assert ObjectKey.parse(str(key)) == key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Pod/default/web-0", ObjectKey("", "Pod", "default", "web-0")),
        ("Deployment.apps/default/web", ObjectKey("apps", "Deployment", "default", "web")),
        ("Node/node-1", ObjectKey("", "Node", "", "node-1")),
        (
            "ClusterRole.rbac.authorization.k8s.io/system:aggregate-to-view",
            ObjectKey("rbac.authorization.k8s.io", "ClusterRole", "", "system:aggregate-to-view"),
        ),
    ],
)
def test_documented_examples(text: str, key: ObjectKey) -> None:
    assert ObjectKey.parse(text) == key
    assert str(key) == text


@pytest.mark.parametrize("text", ["", "Pod", "Pod//x", "a/b/c/d", "/default/x", ".apps/x"])
def test_malformed_printable_keys_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="bad"):
        ObjectKey.parse(text)


def test_key_of_a_raw_object() -> None:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "w", "namespace": "n"},
    }
    assert ObjectKey.of(obj) == ObjectKey("apps", "Deployment", "n", "w")
    core = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}
    assert ObjectKey.of(core) == ObjectKey("", "Namespace", "", "n")


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "Pod", "metadata": {"name": "x"}},
        {"apiVersion": "v1", "metadata": {"name": "x"}},
        {"apiVersion": "v1", "kind": "Pod"},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a/b"}},
    ],
)
def test_objects_without_identity_are_refused(obj: dict[str, object]) -> None:
    with pytest.raises(CanonicalError):
        ObjectKey.of(obj)


def test_keys_sort_by_group_kind_namespace_name() -> None:
    keys = [ObjectKey.parse(t) for t in ["Pod/b/x", "Deployment.apps/a/x", "Pod/a/y", "Node/n"]]
    assert [str(k) for k in sorted(keys)] == [
        "Node/n",
        "Pod/a/y",
        "Pod/b/x",
        "Deployment.apps/a/x",
    ]
