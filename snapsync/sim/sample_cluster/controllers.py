# Workload controllers: Deployments with their ReplicaSets, StatefulSets, DaemonSets, CronJobs
# and Jobs, and the pods each one owns; plus how kube-controller-manager recomputes their status.
# Invariant: pods are created and deleted only through `spawn` / `scale` / `delete_tree`, so the
# owner index stays right and every controller whose pods changed is marked dirty.
from __future__ import annotations

import re
from typing import Any

from snapsync.sim.sample_cluster import pods
from snapsync.sim.sample_cluster.api import Key
from snapsync.sim.sample_cluster.fields import bookkeep, fields_v1, template_fields
from snapsync.sim.sample_cluster.rng import rfc3339
from snapsync.sim.sample_cluster.store import key_of
from snapsync.sim.sample_cluster.world import World

KCM = "kube-controller-manager"
_SEMVER = re.compile(r"(v?)(\d+)\.(\d+)\.(\d+)")
APPLY = "kubectl-client-side-apply"


def finish(w: World, obj: dict[str, Any], created: int, manager: str) -> Key:
    bookkeep(
        obj,
        manager=manager,
        time=rfc3339(created),
        applied=manager == APPLY,
        status_manager=KCM,
        status_time=rfc3339(created + 30),
    )
    return w.store.add(obj)


# --- pods ---------------------------------------------------------------------------------------


def spawn(w: World, owner: dict[str, Any], created: int, index: int | None = None) -> Key:
    """A new pod for `owner`, named and labelled the way its controller does it."""
    kind, name = owner["kind"], owner["metadata"]["name"]
    labels: dict[str, str] = {}
    generate_name: str | None = f"{name}-"
    if kind == "StatefulSet":
        pod_name = f"{name}-{index}"
        generate_name = None
        labels = {
            "apps.kubernetes.io/pod-index": str(index),
            "controller-revision-hash": owner["status"].get("updateRevision", f"{name}-0"),
            "statefulset.kubernetes.io/pod-name": pod_name,
        }
    else:
        pod_name = f"{name}-{w.rand.suffix()}"
    if kind == "DaemonSet":
        node = w.nodes[index or 0]
        labels = {
            "controller-revision-hash": w.rand.template_hash(),
            "pod-template-generation": "1",
        }
    else:
        node = w.rand.pick(w.schedulable())
    pod = pods.new_pod(
        w, owner, pod_name, node, created, generate_name=generate_name, extra_labels=labels
    )
    if kind == "StatefulSet":
        pod["spec"]["hostname"] = pod_name
        pod["spec"]["subdomain"] = owner["spec"]["serviceName"]
        for claim in owner["spec"].get("volumeClaimTemplates", ()):
            claim_name = f"{claim['metadata']['name']}-{pod_name}"
            pod["spec"]["volumes"].insert(
                0,
                {
                    "name": claim["metadata"]["name"],
                    "persistentVolumeClaim": {"claimName": claim_name},
                },
            )
    if kind == "DaemonSet":
        pod["spec"]["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                }
            }
        }
    key = w.store.add(pod)
    w.dirty[key_of(owner)] = None
    return key


def scale(w: World, ctrl_key: Key, t: int) -> tuple[list[Key], list[Key]]:
    """Create or delete pods until a ReplicaSet/StatefulSet runs spec.replicas of them."""
    ctrl = w.store.objects[ctrl_key]
    want = ctrl["spec"]["replicas"]
    owned = w.store.owned(ctrl["metadata"]["uid"])
    created: list[Key] = []
    deleted: list[Key] = []
    if ctrl["kind"] == "StatefulSet":
        names = {k[3] for k in owned}
        for i in range(want):
            if f"{ctrl['metadata']['name']}-{i}" not in names:
                created.append(spawn(w, ctrl, t, index=i))
        deleted = [k for k in owned if int(k[3].rsplit("-", 1)[1]) >= want]
    else:
        created = [spawn(w, ctrl, t) for _ in range(want - len(owned))]
        if len(owned) > want:
            ranked = sorted(owned, key=lambda k: pods.is_ready(w.store.objects[k]))
            deleted = ranked[: len(owned) - want]
    for key in deleted:
        w.store.delete(key)
    w.dirty[ctrl_key] = None
    return created, deleted


def delete_tree(w: World, key: Key) -> list[Key]:
    """Delete an object and, as the garbage collector does, everything it controls."""
    obj = w.store.objects[key]
    gone = []
    for child in w.store.owned(obj["metadata"]["uid"]):
        gone.extend(delete_tree(w, child))
    owner = pods.pod_owner_ref(obj)
    if owner is not None and owner["uid"] in w.store.by_uid:
        w.dirty[w.store.by_uid[owner["uid"]]] = None
    w.store.delete(key)
    return [*gone, key]


# --- Deployments and ReplicaSets --------------------------------------------------------------


