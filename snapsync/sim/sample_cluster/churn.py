# One simulated step: the clock advances, kubelets heartbeat, and — by churn level — pods restart
# or flap readiness, controllers replace and scale pods, rollouts, drains and crash-loop storms
# progress, CronJobs fire, Events are bumped, appended and expired; then every controller,
# Service and PDB whose inputs changed is reconciled, as the control plane would.
# Rates are per simulated minute, so `minutes` scales the amount of change, and every choice
# comes from the World's RNG, so the same calls give the same states.
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from snapsync.sim.sample_cluster import (
    config,
    controllers,
    events,
    infra,
    jobs,
    lifecycle,
    network,
    operations,
    pods,
    policy,
    texts,
)
from snapsync.sim.sample_cluster.api import CHURN_LEVELS, ChangeSet, Key
from snapsync.sim.sample_cluster.controllers import KCM
from snapsync.sim.sample_cluster.fields import LAST_APPLIED, last_applied
from snapsync.sim.sample_cluster.rng import parse_rfc3339, rfc3339
from snapsync.sim.sample_cluster.world import World


@dataclass(frozen=True)
class Rates:
    """Change per simulated minute. Shares are of the objects of that sort."""

    pod_status: float  # Pods restarting or flapping readiness
    other_status: float  # other status-bearing objects (HPA metrics, certificates, nodes)
    replace: float  # objects: pods deleted and replaced, config edits, Helm upgrades
    event_bump: float  # Events seen again
    event_new: float  # new Events beyond those the changes record
    event_bump_floor: float  # Event bumps per minute whatever the size
    rollouts: float  # rollouts started
    rescales: float  # HPA rescales
    drains: float  # node drains started
    storms: float  # CrashLoopBackOff storms started
    moving: bool  # whether CronJobs fire, Events expire and started work progresses


LEVELS: dict[str, Rates] = {
    "quiet": Rates(0, 0, 0, 0, 0, 0.3, 0, 0, 0, 0, False),
    "steady": Rates(0.02, 0.005, 0.0025, 0.01, 0.003, 1, 0.05, 0.2, 0, 0, True),
    "busy": Rates(0.05, 0.02, 0.01, 0.03, 0.02, 2, 0.3, 1, 0.1, 0.15, True),
}
assert tuple(LEVELS) == CHURN_LEVELS


_CONTROLLER_ORDER = {
    "ReplicaSet": 0,
    "StatefulSet": 0,
    "DaemonSet": 0,
    "Job": 0,
    "Deployment": 1,
    "CronJob": 1,
    "Service": 2,
    "PodDisruptionBudget": 2,
}


# How kube-controller-manager derives each controller's status from what it owns.
StatusFunction = Callable[[World, dict[str, Any], str], dict[str, Any]]
_STATUS: dict[str, StatusFunction] = {
    "ReplicaSet": lambda w, o, t: controllers.replica_set_status(w, o),
    "Deployment": controllers.deployment_status,
    "StatefulSet": lambda w, o, t: controllers.stateful_set_status(w, o),
    "DaemonSet": lambda w, o, t: controllers.daemon_set_status(w, o),
    "Job": lambda w, o, t: jobs.job_status(w, o),
    "CronJob": lambda w, o, t: jobs.cron_job_status(w, o),
}


def step(w: World, level: str, minutes: float) -> ChangeSet:
    if level not in LEVELS:
        raise ValueError(
            f"unknown churn level {level!r}; expected one of {', '.join(CHURN_LEVELS)}"
        )
    if minutes <= 0:
        raise ValueError("minutes must be positive")
    rates = LEVELS[level]
    w.store.begin()
    w.step_start = w.now
    w.now += max(1, round(minutes * 60))
    _heartbeats(w)
    if rates.moving:
        operations.cron(w)
        operations.progress(w)
    for _ in range(w.rand.count(rates.rollouts * minutes)):
        operations.start_rollout(w, large=level == "busy")
    for _ in range(w.rand.count(rates.rescales * minutes)):
        operations.rescale(w)
    for _ in range(w.rand.count(rates.drains * minutes)):
        operations.drain(w)
    for _ in range(w.rand.count(rates.storms * minutes)):
        operations.storm(w)
    _pod_status(
        w, w.rand.count(rates.pod_status * len(w.store.by_kind["Pod"]) * minutes), rates.moving
    )
    _other_status(w, w.rand.count(rates.other_status * _status_bearing(w) * minutes))
    pod_keys = list(w.store.by_kind["Pod"])  # a snapshot: entries may be gone when picked
    for _ in range(w.rand.count(rates.replace * len(w.store.objects) * minutes / 2)):
        _replace(w, pod_keys)
    event_keys = list(w.event_order)
    bumps = rates.event_bump * len(event_keys) * minutes + rates.event_bump_floor * minutes
    for _ in range(w.rand.count(bumps) if event_keys else 0):
        key = w.rand.pick(event_keys)
        if key in w.store.objects:
            events.bump(w, key, w.instant())
    for _ in range(w.rand.count(rates.event_new * len(event_keys) * minutes) if pod_keys else 0):
        _new_event(w, w.rand.pick(pod_keys))
    reconcile(w, w.now)
    if rates.moving:
        events.expire(w, w.event_target)
    return w.store.change_set()


