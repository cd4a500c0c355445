# HorizontalPodAutoscalers (autoscaling/v2, CPU utilization target) and PodDisruptionBudgets.
# The HPA's utilization reading is what churn moves; scaling itself is done by the churn engine
# through the Deployment, as the HPA controller does through the scale subresource.
from __future__ import annotations

from typing import Any

from snapsync.sim.sample_cluster import pods
from snapsync.sim.sample_cluster.api import Key
from snapsync.sim.sample_cluster.controllers import APPLY, KCM
from snapsync.sim.sample_cluster.fields import bookkeep
from snapsync.sim.sample_cluster.rng import rfc3339
from snapsync.sim.sample_cluster.store import APP_LABEL
from snapsync.sim.sample_cluster.world import World


def hpa(
    w: World,
    dep: dict[str, Any],
    *,
    min_replicas: int,
    max_replicas: int,
    created: int,
    labels: dict[str, str],
) -> Key:
    meta = dep["metadata"]
    obj = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": w.meta(meta["name"], meta["namespace"], created=created, labels=labels),
        "spec": {
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "resource": {
                        "name": "cpu",
                        "target": {"averageUtilization": 70, "type": "Utilization"},
                    },
                    "type": "Resource",
                }
            ],
            "minReplicas": min_replicas,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"]},
        },
        "status": {},
    }
    replicas = dep["spec"]["replicas"]
    obj["status"] = hpa_status(
        obj, replicas, replicas, w.rand.randint(30, 65), created + 300, created
    )
    bookkeep(
        obj,
        manager=APPLY,
        time=rfc3339(created),
        applied=True,
        status_manager=KCM,
        status_time=rfc3339(w.now - w.rand.randint(0, 30)),
    )
    return w.store.add(obj)


def hpa_status(
    obj: dict[str, Any], current: int, desired: int, utilization: int, scaled: int, since: int
) -> dict[str, Any]:
    spec = obj["spec"]
    limited = desired in (spec["minReplicas"], spec["maxReplicas"])
    stamp = rfc3339(since)
    return {
        "conditions": [
            {
                "lastTransitionTime": stamp,
                "message": "recommended size matches current size",
                "reason": "ReadyForNewScale",
                "status": "True",
                "type": "AbleToScale",
            },
            {
                "lastTransitionTime": stamp,
                "message": (
                    "the HPA was able to successfully calculate a replica count from cpu "
                    "resource utilization (percentage of request)"
                ),
                "reason": "ValidMetricFound",
                "status": "True",
                "type": "ScalingActive",
            },
            {
                "lastTransitionTime": stamp,
                "message": "the desired replica count is less than the minimum replica count"
                if limited
                else "the desired count is within the acceptable range",
                "reason": "TooFewReplicas" if limited else "DesiredWithinRange",
                "status": "True" if limited else "False",
                "type": "ScalingLimited",
            },
        ],
        "currentMetrics": [
            {
                "resource": {
                    "current": {
                        "averageUtilization": utilization,
                        "averageValue": f"{utilization * 2}m",
                    },
                    "name": "cpu",
                },
                "type": "Resource",
            }
        ],
        "currentReplicas": current,
        "desiredReplicas": desired,
        "lastScaleTime": rfc3339(scaled),
    }


def pdb(
    w: World,
    namespace: str,
    name: str,
    *,
    app: str,
    min_available: int | str,
    created: int,
    labels: dict[str, str],
) -> Key:
    obj = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": w.meta(name, namespace, created=created, labels=labels, generation=1),
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {APP_LABEL: app}}},
        "status": {},
    }
    bookkeep(obj, manager=APPLY, time=rfc3339(created), applied=True)
    key = w.store.add(obj)
    w.selectors.setdefault((namespace, app), []).append(key)
    w.dirty[key] = None
    return key


def pdb_status(w: World, obj: dict[str, Any], t: int) -> dict[str, Any]:
    meta = obj["metadata"]
    app = obj["spec"]["selector"]["matchLabels"][APP_LABEL]
    selected = [w.store.objects[k] for k in w.store.pods_by_app.get((meta["namespace"], app), ())]
    healthy = sum(1 for p in selected if pods.is_ready(p))
    want = obj["spec"]["minAvailable"]
    desired = want if isinstance(want, int) else -(-len(selected) * int(want[:-1]) // 100)
    allowed = max(0, healthy - desired)
    old = {c["type"]: c for c in obj["status"].get("conditions", ())}.get("DisruptionAllowed")
    status_value = "True" if allowed else "False"
    since = old["lastTransitionTime"] if old and old["status"] == status_value else rfc3339(t)
    return {
        "conditions": [
            {
                "lastTransitionTime": since,
                "message": "",
                "observedGeneration": meta["generation"],
                "reason": "SufficientPods" if allowed else "InsufficientPods",
                "status": status_value,
                "type": "DisruptionAllowed",
            }
        ],
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": allowed,
        "expectedPods": len(selected),
        "observedGeneration": meta["generation"],
    }
