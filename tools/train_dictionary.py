"""Train the zstd dictionary that delta frames use, reproducibly, from the sample-cluster generator.

    python tools/train_dictionary.py --id 3 --default  # a new dictionary, new frames use it
    python tools/train_dictionary.py --id 2 --check    # retrains, compares with the shipped file

Samples are the records of compact delta payloads (snapsync.codec.wire_form: one changed or added
object each, field-aware leaves included) from churn cycles of generated clusters of both shapes.
The seeds are not the benchmark's (seed 0), so the benchmark measures a dictionary that has not
seen its clusters. Training parameters are fixed (no search, one thread), so the same generator
and zstandard version give the same bytes. A new dictionary takes a new id and is added next to
the old ones; existing files never change (old agents keep using them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snapsync.canonical.profile import load_profile  # noqa: E402
from snapsync.canonical.snapshot import build_snapshot  # noqa: E402
from snapsync.codec.wire_pack import pack_delta  # noqa: E402
from snapsync.delta.diff import diff  # noqa: E402
from snapsync.sim.sample_cluster import SampleCluster  # noqa: E402

OUT = ROOT / "snapsync" / "codec" / "dictionaries"
# 448 KiB trained on ~2.9 MB of records: -3.5% frame bytes at 10k objects against 224 KiB on 1 MB
# (dictionary 2); the digested tables (~3 MB at level 19) are loaded once per process.
SIZE = 448 * 1024
PARAMS = {"k": 1024, "d": 8, "f": 20, "accel": 1, "steps": 0, "threads": 1, "level": 19}
PLAN: list[tuple[str, int, int, int, str]] = [  # (shape, objects, seed, cycles, churn)
    ("application", 4000, 101, 24, "steady"),
    ("application", 3000, 102, 12, "busy"),
    ("platform", 4000, 103, 24, "steady"),
    ("platform", 2000, 104, 12, "busy"),
    ("application", 5000, 105, 6, "quiet"),
]


def samples(plan: Sequence[Any] = PLAN) -> list[bytes]:
    profile = load_profile()
    out: list[bytes] = []
    for shape, objects, seed, cycles, churn in plan:
        cluster = SampleCluster(objects=objects, shape=shape, seed=seed)
        base = build_snapshot(cluster.objects(), profile, collected_at="2023-11-14T22:13:20Z")
        for cycle in range(1, cycles + 1):
            cluster.step(churn=churn)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + 60 * cycle))
            new = build_snapshot(cluster.objects(), profile, collected_at=stamp)
            out.extend(pack_delta(base, diff(base, new)).records)
            base = new
    return out


def train(dict_id: int, size: int = SIZE, plan: Sequence[Any] = PLAN) -> tuple[bytes, str]:
    """The dictionary, and the SHA-256 of its samples (tells a changed generator from a changed
    trainer when --check fails)."""
    records = samples(plan)
    print(f"{len(records)} records, {sum(map(len, records)):,} bytes", file=sys.stderr)
    inputs: list[Any] = list(records)
    trained = zstandard.train_dictionary(size, inputs, dict_id=dict_id, **PARAMS)
    data: bytes = trained.as_bytes()
    return data, hashlib.sha256(b"".join(records)).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", type=int, required=True, help="dictionary id (new ids only)")
    parser.add_argument("--check", action="store_true", help="compare with the shipped file")
    parser.add_argument("--default", action="store_true", help="make it the default for frames")
    args = parser.parse_args()
    name = f"k8s-delta-{args.id}.zdict"
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if args.check:
        entry = next(d for d in manifest["dictionaries"] if int(d["id"]) == args.id)
        plan = [tuple(p) for p in entry["plan"]]
        data, samples_digest = train(args.id, int(entry["bytes"]), plan)
        digest = hashlib.sha256(data).hexdigest()
        shipped = (OUT / name).read_bytes()
        same = shipped == data
        print(f"{name}: {'identical' if same else 'DIFFERENT'} ({digest})")
        if entry.get("samples_sha256", samples_digest) != samples_digest:
            print(
                "the samples differ: snapsync.sim.sample_cluster"
                " (or the delta encoding) has changed"
            )
        sys.exit(0 if same else 1)
    if any(int(d["id"]) == args.id for d in manifest["dictionaries"]):
        sys.exit(f"dictionary id {args.id} is already shipped; pick a new id")
    data, samples_digest = train(args.id)
    digest = hashlib.sha256(data).hexdigest()
    (OUT / name).write_bytes(data)
    manifest["dictionaries"].append(
        {
            "id": args.id,
            "file": name,
            "sha256": digest,
            "bytes": len(data),
            "trained_on": (
                "compact delta records (snapsync.codec.wire_form) of snapsync.sim.sample_cluster"
            ),
            "plan": [list(p) for p in PLAN],
            "samples_sha256": samples_digest,
            "params": PARAMS,
            "zstandard": zstandard.__version__,
        }
    )
    if args.default or not manifest.get("default"):
        manifest["default"] = args.id
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {name}: {len(data):,} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
