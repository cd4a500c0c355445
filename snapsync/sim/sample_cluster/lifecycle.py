# Pod lifecycle steps shared by the churn engine and its long-running operations: recording that
# a pod changed (so its controller, Services and PDBs are reconciled), deleting a pod as an
# eviction does, and letting a ReplicaSet/StatefulSet converge with the Events it records.
from __future__ import annotations

from typing import Any

from snapsync.sim.sample_cluster import controllers, events, pods
from snapsync.sim.sample_cluster.api import Key
from snapsync.sim.sample_cluster.rng import rfc3339
from snapsync.sim.sample_cluster.store import APP_LABEL
from snapsync.sim.sample_cluster.world import World


def pod_changed(w: World, key: Key) -> None:
    """Mark what a pod change feeds: its controller and the Services/PDBs selecting it."""
    pod = w.store.objects[key]
    owner = pods.pod_owner_ref(pod)
    if owner is not None and owner["uid"] in w.store.by_uid:
        w.dirty[w.store.by_uid[owner["uid"]]] = None
    app = pod["metadata"].get("labels", {}).get(APP_LABEL)
    for selector in w.selectors.get((pod["metadata"]["namespace"], app), ()) if app else ():
        w.dirty[selector] = None


def write_pod(w: World, key: Key, t: int) -> None:
    w.store.write(key, rfc3339(t), "kubelet", "status")
    pod_changed(w, key)


def kill(w: World, key: Key, t: int) -> None:
    pod = w.store.objects[key]
    events.pod_event(w, pod, "Killing", t)
    owner = pods.pod_owner_ref(pod)
    w.store.delete(key)
    w.pending.pop(key, None)
    mark_selectors(w, pod)
    if owner is not None and owner["uid"] in w.store.by_uid:
        ctrl_key = w.store.by_uid[owner["uid"]]
        if owner["kind"] == "ReplicaSet":
            converge(w, ctrl_key, t, f"Deleted pod: {key[3]}", "SuccessfulDelete")


def mark_selectors(w: World, pod: dict[str, Any]) -> None:
    app = pod["metadata"].get("labels", {}).get(APP_LABEL)
    for selector in w.selectors.get((pod["metadata"]["namespace"], app), ()) if app else ():
        w.dirty[selector] = None


def converge(w: World, rs_key: Key, t: int, message: str = "", reason: str = "") -> None:
    """Let a ReplicaSet/StatefulSet converge to spec.replicas, recording its Events."""
    rs = w.store.objects[rs_key]
    if message:
        events.record(w, rs, reason, message, t, component=_component(rs))
    created, deleted = controllers.scale(w, rs_key, t)
    for key in created:
        pod = w.store.objects[key]
        events.record(
            w, rs, "SuccessfulCreate", f"Created pod: {key[3]}", t, component=_component(rs)
        )
        events.pod_started(w, pod, t)
        pod_changed(w, key)
    for key in deleted:
        events.record(
            w, rs, "SuccessfulDelete", f"Deleted pod: {key[3]}", t, component=_component(rs)
        )
    if deleted:
        w.dirty.update(
            dict.fromkeys(
                w.selectors.get((rs_key[2], rs["spec"]["selector"]["matchLabels"][APP_LABEL]), ())
            )
        )


def _component(ctrl: dict[str, Any]) -> str:
    return {"ReplicaSet": "replicaset-controller", "StatefulSet": "statefulset-controller"}.get(
        ctrl["kind"], "job-controller"
    )
