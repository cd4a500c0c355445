"""What is broken in one environment, read from its stored snapshot only (no cluster, no clock).

Not the agent's health file (snapsync.agent.health): this is the operator's health view of a
cluster, served at /api/v1/environments/{env}/health, on the environment page and as the fleet
list's badge. It lists pods not ready or crash-looping (with restarts), Deployments, StatefulSets
and DaemonSets with unavailable replicas, nodes not ready, PersistentVolumeClaims not bound and
Warning Events of the hour before the snapshot was collected. "Now" is the snapshot's collection
time, never the server's clock, so the view of a cluster offline for a week is what it was when
it was last seen, and the same snapshot always gives the same answer.

Decisions where a person could expect otherwise:
- Succeeded pods (finished Jobs) are fine; Failed ones are listed (Evicted, Error, OOMKilled).
- A pod counts as not ready when its Ready condition is not True; a Running pod without
  conditions (a trimmed profile, an old dump) is taken at its containers' word.
- Each list keeps its MAX_LISTED worst entries (most restarts, most unavailable, newest Events)
  and says how many there were in all.
- The badge: `failing` when anything but Events is listed, `warning` when only Warning Events
  are, `ok` when nothing is, `unknown` without a snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from snapsync.canonical.keys import ObjectKey
from snapsync.kubeview import (
    condition,
    event_count,
    event_subject,
    event_time,
    node_status,
    pod_state,
    replicas,
    text,
)
from snapsync.kubeview import (
    field as get,
)

EVENT_WINDOW = 3600.0  # Warning Events this long before the collection time are listed
MAX_LISTED = 200
WORKLOAD_KINDS = ("Deployment.apps", "StatefulSet.apps", "DaemonSet.apps")
# The kinds the view reads; the rest of the snapshot is never loaded for it.
HEALTH_KINDS = ("Pod", *WORKLOAD_KINDS, "Node", "PersistentVolumeClaim", "Event")
BADGES = ("ok", "warning", "failing", "unknown")


@dataclass(frozen=True)
class Problem:
    """One broken object: what to link to, a one-word state and the reason in a line."""

    key: ObjectKey
    status: str
    detail: str = ""
    restarts: int | None = None  # pods
    ready: str = ""  # `1/3` (containers of a pod, replicas of a workload)
    count: int | None = None  # Events: how often it happened
    at: float | None = None  # Events: when it last happened
    event: ObjectKey | None = None  # Events: the Event itself (key is its subject)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": str(self.key),
            "kind": self.key.kind_ref,
            "namespace": self.key.namespace,
            "name": self.key.name,
            "status": self.status,
            "detail": self.detail,
        }
        for name in ("restarts", "ready", "count"):
            value = getattr(self, name)
            if value not in (None, ""):
                out[name] = value
        if self.event is not None:
            out["event"] = str(self.event)
        return out


@dataclass(frozen=True)
class Section:
    """One kind of trouble: the worst MAX_LISTED problems and how many there were."""

    name: str
    title: str
    problems: tuple[Problem, ...] = ()
    total: int = 0
    checked: int = 0  # objects of the kinds this section reads


@dataclass(frozen=True)
class Health:
    collected_at: float | None
    sections: tuple[Section, ...] = field(default=())

    @property
    def badge(self) -> str:
        if self.collected_at is None:
            return "unknown"
        if any(s.total for s in self.sections if s.name != "events"):
            return "failing"
        return "warning" if any(s.total for s in self.sections) else "ok"

    def counts(self) -> dict[str, int]:
        return {s.name: s.total for s in self.sections}

    def to_json(self, when: str | None) -> dict[str, Any]:
        return {
            "health": self.badge,
            "collected_at": when,
            "event_window_seconds": EVENT_WINDOW,
            "counts": self.counts(),
            "sections": {
                s.name: {
                    "title": s.title,
                    "total": s.total,
                    "checked": s.checked,
                    "problems": [p.to_json() for p in s.problems],
                }
                for s in self.sections
            },
        }


UNKNOWN = Health(None)


Objects = Iterable[tuple[ObjectKey, Any]]
# One object's check: None when it is fine, else (how bad, for ordering; the problem).
Check = Callable[[ObjectKey, Any], "tuple[Any, Problem] | None"]


def assess(objects: Mapping[str, Objects], collected_at: float) -> Health:
    """The health of a snapshot, given its objects of HEALTH_KINDS by kind ref."""
    workloads = [o for k in WORKLOAD_KINDS for o in objects.get(k, ())]
    return Health(
        collected_at,
        (
            _section("pods", "Pods not ready or crash-looping", objects.get("Pod", ()), _pod),
            _section("workloads", "Workloads with unavailable replicas", workloads, _workload),
            _section("nodes", "Nodes not ready", objects.get("Node", ()), _node),
            _section(
                "claims",
                "PersistentVolumeClaims not bound",
                objects.get("PersistentVolumeClaim", ()),
                _claim,
            ),
            _section(
                "events",
                "Warning Events of the last hour",
                objects.get("Event", ()),
                partial(_event, now=collected_at),
            ),
        ),
    )


def _section(name: str, title: str, objects: Objects, check: Check) -> Section:
    """Check each object; keep the worst MAX_LISTED problems (then by key), count them all."""
    found: list[tuple[Any, Problem]] = []
    checked = 0
    for key, obj in objects:
        checked += 1
        problem = check(key, obj)
        if problem is not None:
            found.append(problem)
    found.sort(key=lambda pair: str(pair[1].key))
    found.sort(key=lambda pair: pair[0], reverse=True)  # stable: worst first, then by key
    listed = tuple(p for _, p in found[:MAX_LISTED])
    return Section(name, title, listed, len(found), checked)


def _pod(key: ObjectKey, pod: Any) -> tuple[Any, Problem] | None:
    state = pod_state(pod)
    if state.finished:
        return None
    has_conditions = get(pod, "status", "conditions") is not None
    ready = state.ready_condition if has_conditions else state.ready == state.containers
    if ready and state.phase == "Running" and not state.crash_looping:
        return None
    problem = Problem(
        key,
        state.status,
        _pod_detail(pod, state.status),
        restarts=state.restarts,
        ready=f"{state.ready}/{state.containers}",
    )
    return (state.crash_looping, state.restarts), problem


def _pod_detail(pod: Any, status: str) -> str:
    """The line that says why: a waiting container's message, the last crash, a condition."""
    for container in get(pod, "status", "containerStatuses") or ():
        waiting = get(container, "state", "waiting")
        if text(get(waiting, "reason")) == status and text(get(waiting, "message")):
            return text(get(waiting, "message"))
        last = get(container, "lastState", "terminated")
        if last:
            return (
                f"container {text(get(container, 'name'))} last exited "
                f"{text(get(last, 'reason')) or 'with code'} ({get(last, 'exitCode')})"
            )
    for kind in ("PodScheduled", "Ready", "ContainersReady"):
        found = condition(pod, kind)
        if found is not None and found.get("status") != "True":
            return text(found.get("message")) or text(found.get("reason"))
    return text(get(pod, "status", "message"))