def deployment(
    w: World,
    namespace: str,
    name: str,
    tmpl: dict[str, Any],
    *,
    replicas: int,
    created: int,
    revisions: int,
    manager: str,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
) -> Key:
    """A Deployment with `revisions` ReplicaSets (older ones scaled to zero) and its pods."""
    span = max(60, (w.now - created) // (revisions + 1))
    history = [tmpl]
    for rev in range(2, revisions + 1):
        history.append(next_template(w, history[-1], created + span * (rev - 1)))
    tmpl = history[-1]
    dep: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": w.meta(
            name,
            namespace,
            created=created,
            labels=labels,
            annotations=dict(annotations or {}),
            generation=revisions,
        ),
        "spec": {
            "progressDeadlineSeconds": 600,
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "strategy": {
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                "type": "RollingUpdate",
            },
            "template": tmpl,
        },
        "status": {},
    }
    key = finish(w, dep, created, manager)
    dep["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(
        revisions
    )
    for rev, revision_template in enumerate(history, start=1):
        rs_created = created + span * (rev - 1) + w.rand.randint(0, 30)
        live = replicas if rev == revisions else 0
        replica_set(w, dep, revision_template, rev, live, rs_created)
    w.dirty[key] = None
    return key


def next_template(w: World, tmpl: dict[str, Any], t: int) -> dict[str, Any]:
    """The next revision of a pod template: the image's next patch release when it has one,
    else what `kubectl rollout restart` does (a restartedAt annotation)."""
    new: dict[str, Any] = pods.clone(tmpl)
    cont = new["spec"]["containers"][0]
    image = w.image_by_ref[cont["image"]]
    semver = _SEMVER.fullmatch(image.tag)
    if semver:
        v, major, minor, patch = semver.groups()
        cont["image"] = w.image_version(image, f"{v}{major}.{minor}.{int(patch) + 1}").ref
    else:
        annotations = new["metadata"].setdefault("annotations", {})
        annotations["kubectl.kubernetes.io/restartedAt"] = rfc3339(t)
    return new


def replica_set(
    w: World, dep: dict[str, Any], tmpl: dict[str, Any], revision: int, replicas: int, created: int
) -> Key:
    name = dep["metadata"]["name"]
    pod_hash = w.rand.template_hash()
    tmpl = pods.clone(tmpl)
    tmpl["metadata"]["labels"]["pod-template-hash"] = pod_hash
    selector = {**dep["spec"]["selector"]["matchLabels"], "pod-template-hash": pod_hash}
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": w.meta(
            f"{name}-{pod_hash}",
            dep["metadata"]["namespace"],
            created=created,
            labels=dict(tmpl["metadata"]["labels"]),
            annotations={
                "deployment.kubernetes.io/desired-replicas": str(dep["spec"]["replicas"]),
                "deployment.kubernetes.io/max-replicas": str(dep["spec"]["replicas"] + 1),
                "deployment.kubernetes.io/revision": str(revision),
            },
            owner=dep,
            generation=1,
        ),
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": tmpl},
        "status": {"observedGeneration": 1, "replicas": 0},
    }
    dep_template = template_fields(dep) if tmpl["spec"] == dep["spec"]["template"]["spec"] else None
    body_fields = None
    if dep_template is not None:
        labels = fields_v1({"labels": tmpl["metadata"]["labels"]})
        body_fields = {
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {"f:metadata": labels, "f:spec": dep_template},
            }
        }
    bookkeep(
        rs,
        manager=KCM,
        time=rfc3339(created),
        status_manager=KCM,
        status_time=rfc3339(created + 30),
        body_fields=body_fields,
    )
    key = w.store.add(rs)
    scale(w, key, created + 5)
    rs["status"] = replica_set_status(w, rs)
    return key


