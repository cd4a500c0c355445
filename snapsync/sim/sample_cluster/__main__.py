"""`python -m snapsync.sim.sample_cluster`: write a sample cluster's List document as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from snapsync.sim.sample_cluster.api import CHURN_LEVELS
from snapsync.sim.sample_cluster.cluster import SHAPES, SampleCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m snapsync.sim.sample_cluster",
        description="Write a deterministic sample cluster as a `kubectl get -o json` List.",
    )
    parser.add_argument("--objects", type=int, default=500, help="number of objects (default 500)")
    parser.add_argument("--shape", choices=SHAPES, default="application")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=0, help="churn steps of one minute first")
    parser.add_argument("--churn", choices=CHURN_LEVELS, default="steady")
    parser.add_argument("--indent", type=int, default=None, help="pretty-print with this indent")
    parser.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    args = parser.parse_args(argv)
    if args.objects < 1 or args.steps < 0:
        parser.error("--objects must be positive and --steps not negative")
    cluster = SampleCluster(objects=args.objects, shape=args.shape, seed=args.seed)
    for _ in range(args.steps):
        cluster.step(args.churn)
    text = json.dumps(cluster.list_document(), indent=args.indent, sort_keys=True) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
