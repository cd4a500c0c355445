"""Live collection through the API emulator: wall and CPU time, HTTP requests and memory.

    python bench/bench_collect.py            # 10,000 and 50,000 objects
    python bench/bench_collect.py --quick    # 2,000 objects

For each size the emulator (tools.kube_emulator, objects from snapsync.sim.sample_cluster, shape
"application", seed 0) runs in its own process on 127.0.0.1, and each measurement runs in a fresh
child process, so the memory figures are the collector's alone: the official client, the pages
in flight and the SnapshotBuilder holding the canonical snapshot. Rows:

- list, page 500: KubeCollector as `snapsync dump` runs it (default options);
- list, unpaged: the same with one page per kind (page size 1,000,000), to show what paging saves;
- watch, replay: KubeWatchCollector's second cycle (the first one lists and starts the watches),
  which must cost no LIST at all, nor any canonicalization (each object's result is cached);
- watch, replay, uncached: the same into a sink that offers only `add`, so every object is
  canonicalized again, as every replay did before the cache: the baseline of the same run;
- watch, replay after 1% changes: the second cycle after PATCHing a label on 1% of the objects
  (Pods and ConfigMaps) and waiting for the watches to deliver them.

CPU is the child's process time over the cycle (the idle watch threads included). Peak RSS is
the child's peak RSS during the cycle above its RSS before it (ru_maxrss: 0 when the cycle stays
under an earlier peak). A separate run under tracemalloc (its time is not reported; for watch
modes it traces from the first cycle on) gives the peak of Python allocations during the cycle
above what was held before it; "held", what is held right after it: the collector, the new
snapshot and, for watch modes, the first cycle's snapshot, as an agent keeps its acknowledged
base; and "collector", what the collector alone keeps once the snapshots are dropped. Requests
are counted by the emulator. Results go to bench/results/collect.md, with
the speed-up of the cached replay as a ratio against the uncached one measured in the same run.
A benchmark reports; tests assert.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "collect.md"
MODES = {"list": 500, "unpaged": 1_000_000, "uncached": 500, "watch": 500, "churn": 500}
WATCH_MODES = ("uncached", "watch", "churn")
CHURN = 0.01  # share of the objects changed between the two cycles of the "churn" mode
LABELS = {
    "list": "list, page 500",
    "unpaged": "list, unpaged",
    "uncached": "watch, replay, uncached",
    "watch": "watch, replay",
    "churn": f"watch, replay after {CHURN:.0%} changes",
}


@dataclass
class Row:
    objects: int
    mode: str
    wall: float
    cpu: float
    requests: int
    lists: int
    canonicalized: int
    rss_mb: float
    traced_mb: float
    held_mb: float
    kept_mb: float
    collected: int


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/emulator/stats", timeout=30) as response:
        doc: dict[str, Any] = json.load(response)
    return doc


class PlainSink:
    """Only a Sink's `add` and `record_error`: the watch collector canonicalizes every object."""

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.profile = builder.profile  # the same kind and namespace scope as the builder's

    def add(self, raw: dict[str, Any]) -> object:
        return self.builder.add(raw)

    def record_error(self, error: Any) -> None:
        self.builder.record_error(error)


