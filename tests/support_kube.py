"""Fixtures for live-collection tests: an API emulator on 127.0.0.1 and clients pointed at it.

Import the fixtures into a test module by their function names (`from support_kube import
emulator_fixture, kubeconfig_fixture`); tests ask for them as `emulator`, `kubeconfig`,
`kube_objects` (the names do not shadow the imports).
Backoff and retry delays are made tiny through the options, never by patching, and Retry-After is
observed through an injected `sleep` that records instead of waiting.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.profile import Profile, load_profile
from snapsync.canonical.snapshot import (
    KeyedObject,
    KindFailure,
    Snapshot,
    SnapshotBuilder,
    build_snapshot,
)
from snapsync.collect.kube import KubeCollector, KubeOptions
from tools.kube_emulator import ClusterState, KubeEmulator


def _meta(name: str, namespace: str | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    meta["managedFields"] = [{"manager": "kubectl", "operation": "Apply"}]
    return meta


def pod(name: str, namespace: str = "team-a", phase: str = "Running") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, namespace, app=name.rsplit("-", 1)[0]),
        "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
        "status": {"phase": phase},
    }


def config_map(name: str, namespace: str = "team-a", value: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, namespace),
        "data": {"value": value},
    }


def cluster_objects() -> list[dict[str, Any]]:
    """Objects of many kinds: core and named groups, cluster-scoped, a CRD and its resources,
    a kind served in two versions (HPA), Secrets, and kinds the default profile leaves out."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1beta1", "served": True, "storage": False},
                {"name": "v1", "served": True, "storage": True},
            ],
        },
    }
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns)}
        for ns in ("team-a", "team-b", "kube-system")
    ]
    objects += [
        {"apiVersion": "v1", "kind": "Node", "metadata": _meta(f"node-{i}"), "spec": {}}
        for i in range(2)
    ]
    objects += [pod(f"web-{i}") for i in range(7)] + [pod("db-0", "team-b")]
    objects += [pod("coredns-1", "kube-system")]
    objects += [config_map(f"cfg-{i}") for i in range(4)] + [config_map("cfg-b", "team-b")]
    objects += [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta("token", "team-a"),
            "type": "Opaque",
            "data": {"password": "aHVudGVyMg=="},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("web", "team-a"),
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
                },
            },
        },
        {
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta("web", "team-a"),
            "spec": {
                "maxReplicas": 5,
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta("viewer"),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": _meta("node-0", "kube-node-lease"),
            "spec": {"holderIdentity": "node-0"},
        },
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": _meta("web-0.17a", "team-a"),
            "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "team-a"},
            "reason": "Pulled",
            "message": "Container image already present",
            "type": "Normal",
        },
        crd,
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": _meta("gizmo", "team-a"),
            "spec": {"size": 3},
        },
    ]
    return objects


def fast_options(kubeconfig: Path, **overrides: Any) -> KubeOptions:
    """Options for tests: short timeouts, one reconnect, near-zero backoff."""
    settings: dict[str, Any] = {
        "kubeconfig": str(kubeconfig),
        "request_timeout": 5.0,
        "kind_budget": 10.0,
        "retries": 1,
        "backoff_base": 0.001,
        "backoff_max": 0.005,
        "watch_backoff_initial": 0.001,
        "watch_backoff_max": 0.005,
        "concurrency": 2,
    }
    settings.update(overrides)
    return KubeOptions(**settings)


class RecordingSleep:
    """A `sleep` that records the requested delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class RecordingSink:
    """A SnapshotBuilder that also counts what it was sent (adds, discards, errors)."""

    def __init__(self, builder: SnapshotBuilder) -> None:
        self.builder = builder
        self.profile = builder.profile
        self.adds = 0
        self.discards = 0
        self.events: list[str] = []

    def add(self, raw: dict[str, Any]) -> ObjectKey | None:
        self.adds += 1
        self.events.append("add")
        return self.builder.add(raw)

    def discard(self, key: ObjectKey) -> None:
        self.discards += 1
        self.builder.discard(key)

    def record_error(self, error: KindFailure) -> None:
        self.builder.record_error(error)


class CountingBuilder(SnapshotBuilder):
    """A SnapshotBuilder that counts its canonicalizations (the CPU a watch cache saves)."""

    def __init__(self, profile: Profile, **kwargs: Any) -> None:
        super().__init__(profile, **kwargs)
        self.canonicalized = 0

    def canonical(self, raw: dict[str, Any]) -> KeyedObject | None:
        self.canonicalized += 1
        return super().canonical(raw)


def collect(options: KubeOptions, *, profile: str = "default", **kwargs: Any) -> Snapshot:
    """One collection through the real client; the snapshot (CollectionError propagates)."""
    builder = SnapshotBuilder(load_profile(profile))
    with KubeCollector(options, rng=random.Random(0), **kwargs) as collector:
        collector.collect(builder)
    return builder.build(collected_at="")


def expected(state: ClusterState, profile: str = "default") -> Snapshot:
    """The snapshot of the emulator's current objects, built without any HTTP."""
    return build_snapshot(state.served_objects(), load_profile(profile), collected_at="")


def put_nameless_config_map(state: ClusterState) -> None:
    """Store, bypassing put(), a ConfigMap without a name: a broken object as a buggy server
    could send, which canonicalization refuses."""
    with state.lock:
        state.store[("", "configmaps")][("team-a", "x")] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"namespace": "team-a"},
        }


def errors_by_kind(snapshot: Snapshot) -> dict[str, str]:
    return {e.kind: e.reason for e in snapshot.header.errors}


@pytest.fixture(name="kube_objects")
def kube_objects_fixture() -> list[dict[str, Any]]:
    """The emulator's initial objects; override in a module to serve something else."""
    return cluster_objects()


@pytest.fixture(name="emulator")
def emulator_fixture(kube_objects: list[dict[str, Any]]) -> Iterator[KubeEmulator]:
    """A started emulator on an ephemeral loopback port; stopped after the test."""
    emu = KubeEmulator(ClusterState(kube_objects), bookmark_interval=0.05)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(name="kubeconfig")
def kubeconfig_fixture(emulator: KubeEmulator, tmp_path: Path) -> Path:
    return emulator.write_kubeconfig(tmp_path / "kubeconfig")
