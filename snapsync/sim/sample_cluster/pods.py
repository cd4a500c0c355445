# Pods and pod templates: container specs as the API defaults them, the fields admission and the
# scheduler add to a pod, and kubelet status blocks (conditions, containerStatuses, IPs).
# A pod's spec is a copy of its controller's template plus per-pod additions; its controller's
# fieldsV1 are shared per template (see fields.py on sharing).
from __future__ import annotations

import marshal
from typing import Any

from snapsync.sim.sample_cluster.fields import fields_v1, managed_entry, template_fields
from snapsync.sim.sample_cluster.rng import rfc3339
from snapsync.sim.sample_cluster.world import Image, World

_DEFAULT_TOLERATIONS = [
    {
        "effect": "NoExecute",
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "tolerationSeconds": 300,
    },
    {
        "effect": "NoExecute",
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "tolerationSeconds": 300,
    },
]
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def clone(value: Any) -> Any:
    """A deep copy of JSON-like data (marshal without back-references: fast and unshared)."""
    return marshal.loads(marshal.dumps(value, 2))


def probe(port: int, path: str, initial_delay: int) -> dict[str, Any]:
    return {
        "failureThreshold": 3,
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": 10,
        "successThreshold": 1,
        "timeoutSeconds": 1,
    }


def container(
    name: str,
    image: Image,
    *,
    port: int | None = None,
    requests: tuple[str, str] | None = ("100m", "128Mi"),
    limits: tuple[str, str] | None = ("500m", "256Mi"),
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    mounts: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """A container spec with the defaults the API server fills in."""
    c: dict[str, Any] = {}
    if args:
        c["args"] = args
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    c["image"] = image.ref
    c["imagePullPolicy"] = "IfNotPresent"
    if port is not None:
        c["livenessProbe"] = probe(port, "/healthz", 15)
    c["name"] = name
    if port is not None:
        c["ports"] = [{"containerPort": port, "name": "http", "protocol": "TCP"}]
        c["readinessProbe"] = probe(port, "/ready", 5)
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = {"cpu": limits[0], "memory": limits[1]}
    if requests:
        resources["requests"] = {"cpu": requests[0], "memory": requests[1]}
    c["resources"] = resources
    c["terminationMessagePath"] = "/dev/termination-log"
    c["terminationMessagePolicy"] = "File"
    if mounts:
        c["volumeMounts"] = [{"mountPath": path, "name": vol} for vol, path in mounts]
    return c


def template(
    labels: dict[str, str],
    containers: list[dict[str, Any]],
    *,
    service_account: str = "",
    volumes: list[dict[str, Any]] | None = None,
    restart_policy: str = "Always",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod template as a controller's spec.template holds it (defaults filled in)."""
    meta: dict[str, Any] = {"creationTimestamp": None}
    if annotations:
        meta["annotations"] = annotations
    meta["labels"] = labels
    spec: dict[str, Any] = {
        "containers": containers,
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": restart_policy,
        "schedulerName": "default-scheduler",
        "securityContext": {},
    }
    if service_account:
        spec["serviceAccount"] = service_account
        spec["serviceAccountName"] = service_account
    spec["terminationGracePeriodSeconds"] = 30
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": meta, "spec": spec}


def _api_access_volume(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        "name": "kube-root-ca.crt",
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                "path": "namespace",
                            }
                        ]
                    }
                },
            ],
        },
    }


