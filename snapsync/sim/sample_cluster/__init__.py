"""A deterministic, seeded generator of realistic Kubernetes cluster state, and its churn.

Objects look as a real API server returns them in JSON: apiVersion/kind, metadata with uid,
resourceVersion, creationTimestamp, generation, labels, annotations (kubectl's last-applied
configuration on applied objects), managedFields, ownerReferences chains (Deployment ->
ReplicaSet -> Pod, StatefulSet/DaemonSet/Job -> Pod, CronJob -> Job), and full status blocks.
Two shapes: "application" (Pod-heavy) and "platform" (Secrets and ConfigMaps ~70% of the bytes,
Events ~60% of the objects). `step()` advances a simulated clock and changes the cluster as the
churn level says ("quiet", "steady", "busy"), returning the keys it added, modified and deleted.

    from snapsync.sim.sample_cluster import SampleCluster
    cluster = SampleCluster(objects=500, shape="application", seed=0)
    before = cluster.objects()                           # deep copies, in `kubectl get` order
    changes = cluster.step(churn="steady", minutes=1.0)  # ChangeSet of (apiVersion, kind, ns, name)
    pod = cluster.get(changes.modified[0])               # one object, cheaper than objects()

Churn levels: "quiet" only moves heartbeats (Node conditions, Leases) and now and then bumps an
Event; "steady" is the reference cycle (~2% of Pods restart or flap readiness, 0.5% of other
status-bearing objects change, pods are deleted and replaced under new names, Events are bumped,
appended and expired, CronJobs fire, a rollout or an HPA rescale now and then); "busy" adds large
rollouts, node drains and CrashLoopBackOff storms. `RESOURCES` describes every kind for API
discovery. Generating 10,000 objects takes about a second, 50,000 about 4-6 s; a steady step on
10,000 objects takes tens of milliseconds.

Command line (writes the List document, after M steps, as JSON):

    python -m snapsync.sim.sample_cluster --objects 10000 --shape platform --seed 1 \
        --steps 5 --churn steady -o cluster.json

Same arguments, same bytes.
"""

from snapsync.sim.sample_cluster.api import CHURN_LEVELS, RESOURCES, ChangeSet, Key, ResourceInfo
from snapsync.sim.sample_cluster.cluster import SHAPES, SampleCluster

__all__ = [
    "CHURN_LEVELS",
    "RESOURCES",
    "SHAPES",
    "ChangeSet",
    "Key",
    "ResourceInfo",
    "SampleCluster",
]
