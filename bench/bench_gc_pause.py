"""What the server's kept newest versions cost the cyclic garbage collector, and a delta, held as
indexed Snapshots (before) or CompactSnapshots (snapsync.delta.incremental.compact, now).

    python bench/bench_gc_pause.py                  # 200 x 1,500 objects and 32 x 10,000
    python bench/bench_gc_pause.py --fleet 200:1500

A full collection walks every tracked object of the oldest generation while holding the GIL: in
`snapsync serve` every request waits for it. For each fleet (environments x objects) this keeps
one version per environment as the state cache would (decoded from the same full frame, then
indexed or compacted; "nothing kept" is the process's own floor), and reports: tracked objects
per environment (gc.get_objects), the median of 5 full collections (gc.collect(), wall ms), RSS
growth (/proc VmRSS; each variant runs in a fresh process, as freed memory is not given back),
and the median CPU of applying one real delta to a kept version (decode, derive, digest check).
Prints a markdown table; bench/results/server_load.md quotes it. A benchmark reports; tests assert.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snapsync.canonical.profile import load_profile  # noqa: E402
from snapsync.canonical.snapshot import Snapshot, build_snapshot  # noqa: E402
from snapsync.codec.decode import apply_frame, decode_snapshot  # noqa: E402
from snapsync.codec.encode import encode_delta, encode_snapshot  # noqa: E402
from snapsync.delta.incremental import compact, indexed  # noqa: E402
from snapsync.sim.sample_cluster import SampleCluster  # noqa: E402


def rss_kb() -> int:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def nothing(snapshot: Snapshot) -> Snapshot:
    return snapshot


KEEPS: dict[str, Callable[[Snapshot], Snapshot]] = {
    "nothing kept": nothing,
    "indexed (before)": indexed,
    "compact (now)": compact,
}


def frames(objects: int) -> tuple[bytes, bytes]:
    """A full frame and a delta after it (the cluster and snapshots are garbage afterwards, so
    the process's floor is the interpreter and modules, not the generator)."""
    cluster = SampleCluster(objects=objects, shape="application", seed=1)
    first = build_snapshot(cluster.objects(), load_profile())
    cluster.step(churn="steady", minutes=min(1.0, 300 / objects))
    second = build_snapshot(cluster.objects(), load_profile())
    return encode_snapshot(first), encode_delta(first, second).frame


def measure(envs: int, objects: int, keep: Callable[[Snapshot], Snapshot]) -> dict[str, float]:
    frame, delta = frames(objects)
    gc.collect()
    tracked, rss = len(gc.get_objects()), rss_kb()
    kept = [keep(decode_snapshot(frame)) for _ in range(envs)] if keep is not nothing else []
    gc.collect()
    per_env = (len(gc.get_objects()) - tracked) / envs
    grown = (rss_kb() - rss) / 1024
    pauses = []
    for _ in range(5):
        started = time.perf_counter()
        gc.collect()
        pauses.append(time.perf_counter() - started)
    applies = []
    for state in kept[:15]:
        started = time.process_time()
        apply_frame(state, delta)
        applies.append(time.process_time() - started)
    applies = applies or [0.0]
    del kept
    gc.collect()
    return {
        "tracked": per_env,
        "pause_ms": statistics.median(pauses) * 1000,
        "rss_mb": grown,
        "apply_ms": statistics.median(applies) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", action="append", help="ENVS:OBJECTS; repeatable")
    parser.add_argument("--one", nargs=3, metavar=("ENVS", "OBJECTS", "KEPT_AS"), help="internal")
    args = parser.parse_args()
    if args.one:
        envs, objects, name = int(args.one[0]), int(args.one[1]), args.one[2]
        got = measure(envs, objects, KEEPS[name])
        cells = f"{got['tracked']:,.0f} | {got['pause_ms']:,.0f} | {got['rss_mb']:,.0f}"
        print(f"| {envs} x {objects:,} | {name} | {cells} | {got['apply_ms']:.1f} |")
        return 0
    fleets = [tuple(map(int, f.split(":"))) for f in args.fleet or ["200:1500", "32:10000"]]
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| environments x objects | kept as | tracked objects / env | full gc.collect ms "
          "| RSS MB | apply one delta ms CPU |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for envs, objects in fleets:
        for name in KEEPS:
            one = [sys.executable, __file__, "--one", str(envs), str(objects), name]
            subprocess.run(one, check=True)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
