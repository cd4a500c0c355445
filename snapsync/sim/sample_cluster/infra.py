# Cluster plumbing: Namespaces, Nodes with their kubelet status and heartbeat Leases, leader
# election Leases, the cert-manager CRDs, StorageClasses, PriorityClasses and dynamically
# provisioned volumes (PVC + PV pairs). Node heartbeats are the clock-only churn of every step.
from __future__ import annotations

from typing import Any

from snapsync.sim.sample_cluster.api import Key, resource
from snapsync.sim.sample_cluster.controllers import APPLY, KCM
from snapsync.sim.sample_cluster.fields import bookkeep, fields_v1, managed_entry
from snapsync.sim.sample_cluster.rng import micro_time, rfc3339
from snapsync.sim.sample_cluster.world import World

REGION = "eu-west-1"
ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
KUBE_VERSION = "v1.29.4"
_NODE_CONDITIONS = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "KubeletReady", "kubelet is posting ready status"),
)


def namespace(w: World, name: str, *, created: int, labels: dict[str, str] | None = None) -> Key:
    obj = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": w.meta(
            name, created=created, labels={"kubernetes.io/metadata.name": name, **(labels or {})}
        ),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }
    bookkeep(obj, manager=APPLY if labels else "kubectl-create", time=rfc3339(created), body=())
    return w.store.add(obj)


def node(w: World, index: int, *, created: int, pool: str, instance: str, cpu: int) -> Key:
    """A Node as its kubelet registers and reports it, plus its kube-node-lease Lease."""
    zone = ZONES[index % len(ZONES)]
    ip = f"10.0.{32 * (index % 3) + index // 250}.{index % 250 + 4}"
    name = f"ip-{ip.replace('.', '-')}.{REGION}.compute.internal"
    w.nodes.append(name)
    w.node_cidr[name] = index
    w.node_ip[name] = ip
    w.node_zone[name] = zone
    memory_ki = cpu * 4 * 1024 * 1024 - w.rand.randint(200_000, 400_000)
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": instance,
        "beta.kubernetes.io/os": "linux",
        "eks.amazonaws.com/nodegroup": pool,
        "failure-domain.beta.kubernetes.io/region": REGION,
        "failure-domain.beta.kubernetes.io/zone": zone,
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": instance,
        "topology.kubernetes.io/region": REGION,
        "topology.kubernetes.io/zone": zone,
    }
    meta = w.meta(
        name,
        created=created,
        labels=labels,
        annotations={
            "alpha.kubernetes.io/provided-node-ip": ip,
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        },
    )
    heartbeat = rfc3339(w.now - w.rand.randint(0, 50))
    images = [
        {"names": [image.image_id, image.full_ref], "sizeBytes": image.size}
        for image in w.rand.sample(list(w.images.values()), 12)
    ]
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta,
        "spec": {
            "podCIDR": f"{w.pod_subnet(name)}.0/24",
            "podCIDRs": [f"{w.pod_subnet(name)}.0/24"],
            "providerID": f"aws:///{zone}/i-0{w.rand.hexstr(8)}",
        },
        "status": {
            "addresses": [
                {"address": ip, "type": "InternalIP"},
                {"address": name, "type": "InternalDNS"},
                {"address": name, "type": "Hostname"},
            ],
            "allocatable": {
                "cpu": f"{cpu * 1000 - 80 - 10 * cpu}m",
                "ephemeral-storage": "76224326324",
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
                "memory": f"{memory_ki - 800_000}Ki",
                "pods": "110",
            },
            "capacity": {
                "cpu": str(cpu),
                "ephemeral-storage": "83873772Ki",
                "hugepages-1Gi": "0",
                "hugepages-2Mi": "0",
                "memory": f"{memory_ki}Ki",
                "pods": "110",
            },
            "conditions": [
                {
                    "lastHeartbeatTime": heartbeat,
                    "lastTransitionTime": rfc3339(created + 30),
                    "message": message,
                    "reason": reason,
                    "status": "True" if kind == "Ready" else "False",
                    "type": kind,
                }
                for kind, reason, message in _NODE_CONDITIONS
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "images": images,
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": w.rand.uid(),
                "containerRuntimeVersion": "containerd://1.7.11",
                "kernelVersion": "5.10.213-201.855.amzn2.x86_64",
                "kubeProxyVersion": KUBE_VERSION,
                "kubeletVersion": KUBE_VERSION,
                "machineID": w.rand.hexstr(16),
                "operatingSystem": "linux",
                "osImage": "Amazon Linux 2",
                "systemUUID": w.rand.uid().upper()[:8] + w.rand.uid()[8:],
            },
        },
    }
    t = rfc3339(created)
    meta["managedFields"] = [
        managed_entry(
            "kubelet",
            "Update",
            "v1",
            t,
            {
                "f:metadata": fields_v1(
                    {
                        "annotations": {
                            k: ""
                            for k in meta["annotations"]
                            if k != "node.alpha.kubernetes.io/ttl"
                        },
                        "labels": labels,
                    }
                )
            },
        ),
        managed_entry(
            KCM,
            "Update",
            "v1",
            t,
            {
                "f:metadata": {"f:annotations": {"f:node.alpha.kubernetes.io/ttl": {}}},
                "f:spec": fields_v1(obj["spec"]),
            },
        ),
        managed_entry(
            "kubelet", "Update", "v1", heartbeat, {"f:status": fields_v1(obj["status"])}, "status"
        ),
    ]
    key = w.store.add(obj)
    node_lease(w, obj, created)
    return key


