# The simulated cluster's mutable state besides the objects themselves: the seeded RNG, the
# clock, address allocators, the image catalogue, and the queues the churn engine works from.
# Builders and churn actions take a World; nothing here is global, so two clusters never interact.
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from snapsync.sim.sample_cluster import texts
from snapsync.sim.sample_cluster.api import Key
from snapsync.sim.sample_cluster.rng import START, Rand, rfc3339
from snapsync.sim.sample_cluster.store import Store


@dataclass(frozen=True)
class Image:
    repo: str  # fully qualified, e.g. docker.io/library/nginx
    tag: str
    digest: str  # sha256:<hex>
    size: int

    @property
    def ref(self) -> str:
        """How a manifest names it: Docker Hub library images are written short."""
        short = self.repo.removeprefix("docker.io/library/")
        return f"{short}:{self.tag}"

    @property
    def full_ref(self) -> str:
        return f"{self.repo}:{self.tag}"

    @property
    def image_id(self) -> str:
        return f"{self.repo}@{self.digest}"


_CATALOGUE = (
    ("nginx", "docker.io/library/nginx", "1.25.4", 70_544_635),
    ("redis", "docker.io/library/redis", "7.2.4-alpine", 16_113_522),
    ("postgres", "docker.io/library/postgres", "16.2", 154_729_331),
    ("busybox", "docker.io/library/busybox", "1.36.1", 2_231_050),
    ("python", "docker.io/library/python", "3.12-slim", 51_623_114),
    ("node", "docker.io/library/node", "20-alpine", 47_092_845),
    ("envoy", "docker.io/envoyproxy/envoy", "v1.29.2", 61_233_411),
    ("kafka", "docker.io/bitnami/kafka", "3.6.1", 153_330_912),
    ("shop-api", "ghcr.io/acme/shop-api", "2.14.3", 38_112_004),
    ("shop-web", "ghcr.io/acme/shop-web", "2.14.3", 25_900_177),
    ("worker", "ghcr.io/acme/worker", "1.9.0", 41_220_903),
    ("payments", "ghcr.io/acme/payments", "3.2.1", 44_502_115),
    ("coredns", "registry.k8s.io/coredns/coredns", "v1.11.1", 16_190_758),
    ("kube-proxy", "registry.k8s.io/kube-proxy", "v1.29.4", 28_062_431),
    ("pause", "registry.k8s.io/pause", "3.9", 321_520),
    ("node-exporter", "quay.io/prometheus/node-exporter", "v1.7.0", 11_726_613),
    ("prometheus", "quay.io/prometheus/prometheus", "v2.50.1", 99_114_310),
    ("grafana", "docker.io/grafana/grafana", "10.3.3", 124_318_002),
    ("fluent-bit", "cr.fluentbit.io/fluent/fluent-bit", "2.2.2", 31_024_117),
    ("cert-manager-controller", "quay.io/jetstack/cert-manager-controller", "v1.14.4", 17_820_554),
    ("controller", "registry.k8s.io/ingress-nginx/controller", "v1.10.0", 105_118_330),
    ("calico-node", "docker.io/calico/node", "v3.27.2", 116_004_829),
)


class World:
    """State shared by builders and churn: RNG, clock, store, allocators, work queues."""

    def __init__(self, seed: int) -> None:
        self.rand = Rand(seed)
        self.store = Store(first_resource_version=4_000_000 + self.rand.randrange(1_000_000))
        self.now = START  # simulated seconds since the Unix epoch
        self.step_start = START - 60
        self.images: dict[str, Image] = {  # by the repository's last segment
            name: Image(repo, tag, "sha256:" + self.rand.hexstr(32), size)
            for name, repo, tag, size in _CATALOGUE
        }
        self.image_by_ref = {image.ref: image for image in self.images.values()}
        self.nodes: list[str] = []
        self.cordoned: set[str] = set()
        self.node_ip: dict[str, str] = {}
        self.node_zone: dict[str, str] = {}
        self.cluster_ca = texts.pem(self.rand, "CERTIFICATE", 780)
        self.event_target = 0  # Event population that expiry keeps (set once built)
        self.pending: dict[Key, int] = {}  # unready pods -> when their probe passes again
        self.running_jobs: dict[Key, int] = {}  # Job -> when its pod completes
        self.rollouts: dict[Key, Key] = {}  # Deployment -> the ReplicaSet it is rolling out
        self.drains: dict[str, int] = {}  # cordoned node -> when it is uncordoned
        self.storms: dict[Key, int] = {}  # crash-looping Deployment -> when the storm ends
        self.helm_deployed: dict[Key, None] = {}  # the current release Secret of each release
        self.ingress_ip = f"203.0.113.{self.rand.randint(2, 250)}"
        self.selectors: dict[tuple[str, str], list[Key]] = {}  # (ns, app) -> Services, PDBs
        self.node_cidr: dict[str, int] = {}
        self._next_pod_ip: dict[str, int] = {}
        self._next_service_ip = 10
        self.dirty: dict[Key, None] = {}  # controllers and Services to reconcile after changes
        self.event_order: dict[Key, None] = {}  # Events, least recently bumped first
        self.event_index: dict[tuple[str, str, str], Key] = {}  # (object uid, reason, path)

    def image_version(self, image: Image, tag: str) -> Image:
        """Another tag of an image (a rollout's new version), registered for status lookups."""
        found = self.image_by_ref.get(f"{image.ref.rsplit(':', 1)[0]}:{tag}")
        if found is None:
            found = Image(image.repo, tag, "sha256:" + self.rand.hexstr(32), image.size)
            self.image_by_ref[found.ref] = found
        return found

    def schedulable(self) -> list[str]:
        return [n for n in self.nodes if n not in self.cordoned] or self.nodes

    # --- time -------------------------------------------------------------------------------
    def ago(self, low: int, high: int) -> int:
        """A past instant between `low` and `high` seconds before now."""
        return self.now - self.rand.randint(low, high)

    def instant(self) -> int:
        """An instant within the current step: when one action happened."""
        return self.rand.randint(min(self.step_start + 1, self.now), self.now)

    # --- addresses ----------------------------------------------------------------------------
    def pod_ip(self, node: str) -> str:
        n = self._next_pod_ip.get(node, 2)
        self._next_pod_ip[node] = n + 1 if n < 254 else 2
        return f"{self.pod_subnet(node)}.{n}"

    def pod_subnet(self, node: str) -> str:
        """The first three octets of a node's /24 pod CIDR (10.244.0.0/16, then 10.245...)."""
        index = self.node_cidr[node]
        return f"10.{244 + index // 256}.{index % 256}"

    def service_ip(self) -> str:
        n = self._next_service_ip
        self._next_service_ip += 1
        return f"10.96.{n // 250}.{n % 250 + 1}"

    # --- metadata -----------------------------------------------------------------------------
    def meta(
        self,
        name: str,
        namespace: str = "",
        *,
        created: int,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        owner: dict[str, Any] | None = None,
        generate_name: str | None = None,
        generation: int | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if annotations:
            meta["annotations"] = annotations
        meta["creationTimestamp"] = rfc3339(created)
        if generate_name:
            meta["generateName"] = generate_name
        if generation is not None:
            meta["generation"] = generation
        if labels:
            meta["labels"] = labels
        meta["name"] = name
        if namespace:
            meta["namespace"] = namespace
        if owner is not None:
            meta["ownerReferences"] = [owner_ref(owner)]
        meta["resourceVersion"] = ""
        meta["uid"] = self.rand.uid()
        return meta


def owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "blockOwnerDeletion": True,
        "controller": True,
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