def _workload(key: ObjectKey, obj: Any) -> tuple[Any, Problem] | None:
    counts = replicas(obj)
    if not counts.unavailable:
        return None
    failing = (condition(obj, kind) for kind in ("Available", "Progressing"))
    detail = next(
        (text(c.get("message")) for c in failing if c is not None and c.get("status") != "True"),
        "",
    )
    problem = Problem(
        key, f"{counts.unavailable} unavailable", detail, ready=f"{counts.ready}/{counts.desired}"
    )
    return counts.unavailable, problem


def _node(key: ObjectKey, node: Any) -> tuple[Any, Problem] | None:
    status = node_status(node)
    if status.startswith("Ready"):
        return None
    ready = condition(node, "Ready")
    detail = text(ready.get("message")) if ready else "the node reports no Ready condition"
    return 0, Problem(key, status, detail)


def _claim(key: ObjectKey, claim: Any) -> tuple[Any, Problem] | None:
    phase = text(get(claim, "status", "phase")) or "Pending"
    if phase == "Bound":
        return None
    storage_class = text(get(claim, "spec", "storageClassName"))
    return 0, Problem(key, phase, f"storage class {storage_class}" if storage_class else "")


def _event(key: ObjectKey, event: Any, now: float) -> tuple[Any, Problem] | None:
    if get(event, "type") != "Warning":
        return None
    at = event_time(event)
    if at is None or not now - EVENT_WINDOW <= at <= now + 60:  # 60 s of clock skew
        return None
    problem = Problem(
        event_subject(event) or key,
        text(get(event, "reason")) or "Warning",
        text(get(event, "message") or get(event, "note")),
        count=event_count(event),
        at=at,
        event=key,
    )
    return at, problem
