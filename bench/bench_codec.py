"""Bytes and CPU per churn cycle: snapsync's frame candidates against the naive baselines.

    python bench/bench_codec.py            # 1,000 and 10,000 objects, 1% and 5% churn
    python bench/bench_codec.py --quick    # 1,000 objects only, fewer cycles

Each cycle the sample cluster (snapsync.sim.sample_cluster, shape "application", seed 0) steps its
simulated clock under "steady" churn until at least the target share of the canonical snapshot's
objects was added, removed or changed (the generator's own churn, so changes look like a
cluster's: pod restarts, rollouts, new Events; changes the profile drops do not count); the
acknowledged base is the previous cycle's snapshot. Every approach encodes the same pair in
the same run:

- full JSON + gzip-6 of the canonical state;
- JSON Patch (jsonpatch.make_patch) of the whole canonical state, keyed by object, + gzip-6;
- full canonical msgpack + zstd-3;
- snapsync.encode_delta: each candidate's frame bytes and CPU (all forced on, so each is
  measured), and the frame the default options ship with the CPU of the whole call (diff,
  candidates the defaults compute, verification).

CPU is time.process_time of the encoding side; the receiver's apply is reported too. Results
go to bench/results/codec.md. A benchmark reports; tests assert.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snapsync.canonical.profile import load_profile  # noqa: E402
from snapsync.canonical.snapshot import Snapshot, build_snapshot  # noqa: E402
from snapsync.codec import dictionaries  # noqa: E402
from snapsync.codec.decode import apply_frame  # noqa: E402
from snapsync.codec.encode import EncodeOptions, encode_delta  # noqa: E402
from snapsync.sim.baselines import (  # noqa: E402
    full_json_gzip,
    full_msgpack_zstd,
    json_patch_gzip,
    state_doc,
    timed,
)
from snapsync.sim.sample_cluster import SampleCluster  # noqa: E402

PROFILE = load_profile()
STEP_MINUTES = 0.05  # generator steps are small, so a cycle stops close to its churn target
# Every candidate computed whatever its odds, to report each one's bytes and CPU.
ALL_CANDIDATES = EncodeOptions(
    patch_from_min_share=0.0, patch_from_max_base=2**40, full_skip_ratio=0.0
)
RESULTS = ROOT / "bench" / "results" / "codec.md"


@dataclass
class Row:
    objects: int
    churn: float
    cycles: int = 0
    changed_share: list[float] = field(default_factory=list)
    size: dict[str, list[int]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, size: int, cpu_ms: float) -> None:
        self.size.setdefault(name, []).append(size)
        self.cpu.setdefault(name, []).append(cpu_ms)


def canonical_changes(base: Snapshot, new: Snapshot) -> int:
    """Objects added, removed or changed between two canonical snapshots."""
    changed = sum(
        1
        for key, obj in new.objects.items()
        if (old := base.objects.get(key)) is None or old.digest != obj.digest
    )
    return changed + sum(1 for key in base.objects if key not in new.objects)


def cycle_pair(cluster: Any, base: Snapshot, share: float, at: int) -> tuple[Snapshot, float]:
    """Step the generator until `share` of the canonical objects changed (volatile fields and
    excluded kinds, which the profile drops, do not count); the new snapshot and the share."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + 60 * at))
    target = share * len(base)
    elapsed, minutes = 0.0, STEP_MINUTES
    while True:
        cluster.step(churn="steady", minutes=minutes)
        elapsed += minutes
        new = build_snapshot(cluster.objects(), PROFILE, collected_at=stamp)
        changes = canonical_changes(base, new)
        if changes >= target:
            return new, changes / len(base)
        # Aim at 90% of what is missing at the rate seen so far, never more than doubling.
        rate = changes / elapsed
        wanted = 0.9 * (target - changes) / rate if rate else elapsed
        minutes = min(max(STEP_MINUTES, wanted), elapsed)


