# Core v1 Events as components record them: named `<object>.<hex nanoseconds>`, deduplicated by
# (object, reason, field path) so a repeat bumps `count` and `lastTimestamp` instead of adding
# an Event, as client-go's event correlator does. Events of cluster-scoped objects live in
# `default`. `World.event_order` keeps them least recently seen first, for expiry.
from __future__ import annotations

from typing import Any

from snapsync.sim.sample_cluster.api import Key
from snapsync.sim.sample_cluster.fields import fields_v1, managed_entry
from snapsync.sim.sample_cluster.rng import rfc3339
from snapsync.sim.sample_cluster.world import World

_EVENT_FIELDS = fields_v1(
    dict.fromkeys(
        (
            "count",
            "firstTimestamp",
            "involvedObject",
            "lastTimestamp",
            "message",
            "reason",
            "reportingComponent",
            "reportingInstance",
            "type",
        ),
        "",
    )
    | {"source": {"component": "", "host": ""}}
)


def record(
    w: World,
    involved: dict[str, Any],
    reason: str,
    message: str,
    t: int,
    *,
    component: str,
    host: str = "",
    warning: bool = False,
    field_path: str = "",
    count: int = 1,
    first: int | None = None,
) -> Key:
    """Record an Event about `involved` at `t`: bump the matching one or create a new one."""
    meta = involved["metadata"]
    index_key = (meta["uid"], reason, field_path)
    existing = w.event_index.get(index_key)
    if existing is not None and existing in w.store.objects:
        w.store.objects[existing]["message"] = message
        bump(w, existing, t)
        return existing
    first = t if first is None else first
    namespace = meta.get("namespace") or "default"
    nanos = first * 10**9 + w.rand.randrange(10**9)
    involved_ref: dict[str, Any] = {"apiVersion": involved["apiVersion"]}
    if field_path:
        involved_ref["fieldPath"] = field_path
    involved_ref["kind"] = involved["kind"]
    involved_ref["name"] = meta["name"]
    if meta.get("namespace"):
        involved_ref["namespace"] = meta["namespace"]
    involved_ref["resourceVersion"] = meta["resourceVersion"]
    involved_ref["uid"] = meta["uid"]
    manager = "kubelet" if component == "kubelet" else "kube-controller-manager"
    if component == "default-scheduler":
        manager = "kube-scheduler"
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "count": count,
        "eventTime": None,
        "firstTimestamp": rfc3339(first),
        "involvedObject": involved_ref,
        "kind": "Event",
        "lastTimestamp": rfc3339(t),
        "message": message,
        "metadata": w.meta(f"{meta['name']}.{nanos:x}", namespace, created=first),
        "reason": reason,
        "reportingComponent": component,
        "reportingInstance": host,
        "source": {"component": component, **({"host": host} if host else {})},
        "type": "Warning" if warning else "Normal",
    }
    event["metadata"]["managedFields"] = [
        managed_entry(manager, "Update", "v1", rfc3339(t), _EVENT_FIELDS)
    ]
    key = w.store.add(event)
    w.event_index[index_key] = key
    w.event_order[key] = None
    return key


def bump(w: World, key: Key, t: int) -> None:
    """The same thing happened again: count + 1, lastTimestamp moves."""
    event = w.store.objects[key]
    event["count"] += 1
    event["lastTimestamp"] = rfc3339(t)
    w.store.write(key, rfc3339(t), event["metadata"]["managedFields"][0]["manager"])
    w.event_order.pop(key, None)
    w.event_order[key] = None


def pod_event(w: World, pod: dict[str, Any], reason: str, t: int, **extra: Any) -> Key:
    """One of the Events kubelet and the scheduler record about a pod's lifecycle."""
    meta, spec = pod["metadata"], pod["spec"]
    node = spec["nodeName"]
    c = spec["containers"][0]
    path = f"spec.containers{{{c['name']}}}"
    ip = pod["status"].get("podIP", "")
    port = c["ports"][0]["containerPort"] if c.get("ports") else 8080
    warning = reason in ("BackOff", "Unhealthy", "FailedScheduling")
    messages = {
        "Scheduled": f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
        "Pulled": f'Container image "{c["image"]}" already present on machine',
        "Created": f"Created container {c['name']}",
        "Started": f"Started container {c['name']}",
        "Killing": f"Stopping container {c['name']}",
        "Unhealthy": (
            f'Readiness probe failed: Get "http://{ip}:{port}/ready": '
            f"dial tcp {ip}:{port}: connect: connection refused"
        ),
        "BackOff": (
            f"Back-off restarting failed container {c['name']} in pod "
            f"{meta['name']}_{meta['namespace']}({meta['uid']})"
        ),
    }
    if reason == "Scheduled":
        return record(w, pod, reason, messages[reason], t, component="default-scheduler", **extra)
    return record(
        w,
        pod,
        reason,
        messages[reason],
        t,
        component="kubelet",
        host=node,
        warning=warning,
        field_path=path,
        **extra,
    )


POD_START = ("Scheduled", "Pulled", "Created", "Started")


def pod_started(w: World, pod: dict[str, Any], t: int) -> None:
    for offset, reason in enumerate(POD_START):
        pod_event(w, pod, reason, t + offset)


def expire(w: World, keep: int) -> list[Key]:
    """Delete the least recently seen Events beyond `keep` (the API server's event TTL)."""
    gone = []
    while len(w.event_order) > keep:
        key = next(iter(w.event_order))
        del w.event_order[key]
        if key in w.store.objects:
            w.store.delete(key)
            gone.append(key)
    return gone
