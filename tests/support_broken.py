"""A small cluster with things broken, built from the real object shapes in tests/fixtures/real/:
a crash-looping pod, an unschedulable one, one that cannot pull its image, a Deployment short
of replicas, a node that stopped reporting, a pending PersistentVolumeClaim and Warning Events
inside and outside the hour before collection, beside healthy and finished objects that the
health view must leave out. Used by the health view's, the page's and `snapsync get`'s tests.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.server.store import Stores

FIXTURES = Path(__file__).parent / "fixtures" / "real"
COLLECTED_AT = "2024-04-20T11:05:00Z"
COLLECTED = 1713611100.0  # COLLECTED_AT as unix seconds


def real(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return doc


def _renamed(obj: dict[str, Any], name: str, namespace: str | None = "shop") -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["name"] = name
    out["metadata"].pop("uid", None)
    if namespace is not None:
        out["metadata"]["namespace"] = namespace
    return out


def _not_ready(pod: dict[str, Any], reason: str, message: str) -> None:
    for cond in pod["status"]["conditions"]:
        if cond["type"] in ("Ready", "ContainersReady"):
            cond.update(status="False", reason=reason, message=message)


def crash_looping_pod() -> dict[str, Any]:
    pod = _renamed(real("pod"), "checkout-6c9f7d5b8-crash")
    status = pod["status"]["containerStatuses"][0]
    status.update(
        ready=False,
        started=False,
        restartCount=14,
        state={
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 5m0s restarting failed container=checkout",
            }
        },
        lastState={"terminated": {"exitCode": 1, "reason": "Error"}},
    )
    _not_ready(pod, "ContainersNotReady", "containers with unready status: [checkout]")
    return pod


def unschedulable_pod() -> dict[str, Any]:
    pod = _renamed(real("pod"), "checkout-6c9f7d5b8-pend")
    pod["status"] = {
        "phase": "Pending",
        "qosClass": "Burstable",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu.",
            }
        ],
    }
    return pod


def image_pull_pod() -> dict[str, Any]:
    pod = _renamed(real("pod"), "checkout-6c9f7d5b8-pull")
    pod["status"]["phase"] = "Pending"
    pod["status"]["containerStatuses"][0].update(
        ready=False,
        started=False,
        state={
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": 'Back-off pulling image "ghcr.io/acme/checkout:2.5.0"',
            }
        },
    )
    _not_ready(pod, "ContainersNotReady", "containers with unready status: [checkout]")
    return pod


def finished_pod() -> dict[str, Any]:
    pod = _renamed(real("pod"), "migrate-28571230-x7k2p")
    pod["status"]["phase"] = "Succeeded"
    pod["status"]["containerStatuses"][0].update(
        ready=False, state={"terminated": {"exitCode": 0, "reason": "Completed"}}
    )
    _not_ready(pod, "PodCompleted", "")
    return pod


def short_deployment() -> dict[str, Any]:
    deploy = _renamed(real("deployment"), "payments")
    deploy["status"].update(readyReplicas=1, availableReplicas=1, unavailableReplicas=2)
    deploy["status"]["conditions"][0].update(
        status="False",
        reason="MinimumReplicasUnavailable",
        message="Deployment does not have minimum availability.",
    )
    return deploy


def lost_node() -> dict[str, Any]:
    node = _renamed(real("node"), "worker-3", namespace=None)
    for cond in node["status"]["conditions"]:
        cond.update(
            status="Unknown",
            reason="NodeStatusUnknown",
            message="Kubelet stopped posting node status.",
        )
    return node


def pending_claim() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "data-postgres-0",
            "namespace": "shop",
            "creationTimestamp": "2024-04-20T10:40:00Z",
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}},
            "storageClassName": "fast-ssd",
        },
        "status": {"phase": "Pending"},
    }


def bound_claim() -> dict[str, Any]:
    claim = pending_claim()
    claim["metadata"]["name"] = "data-redis-0"
    claim["spec"]["volumeName"] = "pvc-1f2e3d"
    claim["status"] = {"phase": "Bound", "capacity": {"storage": "10Gi"}}
    return claim


def event(name: str, first: str, last: str, kind: str = "Warning") -> dict[str, Any]:
    out = _renamed(real("event"), name)
    out.update(type=kind, firstTimestamp=first, lastTimestamp=last)
    out["metadata"]["creationTimestamp"] = first
    return out


def broken_objects() -> list[dict[str, Any]]:
    """The whole cluster: real fixtures as they are (healthy) plus the broken variants."""
    healthy = [
        real(name) for name in ("pod", "deployment", "node", "service", "configmap", "secret")
    ]
    old = event(
        "checkout-6c9f7d5b8-q7w2x.17c7e0f3a9b20000", "2024-04-20T07:40:00Z", "2024-04-20T08:00:00Z"
    )
    normal = event(
        "checkout-6c9f7d5b8-q7w2x.17c7e0f3a9b2ffff",
        "2024-04-20T10:59:00Z",
        "2024-04-20T11:00:00Z",
        "Normal",
    )
    return [
        *healthy,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        crash_looping_pod(),
        unschedulable_pod(),
        image_pull_pod(),
        finished_pod(),
        short_deployment(),
        lost_node(),
        pending_claim(),
        bound_claim(),
        real("event"),  # a readiness probe failure 6 min before collection
        old,
        normal,
    ]


def broken_snapshot(environment_id: str = "shop-17") -> Snapshot:
    return build_snapshot(
        broken_objects(),
        load_profile("default"),
        environment_id=environment_id,
        collected_at=COLLECTED_AT,
    )


def store_broken(store: Stores, env: str, now: float) -> None:
    """Commit the broken cluster as `env`'s version 1, as an agent's upload would."""
    store.commit(env, broken_snapshot(env), b"frame", None, now)


def ship_once(kubeconfig: Path, url: str, edge: str, secret: bytes, state: Path) -> Snapshot:
    """One real agent cycle: collect the emulator over HTTP, upload to the server at `url`;
    returns the snapshot the server now holds as current (the agent's latest)."""
    from snapsync.agent import Agent, HttpTransport
    from snapsync.collect.kube import KubeCollector
    from snapsync.protocol import AgentConfig, Intervals
    from tests.support_kube import fast_options

    with KubeCollector(fast_options(kubeconfig)) as collector:
        agent = Agent(
            collector,
            HttpTransport(url, edge, secret, timeout=20),
            state,
            AgentConfig(intervals=Intervals(jitter=0.0)),
            environment_id=edge,
            seed=1,
        )
        try:
            report = agent.step()
            assert report.in_sync, report
            latest = agent.protocol.latest
        finally:
            agent.close()
    assert latest is not None
    return latest