def run(objects: int, churn: float, cycles: int, options: EncodeOptions) -> Row:
    cluster = SampleCluster(objects=objects, shape="application", seed=0)
    base = build_snapshot(cluster.objects(), PROFILE, collected_at="2023-11-14T22:13:20Z")
    base.keys  # noqa: B018 (a receiver's base is already sorted; do not bill it to cycle 1)
    row = Row(objects=len(base), churn=churn)
    for at in range(1, cycles + 1):
        new, share = cycle_pair(cluster, base, churn, at)
        new.keys  # noqa: B018
        row.changed_share.append(share)
        old_doc, new_doc = state_doc(base), state_doc(new)

        blob, ms = timed(lambda: full_json_gzip(new_doc))  # noqa: B023
        row.add("full JSON + gzip-6", len(blob), ms)
        blob, ms = timed(lambda: json_patch_gzip(old_doc, new_doc))  # noqa: B023
        row.add("JSON Patch (whole state) + gzip-6", len(blob), ms)
        blob, ms = timed(lambda: full_msgpack_zstd(new))  # noqa: B023
        row.add("full msgpack + zstd-3", len(blob), ms)

        every = encode_delta(base, new, ALL_CANDIDATES, timer=time.process_time)
        for name, size in every.candidates.items():
            row.add(f"snapsync candidate: {name}", size, every.cpu_ms.get(name, 0.0))
        encoded, ms = timed(lambda: encode_delta(base, new, options, timer=time.process_time))  # noqa: B023
        row.add("snapsync chosen frame (all steps, defaults)", len(encoded.frame), ms)
        row.add(f"(chosen: {encoded.chosen})", len(encoded.frame), 0.0)
        result, ms = timed(lambda: apply_frame(base, encoded.frame))  # noqa: B023
        assert result.digest == new.digest
        row.add("snapsync apply (receiver)", len(encoded.frame), ms)
        row.cycles += 1
        base = result
        print(
            f"  {row.objects} objects, {churn:.0%}: cycle {at} {encoded.chosen} "
            f"{len(encoded.frame)} B {encoded.candidates} cpu {encoded.total_cpu_ms:.0f} ms",
            flush=True,
        )
    return row


def render(rows: list[Row], argv: list[str]) -> str:
    lines = [
        "# Codec benchmark: bytes and CPU per churn cycle",
        "",
        f"Reproduce: `{' '.join(['python bench/bench_codec.py', *argv])}`  ",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"zstandard {zstandard.__version__}, {time.strftime('%Y-%m-%d', time.gmtime())}; "
        "CPU is process time on a shared 2-core machine (±30%), mean per cycle.",
        "",
    ]
    for row in rows:
        share = statistics.mean(row.changed_share)
        lines += [
            f"## {row.objects:,} objects, {row.churn:.0%} churn target "
            f"({share:.1%} of canonical objects changed per cycle on average, {row.cycles} cycles)",
            "",
            "| approach | bytes/cycle | CPU ms/cycle | bytes vs JSON Patch | CPU vs JSON Patch |",
            "|---|---:|---:|---:|---:|",
        ]
        ref_b = statistics.mean(row.size["JSON Patch (whole state) + gzip-6"])
        ref_c = statistics.mean(row.cpu["JSON Patch (whole state) + gzip-6"])
        for name in row.size:
            if name.startswith("(chosen"):
                continue
            b, c = statistics.mean(row.size[name]), statistics.mean(row.cpu[name])
            cpu = f"{c:,.0f}" if c else "—"
            ratio_c = f"{c / ref_c:.2f}x" if c else "—"
            lines.append(f"| {name} | {b:,.0f} | {cpu} | {b / ref_b:.2f}x | {ratio_c} |")
        chosen = sorted({n for n in row.size if n.startswith("(chosen")})
        lines += [
            "",
            "Chosen per cycle: " + ", ".join(f"{n[9:-1]} x{len(row.size[n])}" for n in chosen),
            "",
        ]
    lines += [
        "## Closing note: the shipped frame against JSON Patch of the whole state + gzip-6",
        "",
        "| objects | churn (measured) | snapsync bytes | JSON Patch + gzip bytes | bytes ratio "
        "| CPU ratio (encode, all steps) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours = statistics.mean(row.size["snapsync chosen frame (all steps, defaults)"])
        ours_cpu = statistics.mean(row.cpu["snapsync chosen frame (all steps, defaults)"])
        ref_b = statistics.mean(row.size["JSON Patch (whole state) + gzip-6"])
        ref_c = statistics.mean(row.cpu["JSON Patch (whole state) + gzip-6"])
        lines.append(
            f"| {row.objects:,} | {statistics.mean(row.changed_share):.1%} | {ours:,.0f} "
            f"| {ref_b:,.0f} | {ours / ref_b:.2f}x | {ours_cpu / ref_c:.2f}x |"
        )
    lines += [
        "",
        f"Delta frames use trained dictionary id {dictionaries.default_id()}; the target is a "
        "third of the bytes at a fifth of the CPU, the aim a quarter at a tenth.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 objects only, 3 cycles")
    parser.add_argument("--cycles", type=int, default=0, help="cycles per configuration")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = [1000] if args.quick else [1000, 10000]
    rows = []
    for objects in sizes:
        for churn in (0.01, 0.05):
            cycles = args.cycles or (3 if args.quick else 6 if objects <= 1000 else 4)
            rows.append(run(objects, churn, cycles, EncodeOptions()))
    argv = [a for a in sys.argv[1:] if a in ("--quick",) or a.startswith("--cycles")]
    text = render(rows, argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
