# Long-running operations the churn engine starts and advances step by step: CronJob schedules
# and their Jobs, Deployment rollouts (a new ReplicaSet surging while the old one drains), HPA
# rescales through the scale subresource, node drains (cordon, evict, uncordon later) and
# CrashLoopBackOff storms. Their progress lives in World (rollouts, drains, storms, jobs).
from __future__ import annotations

from typing import Any

from snapsync.sim.sample_cluster import controllers, events, jobs, lifecycle, pods, policy
from snapsync.sim.sample_cluster.api import Key
from snapsync.sim.sample_cluster.controllers import KCM
from snapsync.sim.sample_cluster.fields import LAST_APPLIED, last_applied
from snapsync.sim.sample_cluster.rng import rfc3339
from snapsync.sim.sample_cluster.store import key_of
from snapsync.sim.sample_cluster.world import World


def cron(w: World) -> None:
    for key, finish in list(w.running_jobs.items()):
        if finish <= w.now:
            del w.running_jobs[key]
            if key in w.store.objects:
                for pod_key in w.store.owned(w.store.objects[key]["metadata"]["uid"]):
                    w.pending.pop(pod_key, None)
                    pods.complete(w.store.objects[pod_key], finish)
                    lifecycle.write_pod(w, pod_key, finish)
                events.record(
                    w,
                    w.store.objects[key],
                    "Completed",
                    "Job completed",
                    finish,
                    component="job-controller",
                )
    for key in w.store.keys("CronJob"):
        cj = w.store.objects[key]
        period = jobs.CRON_PERIODS[cj["spec"]["schedule"]] * 60
        tick = (w.now // period) * period
        if tick <= w.step_start:
            continue
        job_key = jobs.job(w, cj, tick, finished=False)
        job = w.store.objects[job_key]
        w.running_jobs[job_key] = tick + w.rand.randint(40, 170)
        events.record(
            w,
            cj,
            "SuccessfulCreate",
            f"Created job {job_key[3]}",
            tick,
            component="cronjob-controller",
        )
        for pod_key in w.store.owned(job["metadata"]["uid"]):
            events.record(
                w,
                job,
                "SuccessfulCreate",
                f"Created pod: {pod_key[3]}",
                tick,
                component="job-controller",
            )
            events.pod_started(w, w.store.objects[pod_key], tick + 1)
        runs = sorted(
            w.store.owned(cj["metadata"]["uid"]),
            key=lambda k: w.store.objects[k]["status"]["startTime"],
        )
        for stale in runs[: max(0, len(runs) - 4)]:
            controllers.delete_tree(w, stale)
            events.record(
                w,
                cj,
                "SuccessfulDelete",
                f"Deleted job {stale[3]}",
                tick,
                component="cronjob-controller",
            )
        w.dirty[key] = None


def _deployments(w: World) -> list[Key]:
    return [k for k in w.store.keys("Deployment") if k not in w.rollouts and k not in w.storms]


def start_rollout(w: World, *, large: bool) -> None:
    candidates = _deployments(w)
    if not candidates:
        return
    if large:
        key = max(candidates, key=lambda k: (w.store.objects[k]["spec"]["replicas"], k))
    else:
        small = [k for k in candidates if w.store.objects[k]["spec"]["replicas"] <= 6]
        key = w.rand.pick(small or candidates)
    dep = w.store.objects[key]
    t = w.instant()
    tmpl = controllers.next_template(w, dep["spec"]["template"], t)
    dep["spec"]["template"] = tmpl
    dep["metadata"]["generation"] += 1
    annotations = dep["metadata"]["annotations"]
    revision = int(annotations["deployment.kubernetes.io/revision"]) + 1
    annotations["deployment.kubernetes.io/revision"] = str(revision)
    if LAST_APPLIED in annotations:  # rolled out by `kubectl apply` of the new manifest
        annotations[LAST_APPLIED] = last_applied(dep, ("spec",))
    w.store.write(key, rfc3339(t), dep["metadata"]["managedFields"][0]["manager"])
    rs_key = controllers.replica_set(w, dep, tmpl, revision, 0, t)
    w.rollouts[key] = rs_key
    w.dirty[key] = None


def progress(w: World) -> None:
    for key, rs_key in list(w.rollouts.items()):
        if key not in w.store.objects or rs_key not in w.store.objects:
            del w.rollouts[key]
            continue
        dep = w.store.objects[key]
        t = w.instant()
        want = dep["spec"]["replicas"]
        surge = max(1, want // 4)
        new_rs = w.store.objects[rs_key]
        grow = min(want, new_rs["spec"]["replicas"] + surge)
        _set_replicas(w, dep, rs_key, grow, t)
        shrink = surge
        for old_key in w.store.owned(dep["metadata"]["uid"]):
            old = w.store.objects[old_key]
            if old_key == rs_key or old["spec"]["replicas"] == 0 or shrink == 0:
                continue
            cut = min(shrink, old["spec"]["replicas"])
            shrink -= cut
            _set_replicas(w, dep, old_key, old["spec"]["replicas"] - cut, t)
        if grow == want and all(
            w.store.objects[k]["spec"]["replicas"] == 0
            for k in w.store.owned(dep["metadata"]["uid"])
            if k != rs_key
        ):
            del w.rollouts[key]
            _prune_history(w, dep)
    for node, until in list(w.drains.items()):
        if until <= w.now:
            del w.drains[node]
            _cordon(w, node, w.instant(), cordoned=False)
    for key, until in list(w.storms.items()):
        storm_pods = (
            [
                k
                for rs in w.store.owned(w.store.objects[key]["metadata"]["uid"])
                if key in w.store.objects
                for k in w.store.owned(w.store.objects[rs]["metadata"]["uid"])
            ]
            if key in w.store.objects
            else []
        )
        for pod_key in storm_pods:
            pod = w.store.objects[pod_key]
            t = w.instant()
            if until <= w.now:
                pods.recover(w, pod, t)
            else:
                pods.restart(w, pod, t, reason="Error", crash_loop=True)
                events.pod_event(w, pod, "BackOff", t)
            lifecycle.write_pod(w, pod_key, t)
        if until <= w.now:
            del w.storms[key]


def _prune_history(w: World, dep: dict[str, Any]) -> None:
    """Delete the oldest idle ReplicaSets beyond revisionHistoryLimit, as the controller does."""
    revision = "deployment.kubernetes.io/revision"
    idle = sorted(
        (
            k
            for k in w.store.owned(dep["metadata"]["uid"])
            if not w.store.objects[k]["spec"]["replicas"]
        ),
        key=lambda k: int(w.store.objects[k]["metadata"]["annotations"][revision]),
    )
    for stale in idle[: max(0, len(idle) - dep["spec"]["revisionHistoryLimit"])]:
        w.store.delete(stale)


def _set_replicas(w: World, dep: dict[str, Any], rs_key: Key, replicas: int, t: int) -> None:
    rs = w.store.objects[rs_key]
    if rs["spec"]["replicas"] == replicas:
        return
    direction = "up" if replicas > rs["spec"]["replicas"] else "down"
    before = rs["spec"]["replicas"]
    rs["spec"]["replicas"] = replicas
    rs["metadata"]["generation"] += 1
    rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] = str(
        dep["spec"]["replicas"]
    )
    w.store.write(rs_key, rfc3339(t), KCM)
    events.record(
        w,
        dep,
        "ScalingReplicaSet",
        f"Scaled {direction} replica set {rs_key[3]} to {replicas} from {before}",
        t,
        component="deployment-controller",
    )
    lifecycle.converge(w, rs_key, t)
    w.dirty[key_of(dep)] = None


def rescale(w: World) -> None:
    hpas = w.store.keys("HorizontalPodAutoscaler")
    if not hpas:
        return
    key = w.rand.pick(hpas)
    hpa = w.store.objects[key]
    dep_key = ("apps/v1", "Deployment", key[2], hpa["spec"]["scaleTargetRef"]["name"])
    if dep_key not in w.store.objects or dep_key in w.rollouts:
        return
    dep = w.store.objects[dep_key]
    current = dep["spec"]["replicas"]
    spec = hpa["spec"]
    desired = max(
        spec["minReplicas"],
        min(spec["maxReplicas"], current + w.rand.choice((-2, -1, -1, 1, 1, 2))),
    )
    if desired == current:
        return
    t = w.instant()
    utilization = 70 * desired // current + w.rand.randint(-5, 5)
    since = hpa["status"]["conditions"][0]["lastTransitionTime"]
    hpa["status"] = policy.hpa_status(hpa, current, desired, max(5, utilization), t, 0)
    for cond in hpa["status"]["conditions"]:
        cond["lastTransitionTime"] = since
    w.store.write(key, rfc3339(t), KCM, "status")
    verb = "above" if desired > current else "below"
    events.record(
        w,
        hpa,
        "SuccessfulRescale",
        f"New size: {desired}; reason: cpu resource utilization (percentage of request) "
        f"{verb} target",
        t,
        component="horizontal-pod-autoscaler",
    )
    dep["spec"]["replicas"] = desired
    dep["metadata"]["generation"] += 1
    w.store.write(dep_key, rfc3339(t), KCM, "scale", {"f:spec": {"f:replicas": {}}})
    current_rs = controllers.current_replica_set(w, dep)
    if current_rs is not None:
        _set_replicas(w, dep, key_of(current_rs), desired, t)


def drain(w: World) -> None:
    """`kubectl drain`: cordon a node, then evict its pods; controllers recreate them elsewhere."""
    nodes = [n for n in w.nodes if n not in w.cordoned]
    if len(nodes) < 2:
        return
    node = w.rand.pick(nodes)
    t = w.instant()
    _cordon(w, node, t, cordoned=True)
    w.drains[node] = w.now + w.rand.randint(300, 900)
    for pod_key in w.store.keys("Pod"):
        pod = w.store.objects.get(pod_key)
        if pod is None or pod["spec"]["nodeName"] != node:
            continue
        owner = pods.pod_owner_ref(pod)
        if owner is None or owner["kind"] not in ("ReplicaSet", "StatefulSet"):
            continue
        lifecycle.kill(w, pod_key, t)
        if owner["kind"] == "StatefulSet" and owner["uid"] in w.store.by_uid:
            lifecycle.converge(w, w.store.by_uid[owner["uid"]], t)


def _cordon(w: World, node: str, t: int, *, cordoned: bool) -> None:
    """Mark a node (un)schedulable, with the taint and the Event kubelet records."""
    key = ("v1", "Node", "", node)
    obj = w.store.objects[key]
    if cordoned:
        taint = {"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable"}
        obj["spec"]["taints"] = [{**taint, "timeAdded": rfc3339(t)}]
        obj["spec"]["unschedulable"] = True
        w.cordoned.add(node)
    else:
        obj["spec"].pop("taints", None)
        obj["spec"].pop("unschedulable", None)
        w.cordoned.discard(node)
    owned: dict[str, Any] = {"f:spec": {"f:taints": {}, "f:unschedulable": {}}}
    w.store.write(key, rfc3339(t), "kubectl-cordon", fields=owned)
    condition = "NodeNotSchedulable" if cordoned else "NodeSchedulable"
    message = f"Node {node} status is now: {condition}"
    events.record(w, obj, condition, message, t, component="kubelet", host=node)


def storm(w: World) -> None:
    candidates = [k for k in _deployments(w) if k[2] != "kube-system"]
    if not candidates:
        return
    key = w.rand.pick(candidates)
    w.storms[key] = w.now + w.rand.randint(180, 600)
