"""How kubectl shows an object: a pod's STATUS, READY and RESTARTS, a workload's replicas, a
node's readiness, an Event's time and subject, AGE, and `-o yaml`.

The server's health view (server/health.py) and `snapsync get` (client/) read objects the same
way, so a pod the health view calls CrashLoopBackOff is CrashLoopBackOff in the table too. The
rules follow kubectl's printers (k8s.io/kubernetes pkg/printers/internalversion/printers.go).
Objects come from a stored snapshot and may be partial or malformed: every reader here accepts
any JSON value and falls back to an empty reading, never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import yaml

from snapsync.canonical.keys import ObjectKey


def field(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]...; None as soon as a step is not a map or is missing."""
    for name in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(name)
    return obj


def items(obj: Any, *path: str) -> list[Mapping[str, Any]]:
    """The maps in the list at `path` (anything else is skipped)."""
    value = field(obj, *path)
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_time(value: Any) -> float | None:
    """An RFC 3339 timestamp as unix seconds; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def age(seconds: float | None) -> str:
    """kubectl's AGE (apimachinery's HumanDuration): `45s`, `3m20s`, `12m`, `5h3m`, `20h`,
    `3d4h`, `40d`, `2y31d`; `<unknown>` without a time."""
    if seconds is None:
        return "<unknown>"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 3 * 3600:
        return f"{s // 60}m"
    if s < 8 * 3600:
        return f"{s // 3600}h{s % 3600 // 60}m" if s % 3600 // 60 else f"{s // 3600}h"
    if s < 2 * 86400:
        return f"{s // 3600}h"
    if s < 8 * 86400:
        return f"{s // 86400}d{s % 86400 // 3600}h" if s % 86400 // 3600 else f"{s // 86400}d"
    if s < 365 * 86400 * 2:
        return f"{s // 86400}d"
    years, days = divmod(s // 86400, 365)
    return f"{years}y{days}d" if days and years < 8 else f"{years}y"


def object_age(obj: Any, now: float) -> str:
    created = parse_time(field(obj, "metadata", "creationTimestamp"))
    return age(None if created is None else now - created)


@dataclass(frozen=True)
class PodState:
    status: str  # kubectl's STATUS: Running, Pending, CrashLoopBackOff, Init:0/1, Completed, ...
    ready: int  # containers ready
    containers: int
    restarts: int
    phase: str
    ready_condition: bool  # the pod's Ready condition is True

    @property
    def crash_looping(self) -> bool:
        return self.status.endswith("CrashLoopBackOff")

    @property
    def finished(self) -> bool:
        return self.phase == "Succeeded"


def pod_state(pod: Any) -> PodState:
    """kubectl's printPod, on one pod."""
    status = field(pod, "status")
    phase = text(field(status, "phase"))
    reason = text(field(status, "reason")) or phase or "Unknown"
    restarts = 0
    initializing = False
    init_specs = items(pod, "spec", "initContainers")
    for i, container in enumerate(items(status, "initContainerStatuses")):
        restarts += number(container.get("restartCount"))
        terminated = field(container, "state", "terminated")
        waiting = text(field(container, "state", "waiting", "reason"))
        if isinstance(terminated, Mapping) and number(terminated.get("exitCode")) == 0:
            continue
        initializing = True
        if isinstance(terminated, Mapping):
            reason = "Init:" + (text(terminated.get("reason")) or _exit(terminated))
        elif waiting and waiting != "PodInitializing":
            reason = "Init:" + waiting
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        break
    ready = 0
    if not initializing:
        restarts = 0
        running = False
        for container in reversed(items(status, "containerStatuses")):
            restarts += number(container.get("restartCount"))
            terminated = field(container, "state", "terminated")
            waiting = text(field(container, "state", "waiting", "reason"))
            if waiting:
                reason = waiting
            elif isinstance(terminated, Mapping):
                reason = text(terminated.get("reason")) or _exit(terminated)
            elif container.get("ready") is True and field(container, "state", "running"):
                running = True
                ready += 1
        if reason == "Completed" and running:
            reason = "Running"
    ready_condition = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in items(status, "conditions")
    )
    if field(pod, "metadata", "deletionTimestamp"):
        reason = "Unknown" if text(field(status, "reason")) == "NodeLost" else "Terminating"
    containers = len(items(pod, "spec", "containers"))
    return PodState(reason, ready, containers, restarts, phase, ready_condition)