def node_lease(w: World, node_obj: dict[str, Any], created: int) -> Key:
    name = node_obj["metadata"]["name"]
    meta = w.meta(name, "kube-node-lease", created=created)
    meta["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_obj["metadata"]["uid"]}
    ]
    lease: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": ""},
    }
    renew_lease(w, lease, w.now - w.rand.randint(0, 9))
    bookkeep(lease, manager="kubelet", time=lease["spec"]["renewTime"][:19] + "Z")
    return w.store.add(lease)


def leader_lease(w: World, name: str, holder: str, *, created: int) -> Key:
    lease: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": w.meta(name, "kube-system", created=created),
        "spec": {
            "acquireTime": micro_time(created + 600, w.rand.randrange(10**6)),
            "holderIdentity": f"{holder}_{w.rand.uid()}",
            "leaseDurationSeconds": 15,
            "leaseTransitions": w.rand.randint(1, 9),
            "renewTime": "",
        },
    }
    renew_lease(w, lease, w.now - w.rand.randint(0, 2))
    bookkeep(lease, manager=name, time=lease["spec"]["renewTime"][:19] + "Z")
    return w.store.add(lease)


def renew_lease(w: World, lease: dict[str, Any], t: int) -> None:
    lease["spec"]["renewTime"] = micro_time(t, w.rand.randrange(10**6))


def heartbeat(node_obj: dict[str, Any], stamp: str) -> None:
    for cond in node_obj["status"]["conditions"]:
        cond["lastHeartbeatTime"] = stamp


def storage_class(w: World, name: str, *, created: int, default: bool) -> Key:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else None
    obj = {
        "allowVolumeExpansion": True,
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": w.meta(name, created=created, annotations=annotations),
        "parameters": {"encrypted": "true", "type": name},
        "provisioner": "ebs.csi.aws.com",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    bookkeep(
        obj,
        manager=APPLY,
        time=rfc3339(created),
        applied=True,
        body=(
            "parameters",
            "provisioner",
            "reclaimPolicy",
            "volumeBindingMode",
            "allowVolumeExpansion",
        ),
    )
    return w.store.add(obj)


def priority_class(w: World, name: str, value: int, *, created: int, description: str) -> Key:
    obj = {
        "apiVersion": "scheduling.k8s.io/v1",
        "description": description,
        "kind": "PriorityClass",
        "metadata": w.meta(name, created=created),
        "preemptionPolicy": "PreemptLowerPriority",
        "value": value,
    }
    bookkeep(
        obj,
        manager="kube-apiserver",
        time=rfc3339(created),
        body=("description", "preemptionPolicy", "value"),
    )
    return w.store.add(obj)


def volume(
    w: World,
    namespace: str,
    claim: str,
    *,
    size: str,
    node_name: str,
    created: int,
    labels: dict[str, str],
) -> Key:
    """A bound PVC and the PV the EBS CSI driver provisioned for it."""
    pvc_meta = w.meta(
        claim,
        namespace,
        created=created,
        labels=labels,
        annotations={
            "pv.kubernetes.io/bind-completed": "yes",
            "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.beta.kubernetes.io/storage-provisioner": "ebs.csi.aws.com",
            "volume.kubernetes.io/selected-node": node_name,
            "volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com",
        },
    )
    pvc_meta["finalizers"] = ["kubernetes.io/pvc-protection"]
    pv_name = f"pvc-{pvc_meta['uid']}"
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": pvc_meta,
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
            "storageClassName": "gp3",
            "volumeMode": "Filesystem",
            "volumeName": pv_name,
        },
        "status": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": size},
            "phase": "Bound",
        },
    }
    bookkeep(pvc, manager=KCM, time=rfc3339(created + 5), status_manager=KCM)
    key = w.store.add(pvc)
    pv_meta = w.meta(
        pv_name,
        created=created + 4,
        annotations={
            "pv.kubernetes.io/provisioned-by": "ebs.csi.aws.com",
            "volume.kubernetes.io/provisioner-deletion-secret-name": "",
            "volume.kubernetes.io/provisioner-deletion-secret-namespace": "",
        },
    )
    pv_meta["finalizers"] = [
        "kubernetes.io/pv-protection",
        "external-provisioner.volume.kubernetes.io/finalizer",
    ]
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": pv_meta,
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": size},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "name": claim,
                "namespace": namespace,
                "resourceVersion": pvc_meta["resourceVersion"],
                "uid": pvc_meta["uid"],
            },
            "csi": {
                "driver": "ebs.csi.aws.com",
                "fsType": "ext4",
                "volumeAttributes": {
                    "storage.kubernetes.io/csiProvisionerIdentity": (
                        f"{created - 86400}-{w.rand.randint(1000, 9999)}-ebs.csi.aws.com"
                    )
                },
                "volumeHandle": f"vol-0{w.rand.hexstr(8)}",
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "topology.kubernetes.io/zone",
                                    "operator": "In",
                                    "values": [w.node_zone[node_name]],
                                }
                            ]
                        }
                    ]
                }
            },
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "gp3",
            "volumeMode": "Filesystem",
        },
        "status": {"lastPhaseTransitionTime": rfc3339(created + 5), "phase": "Bound"},
    }
    bookkeep(pv, manager="csi-provisioner", time=rfc3339(created + 4), status_manager=KCM)
    w.store.add(pv)
    return key