def reconcile(w: World, at: int | None) -> None:
    """Run the control loops over everything marked dirty, writing only real status changes.

    `at` is when they run; None (while building) means shortly after each object last changed,
    so a new cluster's statuses do not all carry the same instant."""
    while w.dirty:
        batch = sorted(w.dirty, key=lambda k: _CONTROLLER_ORDER.get(k[1], 3))
        w.dirty.clear()
        for key in batch:
            obj = w.store.objects.get(key)
            if obj is None:
                continue
            kind = obj["kind"]
            t = at if at is not None else _settled(w, obj)
            stamp = rfc3339(t)
            if kind == "Service":
                network.sync_endpoints(w, obj, t)
                continue
            if kind == "PodDisruptionBudget":
                new = policy.pdb_status(w, obj, t)
            elif kind in _STATUS:
                new = _STATUS[kind](w, obj, stamp)
            else:
                continue
            if new != obj.get("status"):
                obj["status"] = new
                w.store.write(key, stamp, KCM, "status")
                owner = pods.pod_owner_ref(obj)
                if owner is not None and owner["uid"] in w.store.by_uid:
                    w.dirty[w.store.by_uid[owner["uid"]]] = None


def _settled(w: World, obj: dict[str, Any]) -> int:
    """When the controllers of a new object would have finished with it."""
    uid = obj["metadata"]["uid"]
    created = [obj["metadata"]["creationTimestamp"]]
    created += [w.store.objects[k]["metadata"]["creationTimestamp"] for k in w.store.owned(uid)]
    return min(w.now, parse_rfc3339(max(created)) + w.rand.randint(5, 60))


def _status_bearing(w: World) -> int:
    return sum(
        len(w.store.by_kind.get(kind, ()))
        for kind in (
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "HorizontalPodAutoscaler",
            "Certificate",
            "Node",
            "PersistentVolumeClaim",
            "PodDisruptionBudget",
            "Service",
            "Ingress",
        )
    )


def _heartbeats(w: World) -> None:
    """Kubelets report node status and renew their Leases; leaders renew theirs."""
    for key in w.store.keys("Node"):
        t = w.now - w.rand.randint(0, 9)
        infra.heartbeat(w.store.objects[key], rfc3339(t))
        w.store.write(key, rfc3339(t), "kubelet", "status")
    for key in w.store.keys("Lease"):
        lease = w.store.objects[key]
        infra.renew_lease(w, lease, w.now - w.rand.randint(0, 9))
        w.store.write(
            key,
            lease["spec"]["renewTime"][:19] + "Z",
            lease["metadata"]["managedFields"][0]["manager"],
        )


def _running_pods(w: World) -> list[Key]:
    return [
        k
        for k in w.store.by_kind["Pod"]
        if w.store.objects[k]["status"]["phase"] == "Running" and k not in w.pending
    ]


def _pod_status(w: World, count: int, moving: bool) -> None:
    due = [k for k, t in w.pending.items() if t <= w.now] if moving else []
    for key in due:
        del w.pending[key]
        pod = w.store.objects.get(key)
        if pod is not None and pod["status"]["phase"] == "Running":
            t = w.instant()
            pods.recover(w, pod, t)
            lifecycle.write_pod(w, key, t)
    if not count:
        return
    candidates = _running_pods(w)
    for key in w.rand.sample(candidates, min(count, len(candidates))):
        pod = w.store.objects[key]
        t = w.instant()
        if w.rand.chance(0.55):
            pods.restart(
                w, pod, t, reason=w.rand.choice(("Error", "Error", "OOMKilled")), crash_loop=False
            )
            for reason in ("Pulled", "Created", "Started"):
                events.pod_event(w, pod, reason, t)
        else:
            pods.set_ready(pod, False, rfc3339(t))
            w.pending[key] = w.now + w.rand.randint(30, 240)
            events.pod_event(w, pod, "Unhealthy", t)
        lifecycle.write_pod(w, key, t)


