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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from snapsync.keys import ObjectKey
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


def assess(objects: Mapping[str, Iterable[tuple[ObjectKey, Any]]], collected_at: float) -> Health:
    """The health of a snapshot, given its objects of HEALTH_KINDS by kind ref."""
    return Health(
        collected_at,
        (
            _pods(objects.get("Pod", ())),
            _workloads([o for k in WORKLOAD_KINDS for o in objects.get(k, ())]),
            _nodes(objects.get("Node", ())),
            _claims(objects.get("PersistentVolumeClaim", ())),
            _events(objects.get("Event", ()), collected_at),
        ),
    )


def _section(
    name: str, title: str, found: list[tuple[Any, Problem]], checked: int, reverse: bool = True
) -> Section:
    found.sort(key=lambda pair: (pair[0], str(pair[1].key)), reverse=reverse)
    listed = tuple(p for _, p in found[:MAX_LISTED])
    return Section(name, title, listed, len(found), checked)


def _pods(pods: Iterable[tuple[ObjectKey, Any]]) -> Section:
    found: list[tuple[Any, Problem]] = []
    checked = 0
    for key, pod in pods:
        checked += 1
        state = pod_state(pod)
        if state.finished:
            continue
        has_conditions = get(pod, "status", "conditions") is not None
        ready = state.ready_condition if has_conditions else state.ready == state.containers
        if ready and state.phase == "Running" and not state.crash_looping:
            continue
        problem = Problem(
            key,
            state.status,
            _pod_detail(pod, state.status),
            restarts=state.restarts,
            ready=f"{state.ready}/{state.containers}",
        )
        found.append(((state.crash_looping, state.restarts), problem))
    return _section("pods", "Pods not ready or crash-looping", found, checked)


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


def _workloads(workloads: Iterable[tuple[ObjectKey, Any]]) -> Section:
    found: list[tuple[Any, Problem]] = []
    checked = 0
    for key, obj in workloads:
        checked += 1
        counts = replicas(obj)
        if not counts.unavailable:
            continue
        progressing = condition(obj, "Progressing")
        available = condition(obj, "Available")
        detail = next(
            (
                text(c.get("message"))
                for c in (available, progressing)
                if c is not None and c.get("status") != "True"
            ),
            "",
        )
        problem = Problem(
            key,
            f"{counts.unavailable} unavailable",
            detail,
            ready=f"{counts.ready}/{counts.desired}",
        )
        found.append((counts.unavailable, problem))
    return _section("workloads", "Workloads with unavailable replicas", found, checked)


def _nodes(nodes: Iterable[tuple[ObjectKey, Any]]) -> Section:
    found: list[tuple[Any, Problem]] = []
    checked = 0
    for key, node in nodes:
        checked += 1
        status = node_status(node)
        if status.startswith("Ready"):
            continue
        ready = condition(node, "Ready")
        detail = text(ready.get("message")) if ready else "the node reports no Ready condition"
        found.append((0, Problem(key, status, detail)))
    return _section("nodes", "Nodes not ready", found, checked, reverse=False)


def _claims(claims: Iterable[tuple[ObjectKey, Any]]) -> Section:
    found: list[tuple[Any, Problem]] = []
    checked = 0
    for key, claim in claims:
        checked += 1
        phase = text(get(claim, "status", "phase")) or "Pending"
        if phase == "Bound":
            continue
        storage_class = text(get(claim, "spec", "storageClassName"))
        detail = f"storage class {storage_class}" if storage_class else ""
        found.append((0, Problem(key, phase, detail)))
    return _section("claims", "PersistentVolumeClaims not bound", found, checked, reverse=False)


def _events(events: Iterable[tuple[ObjectKey, Any]], now: float) -> Section:
    found: list[tuple[Any, Problem]] = []
    checked = 0
    for key, event in events:
        checked += 1
        if get(event, "type") != "Warning":
            continue
        at = event_time(event)
        if at is None or not now - EVENT_WINDOW <= at <= now + 60:  # 60 s of clock skew
            continue
        subject = event_subject(event) or key
        reason = text(get(event, "reason"))
        problem = Problem(
            subject,
            reason or "Warning",
            text(get(event, "message") or get(event, "note")),
            count=event_count(event),
            at=at,
            event=key,
        )
        found.append((at, problem))
    return _section("events", "Warning Events of the last hour", found, checked)
