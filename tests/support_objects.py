"""Hypothesis strategies for JSON values and Kubernetes-shaped raw objects."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

from snapsync.canonical.keys import ObjectKey

NAME = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
LABEL_KEY = st.from_regex(r"([a-z]{1,8}\.io/)?[a-z][a-z0-9-]{0,10}", fullmatch=True)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

KINDS = [
    ("v1", "Pod", True),
    ("v1", "ConfigMap", True),
    ("v1", "Node", False),
    ("apps/v1", "Deployment", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", False),
    ("cert-manager.io/v1", "Certificate", True),
]


@st.composite
def raw_objects(draw: st.DrawFn, kinds: list[tuple[str, str, bool]] = KINDS) -> dict[str, Any]:
    """A raw object as an API server returns it, volatile fields included."""
    api_version, kind, namespaced = draw(st.sampled_from(kinds))
    metadata: dict[str, Any] = {"name": draw(NAME)}
    if namespaced:
        metadata["namespace"] = draw(NAME)
    metadata["labels"] = draw(st.dictionaries(LABEL_KEY, NAME, max_size=3))
    metadata["resourceVersion"] = str(draw(st.integers(1, 10**9)))
    if draw(st.booleans()):
        metadata["managedFields"] = [{"manager": draw(NAME), "fieldsV1": {"f:spec": {}}}]
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    obj["spec"] = draw(st.dictionaries(st.text(min_size=1, max_size=8), JSON, max_size=4))
    return obj


def unique_by_key(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One object per key (the last), as a cluster holds them."""
    return list({ObjectKey.of(o): o for o in objs}.values())


@st.composite
def secrets(draw: st.DrawFn) -> tuple[dict[str, Any], list[bytes]]:
    """A Secret and the plaintext values it carries (in data, stringData and last-applied)."""
    values = draw(st.lists(st.binary(min_size=6, max_size=40), min_size=1, max_size=4, unique=True))
    names = [f"k{i}" for i in range(len(values))]
    data = {n: base64.b64encode(v).decode() for n, v in zip(names, values, strict=True)}
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": draw(NAME), "namespace": draw(NAME)},
        "type": "Opaque",
        "data": data,
    }
    text_values = [v for v in values if _is_text(v)]
    if text_values:
        secret["stringData"] = {f"s{i}": v.decode() for i, v in enumerate(text_values)}
        secret["metadata"]["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": repr(secret["stringData"])
        }
    return secret, values


def _is_text(value: bytes) -> bool:
    try:
        return value.decode().isprintable()
    except UnicodeDecodeError:
        return False
