"""snapsync's diff (snapsync.delta.jsondiff) against jsonpatch.make_patch on the same snapshot
pairs.

For each size: a base snapshot and the next one after one cycle of steady churn, then
- per object: diff_objects vs make_patch on exactly the changed (old, new) pairs: CPU time,
  operations and compact-JSON bytes of the operations, and apply_ops vs jsonpatch.apply_patch;
- whole state: snapsync.delta.diff.diff(base, new) vs make_patch of the whole state as one document
  ({key: object}, what Portainer's async agent ships), CPU time and JSON bytes (+ gzip-6).

The pairs come from snapsync.sim.sample_cluster (application shape, one steady churn step) and from
the small generator below, whose churn shifts lists (node images, endpoint slices, container
statuses) where positional diffs do worst. Times are process CPU, best of --repeat
runs; bytes are deterministic.

    python bench/bench_diff.py            # 1,000 and 10,000 objects, both sources, best of 3
    python bench/bench_diff.py --quick    # 1,000 objects, one run
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.delta.diff import apply_ops, delta_document, diff, diff_objects
from snapsync.sim.baselines import state_doc
from snapsync.sim.sample_cluster import SampleCluster


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def _cpu(fn: Callable[[], object], repeat: int) -> float:
    """Best CPU seconds of `repeat` runs (process time: the machine is shared)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


# --- pairs of snapshots -------------------------------------------------------------------------


def sample_pair(
    objects: int, seed: int = 0, *, source: str = "sample"
) -> tuple[Snapshot, Snapshot, str]:
    """A base and the next snapshot: from SampleCluster ("sample") or "generator"."""
    profile = load_profile()
    if source == "sample":
        cluster = SampleCluster(objects=objects, shape="application", seed=seed)
        base_raws = cluster.objects()  # deep copies: step() cannot change them
        cluster.step(churn="steady")
        new_raws = cluster.objects()
        source = "snapsync.sim.sample_cluster, application, steady churn"
    else:
        base_raws, new_raws = _generated_pair(objects, seed)
        source = "bench generator"
    at = "2026-01-01T00:00:00Z"
    base = build_snapshot(base_raws, profile, collected_at=at)
    return base, build_snapshot(new_raws, profile, collected_at=at), source


def _pod(rand: random.Random, ns: str, app: str, i: int) -> dict[str, Any]:
    containers = [
        {
            "name": name,
            "image": f"registry.example/{app}-{name}:1.{rand.randrange(9)}",
            "env": [
                {"name": f"{app.upper()}_{k}", "value": str(rand.randrange(999))} for k in range(6)
            ],
            "ports": [{"containerPort": 8080 + k, "protocol": "TCP"} for k in range(2)],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "volumeMounts": [{"mountPath": f"/etc/{app}", "name": "config"}],
        }
        for name in ("main", "sidecar")[: 1 + i % 2]
    ]
    conditions = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{app}-{rand.getrandbits(32):08x}",
            "namespace": ns,
            "labels": {"app": app, "pod-template-hash": f"{hash(app) & 0xFFFFFF:06x}"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": app, "uid": f"uid-{app}"}],
        },
        "spec": {"containers": containers, "nodeName": f"node-{rand.randrange(20)}"},
        "status": {
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                for t in conditions
            ],
            "containerStatuses": [
                {"name": c["name"], "ready": True, "restartCount": 0, "image": c["image"]}
                for c in containers
            ],
            "phase": "Running",
            "podIP": f"10.0.{rand.randrange(255)}.{rand.randrange(255)}",
        },
    }


def _node(rand: random.Random, i: int) -> dict[str, Any]:
    images = [
        {"names": [f"registry.example/img-{rand.getrandbits(24):06x}:1"], "sizeBytes": size}
        for size in sorted((rand.randrange(10**6, 10**9) for _ in range(30)), reverse=True)
    ]
    conditions = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"node-{i}", "labels": {"kubernetes.io/hostname": f"node-{i}"}},
        "status": {
            "conditions": [{"type": t, "status": "False", "reason": "Ok"} for t in conditions],
            "images": images,
        },
    }


