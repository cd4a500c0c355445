# Configuration and identity objects: ConfigMaps, Secrets (Opaque, TLS, registry credentials,
# Helm release records), ServiceAccounts, RBAC, and cert-manager's Certificate/ClusterIssuer.
# These carry most of a real cluster's bytes, so their bodies are sized like real ones.
from __future__ import annotations

import json
from typing import Any

from snapsync.sim.sample_cluster import texts
from snapsync.sim.sample_cluster.api import Key
from snapsync.sim.sample_cluster.controllers import APPLY
from snapsync.sim.sample_cluster.fields import bookkeep
from snapsync.sim.sample_cluster.rng import rfc3339
from snapsync.sim.sample_cluster.world import World

ACME = "https://acme-v02.api.letsencrypt.org"


def helm_labels(release: str, chart: str, version: str, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/version": version,
        "helm.sh/chart": f"{chart}-{version}",
    }


def helm_annotations(release: str, namespace: str) -> dict[str, str]:
    return {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}


def config_map(
    w: World,
    namespace: str,
    name: str,
    data: dict[str, str],
    *,
    created: int,
    labels: dict[str, str] | None = None,
    manager: str = APPLY,
    annotations: dict[str, str] | None = None,
) -> Key:
    obj = {"apiVersion": "v1", "data": data, "kind": "ConfigMap"}
    return _add_data_object(w, obj, namespace, name, created, labels, annotations, manager)


def secret(
    w: World,
    namespace: str,
    name: str,
    data: dict[str, str],
    *,
    created: int,
    secret_type: str = "Opaque",
    labels: dict[str, str] | None = None,
    manager: str = APPLY,
    annotations: dict[str, str] | None = None,
) -> Key:
    """A Secret; `data` values are already base64, as the API serves them."""
    obj = {"apiVersion": "v1", "data": data, "kind": "Secret", "type": secret_type}
    return _add_data_object(w, obj, namespace, name, created, labels, annotations, manager)


def _add_data_object(
    w: World,
    obj: dict[str, Any],
    namespace: str,
    name: str,
    created: int,
    labels: dict[str, str] | None,
    annotations: dict[str, str] | None,
    manager: str,
) -> Key:
    """Finish a ConfigMap or Secret: metadata, bookkeeping, store."""
    obj["metadata"] = w.meta(
        name, namespace, created=created, labels=labels, annotations=annotations
    )
    body = tuple(k for k in ("data", "type") if k in obj)
    bookkeep(obj, manager=manager, time=rfc3339(created), body=body, applied=manager == APPLY)
    return w.store.add(obj)


def helm_release_secret(
    w: World,
    namespace: str,
    release: str,
    revision: int,
    *,
    created: int,
    size: int,
    deployed: bool,
) -> Key:
    """`sh.helm.release.v1.<release>.v<N>`: Helm 3's record of one release revision."""
    labels = {
        "modifiedAt": str(created),
        "name": release,
        "owner": "helm",
        "status": "deployed" if deployed else "superseded",
        "version": str(revision),
    }
    key = secret(
        w,
        namespace,
        f"sh.helm.release.v1.{release}.v{revision}",
        {"release": texts.helm_release(w.rand, size)},
        created=created,
        secret_type="helm.sh/release.v1",
        labels=labels,
        manager="helm",
    )
    if deployed:
        w.helm_deployed[key] = None
    return key


def tls_secret(w: World, namespace: str, name: str, host: str, *, created: int) -> Key:
    annotations = {
        "cert-manager.io/alt-names": host,
        "cert-manager.io/certificate-name": name,
        "cert-manager.io/common-name": host,
        "cert-manager.io/ip-sans": "",
        "cert-manager.io/issuer-group": "cert-manager.io",
        "cert-manager.io/issuer-kind": "ClusterIssuer",
        "cert-manager.io/issuer-name": "letsencrypt-prod",
        "cert-manager.io/uri-sans": "",
    }
    data = {
        "tls.crt": texts.b64(
            texts.pem(w.rand, "CERTIFICATE", 1300) + texts.pem(w.rand, "CERTIFICATE", 1100)
        ),
        "tls.key": texts.b64(texts.pem(w.rand, "RSA PRIVATE KEY", 1190)),
    }
    return secret(
        w,
        namespace,
        name,
        data,
        created=created,
        secret_type="kubernetes.io/tls",
        labels={"controller.cert-manager.io/fao": "true"},
        annotations=annotations,
        manager="cert-manager-certificates-issuing",
    )


def registry_secret(w: World, namespace: str, name: str, *, created: int) -> Key:
    auth = texts.b64(f"robot$ci:{w.rand.hexstr(20)}")
    config = {
        "auths": {"ghcr.io": {"username": "robot$ci", "password": w.rand.hexstr(20), "auth": auth}}
    }
    return secret(
        w,
        namespace,
        name,
        {".dockerconfigjson": texts.b64(json.dumps(config))},
        created=created,
        secret_type="kubernetes.io/dockerconfigjson",
    )