def pods_of(w: World, ctrl: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The pods a controller owns, and how many of them are ready."""
    owned = [w.store.objects[k] for k in w.store.owned(ctrl["metadata"]["uid"])]
    return owned, sum(1 for p in owned if pods.is_ready(p))


def replica_set_status(w: World, rs: dict[str, Any]) -> dict[str, Any]:
    owned, ready = pods_of(w, rs)
    gen = rs["metadata"]["generation"]
    if not owned:
        return {"observedGeneration": gen, "replicas": 0}
    return {
        "availableReplicas": ready,
        "fullyLabeledReplicas": len(owned),
        "observedGeneration": gen,
        "readyReplicas": ready,
        "replicas": len(owned),
    }


def current_replica_set(w: World, dep: dict[str, Any]) -> dict[str, Any] | None:
    sets = [w.store.objects[k] for k in w.store.owned(dep["metadata"]["uid"])]
    sets = [s for s in sets if s["kind"] == "ReplicaSet"]
    if not sets:
        return None
    return max(
        sets, key=lambda s: int(s["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
    )


def set_condition(
    conds: list[dict[str, Any]],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    t: str,
    *,
    update_time: bool = False,
) -> None:
    """Set a controller condition, moving lastTransitionTime only when its status flips."""
    value = "True" if status else "False"
    cond = next((c for c in conds if c["type"] == kind), None)
    if cond is None:
        cond = {"lastTransitionTime": t, "type": kind}
        conds.append(cond)
    elif cond.get("status") != value:
        cond["lastTransitionTime"] = t
    if update_time and (cond.get("reason") != reason or cond.get("status") != value):
        cond["lastUpdateTime"] = t
    cond.update(message=message, reason=reason, status=value)
    ordered = {k: cond[k] for k in sorted(cond)}
    cond.clear()
    cond.update(ordered)


def deployment_status(w: World, dep: dict[str, Any], t: str) -> dict[str, Any]:
    sets = [w.store.objects[k] for k in w.store.owned(dep["metadata"]["uid"])]
    current = current_replica_set(w, dep)
    total = sum(s["status"].get("replicas", 0) for s in sets)
    ready = sum(s["status"].get("readyReplicas", 0) for s in sets)
    updated = current["status"].get("replicas", 0) if current else 0
    want = dep["spec"]["replicas"]
    status: dict[str, Any] = {}
    if ready:
        status["availableReplicas"] = ready
    conds = pods.clone(dep["status"].get("conditions", []))
    available = ready >= want - want // 4
    set_condition(
        conds,
        "Available",
        available,
        "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
        "Deployment has minimum availability."
        if available
        else "Deployment does not have minimum availability.",
        t,
        update_time=True,
    )
    rs_name = current["metadata"]["name"] if current else dep["metadata"]["name"]
    done = updated == want == total
    set_condition(
        conds,
        "Progressing",
        True,
        "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
        f'ReplicaSet "{rs_name}" has successfully progressed.'
        if done
        else f'ReplicaSet "{rs_name}" is progressing.',
        t,
        update_time=True,
    )
    status["conditions"] = sorted(conds, key=lambda c: c["type"])
    status["observedGeneration"] = dep["metadata"]["generation"]
    if ready:
        status["readyReplicas"] = ready
    status["replicas"] = total
    if want - ready > 0:
        status["unavailableReplicas"] = want - ready
    status["updatedReplicas"] = updated
    return status


# --- StatefulSets, DaemonSets ------------------------------------------------------------------


def stateful_set(
    w: World,
    namespace: str,
    name: str,
    tmpl: dict[str, Any],
    *,
    replicas: int,
    created: int,
    storage: str,
    service: str,
    manager: str,
    labels: dict[str, str],
) -> Key:
    revision = f"{name}-{w.rand.template_hash()}"
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": w.meta(name, namespace, created=created, labels=labels, generation=1),
        "spec": {
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
            "podManagementPolicy": "OrderedReady",
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "serviceName": service,
            "template": tmpl,
            "updateStrategy": {"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"},
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"creationTimestamp": None, "name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": storage}},
                        "volumeMode": "Filesystem",
                    },
                    "status": {"phase": "Pending"},
                }
            ],
        },
        "status": {"currentRevision": revision, "updateRevision": revision},
    }
    key = finish(w, sts, created, manager)
    scale(w, key, created + 10)
    sts["status"] = stateful_set_status(w, sts)
    return key


def stateful_set_status(w: World, sts: dict[str, Any]) -> dict[str, Any]:
    owned, ready = pods_of(w, sts)
    revision = sts["status"]["updateRevision"]
    return {
        "availableReplicas": ready,
        "collisionCount": 0,
        "currentReplicas": len(owned),
        "currentRevision": revision,
        "observedGeneration": sts["metadata"]["generation"],
        "readyReplicas": ready,
        "replicas": len(owned),
        "updateRevision": revision,
        "updatedReplicas": len(owned),
    }


def daemon_set(
    w: World,
    namespace: str,
    name: str,
    tmpl: dict[str, Any],
    *,
    created: int,
    manager: str,
    labels: dict[str, str],
) -> Key:
    tmpl["spec"]["tolerations"] = [{"operator": "Exists"}]
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": w.meta(
            name,
            namespace,
            created=created,
            labels=labels,
            annotations={"deprecated.daemonset.template.generation": "1"},
            generation=1,
        ),
        "spec": {
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": tmpl,
            "updateStrategy": {
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
                "type": "RollingUpdate",
            },
        },
        "status": {},
    }
    key = finish(w, ds, created, manager)
    for i in range(len(w.nodes)):
        spawn(w, ds, created + 5, index=i)
    ds["status"] = daemon_set_status(w, ds)
    return key


def daemon_set_status(w: World, ds: dict[str, Any]) -> dict[str, Any]:
    owned, ready = pods_of(w, ds)
    status = {
        "currentNumberScheduled": len(owned),
        "desiredNumberScheduled": len(w.nodes),
        "numberAvailable": ready,
        "numberMisscheduled": 0,
        "numberReady": ready,
        "observedGeneration": ds["metadata"]["generation"],
        "updatedNumberScheduled": len(owned),
    }
    if len(w.nodes) - ready:
        status["numberUnavailable"] = len(w.nodes) - ready
    return status
