"""Live collection through the API emulator: wall time, HTTP requests and peak memory.

    python bench/bench_collect.py            # 10,000 and 50,000 objects
    python bench/bench_collect.py --quick    # 2,000 objects

For each size the emulator (tools.kube_emulator, objects from snapsync.sample_cluster, shape
"application", seed 0) runs in its own process on 127.0.0.1, and each measurement runs in a fresh
child process, so the memory figures are the collector's alone: the official client, the pages
in flight and the SnapshotBuilder holding the canonical snapshot. Rows:

- list, page 500: KubeCollector as `snapsync dump` runs it (default options);
- list, unpaged: the same with one page per kind (page size 1,000,000), to show what paging saves;
- watch, replay: KubeWatchCollector's second cycle (the first one lists and starts the watches),
  which must cost no LIST at all.

Peak memory is the child's peak RSS above its RSS after imports (ru_maxrss), and the tracemalloc
peak of Python allocations in a separate run (tracemalloc slows the run, so its time is not
reported). Requests are counted by the emulator. Results go to bench/results/collect.md.
A benchmark reports; tests assert.
"""

from __future__ import annotations

import argparse
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
MODES = {"list": 500, "unpaged": 1_000_000, "watch": 500}


@dataclass
class Row:
    objects: int
    mode: str
    wall: float
    requests: int
    lists: int
    rss_mb: float
    traced_mb: float
    collected: int


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/emulator/stats", timeout=30) as response:
        doc: dict[str, Any] = json.load(response)
    return doc


def child(kubeconfig: str, url: str, mode: str, trace: bool) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    from snapsync.collect.kube import KubeCollector, KubeOptions
    from snapsync.collect.watch import KubeWatchCollector
    from snapsync.profile import load_profile
    from snapsync.snapshot import SnapshotBuilder

    options = KubeOptions(kubeconfig=kubeconfig, page_size=MODES[mode], request_timeout=60.0)
    profile = load_profile()
    watcher = None
    if mode == "watch":  # first cycle lists and starts the watches; the second is measured
        watcher = KubeWatchCollector(options)
        watcher.collect(SnapshotBuilder(profile))
    base_rss = _rss_mb()
    before = _stats(url)["requests"]
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    builder = SnapshotBuilder(profile)
    if watcher is not None:
        watcher.collect(builder)
    else:
        with KubeCollector(options) as collector:
            collector.collect(builder)
    snapshot = builder.build()
    wall = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if trace else 0.0
    if trace:
        tracemalloc.stop()
    after = _stats(url)["requests"]
    if watcher is not None:
        watcher.close()
    return {
        "wall": wall,
        "requests": sum(after.values()) - sum(before.values()),
        "lists": after.get("list", 0) - before.get("list", 0),
        "rss_mb": max(0.0, _rss_mb() - base_rss),
        "traced_mb": traced,
        "collected": len(snapshot),
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
                    Row(objects, mode, timed["wall"], timed["requests"], timed["lists"],
                        timed["rss_mb"], traced["traced_mb"], timed["collected"])
                )  # fmt: skip
                print(_format(rows[-1]), flush=True)
            return rows
        finally:
            server.terminate()
            server.wait(timeout=30)


HEADER = (
    "| objects | mode | wall s | requests | LIST requests | peak RSS MB | peak traced MB "
    "| objects in snapshot |\n|---:|---|---:|---:|---:|---:|---:|---:|"
)


def _format(row: Row) -> str:
    label = {"list": "list, page 500", "unpaged": "list, unpaged", "watch": "watch, replay"}
    return (
        f"| {row.objects:,} | {label[row.mode]} | {row.wall:.2f} | {row.requests} | {row.lists} "
        f"| {row.rss_mb:.0f} | {row.traced_mb:.0f} | {row.collected:,} |"
    )


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
    if not args.no_write and not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        machine = f"{platform.python_implementation()} {platform.python_version()}, "
        machine += f"{os.cpu_count()} CPUs (shared)"
        table = "\n".join([HEADER, *map(_format, rows)])
        RESULTS.write_text(
            f"# Live collection through the API emulator\n\n`python bench/bench_collect.py` on "
            f"{machine}; emulator in its own process on loopback.\n\n{table}\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
