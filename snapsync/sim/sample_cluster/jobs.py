# CronJobs and the Jobs they start: Jobs are named after their scheduled minute (as the
# CronJob controller names them), each runs one pod to completion, and their status and the
# CronJob's (active, lastScheduleTime, lastSuccessfulTime) are derived from those pods.
from __future__ import annotations

from typing import Any

from snapsync.sim.sample_cluster import controllers, pods
from snapsync.sim.sample_cluster.api import Key
from snapsync.sim.sample_cluster.controllers import KCM
from snapsync.sim.sample_cluster.rng import rfc3339
from snapsync.sim.sample_cluster.world import World

CRON_PERIODS = {"*/5 * * * *": 5, "*/15 * * * *": 15, "0 * * * *": 60, "30 2 * * *": 1440}


def cron_job(
    w: World,
    namespace: str,
    name: str,
    tmpl: dict[str, Any],
    *,
    created: int,
    schedule: str,
    manager: str,
    labels: dict[str, str],
) -> Key:
    cj = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": w.meta(name, namespace, created=created, labels=labels, generation=1),
        "spec": {
            "concurrencyPolicy": "Forbid",
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"creationTimestamp": None},
                "spec": {"backoffLimit": 2, "template": tmpl},
            },
            "schedule": schedule,
            "successfulJobsHistoryLimit": 3,
            "suspend": False,
        },
        "status": {},
    }
    key = controllers.finish(w, cj, created, manager)
    period = CRON_PERIODS[schedule] * 60
    last = (w.now // period) * period
    for i in (3, 2, 1, 0):
        tick = last - i * period
        if tick > created:
            job(w, cj, tick, finished=i > 0 or w.now - tick > 120)
    return key


def job(w: World, cj: dict[str, Any], tick: int, *, finished: bool) -> Key:
    """The Job a CronJob creates at `tick` (named after the scheduled minute) and its pod."""
    name = f"{cj['metadata']['name']}-{tick // 60}"
    meta = w.meta(
        name,
        cj["metadata"]["namespace"],
        created=tick,
        owner=cj,
        generation=1,
        annotations={"batch.kubernetes.io/cronjob-scheduled-timestamp": rfc3339(tick)},
    )
    uid = meta["uid"]
    job_labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    meta["labels"] = dict(job_labels)
    tmpl = pods.clone(cj["spec"]["jobTemplate"]["spec"]["template"])
    tmpl["metadata"]["labels"] = {**tmpl["metadata"]["labels"], **job_labels}
    obj = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 2,
            "completionMode": "NonIndexed",
            "completions": 1,
            "manualSelector": False,
            "parallelism": 1,
            "podReplacementPolicy": "TerminatingOrFailed",
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
            "suspend": False,
            "template": tmpl,
        },
        "status": {"startTime": rfc3339(tick)},
    }
    key = controllers.finish(w, obj, tick, KCM)
    pod_key = controllers.spawn(w, obj, tick + 1)
    if finished:
        pods.complete(w.store.objects[pod_key], tick + w.rand.randint(20, 100))
    obj["status"] = job_status(w, obj)
    return key


def job_status(w: World, job_obj: dict[str, Any]) -> dict[str, Any]:
    owned, ready = controllers.pods_of(w, job_obj)
    start = job_obj["status"]["startTime"]
    done = [p for p in owned if p["status"]["phase"] == "Succeeded"]
    if owned and len(done) == len(owned):
        finished = done[0]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
        return {
            "completionTime": finished,
            "conditions": [
                {
                    "lastProbeTime": finished,
                    "lastTransitionTime": finished,
                    "status": "True",
                    "type": "Complete",
                }
            ],
            "ready": 0,
            "startTime": start,
            "succeeded": len(done),
            "terminating": 0,
            "uncountedTerminatedPods": {},
        }
    return {
        "active": len(owned),
        "ready": ready,
        "startTime": start,
        "terminating": 0,
        "uncountedTerminatedPods": {},
    }


def cron_job_status(w: World, cj: dict[str, Any]) -> dict[str, Any]:
    jobs = [w.store.objects[k] for k in w.store.owned(cj["metadata"]["uid"])]
    status: dict[str, Any] = {}
    active = [j for j in jobs if "completionTime" not in j["status"]]
    if active:
        status["active"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": j["metadata"]["name"],
                "namespace": j["metadata"]["namespace"],
                "resourceVersion": j["metadata"]["resourceVersion"],
                "uid": j["metadata"]["uid"],
            }
            for j in active
        ]
    if jobs:
        status["lastScheduleTime"] = max(j["status"]["startTime"] for j in jobs)
    done = [j["status"]["completionTime"] for j in jobs if "completionTime" in j["status"]]
    if done:
        status["lastSuccessfulTime"] = max(done)
    return status
