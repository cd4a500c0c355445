# The units clusters are made of: an app (Deployment, Service, config, Secret, ServiceAccount and,
# sometimes, an HPA, a PDB, an Ingress with its Certificate), a worker (the same without a
# Service), a database (StatefulSet with volumes and headless Service), a CronJob, and a
# Helm-installed platform component with its release history, dashboards and rules.
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from snapsync.sim.sample_cluster import (
    config,
    controllers,
    infra,
    jobs,
    network,
    pods,
    policy,
    system,
    texts,
)
from snapsync.sim.sample_cluster.controllers import APPLY
from snapsync.sim.sample_cluster.world import World

_PLATFORM = (
    ("monitoring", "kube-prometheus-stack", "prometheus"),
    ("logging", "fluent-bit", "fluent-bit"),
    ("cert-manager", "cert-manager", "cert-manager-controller"),
    ("ingress-nginx", "ingress-nginx", "controller"),
    ("argocd", "argo-cd", "envoy"),
    ("grafana", "grafana", "grafana"),
    ("vault", "vault", "envoy"),
    ("kyverno", "kyverno", "python"),
    ("external-dns", "external-dns", "python"),
    ("velero", "velero", "python"),
)


def _labels(name: str, team: str, helm: bool, version: str) -> dict[str, str]:
    if helm:
        return config.helm_labels(name, name, version, name)
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": team}


