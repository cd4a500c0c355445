"""CPU per cycle of the codec's two hot calls, this checkout against another, and against the JSON
Patch baseline's encode of the same cycles.

    python bench/bench_codec_cpu.py --code /tmp/main-checkout             # 10k steady and busy
    python bench/bench_codec_cpu.py --code /tmp/main --objects 1000 --cycles 4 --rounds 1

The traces (tools/traces.py, seeded; `--cycles` cycles after the starting state) are made once
by this checkout and written as snapshot frames, so both checkouts encode the very same pairs.
Per round and checkout a child process (PYTHONPATH: that checkout) decodes the snapshots, warms
up on the first pair (the trained dictionary is digested once per process), then times on every
later pair (previous snapshot -> next, the agent's steady state):

- encode: codec.encode_delta(base, new) with the default options (diff, candidates, the
  verifying decode of the winner);
- decode: codec.decode_frame(frame, base), what the server does with every upload;
- JSON Patch: snapsync.sim.baselines.json_patch_gzip of the whole state (this checkout's child
  only: the baseline is the same code in both).

CPU is time.process_time in the child; a checkout's figure is the least mean per cycle over the
rounds (rounds alternate the checkouts, so both see the same background load), the ratios are
taken within the run. The collector runs (untimed) before each timed call: a full collection's
cost is the whole heap's (here: every snapshot of the trace), not the call's, and where it
falls decided ±10 ms per cycle. The collections that still fall within a call are included,
and their time is reported apart ("of which GC": wall time, gc.callbacks). Each child also
prints the SHA-256 of the frames it shipped: the two checkouts must agree (the codec's frames
are byte-for-byte the same). Results go to bench/results/codec_cpu.md. A benchmark reports;
tests assert.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snapsync.codec import encode_snapshot  # noqa: E402
from tools.traces import TraceSpec, replay  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "codec_cpu.md"
SCENARIOS = ("steady", "busy")
# Run by each checkout's own code on the trace's snapshot frames: argv[1] the directory,
# argv[2] "1" to time the JSON Patch baseline too.
CHILD = """
import gc, hashlib, json, sys, time
from pathlib import Path
from snapsync.codec import decode_snapshot, encode_delta
from snapsync.codec.decode import decode_frame
snapshots = [decode_snapshot(f.read_bytes()) for f in sorted(Path(sys.argv[1]).glob("*.snap"))]
pairs = list(zip(snapshots, snapshots[1:]))
for snapshot in snapshots:
    snapshot.uid_index  # as the agent holds its base: built when it was the newest
encode_delta(*pairs[0])  # warm-up: digests the trained dictionary once per process
encode = decode = patch = 0.0
collector = {"encode": 0.0, "decode": 0.0}  # wall time of the collector's runs within each
began, step = [0.0], ["encode"]
def watch(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
    else:
        collector[step[0]] += time.perf_counter() - began[0]
digest = hashlib.sha256()
for old, new in pairs[1:]:
    gc.collect()
    step[0] = "encode"
    gc.callbacks.append(watch)
    start = time.process_time()
    frame = encode_delta(old, new).frame
    encode += time.process_time() - start
    gc.callbacks.remove(watch)
    digest.update(frame)
    gc.collect()
    step[0] = "decode"
    gc.callbacks.append(watch)
    start = time.process_time()
    decode_frame(frame, old)
    decode += time.process_time() - start
    gc.callbacks.remove(watch)
    if sys.argv[2] == "1":
        from snapsync.sim import baselines as bl
        old_doc, new_doc = bl.state_doc(old), bl.state_doc(new)
        patch += bl.timed(lambda: bl.json_patch_gzip(old_doc, new_doc))[1] / 1000
n = len(pairs) - 1
print(json.dumps({"encode_ms": encode * 1000 / n, "decode_ms": decode * 1000 / n,
                  "encode_gc_ms": collector["encode"] * 1000 / n,
                  "decode_gc_ms": collector["decode"] * 1000 / n,
                  "patch_ms": patch * 1000 / n, "cycles": n, "frames": digest.hexdigest()}))
"""


def write_trace(spec: TraceSpec, out: Path) -> None:
    out.mkdir(parents=True)
    for cycle in replay(spec):
        (out / f"{cycle.index:04d}.snap").write_bytes(encode_snapshot(cycle.snapshot, 3))


def measure(code: Path, trace: Path, baseline: bool) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    args = [sys.executable, "-c", CHILD, str(trace), "1" if baseline else "0"]
    done = subprocess.run(args, cwd=code, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def render(rows: list[dict[str, Any]], argv: list[str], label: str, load: str) -> str:
    lines = [
        "# Codec CPU per cycle: encode_delta and decode_frame, this checkout against another",
        "",
        f"Reproduce: `{' '.join(['python bench/bench_codec_cpu.py', *argv])}`  ",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load}; CPU is "
        "process time, the least mean per cycle over the rounds.",
        "",
        f"| trace | cycles | encode ms (this / {label}) | of which GC "
        f"| encode ratio | decode ms (this / {label}) | of which GC | decode ratio "
        f"| JSON Patch encode ms | encode vs JSON Patch (this / {label}) | same frames |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        this, other, patch = row["this"], row["other"], row["patch_ms"]
        lines.append(
            f"| {row['trace']} | {this['cycles']} "
            f"| {this['encode_ms']:.1f} / {other['encode_ms']:.1f} "
            f"| {this['encode_gc_ms']:.1f} / {other['encode_gc_ms']:.1f} "
            f"| {this['encode_ms'] / other['encode_ms']:.2f}x "
            f"| {this['decode_ms']:.1f} / {other['decode_ms']:.1f} "
            f"| {this['decode_gc_ms']:.1f} / {other['decode_gc_ms']:.1f} "
            f"| {this['decode_ms'] / other['decode_ms']:.2f}x | {patch:.0f} "
            f"| {this['encode_ms'] / patch:.3f}x / {other['encode_ms'] / patch:.3f}x "
            f"| {'yes' if this['frames'] == other['frames'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", default=str(ROOT), help="the other checkout (default: this)")
    parser.add_argument("--label", default="other", help="the other checkout's name in the table")
    parser.add_argument("--objects", type=int, default=10000)
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    other = Path(args.code).resolve()
    rows = []
    with tempfile.TemporaryDirectory(prefix="codec-cpu-") as work:
        for scenario in args.scenarios:
            spec = TraceSpec(scenario, args.objects, cycles=args.cycles + 1)
            trace = Path(work) / scenario
            write_trace(spec, trace)
            runs: dict[str, list[dict[str, Any]]] = {"this": [], "other": []}
            for _ in range(args.rounds):
                runs["this"].append(measure(ROOT, trace, baseline=True))
                runs["other"].append(measure(other, trace, baseline=False))
            best = {
                side: min(found, key=lambda r: r["encode_ms"] + r["decode_ms"])
                for side, found in runs.items()
            }
            patch = min(r["patch_ms"] for r in runs["this"])
            rows.append({"trace": f"{scenario} {args.objects}", **best, "patch_ms": patch})
            print(json.dumps(rows[-1]), flush=True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    text = render(rows, sys.argv[1:] if argv is None else argv, args.label, load)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
