# What a cluster of a given size and shape contains: the system base every cluster has, then
# "units" (an app with its Deployment, Service, config, autoscaler...; a database StatefulSet; a
# CronJob; a Helm-installed platform component) until the non-Event share of the requested size
# is reached, then Events up to the exact size. Shapes differ in their unit mix, Helm use and
# Event share; the platform shape then sizes Helm release payloads so that Secrets and
# ConfigMaps carry their real share of the bytes.
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from snapsync.sim.sample_cluster import churn, events, system, texts, units
from snapsync.sim.sample_cluster.world import World

_TEAMS = [
    "shop",
    "payments",
    "search",
    "identity",
    "catalog",
    "checkout",
    "media",
    "analytics",
    "billing",
    "support",
    "growth",
    "logistics",
    "partners",
    "mobile",
    "ledger",
]


_APPS = [
    "api",
    "web",
    "worker",
    "gateway",
    "cart",
    "inventory",
    "notifications",
    "auth",
    "reports",
    "recommendations",
    "orders",
    "pricing",
    "profile",
    "feed",
    "sessions",
    "export",
    "importer",
    "scheduler",
]


@dataclass(frozen=True)
class Shape:
    """What kind of cluster: the knobs that make an application or a platform cluster."""

    name: str
    event_share: float  # of all objects
    pod_share: float  # expected, to size the node pool
    helm: bool  # apps installed with Helm (release Secrets, Helm labels)
    platform_weight: float  # chance a unit is a platform component rather than an app
    secret_config_bytes: float | None  # byte share of Secrets+ConfigMaps to size Helm blobs to


SHAPES = {
    "application": Shape("application", 0.16, 0.24, False, 0.03, None),
    "platform": Shape("platform", 0.60, 0.06, True, 0.45, 0.70),
}