def _endpoint_slice(rand: random.Random, ns: str, app: str) -> dict[str, Any]:
    endpoints = [
        {
            "addresses": [f"10.1.{rand.randrange(255)}.{rand.randrange(255)}"],
            "conditions": {"ready": True, "serving": True},
            "targetRef": {"kind": "Pod", "name": f"{app}-{k}", "namespace": ns},
        }
        for k in range(rand.randrange(2, 8))
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{app}-abcde", "namespace": ns},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def _churn(rand: random.Random, obj: dict[str, Any]) -> None:
    """One object's change in a steady cycle, as controllers and kubelets make them."""
    roll = rand.random()
    if obj["kind"] == "Pod" and roll < 0.02:  # a restart: Ready flips and goes last
        status = obj["status"]
        status["containerStatuses"][0]["restartCount"] += 1
        conditions = status["conditions"]
        conditions.append(conditions.pop(1))
        conditions[-1]["status"] = "False"
        conditions[-1]["lastTransitionTime"] = "2026-01-01T00:01:00Z"
    elif obj["kind"] == "Pod" and roll < 0.025:  # a status at the front; the next one restarts
        statuses = obj["status"]["containerStatuses"]
        statuses.insert(0, {**statuses[0], "name": "init", "ready": False})
        statuses[1]["restartCount"] += 1
    elif obj["kind"] == "Event" and roll < 0.05:
        obj["count"] += 1
    elif obj["kind"] == "Node" and roll < 0.3:  # an image pulled: lands by size, shifts the rest
        images = obj["status"]["images"]
        images.insert(
            rand.randrange(len(images)), {"names": ["registry.example/new:2"], "sizeBytes": 1}
        )
        obj["status"]["conditions"][rand.randrange(4)]["reason"] = "Changed"
    elif obj["kind"] == "EndpointSlice" and roll < 0.05:  # a pod joins; another one is not ready
        endpoints = obj["endpoints"]
        endpoints[-1]["conditions"]["ready"] = False
        endpoints.insert(0, {**endpoints[0], "addresses": ["10.2.0.1"]})


def _generated_pair(objects: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pods, Nodes, EndpointSlices, ConfigMaps and Events; then one cycle of steady churn."""
    rand = random.Random(seed)
    base: list[dict[str, Any]] = [_node(rand, i) for i in range(max(1, objects // 100))]
    while len(base) < objects:
        ns, app = f"ns-{rand.randrange(objects // 100 + 1)}", f"app-{rand.randrange(10**6)}"
        kind = rand.random()
        if kind < 0.5:
            base.append(_pod(rand, ns, app, len(base)))
        elif kind < 0.6:
            base.append(_endpoint_slice(rand, ns, app))
        elif kind < 0.8:
            data = {f"key-{k}": f"value-{rand.getrandbits(64):x}" for k in range(5)}
            meta = {"name": app, "namespace": ns}
            base.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
        else:
            meta = {"name": f"{app}.{rand.getrandbits(40):x}", "namespace": ns}
            base.append(
                {"apiVersion": "v1", "kind": "Event", "metadata": meta, "count": 1,
                 "reason": "Pulled", "message": f"Successfully pulled image {app}"}
            )  # fmt: skip
    new = copy.deepcopy(base)
    for obj in new:
        _churn(rand, obj)
    removed = set(rand.sample(range(len(new)), max(1, objects // 200)))
    new = [o for i, o in enumerate(new) if i not in removed]
    new.extend(_pod(rand, "ns-new", f"new-{i}", i) for i in range(max(1, objects // 200)))
    return base, new


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    ours: float
    theirs: float
    unit: str

    def cells(self) -> list[str]:
        ratio = f"{self.ours / self.theirs:.3f}x" if self.theirs else "-"
        if self.unit == "ms":
            return [self.label, f"{self.ours * 1e3:,.1f}", f"{self.theirs * 1e3:,.1f}", ratio]
        return [self.label, f"{self.ours:,.0f}", f"{self.theirs:,.0f}", ratio]


def measure(objects: int, repeat: int, source: str) -> tuple[str, list[Row]]:
    base, new, source = sample_pair(objects, source=source)
    pairs = [
        (base.objects[key].data, obj.data)
        for key, obj in new
        if key in base.objects and base.objects[key].digest != obj.digest
    ]
    ours = [diff_objects(a, b) for a, b in pairs]
    theirs = [jsonpatch.make_patch(a, b).patch for a, b in pairs]
    for (a, b), ops in zip(pairs, theirs, strict=True):  # the same target both ways
        assert apply_ops(a, ops) == jsonpatch.apply_patch(a, ops) == b
    whole_base, whole_new = state_doc(base), state_doc(new)
    whole_theirs = jsonpatch.make_patch(whole_base, whole_new).patch
    delta = diff(base, new)
    ours_doc = {k: v for k, v in delta_document(delta).items() if k not in ("header", "summary")}
    rows = [
        Row(
            "diff per changed object (CPU)",
            _cpu(lambda: [diff_objects(a, b) for a, b in pairs], repeat),
            _cpu(lambda: [jsonpatch.make_patch(a, b) for a, b in pairs], repeat),
            "ms",
        ),
        Row("  operations", sum(map(len, ours)), sum(map(len, theirs)), "n"),
        Row("  ops JSON bytes", _json_size(ours), _json_size(theirs), "B"),
        Row(
            "apply per changed object (CPU)",
            _cpu(lambda: [apply_ops(a, o) for (a, _), o in zip(pairs, ours, strict=True)], repeat),
            _cpu(
                lambda: [
                    jsonpatch.apply_patch(a, o) for (a, _), o in zip(pairs, ours, strict=True)
                ],
                repeat,
            ),
            "ms",
        ),
        Row(
            "whole state: delta.diff vs make_patch (CPU)",
            _cpu(lambda: diff(base, new), repeat),
            _cpu(lambda: jsonpatch.make_patch(whole_base, whole_new), repeat),
            "ms",
        ),
        Row("  operations (ours: changed only)", delta.operation_count, len(whole_theirs), "n"),
        Row(
            "  JSON bytes (removed+added+changed)",
            _json_size(ours_doc),
            _json_size(whole_theirs),
            "B",
        ),
        Row(
            "  JSON bytes, gzip-6",
            len(gzip.compress(json.dumps(ours_doc).encode(), 6)),
            len(gzip.compress(json.dumps(whole_theirs).encode(), 6)),
            "B",
        ),
    ]
    header = (
        f"{objects:,} objects ({source}): {len(pairs)} changed, {len(delta.added)} added, "
        f"{len(delta.removed)} removed"
    )
    return header, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 objects, one run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the best counts")
    parser.add_argument("--objects", type=int, nargs="*", help="sizes (default 1000 10000)")
    parser.add_argument(
        "--source",
        choices=["sample", "generator", "both"],
        default="both",
        help="SampleCluster, this file's generator (node images, endpoint slices), or both",
    )
    args = parser.parse_args(argv)
    sizes = args.objects or ([1000] if args.quick else [1000, 10_000])
    repeat = 1 if args.quick else args.repeat
    sources = ["sample", "generator"] if args.source == "both" else [args.source]
    for size, source in ((size, source) for source in sources for size in sizes):
        header, rows = measure(size, repeat, source)
        print(f"\n{header}")
        table = [["", "snapsync", "make_patch", "ratio"], *(row.cells() for row in rows)]
        widths = [max(len(r[i]) for r in table) for i in range(4)]
        for r in table:
            print(
                "  "
                + r[0].ljust(widths[0])
                + "".join(c.rjust(w + 2) for c, w in zip(r[1:], widths[1:], strict=True))
            )


if __name__ == "__main__":
    main()
