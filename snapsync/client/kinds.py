"""kubectl's names for kinds: `po`, `pods`, `pod` and `Pod` all mean Pod; `deploy` means
Deployment.apps. Kinds not in the table (CRDs, rarer built-ins) are matched against the kinds the
environment holds, by Kind, lower-case kind, plural, or `plural.group`, as kubectl matches
against discovery.
"""

from __future__ import annotations

from collections.abc import Iterable

from snapsync.canonical.keys import split_kind_ref
from snapsync.errors import InputError

# kind ref -> kubectl's short names (the plural and singular forms are derived)
SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "Pod": ("po",),
    "Service": ("svc",),
    "Node": ("no",),
    "Namespace": ("ns",),
    "ConfigMap": ("cm",),
    "Secret": (),
    "Event": ("ev",),
    "PersistentVolumeClaim": ("pvc",),
    "PersistentVolume": ("pv",),
    "ServiceAccount": ("sa",),
    "Endpoints": ("ep",),
    "ReplicationController": ("rc",),
    "ResourceQuota": ("quota",),
    "LimitRange": ("limits",),
    "Deployment.apps": ("deploy",),
    "StatefulSet.apps": ("sts",),
    "DaemonSet.apps": ("ds",),
    "ReplicaSet.apps": ("rs",),
    "Job.batch": (),
    "CronJob.batch": ("cj",),
    "Ingress.networking.k8s.io": ("ing",),
    "NetworkPolicy.networking.k8s.io": ("netpol",),
    "HorizontalPodAutoscaler.autoscaling": ("hpa",),
    "PodDisruptionBudget.policy": ("pdb",),
    "StorageClass.storage.k8s.io": ("sc",),
    "CustomResourceDefinition.apiextensions.k8s.io": ("crd", "crds"),
    "EndpointSlice.discovery.k8s.io": (),
    "Role.rbac.authorization.k8s.io": (),
    "RoleBinding.rbac.authorization.k8s.io": (),
    "ClusterRole.rbac.authorization.k8s.io": (),
    "ClusterRoleBinding.rbac.authorization.k8s.io": (),
}


def plural(kind: str) -> str:
    """The resource name kubectl takes: `Pod` -> `pods`, `Ingress` -> `ingresses`, `Endpoints`."""
    lower = kind.lower()
    if lower.endswith("s"):
        return lower if lower == "endpoints" else lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"


def names_of(ref: str) -> set[str]:
    """Every name that means kind `ref`: short names, singular, plural, Kind, and `.group` forms."""
    group, kind = split_kind_ref(ref)
    bare = {kind.lower(), plural(kind), *SHORT_NAMES.get(ref, ())}
    return bare | {f"{name}.{group}" for name in bare if group} | {ref.lower()}


_TABLE = {name: ref for ref in SHORT_NAMES for name in names_of(ref)}


def resolve(word: str, held: Iterable[str] = ()) -> str:
    """The kind ref `word` means; `held` (the environment's kind refs) covers CRDs."""
    wanted = word.strip().lower()
    if wanted in _TABLE:
        return _TABLE[wanted]
    matches = sorted({ref for ref in held if wanted in names_of(ref)})
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError(f"kind {word!r} is ambiguous here: {', '.join(matches)}")
    raise InputError(f"unknown kind {word!r}: the environment holds no such kind")