def build(w: World, objects: int, shape: Shape) -> None:
    """Fill an empty World with `objects` objects (within a unit's size) of this shape."""
    nodes = max(3, min(400, -(-int(objects * shape.pod_share) // 34)))
    system.build_base(w, nodes)
    structural = int(objects * (1 - shape.event_share))
    namespace = ""
    in_namespace = 0
    team = 0
    while len(w.store.objects) < structural:
        if w.rand.chance(shape.platform_weight):
            units.platform_component(w, team)
            team += 1
            continue
        if in_namespace == 0:
            namespace = _TEAMS[team % len(_TEAMS)] + (
                f"-{team // len(_TEAMS)}" if team >= len(_TEAMS) else ""
            )
            team += 1
            in_namespace = w.rand.randint(3, 8)
            system.namespace(w, namespace, w.ago(60 * system.DAY, 300 * system.DAY), shape.helm)
            apps = w.rand.sample(_APPS, in_namespace)
        in_namespace -= 1
        name = apps[in_namespace]
        roll = w.rand.random()
        if roll < 0.62:
            units.web_app(w, namespace, name, shape.helm)
        elif roll < 0.76:
            units.web_app(w, namespace, name, shape.helm, worker=True)
        elif roll < 0.86:
            units.database(w, namespace, name, shape.helm)
        else:
            units.batch(w, namespace, name)
    churn.reconcile(w, None)  # statuses, Endpoints and PDBs as the control loops left them
    _fill_events(w, objects)
    if shape.secret_config_bytes:
        _size_helm_releases(w, shape.secret_config_bytes)


_CONTROLLER_EVENTS = {
    "ReplicaSet": ("replicaset-controller", "SuccessfulCreate", "Created pod: {name}-{suffix}"),
    "Deployment": (
        "deployment-controller",
        "ScalingReplicaSet",
        "Scaled up replica set {name}-{suffix} to {n}",
    ),
    "Job": ("job-controller", "Completed", "Job completed"),
    "CronJob": (
        "cronjob-controller",
        "SawCompletedJob",
        "Saw completed job: {name}-{n}, status: Complete",
    ),
    "HorizontalPodAutoscaler": (
        "horizontal-pod-autoscaler",
        "SuccessfulRescale",
        "New size: {n}; reason: cpu resource utilization (percentage of request) above target",
    ),
    "Node": (
        "node-controller",
        "RegisteredNode",
        "Node {name} event: Registered Node {name} in Controller",
    ),
    "Certificate": (
        "cert-manager-certificates-issuing",
        "Issuing",
        "The certificate has been successfully issued",
    ),
}


def _fill_events(w: World, objects: int) -> None:
    """Events up to `objects` in all, about recent happenings (within the last hour)."""
    pod_keys = w.store.keys("Pod")
    others = [k for kind in _CONTROLLER_EVENTS for k in w.store.keys(kind)]
    attempts = 0
    while len(w.store.objects) < objects and attempts < objects * 4:
        attempts += 1
        last = w.now - w.rand.randint(0, 3500)
        count = 1 if w.rand.chance(0.7) else w.rand.randint(2, 40)
        first = last - (0 if count == 1 else w.rand.randint(count * 30, count * 600))
        if pod_keys and (not others or w.rand.chance(0.8)):
            pod = w.store.objects[w.rand.pick(pod_keys)]
            if w.rand.chance(0.5):
                pod = _ghost(w, pod)
            reason = w.rand.choice((*events.POD_START, "Killing", "Unhealthy", "BackOff", "Pulled"))
            events.pod_event(w, pod, reason, last, count=count, first=first)
        elif others:
            obj = w.store.objects[w.rand.pick(others)]
            component, reason, text = _CONTROLLER_EVENTS[obj["kind"]]
            message = text.format(
                name=obj["metadata"]["name"], suffix=w.rand.template_hash(), n=w.rand.randint(1, 6)
            )
            events.record(
                w, obj, reason, message, last, component=component, count=count, first=first
            )
    ordered = sorted(w.event_order, key=lambda k: w.store.objects[k]["lastTimestamp"])
    w.event_order = dict.fromkeys(ordered)


def _ghost(w: World, pod: dict[str, Any]) -> dict[str, Any]:
    """A pod that is gone (replaced within the hour) but still has Events, as on real clusters."""
    meta = dict(pod["metadata"])
    prefix = meta.get("generateName")
    if prefix:
        meta["name"] = prefix + w.rand.suffix()
    meta["uid"] = w.rand.uid()
    meta["resourceVersion"] = str(w.store.resource_version - w.rand.randint(1000, 90000))
    return {**pod, "metadata": meta}


def _estimate_bytes(w: World, kinds: list[str]) -> int:
    """JSON bytes of these kinds, measured on a sample of each (exact for small kinds)."""
    total = 0
    for kind in kinds:
        keys = w.store.keys(kind)
        step = max(1, len(keys) // 60)
        sample = keys[::step]
        measured = sum(len(json.dumps(w.store.objects[k], separators=(",", ":"))) for k in sample)
        total += measured * len(keys) // max(1, len(sample))
    return total


def _size_helm_releases(w: World, share: float) -> None:
    """Grow Helm release payloads until Secrets+ConfigMaps hold `share` of all JSON bytes."""
    kinds = list(w.store.by_kind)
    others = _estimate_bytes(w, [k for k in kinds if k not in ("Secret", "ConfigMap")])
    current = _estimate_bytes(w, ["Secret", "ConfigMap"])
    releases = [
        k for k in w.store.keys("Secret") if w.store.objects[k]["type"] == "helm.sh/release.v1"
    ]
    missing = int(others * share / (1 - share)) - current
    if missing <= 0 or not releases:
        return
    for key in releases:
        secret = w.store.objects[key]
        grow = missing // len(releases)
        old = len(secret["data"]["release"])
        target = min(900_000, old + int(grow * w.rand.uniform(0.5, 1.5)))
        secret["data"]["release"] = texts.helm_release(w.rand, max(1000, target * 9 // 16 - 10))