def service_account(
    w: World,
    namespace: str,
    name: str,
    *,
    created: int,
    labels: dict[str, str] | None = None,
    manager: str = APPLY,
    pull_secret: str | None = None,
) -> Key:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": w.meta(name, namespace, created=created, labels=labels),
    }
    if pull_secret:
        obj["imagePullSecrets"] = [{"name": pull_secret}]
    if name != "default":
        bookkeep(
            obj,
            manager=manager,
            time=rfc3339(created),
            body=("imagePullSecrets",),
            applied=manager == APPLY,
        )
    return w.store.add(obj)


_RULES = (
    ([""], ["pods", "services", "endpoints"], ["get", "list", "watch"]),
    ([""], ["configmaps"], ["get", "list", "watch", "create", "update", "patch"]),
    ([""], ["secrets"], ["get"]),
    (["apps"], ["deployments", "replicasets"], ["get", "list", "watch"]),
    (["coordination.k8s.io"], ["leases"], ["get", "create", "update"]),
    ([""], ["events"], ["create", "patch"]),
    (["batch"], ["jobs", "cronjobs"], ["get", "list", "watch", "create", "delete"]),
    (["networking.k8s.io"], ["ingresses"], ["get", "list", "watch"]),
)


def rules(w: World, count: int) -> list[dict[str, Any]]:
    picked = w.rand.sample(_RULES, min(count, len(_RULES)))
    return [{"apiGroups": g, "resources": r, "verbs": v} for g, r, v in picked]


def role(
    w: World,
    namespace: str,
    name: str,
    *,
    created: int,
    labels: dict[str, str] | None,
    manager: str = APPLY,
    subject: str | None = None,
    cluster: bool = False,
    rule_count: int = 3,
) -> Key:
    """A Role (or ClusterRole) and, when `subject` is given, a binding of it to that account."""
    kind = "ClusterRole" if cluster else "Role"
    obj: dict[str, Any] = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": w.meta(name, "" if cluster else namespace, created=created, labels=labels),
        "rules": rules(w, rule_count),
    }
    bookkeep(obj, manager=manager, time=rfc3339(created), body=("rules",), applied=manager == APPLY)
    key = w.store.add(obj)
    if subject:
        binding: dict[str, Any] = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": f"{kind}Binding",
            "metadata": w.meta(name, "" if cluster else namespace, created=created, labels=labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": subject, "namespace": namespace}],
        }
        bookkeep(
            binding,
            manager=manager,
            time=rfc3339(created),
            body=("roleRef", "subjects"),
            applied=manager == APPLY,
        )
        w.store.add(binding)
    return key


def certificate(
    w: World, ingress: dict[str, Any], host: str, secret_name: str, *, created: int
) -> Key:
    issued = created + 90
    revision = 1 + (w.now - created) // (60 * 86400)
    renewed = w.now - (w.now - issued) % (60 * 86400)
    obj = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": w.meta(
            secret_name,
            ingress["metadata"]["namespace"],
            created=created,
            labels=dict(ingress["metadata"].get("labels") or {}),
            owner=ingress,
            generation=1,
        ),
        "spec": {
            "dnsNames": [host],
            "issuerRef": {
                "group": "cert-manager.io",
                "kind": "ClusterIssuer",
                "name": "letsencrypt-prod",
            },
            "secretName": secret_name,
            "usages": ["digital signature", "key encipherment"],
        },
        "status": certificate_status(renewed, revision),
    }
    bookkeep(
        obj,
        manager="cert-manager-ingress-shim",
        time=rfc3339(created),
        status_manager="cert-manager-certificates-readiness",
        status_time=rfc3339(issued),
    )
    return w.store.add(obj)


def certificate_status(issued: int, revision: int) -> dict[str, Any]:
    return {
        "conditions": [
            {
                "lastTransitionTime": rfc3339(issued),
                "message": "Certificate is up to date and has not expired",
                "observedGeneration": 1,
                "reason": "Ready",
                "status": "True",
                "type": "Ready",
            }
        ],
        "notAfter": rfc3339(issued + 90 * 86400),
        "notBefore": rfc3339(issued),
        "renewalTime": rfc3339(issued + 60 * 86400),
        "revision": revision,
    }


def cluster_issuer(w: World, name: str, *, created: int) -> Key:
    obj = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": w.meta(name, created=created, generation=1),
        "spec": {
            "acme": {
                "email": "platform@example.com",
                "privateKeySecretRef": {"name": f"{name}-account-key"},
                "server": f"{ACME}/directory",
                "solvers": [{"http01": {"ingress": {"ingressClassName": "nginx"}}}],
            }
        },
        "status": {
            "acme": {
                "lastPrivateKeyHash": texts.b64(w.rand.randbytes(32)),
                "lastRegisteredEmail": "platform@example.com",
                "uri": f"{ACME}/acme/acct/{w.rand.randint(10**8, 10**9)}",
            },
            "conditions": [
                {
                    "lastTransitionTime": rfc3339(created + 20),
                    "message": "The ACME account was registered with the ACME server",
                    "observedGeneration": 1,
                    "reason": "ACMEAccountRegistered",
                    "status": "True",
                    "type": "Ready",
                }
            ],
        },
    }
    bookkeep(
        obj,
        manager=APPLY,
        time=rfc3339(created),
        applied=True,
        status_manager="cert-manager-clusterissuers",
    )
    return w.store.add(obj)
