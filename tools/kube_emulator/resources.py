# What the emulator serves in discovery: a small table of real resource infos (as a v1.30 API
# server reports them), plus infos derived for anything else found in the loaded objects (CRDs
# from their CustomResourceDefinition, other kinds from apiVersion/kind with the API's own
# pluralisation rules). Every served resource is a `Resource`; subresources are listed separately
# because the real discovery documents list them too and clients must skip them.
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

READ = ("get", "list", "watch")
ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    """One served resource of one group version, as discovery describes it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL
    builtin: bool = True  # built-in kinds omit apiVersion/kind on list items; CRs keep them

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def kind_ref(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def discovery(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            doc["shortNames"] = list(self.short_names)
        doc["storageVersionHash"] = hashlib.sha256(self.kind_ref.encode()).hexdigest()[:11]
        return doc


def _r(
    gv: str, kind: str, plural: str, namespaced: bool, *short: str, verbs: tuple[str, ...] = ALL
):
    group, _, version = gv.rpartition("/")
    return Resource(group, version, kind, plural, namespaced, tuple(short), verbs)


# (group version, kind, plural, namespaced, short names) as a v1.30 cluster serves them.
BUILTIN: tuple[Resource, ...] = (
    _r("v1", "Binding", "bindings", True, verbs=("create",)),
    _r("v1", "ComponentStatus", "componentstatuses", False, "cs", verbs=("get", "list")),
    _r("v1", "ConfigMap", "configmaps", True, "cm"),
    _r("v1", "Endpoints", "endpoints", True, "ep"),
    _r("v1", "Event", "events", True, "ev"),
    _r("v1", "LimitRange", "limitranges", True, "limits"),
    _r("v1", "Namespace", "namespaces", False, "ns"),
    _r("v1", "Node", "nodes", False, "no"),
    _r("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, "pvc"),
    _r("v1", "PersistentVolume", "persistentvolumes", False, "pv"),
    _r("v1", "Pod", "pods", True, "po"),
    _r("v1", "PodTemplate", "podtemplates", True),
    _r("v1", "ReplicationController", "replicationcontrollers", True, "rc"),
    _r("v1", "ResourceQuota", "resourcequotas", True, "quota"),
    _r("v1", "Secret", "secrets", True),
    _r("v1", "ServiceAccount", "serviceaccounts", True, "sa"),
    _r("v1", "Service", "services", True, "svc"),
    _r(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
    ),
    _r(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
    ),
    _r(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        "crd",
        "crds",
    ),
    _r("apiregistration.k8s.io/v1", "APIService", "apiservices", False),
    _r("apps/v1", "ControllerRevision", "controllerrevisions", True),
    _r("apps/v1", "DaemonSet", "daemonsets", True, "ds"),
    _r("apps/v1", "Deployment", "deployments", True, "deploy"),
    _r("apps/v1", "ReplicaSet", "replicasets", True, "rs"),
    _r("apps/v1", "StatefulSet", "statefulsets", True, "sts"),
    _r(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        verbs=("create",),
    ),
    _r("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, "hpa"),
    _r("autoscaling/v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, "hpa"),
    _r("batch/v1", "CronJob", "cronjobs", True, "cj"),
    _r("batch/v1", "Job", "jobs", True),
    _r(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        False,
        "csr",
    ),
    _r("coordination.k8s.io/v1", "Lease", "leases", True),
    _r("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True),
    _r("events.k8s.io/v1", "Event", "events", True, "ev"),
    _r("networking.k8s.io/v1", "IngressClass", "ingressclasses", False),
    _r("networking.k8s.io/v1", "Ingress", "ingresses", True, "ing"),
    _r("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True, "netpol"),
    _r("node.k8s.io/v1", "RuntimeClass", "runtimeclasses", False),
    _r("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True, "pdb"),
    _r("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _r("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    _r("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
    _r("rbac.authorization.k8s.io/v1", "Role", "roles", True),
    _r("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", False, "pc"),
    _r("storage.k8s.io/v1", "CSIDriver", "csidrivers", False),
    _r("storage.k8s.io/v1", "CSINode", "csinodes", False),
    _r("storage.k8s.io/v1", "StorageClass", "storageclasses", False, "sc"),
    _r("storage.k8s.io/v1", "VolumeAttachment", "volumeattachments", False),
)

# An aggregated API (served by metrics-server through an APIService): its discovery can fail on
# its own while the rest of the API works, which clients must survive.
METRICS: tuple[Resource, ...] = (
    _r("metrics.k8s.io/v1beta1", "NodeMetrics", "nodes", False, verbs=("get", "list")),
    _r("metrics.k8s.io/v1beta1", "PodMetrics", "pods", True, verbs=("get", "list")),
)

# Subresources listed by discovery next to their parents ("pods/log", ...).
SUBRESOURCES: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("binding", "eviction", "exec", "log", "status"),
    ("", "namespaces"): ("finalize", "status"),
    ("", "nodes"): ("proxy", "status"),
    ("", "services"): ("proxy", "status"),
    ("apps", "daemonsets"): ("status",),
    ("apps", "deployments"): ("scale", "status"),
    ("apps", "replicasets"): ("scale", "status"),
    ("apps", "statefulsets"): ("scale", "status"),
    ("batch", "jobs"): ("status",),
}

# Where a group's preferred version is not the first one a cluster lists.
PREFERRED = {"autoscaling": "v2"}


def is_builtin_group(group: str) -> bool:
    """Kubernetes' own groups (core, `apps`, `*.k8s.io`): their list items omit apiVersion/kind."""
    return "." not in group or group.endswith(".k8s.io")


