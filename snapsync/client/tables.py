"""kubectl's tables: the columns `kubectl get` prints for the common kinds (`-o wide` adds its
wide columns), NAME and AGE for the rest, NAMESPACE first when the listing spans namespaces.

Times (AGE, an Event's LAST SEEN, a Job's DURATION) are measured to the snapshot's collection
time, not to now: the table describes the cluster as it was collected, and the header line says
how long ago that was. Columns are padded as kubectl's tabwriter does (3 spaces apart).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from snapsync.kubeview import (
    age,
    event_count,
    event_time,
    field,
    items,
    node_status,
    number,
    object_age,
    parse_time,
    pod_state,
    replicas,
    text,
)

Row = Callable[[Any, float], list[str]]


@dataclass(frozen=True)
class Columns:
    headers: tuple[str, ...]
    row: Row
    wide_headers: tuple[str, ...] = ()
    wide: Row | None = None


def render(rows: Sequence[Sequence[str]]) -> str:
    """Rows (the first one the headers) aligned as kubectl's tabwriter aligns them."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    return "\n".join(lines)


def table(
    ref: str, objects: Sequence[Mapping[str, Any]], now: float, *, wide: bool, namespaces: bool
) -> str:
    """The table of `objects` (all of kind `ref`), as `kubectl get` prints it."""
    spec = COLUMNS.get(ref, DEFAULT)
    headers = list(spec.headers) + (list(spec.wide_headers) if wide and spec.wide else [])
    rows: list[list[str]] = [(["NAMESPACE"] if namespaces else []) + headers]
    for obj in objects:
        row = spec.row(obj, now)
        if wide and spec.wide:
            row += spec.wide(obj, now)
        rows.append(([text(field(obj, "metadata", "namespace"))] if namespaces else []) + row)
    return render(rows)


def _name(obj: Any) -> str:
    return text(field(obj, "metadata", "name"))


def _or_none(value: str) -> str:
    return value or "<none>"


def _default(obj: Any, now: float) -> list[str]:
    return [_name(obj), object_age(obj, now)]


def _pod(obj: Any, now: float) -> list[str]:
    state = pod_state(obj)
    return [
        _name(obj),
        f"{state.ready}/{state.containers}",
        state.status,
        str(state.restarts),
        object_age(obj, now),
    ]


def _pod_wide(obj: Any, now: float) -> list[str]:
    return [
        _or_none(text(field(obj, "status", "podIP"))),
        _or_none(text(field(obj, "spec", "nodeName"))),
    ]


def _deployment(obj: Any, now: float) -> list[str]:
    r = replicas(obj)
    return [
        _name(obj),
        f"{r.ready}/{r.desired}",
        str(r.updated),
        str(r.available),
        object_age(obj, now),
    ]


def _containers(obj: Any, now: float) -> list[str]:
    containers = items(obj, "spec", "template", "spec", "containers")
    selector = field(obj, "spec", "selector", "matchLabels")
    return [
        _or_none(",".join(text(c.get("name")) for c in containers)),
        _or_none(",".join(text(c.get("image")) for c in containers)),
        _or_none(_labels(selector)),
    ]


def _labels(labels: Any) -> str:
    if not isinstance(labels, Mapping):
        return ""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _statefulset(obj: Any, now: float) -> list[str]:
    r = replicas(obj)
    return [_name(obj), f"{r.ready}/{r.desired}", object_age(obj, now)]


def _daemonset(obj: Any, now: float) -> list[str]:
    r = replicas(obj)
    selector = _labels(field(obj, "spec", "template", "spec", "nodeSelector"))
    return [
        _name(obj),
        str(r.desired),
        str(r.current),
        str(r.ready),
        str(r.updated),
        str(r.available),
        _or_none(selector),
        object_age(obj, now),
    ]


def _replicaset(obj: Any, now: float) -> list[str]:
    r = replicas(obj)
    return [_name(obj), str(r.desired), str(r.current), str(r.ready), object_age(obj, now)]


def _service(obj: Any, now: float) -> list[str]:
    spec = field(obj, "spec")
    kind = text(field(spec, "type")) or "ClusterIP"
    external = [
        text(i.get("ip") or i.get("hostname"))
        for i in items(obj, "status", "loadBalancer", "ingress")
    ]
    external += [text(ip) for ip in field(spec, "externalIPs") or () if isinstance(ip, str)]
    if kind == "ExternalName":
        external = [text(field(spec, "externalName"))]
    ports = []
    for port in items(spec, "ports"):
        node = f":{number(port.get('nodePort'))}" if port.get("nodePort") else ""
        ports.append(f"{number(port.get('port'))}{node}/{text(port.get('protocol')) or 'TCP'}")
    no_external = "<pending>" if kind == "LoadBalancer" else "<none>"
    return [
        _name(obj),
        kind,
        _or_none(text(field(spec, "clusterIP"))),
        ",".join(filter(None, external)) or no_external,
        _or_none(",".join(ports)),
        object_age(obj, now),
    ]


def _service_wide(obj: Any, now: float) -> list[str]:
    return [_or_none(_labels(field(obj, "spec", "selector")))]


def _node(obj: Any, now: float) -> list[str]:
    labels = field(obj, "metadata", "labels")
    roles = sorted(
        key.partition("/")[2]
        for key in (labels if isinstance(labels, Mapping) else {})
        if key.startswith("node-role.kubernetes.io/")
    )
    return [
        _name(obj),
        node_status(obj),
        _or_none(",".join(roles)),
        object_age(obj, now),
        text(field(obj, "status", "nodeInfo", "kubeletVersion")),
    ]