def new_pod(
    w: World,
    owner: dict[str, Any],
    name: str,
    node: str,
    created: int,
    *,
    generate_name: str | None,
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A scheduled, running pod made from `owner`'s template, as its controller creates it."""
    tmpl = owner["spec"]["template"]
    labels = dict(tmpl["metadata"]["labels"])
    if extra_labels:
        labels.update(extra_labels)
    meta = w.meta(
        name,
        owner["metadata"]["namespace"],
        created=created,
        labels=labels,
        annotations=dict(tmpl["metadata"].get("annotations") or {}) or None,
        owner=owner,
        generate_name=generate_name,
    )
    spec = clone(tmpl["spec"])
    access = f"kube-api-access-{w.rand.suffix()}"
    for c in spec["containers"]:
        c.setdefault("volumeMounts", []).append(
            {"mountPath": SA_MOUNT, "name": access, "readOnly": True}
        )
    spec["enableServiceLinks"] = True
    spec["nodeName"] = node
    spec["preemptionPolicy"] = "PreemptLowerPriority"
    spec["priority"] = 0
    spec.setdefault("serviceAccount", "default")
    spec.setdefault("serviceAccountName", "default")
    spec["tolerations"] = clone(_DEFAULT_TOLERATIONS)
    spec["volumes"] = [*spec.get("volumes", ()), _api_access_volume(access)]
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    pod["status"] = running_status(w, pod, created + w.rand.randint(2, 40))
    controller_fields = template_fields(owner)
    meta_fields = fields_v1(
        {k: meta[k] for k in ("generateName", "labels", "ownerReferences") if k in meta}
    )
    meta["managedFields"] = [
        managed_entry(
            "kube-controller-manager",
            "Update",
            "v1",
            rfc3339(created),
            {"f:metadata": meta_fields, "f:spec": controller_fields},
        ),
        managed_entry(
            "kubelet",
            "Update",
            "v1",
            pod["status"]["conditions"][0]["lastTransitionTime"],
            _status_fields(pod["status"]),
            subresource="status",
        ),
    ]
    return pod


_CONDITION_FIELDS: dict[str, Any] = {
    ".": {},
    "f:lastProbeTime": {},
    "f:lastTransitionTime": {},
    "f:status": {},
    "f:type": {},
}


def _status_fields(status: dict[str, Any]) -> dict[str, Any]:
    """What kubelet owns in a pod's status (written out: this runs for every pod)."""
    conditions: dict[str, Any] = {".": {}}
    for cond in status["conditions"]:
        conditions['k:{"type":"' + cond["type"] + '"}'] = _CONDITION_FIELDS
    fields: dict[str, Any] = {"f:conditions": conditions, "f:containerStatuses": {}}
    for name in ("hostIP", "hostIPs", "phase", "podIP", "podIPs", "startTime"):
        value = status.get(name)
        if isinstance(value, list):
            ips: dict[str, Any] = {".": {}}
            for item in value:
                ips['k:{"ip":"' + item["ip"] + '"}'] = {".": {}, "f:ip": {}}
            fields["f:" + name] = ips
        elif value is not None:
            fields["f:" + name] = {}
    return {"f:status": fields}


def _qos(spec: dict[str, Any]) -> str:
    res = [c.get("resources") or {} for c in spec["containers"]]
    if not any(r.get("requests") or r.get("limits") for r in res):
        return "BestEffort"
    if all(r.get("limits") and r.get("requests") == r.get("limits") for r in res):
        return "Guaranteed"
    return "Burstable"


def _condition(kind: str, status: bool, t: str, reason: str | None = None) -> dict[str, Any]:
    cond: dict[str, Any] = {"lastProbeTime": None, "lastTransitionTime": t}
    if reason:
        cond["reason"] = reason
    cond["status"] = "True" if status else "False"
    cond["type"] = kind
    return cond


def running_status(w: World, pod: dict[str, Any], started: int) -> dict[str, Any]:
    """The status kubelet reports for a pod whose containers all run and pass readiness."""
    spec = pod["spec"]
    node = spec["nodeName"]
    host_ip = w.node_ip[node]
    pod_ip = host_ip if spec.get("hostNetwork") else w.pod_ip(node)
    t_sched = rfc3339(started - 2)
    t_start = rfc3339(started)
    t_ready = rfc3339(started + w.rand.randint(3, 20))
    statuses = []
    for c in spec["containers"]:
        image = w.image_by_ref[c["image"]]
        statuses.append(
            {
                "containerID": "containerd://" + w.rand.hexstr(32),
                "image": image.full_ref,
                "imageID": image.image_id,
                "lastState": {},
                "name": c["name"],
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": t_start}},
            }
        )
    return {
        "conditions": [
            _condition("PodReadyToStartContainers", True, t_start),
            _condition("Initialized", True, t_sched),
            _condition("Ready", True, t_ready),
            _condition("ContainersReady", True, t_ready),
            _condition("PodScheduled", True, t_sched),
        ],
        "containerStatuses": statuses,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "phase": "Running",
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "qosClass": _qos(spec),
        "startTime": t_sched,
    }


def conditions(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in pod["status"]["conditions"]}


def is_ready(pod: dict[str, Any]) -> bool:
    cond = conditions(pod).get("Ready")
    return cond is not None and cond["status"] == "True"


def set_ready(pod: dict[str, Any], ready: bool, t: str, reason: str = "ContainersNotReady") -> None:
    """Flip Ready/ContainersReady and the containers' ready flags (a readiness probe outcome)."""
    conds = conditions(pod)
    for kind in ("Ready", "ContainersReady"):
        cond = conds[kind]
        if (cond["status"] == "True") != ready:
            cond["lastTransitionTime"] = t
            cond["status"] = "True" if ready else "False"
            if ready:
                cond.pop("reason", None)
                cond.pop("message", None)
            else:
                names = ",".join(c["name"] for c in pod["status"]["containerStatuses"])
                cond["message"] = f"containers with unready status: [{names}]"
                cond["reason"] = reason
    for status in pod["status"]["containerStatuses"]:
        status["ready"] = ready


def restart(w: World, pod: dict[str, Any], t: int, *, reason: str, crash_loop: bool) -> None:
    """A container exits and kubelet restarts it (or backs off, in a crash loop)."""
    status = w.rand.pick(pod["status"]["containerStatuses"])
    running = status["state"].get("running") or status["lastState"].get("terminated") or {}
    status["lastState"] = {
        "terminated": {
            "containerID": status["containerID"],
            "exitCode": 137 if reason == "OOMKilled" else 1,
            "finishedAt": rfc3339(t),
            "reason": reason,
            "startedAt": running.get("startedAt", rfc3339(t - 60)),
        }
    }
    status["restartCount"] += 1
    if crash_loop:
        backoff = min(300, 10 * 2 ** min(status["restartCount"], 5))
        status["state"] = {
            "waiting": {
                "message": (
                    f"back-off {backoff // 60}m{backoff % 60}s restarting failed "
                    f"container={status['name']} pod={pod['metadata']['name']}_"
                    f"{pod['metadata']['namespace']}({pod['metadata']['uid']})"
                ),
                "reason": "CrashLoopBackOff",
            }
        }
        status["started"] = False
        set_ready(pod, False, rfc3339(t))
    else:
        status["containerID"] = "containerd://" + w.rand.hexstr(32)
        status["state"] = {"running": {"startedAt": rfc3339(t + 1)}}
        status["started"] = True


def recover(w: World, pod: dict[str, Any], t: int) -> None:
    """Containers running and ready again (after a crash loop or a failing probe)."""
    for status in pod["status"]["containerStatuses"]:
        if "running" not in status["state"]:
            status["containerID"] = "containerd://" + w.rand.hexstr(32)
            status["state"] = {"running": {"startedAt": rfc3339(t)}}
            status["started"] = True
    set_ready(pod, True, rfc3339(t))


def complete(pod: dict[str, Any], t: int) -> None:
    """A run-to-completion pod's containers exit 0: phase Succeeded."""
    status = pod["status"]
    stamp = rfc3339(t)
    for cs in status["containerStatuses"]:
        started = cs["state"].get("running", {}).get("startedAt", stamp)
        cs["ready"] = False
        cs["started"] = False
        cs["state"] = {
            "terminated": {
                "containerID": cs["containerID"],
                "exitCode": 0,
                "finishedAt": stamp,
                "reason": "Completed",
                "startedAt": started,
            }
        }
    set_ready(pod, False, stamp, reason="PodCompleted")
    for cond in status["conditions"]:
        if cond["type"] in ("Ready", "ContainersReady"):
            cond.pop("message", None)
        if cond["type"] == "PodReadyToStartContainers":
            cond["status"] = "False"
            cond["lastTransitionTime"] = stamp
    status["phase"] = "Succeeded"


def pod_owner_ref(pod: dict[str, Any]) -> dict[str, Any] | None:
    refs = pod["metadata"].get("ownerReferences") or [None]
    ref: dict[str, Any] | None = refs[0]
    return ref