def _other_status(w: World, count: int) -> None:
    pool = [
        k
        for kind in ("HorizontalPodAutoscaler", "Certificate", "Node")
        for k in w.store.by_kind.get(kind, ())
    ]
    for key in w.rand.sample(pool, min(count, len(pool))):
        obj = w.store.objects[key]
        t = w.instant()
        if obj["kind"] == "HorizontalPodAutoscaler":
            metric = obj["status"]["currentMetrics"][0]["resource"]["current"]
            value = max(5, min(95, metric["averageUtilization"] + w.rand.randint(-12, 12)))
            metric["averageUtilization"] = value
            metric["averageValue"] = f"{value * 2}m"
            w.store.write(key, rfc3339(t), KCM, "status")
        elif obj["kind"] == "Certificate":
            _renew_certificate(w, key, t)
        else:
            images = obj["status"]["images"]
            image = w.rand.pick(list(w.image_by_ref.values()))
            entry = {"names": [image.image_id, image.full_ref], "sizeBytes": image.size}
            if entry not in images:
                images.insert(0, entry)
                del images[16:]
                t = max(t, parse_rfc3339(obj["status"]["conditions"][0]["lastHeartbeatTime"]))
                infra.heartbeat(obj, rfc3339(t))  # a status report carries its heartbeat
                w.store.write(key, rfc3339(t), "kubelet", "status")


def _renew_certificate(w: World, key: Key, t: int) -> None:
    cert = w.store.objects[key]
    cert["status"] = config.certificate_status(t, cert["status"]["revision"] + 1)
    w.store.write(key, rfc3339(t), "cert-manager-certificates-readiness", "status")
    secret_key = ("v1", "Secret", key[2], cert["spec"]["secretName"])
    if secret_key in w.store.objects:
        secret = w.store.objects[secret_key]
        secret["data"]["tls.crt"] = texts.b64(
            texts.pem(w.rand, "CERTIFICATE", 1300) + texts.pem(w.rand, "CERTIFICATE", 1100)
        )
        secret["data"]["tls.key"] = texts.b64(texts.pem(w.rand, "RSA PRIVATE KEY", 1190))
        w.store.write(secret_key, rfc3339(t), "cert-manager-certificates-issuing")
    events.record(
        w,
        cert,
        "Issuing",
        "The certificate has been successfully issued",
        t,
        component="cert-manager-certificates-issuing",
    )


def _replace(w: World, pod_keys: list[Key]) -> None:
    roll = w.rand.random()
    t = w.instant()
    if roll < 0.75:
        candidates = [
            k
            for k in w.rand.sample(pod_keys, min(20, len(pod_keys)))
            if k in w.store.objects
            and (pods.pod_owner_ref(w.store.objects[k]) or {}).get("kind") == "ReplicaSet"
        ]
        if candidates:
            lifecycle.kill(w, candidates[0], t)
    elif roll < 0.9:
        _helm_upgrade(w, t)
    else:
        _config_churn(w, t)


def _helm_upgrade(w: World, t: int) -> None:
    if not w.helm_deployed:
        _config_churn(w, t)
        return
    key = w.rand.pick(list(w.helm_deployed))
    del w.helm_deployed[key]
    old = w.store.objects[key]
    labels = old["metadata"]["labels"]
    labels["status"] = "superseded"
    labels["modifiedAt"] = str(t)
    w.store.write(key, rfc3339(t), "helm")
    release, revision = labels["name"], int(labels["version"]) + 1
    size = len(old["data"]["release"]) * 9 // 16
    config.helm_release_secret(w, key[2], release, revision, created=t, size=size, deployed=True)
    stale = ("v1", "Secret", key[2], f"sh.helm.release.v1.{release}.v{revision - 10}")
    if stale in w.store.objects:
        w.store.delete(stale)


def _config_churn(w: World, t: int) -> None:
    """Someone edits an app's configuration and applies it again."""
    maps = [k for k in w.store.keys("ConfigMap") if k[3].endswith("-config")]
    if not maps:
        return
    key = w.rand.pick(maps)
    obj = w.store.objects[key]
    for name, body in obj["data"].items():
        obj["data"][name] = body.split("# revision ")[0] + f"# revision {t}\n"
    annotations = obj["metadata"].get("annotations") or {}
    if LAST_APPLIED in annotations:
        annotations[LAST_APPLIED] = last_applied(obj, ("data",))
    w.store.write(key, rfc3339(t), obj["metadata"]["managedFields"][0]["manager"])


def _new_event(w: World, key: Key) -> None:
    """Something kubelet reports about a running pod (a failed probe, a back-off, a pull)."""
    pod = w.store.objects.get(key)
    if pod is not None and pod["status"]["phase"] == "Running":
        events.pod_event(w, pod, w.rand.choice(("Unhealthy", "BackOff", "Pulled")), w.instant())