def _helm_history(w: World, namespace: str, release: str, created: int) -> None:
    """Helm keeps the last 10 revisions of a release (--history-max), one Secret each."""
    revisions = w.rand.randint(1, 40)
    span = max(60, (w.now - created) // revisions)
    for rev in range(max(1, revisions - 9), revisions + 1):
        config.helm_release_secret(
            w,
            namespace,
            release,
            rev,
            created=created + span * (rev - 1),
            size=w.rand.randint(6_000, 20_000),
            deployed=rev == revisions,
        )


def web_app(w: World, namespace: str, name: str, helm: bool, *, worker: bool = False) -> None:
    """An app: Deployment (with rollout history), config, Secret, ServiceAccount, and unless
    it is a worker a Service; sometimes an HPA, a PDB and an Ingress with its Certificate."""
    created = w.ago(3 * system.DAY, 50 * system.DAY)
    image = w.rand.pick(
        [
            w.images[n]
            for n in ("shop-api", "shop-web", "worker", "payments", "python", "node", "nginx")
        ]
    )
    labels = _labels(name, namespace, helm, image.tag)
    manager = "helm" if helm else APPLY
    annotations = config.helm_annotations(name, namespace) if helm else None
    if helm:
        _helm_history(w, namespace, name, created)
    config.service_account(
        w, namespace, name, created=created, labels=labels, manager=manager, pull_secret="ghcr-pull"
    )
    body = {"application.yaml": texts.app_yaml(w.rand, name, w.rand.randint(2, 12))}
    if not worker and w.rand.chance(0.3):
        body["nginx.conf"] = texts.nginx_conf(w.rand, name, 8080)
    config.config_map(
        w,
        namespace,
        f"{name}-config",
        body,
        created=created,
        labels=labels,
        manager=manager,
        annotations=annotations,
    )
    config.secret(
        w,
        namespace,
        f"{name}-secrets",
        {
            k: texts.b64(w.rand.hexstr(w.rand.randint(12, 40)))
            for k in ("DATABASE_PASSWORD", "API_KEY", "SESSION_SECRET")[: w.rand.randint(1, 3)]
        },
        created=created,
        labels=labels,
        manager=manager,
        annotations=annotations,
    )
    port = None if worker else 8080
    env = {"APP_ENV": "production", "LOG_LEVEL": w.rand.choice(("info", "warn")), "PORT": "8080"}
    cont = pods.container(
        name,
        image,
        port=port,
        env=env,
        mounts=[("config", "/etc/app")],
        requests=(
            w.rand.choice(("50m", "100m", "250m")),
            w.rand.choice(("128Mi", "256Mi", "512Mi")),
        ),
        limits=(w.rand.choice(("500m", "1", "2")), w.rand.choice(("512Mi", "1Gi"))),
    )
    tmpl = pods.template(
        {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": namespace},
        [cont],
        service_account=name,
        volumes=[{"configMap": {"defaultMode": 420, "name": f"{name}-config"}, "name": "config"}],
    )
    if w.rand.chance(0.25):
        tmpl["spec"]["containers"].append(
            pods.container(
                "envoy",
                w.images["envoy"],
                requests=("50m", "64Mi"),
                limits=("200m", "128Mi"),
                args=["--config-path", "/etc/envoy/envoy.yaml"],
            )
        )
    replicas = (
        w.rand.choice((1, 2, 2, 3, 3, 4, 6)) if not w.rand.chance(0.05) else w.rand.randint(10, 30)
    )
    release = Release(namespace, name, created, manager, labels, annotations)
    dep = _deploy(w, release, tmpl, replicas, revisions=w.rand.randint(1, 5), serve=not worker)
    if not worker and w.rand.chance(0.35):
        host = f"{name}.{namespace}.example.com"
        ing = network.ingress(
            w,
            namespace,
            name,
            host=host,
            service=name,
            created=created,
            labels=labels,
            tls_secret=f"{name}-tls",
        )
        config.certificate(w, w.store.objects[ing], host, f"{name}-tls", created=created + 5)
        config.tls_secret(w, namespace, f"{name}-tls", host, created=created + 60)
    if w.rand.chance(0.4):
        policy.hpa(
            w,
            dep,
            min_replicas=max(1, replicas - 1),
            max_replicas=replicas * 3,
            created=created + 30,
            labels=labels,
        )
    if replicas > 1 and w.rand.chance(0.4):
        policy.pdb(
            w,
            namespace,
            name,
            app=name,
            min_available=w.rand.choice((1, "50%")),
            created=created + 30,
            labels=labels,
        )


def database(w: World, namespace: str, name: str, helm: bool) -> None:
    """A Postgres or Redis StatefulSet with a volume per replica and headless + client Services."""
    created = w.ago(20 * system.DAY, 200 * system.DAY)
    kind = w.rand.choice(("postgres", "redis"))
    image = w.images[kind]
    db = f"{name}-{kind}"
    labels = _labels(db, namespace, helm, image.tag)
    manager = "helm" if helm else APPLY
    if helm:
        _helm_history(w, namespace, db, created)
    port = 5432 if kind == "postgres" else 6379
    config.config_map(
        w,
        namespace,
        f"{db}-config",
        {f"{kind}.conf": texts.properties(w.rand, kind, w.rand.randint(20, 80))},
        created=created,
        labels=labels,
        manager=manager,
    )
    config.secret(
        w,
        namespace,
        db,
        {"password": texts.b64(w.rand.hexstr(16)), "username": texts.b64(name)},
        created=created,
        labels=labels,
        manager=manager,
    )
    cont = pods.container(
        kind,
        image,
        requests=("250m", "512Mi"),
        limits=("1", "1Gi"),
        mounts=[("data", f"/var/lib/{kind}")],
    )
    cont["ports"] = [{"containerPort": port, "name": "tcp", "protocol": "TCP"}]
    tmpl = pods.template(
        {"app.kubernetes.io/name": db, "app.kubernetes.io/part-of": namespace},
        [cont],
        service_account="default",
    )
    replicas = w.rand.choice((1, 1, 2, 3))
    network.service(
        w,
        namespace,
        f"{db}-headless",
        app=db,
        ports=[("tcp", port, "tcp")],
        created=created,
        labels=labels,
        manager=manager,
        headless=True,
    )
    network.service(
        w,
        namespace,
        db,
        app=db,
        ports=[("tcp", port, "tcp")],
        created=created,
        labels=labels,
        manager=manager,
    )
    sts_key = controllers.stateful_set(
        w,
        namespace,
        db,
        tmpl,
        replicas=replicas,
        created=created,
        storage=w.rand.choice(("10Gi", "20Gi", "100Gi")),
        service=f"{db}-headless",
        manager=manager,
        labels=labels,
    )
    for pod_key in w.store.owned(w.store.objects[sts_key]["metadata"]["uid"]):
        pod = w.store.objects[pod_key]
        size = w.store.objects[sts_key]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"][
            "requests"
        ]["storage"]
        infra.volume(
            w,
            namespace,
            f"data-{pod_key[3]}",
            size=size,
            node_name=pod["spec"]["nodeName"],
            created=created,
            labels={"app.kubernetes.io/name": db},
        )
    if replicas > 1:
        policy.pdb(
            w, namespace, db, app=db, min_available=replicas - 1, created=created, labels=labels
        )


def batch(w: World, namespace: str, name: str) -> None:
    """A CronJob, with the Jobs and Completed pods of its last runs."""
    created = w.ago(10 * system.DAY, 100 * system.DAY)
    cont = pods.container(
        name,
        w.images["python"],
        args=["python", "-m", f"jobs.{name}"],
        requests=("100m", "256Mi"),
        limits=("1", "512Mi"),
    )
    tmpl = pods.template(
        {"app.kubernetes.io/part-of": namespace}, [cont], restart_policy="OnFailure"
    )
    schedule = w.rand.choice(tuple(jobs.CRON_PERIODS))
    jobs.cron_job(
        w,
        namespace,
        f"{name}-job",
        tmpl,
        created=created,
        schedule=schedule,
        manager=APPLY,
        labels={"app.kubernetes.io/name": f"{name}-job"},
    )


def platform_component(w: World, index: int) -> None:
    """A Helm-installed platform component in its own namespace: release history, dashboards,
    rules, credentials, RBAC, a Deployment and its Service."""
    base_ns, chart, image_name = _PLATFORM[index % len(_PLATFORM)]
    namespace = base_ns if index < len(_PLATFORM) else f"{base_ns}-{index // len(_PLATFORM)}"
    created = w.ago(30 * system.DAY, 300 * system.DAY)
    system.namespace(w, namespace, created, helm=True)
    release = chart
    _helm_history(w, namespace, release, created)
    labels = config.helm_labels(release, chart, w.images[image_name].tag, release)
    annotations = config.helm_annotations(release, namespace)
    for i in range(w.rand.randint(1, 4)):
        panels = w.rand.randint(10, 60)
        config.config_map(
            w,
            namespace,
            f"{release}-dashboard-{i}",
            {f"{release}-{i}.json": texts.dashboard(w.rand, f"{chart} / {i}", panels)},
            created=created,
            labels={**labels, "grafana_dashboard": "1"},
            manager="helm",
            annotations=annotations,
        )
    config.config_map(
        w,
        namespace,
        f"{release}-rules",
        {"rules.yaml": texts.prometheus_rules(w.rand, w.rand.randint(2, 10))},
        created=created,
        labels=labels,
        manager="helm",
        annotations=annotations,
    )
    config.secret(
        w,
        namespace,
        f"{release}-credentials",
        {"admin-password": texts.b64(w.rand.hexstr(24)), "admin-user": texts.b64("admin")},
        created=created,
        labels=labels,
        manager="helm",
        annotations=annotations,
    )
    config.service_account(w, namespace, release, created=created, labels=labels, manager="helm")
    config.role(
        w,
        namespace,
        f"{release}-{namespace}",
        created=created,
        labels=labels,
        manager="helm",
        subject=release,
        cluster=True,
        rule_count=6,
    )
    tmpl = pods.template(
        {"app.kubernetes.io/name": release, "app.kubernetes.io/instance": release},
        [
            pods.container(
                release,
                w.images[image_name],
                port=8080,
                requests=("100m", "256Mi"),
                limits=("1", "1Gi"),
            )
        ],
        service_account=release,
    )
    unit = Release(namespace, release, created, "helm", labels, annotations)
    _deploy(w, unit, tmpl, w.rand.choice((1, 2)), revisions=w.rand.randint(1, 4), serve=True)


@dataclass(frozen=True)
class Release:
    """Who installed a unit, when, and the labels/annotations its objects carry."""

    namespace: str
    name: str
    created: int
    manager: str
    labels: dict[str, str]
    annotations: dict[str, str] | None


def _deploy(
    w: World, unit: Release, tmpl: dict[str, Any], replicas: int, *, revisions: int, serve: bool
) -> dict[str, Any]:
    """The unit's Deployment and, when it serves HTTP, its Service."""
    dep_key = controllers.deployment(
        w,
        unit.namespace,
        unit.name,
        tmpl,
        replicas=replicas,
        created=unit.created,
        revisions=revisions,
        manager=unit.manager,
        labels=unit.labels,
        annotations=unit.annotations,
    )
    if serve:
        network.service(
            w,
            unit.namespace,
            unit.name,
            app=unit.name,
            ports=[("http", 80, "http")],
            created=unit.created,
            labels=unit.labels,
            manager=unit.manager,
            annotations=unit.annotations,
        )
    return w.store.objects[dep_key]