def _exit(terminated: Mapping[str, Any]) -> str:
    signal = number(terminated.get("signal"))
    return f"Signal:{signal}" if signal else f"ExitCode:{number(terminated.get('exitCode'))}"


@dataclass(frozen=True)
class Replicas:
    """A workload's replica counts as `kubectl get` shows them."""

    desired: int
    ready: int
    updated: int
    available: int
    current: int  # DaemonSet: pods scheduled; others: status.replicas

    @property
    def unavailable(self) -> int:
        return max(0, self.desired - self.available)


def replicas(obj: Any) -> Replicas:
    status = field(obj, "status")
    if text(field(obj, "kind")) == "DaemonSet":
        return Replicas(
            desired=number(field(status, "desiredNumberScheduled")),
            ready=number(field(status, "numberReady")),
            updated=number(field(status, "updatedNumberScheduled")),
            available=number(field(status, "numberAvailable")),
            current=number(field(status, "currentNumberScheduled")),
        )
    spec = field(obj, "spec", "replicas")
    desired = 1 if spec is None else number(spec)  # the API server's default
    available_field = "availableReplicas"
    if text(field(obj, "kind")) == "StatefulSet" and field(status, available_field) is None:
        available_field = "readyReplicas"  # before 1.22 a StatefulSet reported no availability
    return Replicas(
        desired=desired,
        ready=number(field(status, "readyReplicas")),
        updated=number(field(status, "updatedReplicas")),
        available=number(field(status, available_field)),
        current=number(field(status, "replicas")),
    )


def condition(obj: Any, kind: str) -> Mapping[str, Any] | None:
    return next((c for c in items(obj, "status", "conditions") if c.get("type") == kind), None)


def node_status(node: Any) -> str:
    """kubectl's node STATUS: Ready, NotReady (the condition is False or Unknown) or Unknown (no
    Ready condition at all), plus `,SchedulingDisabled`."""
    ready = condition(node, "Ready")
    state = "Unknown"
    if ready is not None:
        state = "Ready" if ready.get("status") == "True" else "NotReady"
    if field(node, "spec", "unschedulable") is True:
        state += ",SchedulingDisabled"
    return state


def event_time(event: Any) -> float | None:
    """When an Event last happened: series, lastTimestamp, eventTime, then first/creation."""
    for path in (
        ("series", "lastObservedTime"),
        ("lastTimestamp",),
        ("eventTime",),
        ("firstTimestamp",),
        ("metadata", "creationTimestamp"),
    ):
        found = parse_time(field(event, *path))
        if found is not None:
            return found
    return None


def event_count(event: Any) -> int:
    return number(field(event, "series", "count")) or number(field(event, "count")) or 1


def event_subject(event: Any) -> ObjectKey | None:
    """The key of the object an Event is about (its involvedObject), when it names one."""
    subject = field(event, "involvedObject") or field(event, "regarding")
    kind, name = text(field(subject, "kind")), text(field(subject, "name"))
    if not kind or not name:
        return None
    api_version = text(field(subject, "apiVersion"))
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return ObjectKey(group, kind, text(field(subject, "namespace")), name)


class _KubectlDumper(yaml.SafeDumper):
    """Strings as kubectl prints them: multi-line ones (a ConfigMap's files) as `|` blocks, and
    ones that would read as another type (`"4"`, `"true"`, a timestamp) in double quotes."""


_STR = "tag:yaml.org,2002:str"


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = None
    if "\n" in value:
        style = "|"
    elif cast(Callable[..., str], dumper.resolve)(yaml.ScalarNode, value, (True, False)) != _STR:
        style = '"'
    return dumper.represent_scalar(_STR, value, style=style)


_KubectlDumper.add_representer(str, _string)


def to_yaml(obj: Any) -> str:
    """`kubectl get -o yaml`'s layout: keys sorted, block style, list items flush with their key,
    long strings on one line (copied back into a manifest as they are)."""
    return str(
        yaml.dump(
            obj,
            Dumper=_KubectlDumper,
            sort_keys=True,
            default_flow_style=False,
            allow_unicode=True,
            width=2**31 - 1,
        )
    )
