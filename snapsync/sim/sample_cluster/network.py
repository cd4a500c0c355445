# Services and what the endpoint controllers derive from them (Endpoints, EndpointSlices), and
# Ingresses. Endpoints/EndpointSlices are recomputed from the selected pods by `sync_endpoints`,
# so a pod that is replaced or turns unready changes them exactly as on a real cluster.
from __future__ import annotations

from typing import Any

from snapsync.sim.sample_cluster import pods
from snapsync.sim.sample_cluster.api import Key
from snapsync.sim.sample_cluster.controllers import APPLY, KCM
from snapsync.sim.sample_cluster.fields import bookkeep, fields_v1, managed_entry
from snapsync.sim.sample_cluster.rng import rfc3339
from snapsync.sim.sample_cluster.store import APP_LABEL
from snapsync.sim.sample_cluster.world import World

TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time"


def service(
    w: World,
    namespace: str,
    name: str,
    *,
    app: str,
    ports: list[tuple[str, int, int | str]],  # (name, port, targetPort)
    created: int,
    labels: dict[str, str],
    manager: str = APPLY,
    headless: bool = False,
    annotations: dict[str, str] | None = None,
) -> Key:
    """A Service selecting the pods labelled `app`, with its Endpoints and EndpointSlice."""
    ip = "None" if headless else w.service_ip()
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": w.meta(
            name, namespace, created=created, labels=labels, annotations=annotations
        ),
        "spec": {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [
                {"name": n, "port": p, "protocol": "TCP", "targetPort": t} for n, p, t in ports
            ],
            "selector": {APP_LABEL: app},
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    }
    bookkeep(svc, manager=manager, time=rfc3339(created), applied=manager == APPLY)
    key = w.store.add(svc)
    ep_meta = w.meta(name, namespace, created=created + 1, labels=dict(labels))
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": ep_meta}
    slice_meta = w.meta(
        f"{name}-{w.rand.suffix()}",
        namespace,
        created=created + 1,
        owner=svc,
        generate_name=f"{name}-",
        generation=1,
        labels={
            **labels,
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            "kubernetes.io/service-name": name,
        },
    )
    endpoint_slice = {
        "addressType": "IPv4",
        "apiVersion": "discovery.k8s.io/v1",
        "endpoints": [],
        "kind": "EndpointSlice",
        "metadata": slice_meta,
        "ports": [],
    }
    w.store.add(endpoints)
    w.store.add(endpoint_slice)
    w.selectors.setdefault((namespace, app), []).append(key)
    w.dirty[key] = None
    return key


def _target(pod: dict[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {"kind": "Pod", "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]}


def _container_port(selected: list[dict[str, Any]], target: int | str) -> int:
    if isinstance(target, int):
        return target
    for pod in selected:
        for c in pod["spec"]["containers"]:
            for port in c.get("ports", ()):
                if port.get("name") == target:
                    return int(port["containerPort"])
    return 80


def sync_endpoints(w: World, svc: dict[str, Any], t: int) -> None:
    """Recompute the Service's Endpoints and EndpointSlice; write only what differs."""
    meta = svc["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    app = svc["spec"]["selector"][APP_LABEL]
    selected = [
        w.store.objects[k]
        for k in w.store.pods_by_app.get((namespace, app), ())
        if w.store.objects[k]["status"]["phase"] == "Running"
    ]
    selected.sort(key=lambda p: p["metadata"]["name"])
    ports = [
        {"name": p["name"], "port": _container_port(selected, p["targetPort"]), "protocol": "TCP"}
        for p in svc["spec"]["ports"]
    ]
    ready = [p for p in selected if pods.is_ready(p)]
    unready = [p for p in selected if not pods.is_ready(p)]
    subset: dict[str, Any] = {}
    if ready:
        subset["addresses"] = [_address(p) for p in ready]
    if unready:
        subset["notReadyAddresses"] = [_address(p) for p in unready]
    subsets = [{**subset, "ports": ports}] if subset else None
    stamp = rfc3339(t)
    ep_key = ("v1", "Endpoints", namespace, name)
    endpoints = w.store.objects[ep_key]
    if endpoints.get("subsets") != subsets:
        if subsets is None:
            endpoints.pop("subsets", None)
        else:
            endpoints["subsets"] = subsets
        endpoints["metadata"].setdefault("annotations", {})[TRIGGER] = stamp
        _write(w, ep_key, endpoints, stamp, ("subsets",))
    for slice_key in w.store.owned(meta["uid"]):
        endpoint_slice = w.store.objects[slice_key]
        items = [_slice_endpoint(w, p) for p in selected]
        if endpoint_slice["endpoints"] != items or endpoint_slice["ports"] != ports:
            endpoint_slice["endpoints"] = items
            endpoint_slice["ports"] = ports
            endpoint_slice["metadata"].setdefault("annotations", {})[TRIGGER] = stamp
            if endpoint_slice["metadata"].get("managedFields"):
                endpoint_slice["metadata"]["generation"] += 1
            _write(w, slice_key, endpoint_slice, stamp, ("addressType", "endpoints", "ports"))


def _write(w: World, key: Key, obj: dict[str, Any], stamp: str, body: tuple[str, ...]) -> None:
    if not obj["metadata"].get("managedFields"):
        fields = fields_v1(
            {
                "metadata": {
                    k: obj["metadata"][k]
                    for k in ("annotations", "labels", "ownerReferences")
                    if k in obj["metadata"]
                },
                **{k: obj[k] for k in body if k in obj},
            }
        )
        obj["metadata"]["managedFields"] = [
            managed_entry(KCM, "Update", obj["apiVersion"], stamp, fields)
        ]
    w.store.write(key, stamp, KCM)


def _address(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "ip": pod["status"]["podIP"],
        "nodeName": pod["spec"]["nodeName"],
        "targetRef": _target(pod),
    }


def _slice_endpoint(w: World, pod: dict[str, Any]) -> dict[str, Any]:
    ready = pods.is_ready(pod)
    return {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {"ready": ready, "serving": ready, "terminating": False},
        "nodeName": pod["spec"]["nodeName"],
        "targetRef": _target(pod),
        "zone": w.node_zone[pod["spec"]["nodeName"]],
    }


def ingress(
    w: World,
    namespace: str,
    name: str,
    *,
    host: str,
    service: str,
    created: int,
    labels: dict[str, str],
    tls_secret: str | None,
) -> Key:
    annotations = {"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}
    if tls_secret:
        annotations["cert-manager.io/cluster-issuer"] = "letsencrypt-prod"
    spec: dict[str, Any] = {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "backend": {"service": {"name": service, "port": {"name": "http"}}},
                            "path": "/",
                            "pathType": "Prefix",
                        }
                    ]
                },
            }
        ],
    }
    if tls_secret:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    obj = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": w.meta(
            name, namespace, created=created, labels=labels, annotations=annotations, generation=1
        ),
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": w.ingress_ip}]}},
    }
    bookkeep(
        obj,
        manager=APPLY,
        time=rfc3339(created),
        applied=True,
        status_manager="nginx-ingress-controller",
        status_time=rfc3339(created + 40),
    )
    return w.store.add(obj)
