"""Endpoints or EndpointSlices: what each costs a remote operator's link, at rest and under churn.

Kubernetes deprecated core v1 Endpoints in 1.33; the EndpointSlice controller and the Endpoints
controller both derive their objects from the same Services and Pods, so a snapshot needs one of
the two. Two profiles replay the same seeded trace (tools.traces, application shape, steady
churn): one keeps only Endpoints, one only EndpointSlices (both otherwise the default profile).
Reported per size: objects and canonical bytes of each kind in the starting state, and per cycle
the objects of each kind that changed and the frame the agent ships (codec.encode_delta, default
options) under each profile; the difference between the two frames is what choosing one kind
over the other costs. Results: bench/results/endpoints.md.

    python -m bench.bench_endpoints [--sizes 1000 10000] [--cycles 120 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from snapsync.canonical.profile import Profile, load_profile
from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.encode import encode_delta, encode_snapshot
from tools.traces import TraceSpec, start

ENDPOINTS = "Endpoints"
SLICES = "EndpointSlice.discovery.k8s.io"
PROFILES = {
    # name: (kinds the default profile excludes that this one includes, kinds it excludes)
    "endpoints": ([ENDPOINTS], [SLICES]),
    "slices": ([SLICES], [ENDPOINTS]),
}


def profile(name: str, folder: Path) -> Profile:
    """The default profile with exactly one of the two kinds (whatever the default holds)."""
    include, exclude = PROFILES[name]
    path = folder / f"{name}.yaml"
    doc = {
        "name": f"bench-{name}",
        "version": 1,
        "extends": "default",
        "description": f"the default profile, {name} only",
        "include_kinds": include,
        "exclude_kinds": [{"kind": k, "why": "bench"} for k in exclude],
        "rules": [],
    }
    path.write_text(json.dumps(doc))
    return load_profile(path)


@dataclass
class Side:
    """One profile's run over the trace."""

    kind: str
    objects: int = 0
    kind_bytes: int = 0
    snapshot_bytes: int = 0
    full_frame: int = 0
    changed: list[int] = field(default_factory=list)  # objects of the kind changed per cycle
    frames: list[int] = field(default_factory=list)  # frame bytes per cycle


def _kind_objects(snapshot: Snapshot, kind_ref: str) -> dict[object, bytes]:
    return {k: o.digest for k, o in snapshot if k.kind_ref == kind_ref}


def measure(objects: int, cycles: int, folder: Path) -> dict[str, Side]:
    sides: dict[str, Side] = {}
    for name, kind in (("endpoints", ENDPOINTS), ("slices", SLICES)):
        side = Side(kind)
        feed = start(TraceSpec("steady", objects, cycles), profile(name, folder))
        base = feed.snapshot()
        kinds = _kind_objects(base, kind)
        side.objects = len(kinds)
        side.kind_bytes = sum(len(o.encoded) for k, o in base if k.kind_ref == kind)
        side.snapshot_bytes = base.encoded_size
        side.full_frame = len(encode_snapshot(base))
        for _ in range(cycles):
            feed.step("steady", 1.0)
            new = feed.snapshot()
            now = _kind_objects(new, kind)
            side.changed.append(
                sum(1 for k, d in now.items() if kinds.get(k) != d) + len(kinds.keys() - now)
            )
            side.frames.append(len(encode_delta(base, new).frame))
            base, kinds = new, now
        sides[name] = side
    return sides


def render(results: dict[int, dict[str, Side]], cycles: dict[int, int], seconds: float) -> str:
    lines = [
        "# Endpoints or EndpointSlices in the default profile",
        "",
        "Command: `python -m bench.bench_endpoints "
        f"--sizes {' '.join(map(str, results))} --cycles {' '.join(map(str, cycles.values()))}`"
        f" ({seconds:.0f} s). Trace: steady churn, application shape, seed 0, one cycle per"
        " simulated minute. Each profile is the default one with only Endpoints or only"
        " EndpointSlices; frames are what the agent ships per cycle (encode_delta, default"
        " options), so their difference is the cost of the choice.",
        "",
        "| objects | kind | objects of the kind | canonical bytes of the kind "
        "| share of the snapshot | changed per cycle (mean) | frame bytes per cycle (mean) "
        "| full snapshot frame |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size, sides in results.items():
        for side in sides.values():
            n = max(len(side.frames), 1)
            lines.append(
                f"| {size:,} | {side.kind} | {side.objects:,} | {side.kind_bytes:,} "
                f"| {side.kind_bytes / side.snapshot_bytes:.1%} | {sum(side.changed) / n:.2f} "
                f"| {sum(side.frames) / n:,.0f} | {side.full_frame:,} |"
            )
    lines.append("")
    for size, sides in results.items():
        ep, sl = sides["endpoints"], sides["slices"]
        diff = (sum(sl.frames) - sum(ep.frames)) / max(len(ep.frames), 1)
        ratio = sum(sl.frames) / max(sum(ep.frames), 1)
        lines.append(
            f"- {size:,} objects: EndpointSlices instead of Endpoints cost {diff:+,.0f} bytes per "
            f"cycle ({ratio:.3f}x the frames), {diff * 1440 / 1e6:+.2f} MB per day; at rest "
            f"{sl.kind_bytes - ep.kind_bytes:+,} canonical bytes "
            f"({sl.kind_bytes / max(ep.kind_bytes, 1):.2f}x)."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--cycles", type=int, nargs="+", default=[120, 30])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    cycles = dict(zip(args.sizes, args.cycles, strict=True))
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        results = {size: measure(size, n, Path(folder)) for size, n in cycles.items()}
    text = render(results, cycles, time.monotonic() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "endpoints.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