def plural_of(kind: str) -> str:
    """The API server's default pluralisation (k8s.io/apimachinery UnsafeGuessKindToResource)."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    return lower + "s"


def from_crd(crd: Mapping[str, Any]) -> list[Resource]:
    """The resources one CustomResourceDefinition serves (each served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    kind = names.get("kind")
    group = spec.get("group")
    if not kind or not group:
        return []
    plural = names.get("plural") or plural_of(kind)
    short = tuple(names.get("shortNames") or ())
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    versions = [v for v in spec.get("versions") or () if v.get("served", True)]
    # storage version first: it is the one a cluster prefers
    versions.sort(key=lambda v: not v.get("storage", False))
    return [
        Resource(group, v["name"], kind, plural, namespaced, short, ALL, builtin=False)
        for v in versions
    ]


def derive(objects: Iterable[Mapping[str, Any]], known: Iterable[Resource]) -> list[Resource]:
    """Resources for every kind among `objects` that `known` does not serve.

    CRD objects contribute their declared resources; any other unknown kind becomes a custom
    resource whose scope is read off its objects (namespaced if any object has a namespace).
    """
    served = {(r.group, r.kind) for r in known}
    derived: dict[tuple[str, str], Resource] = {}
    scoped: dict[tuple[str, str, str], bool] = {}
    for obj in objects:
        if obj.get("kind") == "CustomResourceDefinition":
            for res in from_crd(obj):
                if (res.group, res.kind) not in served:
                    derived.setdefault((res.group, res.version + "/" + res.kind), res)
            continue
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        kind = str(obj.get("kind", ""))
        if (group, kind) in served or not kind:
            continue
        ns = bool((obj.get("metadata") or {}).get("namespace"))
        scoped[(group, version, kind)] = scoped.get((group, version, kind), False) or ns
    crd_kinds = {(r.group, r.kind) for r in derived.values()}
    for (group, version, kind), ns in sorted(scoped.items()):
        if (group, kind) in crd_kinds:
            continue
        derived[(group, version + "/" + kind)] = Resource(
            group, version, kind, plural_of(kind), ns, (), ALL, builtin=is_builtin_group(group)
        )
    return list(derived.values())
