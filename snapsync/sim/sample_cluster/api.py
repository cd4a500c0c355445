# The generator's public vocabulary: which kinds it produces (with the discovery facts an API
# emulator serves for them), object keys, change sets and churn level names. Values only.
from __future__ import annotations

from dataclasses import dataclass

# (apiVersion, kind, namespace, name); namespace is "" for cluster-scoped objects.
Key = tuple[str, str, str, str]

CHURN_LEVELS: tuple[str, ...] = ("quiet", "steady", "busy")

_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceInfo:
    """One served resource, as API discovery describes it."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = _ALL_VERBS

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()


def _r(
    group: str, version: str, kind: str, plural: str, namespaced: bool, *short: str
) -> ResourceInfo:
    return ResourceInfo(group, version, kind, plural, namespaced, tuple(short))


RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo(
        "",
        "v1",
        "Namespace",
        "namespaces",
        False,
        ("ns",),
        ("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    _r("", "v1", "Node", "nodes", False, "no"),
    _r("", "v1", "Pod", "pods", True, "po"),
    _r("", "v1", "Service", "services", True, "svc"),
    _r("", "v1", "Endpoints", "endpoints", True, "ep"),
    _r("", "v1", "ConfigMap", "configmaps", True, "cm"),
    _r("", "v1", "Secret", "secrets", True),
    _r("", "v1", "ServiceAccount", "serviceaccounts", True, "sa"),
    _r("", "v1", "Event", "events", True, "ev"),
    _r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, "pvc"),
    _r("", "v1", "PersistentVolume", "persistentvolumes", False, "pv"),
    _r("apps", "v1", "Deployment", "deployments", True, "deploy"),
    _r("apps", "v1", "ReplicaSet", "replicasets", True, "rs"),
    _r("apps", "v1", "StatefulSet", "statefulsets", True, "sts"),
    _r("apps", "v1", "DaemonSet", "daemonsets", True, "ds"),
    _r("batch", "v1", "Job", "jobs", True),
    _r("batch", "v1", "CronJob", "cronjobs", True, "cj"),
    _r("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, "hpa"),
    _r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, "pdb"),
    _r("networking.k8s.io", "v1", "Ingress", "ingresses", True, "ing"),
    _r("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    _r("coordination.k8s.io", "v1", "Lease", "leases", True),
    _r("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _r("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, "sc"),
    _r("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, "pc"),
    _r(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        "crd",
        "crds",
    ),
    _r("cert-manager.io", "v1", "Certificate", "certificates", True, "cert", "certs"),
    _r("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers", False),
)

_BY_KIND = {info.kind: info for info in RESOURCES}


def resource(kind: str) -> ResourceInfo:
    return _BY_KIND[kind]


@dataclass(frozen=True)
class ChangeSet:
    """What one step changed, by object key. An object is in at most one of the three."""

    added: tuple[Key, ...] = ()
    modified: tuple[Key, ...] = ()
    deleted: tuple[Key, ...] = ()

    def __len__(self) -> int:
        return len(self.added) + len(self.modified) + len(self.deleted)