def _schema_props(fields: dict[str, str]) -> dict[str, Any]:
    return {
        name: {"description": f"{name} of the resource: {text}", "type": "string"}
        for name, text in fields.items()
    }


def crd(w: World, kind: str, *, created: int, fields: dict[str, str]) -> Key:
    """The CRD serving `kind` (cert-manager's), with a trimmed but real-shaped schema."""
    info = resource(kind)
    name = f"{info.plural}.{info.group}"
    names: dict[str, Any] = {
        "categories": ["cert-manager"],
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": info.plural,
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    names["singular"] = info.singular
    spec_schema = {
        "description": f"Desired state of the {kind}.",
        "properties": _schema_props(fields),
        "type": "object",
    }
    status_schema = {
        "properties": {
            "conditions": {
                "items": {
                    "properties": _schema_props(
                        {
                            "type": "condition type",
                            "status": "True/False/Unknown",
                            "reason": "CamelCase reason",
                            "message": "human readable",
                            "lastTransitionTime": "RFC3339",
                        }
                    ),
                    "required": ["status", "type"],
                    "type": "object",
                },
                "type": "array",
                "x-kubernetes-list-map-keys": ["type"],
                "x-kubernetes-list-type": "map",
            }
        },
        "type": "object",
    }
    obj = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": w.meta(
            name,
            created=created,
            generation=1,
            labels={
                "app": "cert-manager",
                "app.kubernetes.io/instance": "cert-manager",
                "app.kubernetes.io/name": "cert-manager",
                "app.kubernetes.io/version": "v1.14.4",
            },
            annotations={"controller-gen.kubebuilder.io/version": "v0.13.0"},
        ),
        "spec": {
            "conversion": {"strategy": "None"},
            "group": info.group,
            "names": names,
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [
                {
                    "additionalPrinterColumns": [
                        {
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                            "name": "Ready",
                            "type": "string",
                        },
                        {"jsonPath": ".metadata.creationTimestamp", "name": "Age", "type": "date"},
                    ],
                    "name": info.version,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": f"A {kind} resource of cert-manager.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                            "required": ["spec"],
                            "type": "object",
                        }
                    },
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                }
            ],
        },
        "status": {
            "acceptedNames": names,
            "conditions": [
                {
                    "lastTransitionTime": rfc3339(created),
                    "message": "no conflicts found",
                    "reason": "NoConflicts",
                    "status": "True",
                    "type": "NamesAccepted",
                },
                {
                    "lastTransitionTime": rfc3339(created),
                    "message": "the initial names have been accepted",
                    "reason": "InitialNamesAccepted",
                    "status": "True",
                    "type": "Established",
                },
            ],
            "storedVersions": [info.version],
        },
    }
    bookkeep(obj, manager="helm", time=rfc3339(created), status_manager="kube-apiserver")
    return w.store.add(obj)
