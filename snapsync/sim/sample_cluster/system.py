# The part of every cluster that no team deploys: system namespaces, storage and priority
# classes, bootstrap RBAC, the node pool with its heartbeat Leases, leader-election Leases, the
# cert-manager CRDs and issuer, CoreDNS and the node DaemonSets; and the per-namespace objects
# Kubernetes creates itself (kube-root-ca.crt, the default ServiceAccount).
from __future__ import annotations

from snapsync.sim.sample_cluster import config, controllers, infra, network, pods, texts
from snapsync.sim.sample_cluster.controllers import KCM
from snapsync.sim.sample_cluster.world import World

COREFILE = """.:53 {
    errors
    health {
        lameduck 5s
      }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
"""
AWS_AUTH = """- groups:
  - system:bootstrappers
  - system:nodes
  rolearn: arn:aws:iam::123456789012:role/eks-node
  username: system:node:{{EC2PrivateDNSName}}
"""
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)


DAY = 86400


def build_base(w: World, nodes: int) -> None:
    born = w.now - 400 * DAY
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        namespace(w, name, born, helm=False, system=True)
    for name, default in (("gp3", True), ("gp2", False)):
        infra.storage_class(w, name, created=born + 600, default=default)
    for name, value in (
        ("system-cluster-critical", 2000000000),
        ("system-node-critical", 2000001000),
    ):
        infra.priority_class(
            w,
            name,
            value,
            created=born,
            description=f"Used for {name.split('-')[1]} critical pods that must not be moved "
            "from their current node.",
        )
    for name in (
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:node",
        "system:kube-dns",
        "system:controller:replicaset-controller",
        "system:aggregate-to-view",
    ):
        config.role(
            w,
            "",
            name,
            created=born,
            labels={"kubernetes.io/bootstrapping": "rbac-defaults"},
            manager="kube-apiserver",
            cluster=True,
            rule_count=5,
            subject="default" if name.startswith("system:kube") else None,
        )
    for index in range(nodes):
        pool = "general" if index % 5 else "system"
        infra.node(
            w,
            index,
            created=w.ago(2 * DAY, 90 * DAY),
            pool=pool,
            instance="m5.2xlarge" if pool == "general" else "m5.xlarge",
            cpu=8 if pool == "general" else 4,
        )
    for name in ("kube-controller-manager", "kube-scheduler"):
        infra.leader_lease(w, name, "ip-10-0-0-10", created=born)
    for kind, fields in (
        (
            "Certificate",
            {
                "secretName": "Secret to store the keypair in",
                "commonName": "CN",
                "duration": "lifetime",
            },
        ),
        ("ClusterIssuer", {"acme": "ACME issuer settings", "ca": "CA issuer settings"}),
    ):
        infra.crd(w, kind, created=born + 3600, fields=fields)
    config.cluster_issuer(w, "letsencrypt-prod", created=born + 4000)
    kube = {"k8s-app": "kube-dns"}
    tmpl = pods.template(
        {"app.kubernetes.io/name": "coredns", **kube},
        [
            pods.container(
                "coredns",
                w.images["coredns"],
                port=8080,
                requests=("100m", "70Mi"),
                limits=("1", "170Mi"),
                args=["-conf", "/etc/coredns/Corefile"],
                mounts=[("config-volume", "/etc/coredns")],
            )
        ],
        service_account="coredns",
        volumes=[
            {
                "configMap": {
                    "defaultMode": 420,
                    "items": [{"key": "Corefile", "path": "Corefile"}],
                    "name": "coredns",
                },
                "name": "config-volume",
            }
        ],
    )
    config.service_account(w, "kube-system", "coredns", created=born, manager="eks")
    config.config_map(
        w,
        "kube-system",
        "coredns",
        {"Corefile": COREFILE},
        created=born,
        labels=kube,
        manager="eks",
    )
    controllers.deployment(
        w,
        "kube-system",
        "coredns",
        tmpl,
        replicas=2,
        created=born,
        revisions=2,
        manager="eks",
        labels=kube,
    )
    network.service(
        w,
        "kube-system",
        "kube-dns",
        app="coredns",
        ports=[("dns", 53, 53), ("metrics", 9153, 9153)],
        created=born,
        labels=kube,
        manager="eks",
    )
    for ds, image in (
        ("kube-proxy", "kube-proxy"),
        ("calico-node", "calico-node"),
        ("node-exporter", "node-exporter"),
        ("fluent-bit", "fluent-bit"),
    ):
        labels = {"app.kubernetes.io/name": ds}
        tmpl = pods.template(
            dict(labels),
            [pods.container(ds, w.images[image], requests=("100m", "64Mi"), limits=None)],
            service_account=ds,
        )
        tmpl["spec"]["hostNetwork"] = True
        config.service_account(w, "kube-system", ds, created=born, manager="eks")
        controllers.daemon_set(
            w, "kube-system", ds, tmpl, created=born + 60, manager="eks", labels=labels
        )
    config.config_map(
        w,
        "kube-system",
        "kube-proxy-config",
        {"config": texts.app_yaml(w.rand, "kube-proxy", 6)},
        created=born,
        labels={"eks.amazonaws.com/component": "kube-proxy"},
        manager="eks",
    )
    config.config_map(
        w,
        "kube-system",
        "aws-auth",
        {"mapRoles": AWS_AUTH},
        created=born,
        manager="eks",
    )
    config.config_map(
        w,
        "kube-system",
        "extension-apiserver-authentication",
        {
            "client-ca-file": texts.pem(w.rand, "CERTIFICATE", 800),
            "requestheader-client-ca-file": texts.pem(w.rand, "CERTIFICATE", 800),
        },
        created=born,
        manager="kube-apiserver",
    )


def namespace(w: World, name: str, created: int, helm: bool, *, system: bool = False) -> None:
    infra.namespace(
        w, name, created=created, labels=None if system else {"team": name.split("-")[0]}
    )
    config.config_map(
        w,
        name,
        "kube-root-ca.crt",
        {"ca.crt": w.cluster_ca},
        created=created + 1,
        manager=KCM,
        annotations={"kubernetes.io/description": ROOT_CA_DESCRIPTION},
    )
    config.service_account(w, name, "default", created=created + 1)
    if not system:
        config.registry_secret(w, name, "ghcr-pull", created=created + 30)
        config.role(w, name, "deployer", created=created + 40, labels=None, subject="default")