def _patch(url: str, raw_key: Any, index: int) -> int:
    """Change one label of a Pod or ConfigMap through the API; its new resourceVersion."""
    plural = {"Pod": "pods", "ConfigMap": "configmaps"}[raw_key.kind]
    path = f"/api/v1/namespaces/{raw_key.namespace}/{plural}/{raw_key.name}"
    body = json.dumps({"metadata": {"labels": {"bench-churn": str(index)}}}).encode()
    request = urllib.request.Request(
        url + path, body, {"Content-Type": "application/merge-patch+json"}, method="PATCH"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        doc: dict[str, Any] = json.load(response)
    return int(doc["metadata"]["resourceVersion"])


def _churn(url: str, watcher: Any, snapshot: Any) -> None:
    """PATCH CHURN of the objects (spread over the Pods and ConfigMaps) and wait for the watches."""
    keys = [k for k, _ in snapshot if k.group == "" and k.kind in ("Pod", "ConfigMap")]
    count = max(1, int(len(snapshot) * CHURN))
    changed = keys[:: max(1, len(keys) // count)][:count]
    rv = max(_patch(url, key, i) for i, key in enumerate(changed))
    if not watcher.synced(rv, 120.0):
        raise SystemExit("the watches did not catch up with the changes")


def child(kubeconfig: str, url: str, mode: str, trace: bool) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    from snapsync.canonical.profile import load_profile
    from snapsync.canonical.snapshot import SnapshotBuilder
    from snapsync.collect.kube import KubeCollector, KubeOptions
    from snapsync.collect.watch import KubeWatchCollector

    options = KubeOptions(kubeconfig=kubeconfig, page_size=MODES[mode], request_timeout=60.0)
    profile = load_profile()
    sink = PlainSink if mode == "uncached" else (lambda builder: builder)
    watcher, base = None, None
    if trace:
        tracemalloc.start()
    if mode in WATCH_MODES:  # first cycle lists and starts the watches; the second is measured
        watcher = KubeWatchCollector(options)
        first = SnapshotBuilder(profile)
        watcher.collect(sink(first))
        base = first.build()  # kept through the second cycle, as the agent keeps its acked base
        del first
        if mode == "churn":
            _churn(url, watcher, base)
    canonicalized = watcher.canonicalized if watcher is not None else 0
    held_before = tracemalloc.get_traced_memory()[0] if trace else 0
    if trace:
        tracemalloc.reset_peak()
    base_rss = _rss_mb()
    before = _stats(url)["requests"]
    started, cpu_started = time.perf_counter(), time.process_time()
    builder = SnapshotBuilder(profile)
    if watcher is not None:
        watcher.collect(sink(builder))
    else:
        with KubeCollector(options) as collector:
            collector.collect(builder)
    snapshot = builder.build()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    gc.collect()  # what is still referenced, not what a collection would free
    held = tracemalloc.get_traced_memory()[0] if trace else 0
    collected, excluded = len(snapshot), builder.excluded
    del snapshot, builder, base
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] if trace else 0
    if trace:
        tracemalloc.stop()
    after = _stats(url)["requests"]
    if watcher is not None:
        canonicalized = watcher.canonicalized - canonicalized
        watcher.close()
    if mode not in ("watch", "churn"):  # every object added was canonicalized
        canonicalized = collected + excluded
    return {
        "wall": wall,
        "cpu": cpu,
        "requests": sum(after.values()) - sum(before.values()),
        "lists": after.get("list", 0) - before.get("list", 0),
        "canonicalized": canonicalized,
        "rss_mb": max(0.0, _rss_mb() - base_rss),
        "traced_mb": (peak - held_before) / 2**20,
        "held_mb": held / 2**20,
        "kept_mb": kept / 2**20,
        "collected": collected,
    }


def _run_child(kubeconfig: Path, url: str, mode: str, trace: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", str(kubeconfig), url, mode]
    if trace:
        command.append("--trace")
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(objects: int, modes: list[str]) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        server = subprocess.Popen(
            [sys.executable, "-m", "tools.kube_emulator", "--generate", str(objects),
             "--port", "0", "--kubeconfig", str(kubeconfig)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if " at " not in line:
                raise SystemExit(f"the emulator did not start: {line!r}")
            url = line.rsplit(" at ", 1)[1].strip()
            rows = []
            for mode in modes:
                timed = _run_child(kubeconfig, url, mode, trace=False)
                traced = _run_child(kubeconfig, url, mode, trace=True)
                rows.append(
                    Row(objects, mode, timed["wall"], timed["cpu"], timed["requests"],
                        timed["lists"], timed["canonicalized"], timed["rss_mb"],
                        traced["traced_mb"], traced["held_mb"], traced["kept_mb"],
                        timed["collected"])
                )  # fmt: skip
                print(_format(rows[-1]), flush=True)
            return rows
        finally:
            server.terminate()
            server.wait(timeout=30)


HEADER = (
    "| objects | mode | wall s | CPU s | requests | LIST requests | canonicalized | peak RSS MB "
    "| peak traced MB | held MB | collector MB | objects in snapshot |\n"
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _format(row: Row) -> str:
    return (
        f"| {row.objects:,} | {LABELS[row.mode]} | {row.wall:.2f} | {row.cpu:.2f} "
        f"| {row.requests} | {row.lists} | {row.canonicalized:,} | {row.rss_mb:.0f} "
        f"| {row.traced_mb:.0f} | {row.held_mb:.0f} | {row.kept_mb:.0f} | {row.collected:,} |"
    )


def ratios(rows: list[Row]) -> list[str]:
    """Cached replays against the uncached replay of the same run and size."""
    lines = []
    for size in sorted({r.objects for r in rows}):
        by_mode = {r.mode: r for r in rows if r.objects == size}
        base = by_mode.get("uncached")
        if base is None:
            continue
        parts = [
            f"{LABELS[mode]}: wall {base.wall / row.wall:.1f}x, CPU {base.cpu / row.cpu:.1f}x"
            for mode in ("watch", "churn")
            if (row := by_mode.get(mode)) is not None and row.wall > 0 and row.cpu > 0
        ]
        lines.append(f"- {size:,} objects, against the uncached replay: " + "; ".join(parts))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 objects only")
    parser.add_argument("--sizes", type=int, nargs="*", help="object counts (default 10k, 50k)")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    parser.add_argument("--child", nargs=3, metavar=("KUBECONFIG", "URL", "MODE"),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, trace=args.trace)))
        return
    sizes = args.sizes or ([2_000] if args.quick else [10_000, 50_000])
    print(HEADER)
    rows = []
    for size in sizes:
        rows.extend(measure(size, list(MODES)))
    print("\n".join(ratios(rows)))
    if not args.no_write and not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        machine = f"{platform.python_implementation()} {platform.python_version()}, "
        machine += f"{os.cpu_count()} CPUs (shared)"
        table = "\n".join([HEADER, *map(_format, rows)])
        RESULTS.write_text(results(machine, table, ratios(rows)), encoding="utf-8")


NOTES = """\
The uncached replay is what every watch cycle cost before the canonical cache (every object
canonicalized again); compare rows of one run, never runs of different days: the machine is
shared, and wall time suffers most from it.

Memory: "held" is what an agent holds after a cycle: the collector, the new snapshot and the
acknowledged base. Uncached, that is the raw objects and two canonical copies (base and new);
cached, the raw objects and one canonical copy that the cache, the base and the new snapshot
share. "collector" is the collector alone once the snapshots are dropped: the cache adds one
canonical copy to the raw objects, which stay the larger part (a canonical object shares its
strings with its raw object, so it adds less than a list row's snapshot weighs).
"""


def results(machine: str, table: str, speedups: list[str]) -> str:
    """The text of bench/results/collect.md."""
    return (
        f"# Live collection through the API emulator\n\n`python bench/bench_collect.py` on "
        f"{machine}; emulator in its own process on loopback.\n\n{table}\n\n"
        f"Speed-ups of the cached watch replay, same run:\n\n" + "\n".join(speedups) + "\n\n"
        f"{NOTES}"
    )


if __name__ == "__main__":
    main()