def _node_wide(obj: Any, now: float) -> list[str]:
    addresses = {
        text(a.get("type")): text(a.get("address")) for a in items(obj, "status", "addresses")
    }
    info = field(obj, "status", "nodeInfo")
    return [
        _or_none(addresses.get("InternalIP", "")),
        _or_none(addresses.get("ExternalIP", "")),
        _or_none(text(field(info, "osImage"))),
        _or_none(text(field(info, "kernelVersion"))),
        _or_none(text(field(info, "containerRuntimeVersion"))),
    ]


def _data(obj: Any, now: float) -> list[str]:
    data = field(obj, "data")
    binary = field(obj, "binaryData")
    count = (len(data) if isinstance(data, Mapping) else 0) + (
        len(binary) if isinstance(binary, Mapping) else 0
    )
    return [_name(obj), str(count), object_age(obj, now)]


def _secret(obj: Any, now: float) -> list[str]:
    data = field(obj, "data")
    count = len(data) if isinstance(data, Mapping) else 0
    return [_name(obj), text(field(obj, "type")) or "Opaque", str(count), object_age(obj, now)]


def _namespace(obj: Any, now: float) -> list[str]:
    return [_name(obj), text(field(obj, "status", "phase")) or "Active", object_age(obj, now)]


def _event(obj: Any, now: float) -> list[str]:
    at = event_time(obj)
    subject = field(obj, "involvedObject") or field(obj, "regarding")
    kind = text(field(subject, "kind")).lower()
    count = event_count(obj)
    seen = age(None if at is None else now - at)
    first = parse_time(field(obj, "firstTimestamp")) or parse_time(field(obj, "eventTime"))
    if count > 1 and first is not None:
        seen += f" (x{count} over {age(now - first)})"
    return [
        seen,
        text(field(obj, "type")),
        text(field(obj, "reason")),
        f"{kind}/{text(field(subject, 'name'))}",
        text(field(obj, "message") or field(obj, "note")).replace("\n", " "),
    ]


def _claim(obj: Any, now: float) -> list[str]:
    spec = field(obj, "spec")
    capacity = field(obj, "status", "capacity", "storage")
    modes = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    return [
        _name(obj),
        text(field(obj, "status", "phase")) or "Pending",
        text(field(spec, "volumeName")),
        text(capacity),
        ",".join(modes.get(text(m), text(m)) for m in field(spec, "accessModes") or ()),
        text(field(spec, "storageClassName")) or "<unset>",
        object_age(obj, now),
    ]


ACCESS_MODES = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def _job(obj: Any, now: float) -> list[str]:
    status = field(obj, "status")
    completions = field(obj, "spec", "completions")
    succeeded = number(field(status, "succeeded"))
    parallelism = number(field(obj, "spec", "parallelism"))
    done = f"{succeeded}/{number(completions)}" if completions is not None else f"{succeeded}/1"
    if completions is None and parallelism > 1:
        done += f" of {parallelism}"
    state = "Running"
    for cond in items(status, "conditions"):
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed", "Suspended"):
            state = text(cond.get("type"))
    start = parse_time(field(status, "startTime"))
    end = parse_time(field(status, "completionTime")) or now
    return [
        _name(obj),
        state,
        done,
        age(None if start is None else end - start),
        object_age(obj, now),
    ]


def _cronjob(obj: Any, now: float) -> list[str]:
    spec = field(obj, "spec")
    last = parse_time(field(obj, "status", "lastScheduleTime"))
    active = field(obj, "status", "active")
    return [
        _name(obj),
        text(field(spec, "schedule")),
        text(field(spec, "timeZone")) or "<none>",
        "True" if field(spec, "suspend") is True else "False",
        str(len(active) if isinstance(active, list) else 0),
        age(None if last is None else now - last) if last is not None else "<none>",
        object_age(obj, now),
    ]


DEFAULT = Columns(("NAME", "AGE"), _default)
WORKLOAD_WIDE = ("CONTAINERS", "IMAGES", "SELECTOR")
COLUMNS: dict[str, Columns] = {
    "Pod": Columns(("NAME", "READY", "STATUS", "RESTARTS", "AGE"), _pod, ("IP", "NODE"), _pod_wide),
    "Deployment.apps": Columns(
        ("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"), _deployment, WORKLOAD_WIDE, _containers
    ),
    "StatefulSet.apps": Columns(
        ("NAME", "READY", "AGE"),
        _statefulset,
        ("CONTAINERS", "IMAGES"),
        lambda o, n: _containers(o, n)[:2],
    ),
    "DaemonSet.apps": Columns(
        ("NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"),
        _daemonset,
        WORKLOAD_WIDE,
        _containers,
    ),
    "ReplicaSet.apps": Columns(
        ("NAME", "DESIRED", "CURRENT", "READY", "AGE"), _replicaset, WORKLOAD_WIDE, _containers
    ),
    "Service": Columns(
        ("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"),
        _service,
        ("SELECTOR",),
        _service_wide,
    ),
    "Node": Columns(
        ("NAME", "STATUS", "ROLES", "AGE", "VERSION"),
        _node,
        ("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"),
        _node_wide,
    ),
    "ConfigMap": Columns(("NAME", "DATA", "AGE"), _data),
    "Secret": Columns(("NAME", "TYPE", "DATA", "AGE"), _secret),
    "Namespace": Columns(("NAME", "STATUS", "AGE"), _namespace),
    "Event": Columns(("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"), _event),
    "PersistentVolumeClaim": Columns(
        ("NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"), _claim
    ),
    "Job.batch": Columns(("NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"), _job),
    "CronJob.batch": Columns(
        ("NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"), _cronjob
    ),
}
