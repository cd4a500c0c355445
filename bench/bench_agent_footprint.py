"""The real agent's memory and CPU in watch mode, read from outside its process, against the JSON
Patch baseline's encode of the same cycles.

    python bench/bench_agent_footprint.py                        # 1k, 10k and 50k objects
    python bench/bench_agent_footprint.py --sizes 10000 --cycles 6
    python bench/bench_agent_footprint.py --code /tmp/old-checkout --label before

Per size, three child processes on loopback: the Kubernetes API emulator (tools/kube_emulator,
`--generate N`, one simulated minute of steady churn every `--interval` seconds), a real
`snapsync serve` (SQLite) and the real `snapsync agent --collect watch` (snapshot and ping every
`--interval` seconds; `--code DIR` runs the agent from another checkout, for before/after).
The benchmark samples /proc/PID/status (VmRSS, VmHWM) and /proc/PID/stat (utime + stime) of the
agent every 0.2 s, and counts a cycle each time the agent's log line names a new acknowledged
version. It copies every snapshot file the agent writes to its state directory (whole, or as
changes on top of another: the agent's own code reads them back), and afterwards times the JSON
Patch baseline (snapsync.sim.baselines.json_patch_gzip of the whole state against the previous
cycle's, as bench/runner.py does) on consecutive pairs of those snapshots: the same cycles the
agent shipped, CPU measured in this process.

- peak: VmHWM once the first version (the initial list's full snapshot) is acknowledged;
- steady: VmRSS, the largest sample after the `--warm`-th acknowledged version;
- CPU/cycle: the agent's utime + stime from the `--warm`-th to the last acknowledged version,
  divided by the versions in between (watch events, canonicalization, diff, encode, HTTP).

Results are appended to bench/results/agent_footprint.jsonl and rendered, every run of every
label, into bench/results/agent_footprint.md. A benchmark reports; tests assert.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_gate_rss import memory  # noqa: E402
from bench.bench_server_load import SECRET  # noqa: E402
from tools.serving import serving  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "agent_footprint.md"
RUNS = ROOT / "bench" / "results" / "agent_footprint.jsonl"
TICK = os.sysconf("SC_CLK_TCK")
VERSION = re.compile(r"\bversion=(\d+)")
# The baselines of cycle_baselines, run by the agent's code on its copied snapshots
BASELINES = """
import itertools, json, sys
from pathlib import Path
from snapsync.sim import baselines as bl
from snapsync.codec import decode_snapshot, encode_delta
try:  # snapshots written whole or as changes on top of another (snapsync.agent.snapfiles)
    from snapsync.agent.snapfiles import SnapshotFiles
except ImportError:  # code from before: every snapshot written whole
    SnapshotFiles = None
snapshots = []
if SnapshotFiles is not None:
    files = SnapshotFiles(Path(sys.argv[1]))
    files.scan()
    snapshots = list(files.read(list(files.written)).values())
for file in [] if SnapshotFiles is not None else Path(sys.argv[1]).glob("*.snap"):
    try:
        snapshots.append(decode_snapshot(file.read_bytes()))
    except Exception:  # a copy caught mid-write
        continue
snapshots.sort(key=lambda s: s.header.collected_at)
pairs = list(itertools.pairwise(snapshots))[-int(sys.argv[2]):]
patch = encode = 0.0
for old, new in pairs:
    old_doc, new_doc = bl.state_doc(old), bl.state_doc(new)
    patch += bl.timed(lambda: bl.json_patch_gzip(old_doc, new_doc))[1]
    old.uid_index  # as the agent holds it: built when the snapshot was the newest
    encode += bl.timed(lambda: encode_delta(old, new))[1]
n = max(1, len(pairs))
print(json.dumps({"patch_ms": patch / n, "encode_ms": encode / n, "pairs": len(pairs)}))
"""
# `snapsync ARGS` under cProfile (main thread only); SIGTERM writes the stats to argv[1] and exits
PROFILED = """
import cProfile, os, signal, sys
from snapsync.cli import cli
profile = cProfile.Profile()
def dump(*_):
    profile.disable()
    profile.dump_stats(sys.argv[1])
    os._exit(0)
signal.signal(signal.SIGTERM, dump)
profile.enable()
cli.main(sys.argv[2:], prog_name="snapsync")
"""


@dataclass
class Sample:
    t: float
    rss_kb: int
    hwm_kb: int
    cpu_s: float


@dataclass
class Run:
    label: str
    objects: int
    interval: float
    acks: int
    peak_mb: float
    steady_mb: float
    final_hwm_mb: float
    cpu_ms_per_cycle: float
    patch_ms_per_cycle: float
    patch_pairs: int
    main_thread_share: float = 0.0  # of the agent's CPU over the run (the rest: watch threads)
    encode_ms_per_cycle: float = 0.0  # codec.encode_delta on the same pairs, in a child process
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))

    @property
    def ratio(self) -> float:
        return self.cpu_ms_per_cycle / self.patch_ms_per_cycle if self.patch_ms_per_cycle else 0.0

    @property
    def encode_ratio(self) -> float:
        return (
            self.encode_ms_per_cycle / self.patch_ms_per_cycle if self.patch_ms_per_cycle else 0.0
        )


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of `pid`, or of one of its threads (fields 14 and 15 of /proc/PID/stat)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    stat = Path(path).read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def sample(pid: int) -> Sample:
    rss, hwm = memory(pid)
    return Sample(time.monotonic(), rss, hwm, cpu_seconds(pid))


def start_emulator(
    size: int, interval: float, kubeconfig: Path, log: Path
) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        "-m",
        "tools.kube_emulator",
        "--generate",
        str(size),
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        "--churn",
        str(interval),
        "--churn-minutes",
        "1",
    ]
    process = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("ab"), text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("serving"):
        process.kill()
        raise RuntimeError(f"the emulator did not start: {line!r} {log.read_text()[-1500:]}")
    return process


def stop(
    process: subprocess.Popen[str] | subprocess.Popen[bytes], how: int = signal.SIGTERM
) -> None:
    if process.poll() is None:
        process.send_signal(how)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_size(size: int, args: argparse.Namespace) -> Run:
    work = Path(tempfile.mkdtemp(prefix=f"footprint-{size}-"))
    copies = work / "copies"
    copies.mkdir()
    state = work / "state"
    code = Path(args.code).resolve()
    emulator = start_emulator(size, args.interval, work / "kubeconfig", work / "emulator.log")
    acks: list[tuple[int, Sample]] = []
    samples: list[Sample] = []
    try:
        with serving(
            str(work / "server.db"), work / "server.log", secret=SECRET, cwd=ROOT
        ) as server:
            url = server.url
            env = {
                **os.environ,
                "KUBECONFIG": str(work / "kubeconfig"),
                "SNAPSYNC_AGENT_SECRET": SECRET,
                "PYTHONPATH": str(code),
            }
            run = ["-c", PROFILED, args.profile] if args.profile else ["-m", "snapsync"]
            agent_args = [
                sys.executable,
                *run,
                "agent",
                "--server-url",
                url,
                "--edge-id",
                f"footprint-{size}",
                "--snapshot-interval",
                str(args.interval),
                "--ping-interval",
                str(args.interval),
                "--state-dir",
                str(state),
                "--collect",
                "watch",
            ]
            agent_log = (work / "agent.log").open("w")
            agent = subprocess.Popen(
                agent_args,
                cwd=code,
                env=env,
                stdout=agent_log,
                stderr=subprocess.PIPE,
                text=True,
            )
            lines: list[str] = []

            def read_log() -> None:
                assert agent.stderr is not None
                for line in agent.stderr:
                    agent_log.write(line)
                    agent_log.flush()
                    match = VERSION.search(line)
                    if match is None:
                        continue
                    version = int(match.group(1))
                    if not acks or acks[-1][0] != version:
                        acks.append((version, sample(agent.pid)))
                    lines.append(line)

            reader = threading.Thread(target=read_log, daemon=True)
            reader.start()
            deadline = time.monotonic() + args.timeout
            want = args.warm + args.cycles + 1
            try:
                while len(acks) < want and time.monotonic() < deadline:
                    if agent.poll() is not None:
                        raise RuntimeError(f"the agent exited: {lines[-3:]}")
                    samples.append(sample(agent.pid))
                    for snap in (state / "snapshots").glob("*.*"):  # .snap whole, .chg changes
                        target = copies / snap.name
                        if not target.exists():
                            with contextlib.suppress(FileNotFoundError):
                                shutil.copyfile(snap, target)
                    time.sleep(0.2)
                final = sample(agent.pid)
                main_thread = cpu_seconds(agent.pid, agent.pid)
            finally:
                stop(agent)
                reader.join(timeout=10)
                agent_log.close()
    finally:
        stop(emulator)
    if len(acks) < args.warm + 2:
        raise RuntimeError(f"{size}: only {len(acks)} versions acknowledged; see {work}")
    first, warm, last = acks[0][1], acks[args.warm][1], acks[-1][1]
    steady = max(s.rss_kb for s in samples if s.t >= warm.t)
    cycles = len(acks) - 1 - args.warm
    baselines = cycle_baselines(copies, args.cycles, code)
    run = Run(
        label=args.label,
        objects=size,
        interval=args.interval,
        acks=len(acks),
        peak_mb=first.hwm_kb / 1024,
        steady_mb=steady / 1024,
        final_hwm_mb=final.hwm_kb / 1024,
        cpu_ms_per_cycle=(last.cpu_s - warm.cpu_s) * 1000 / cycles,
        main_thread_share=main_thread / final.cpu_s,
        patch_ms_per_cycle=baselines["patch_ms"],
        patch_pairs=int(baselines["pairs"]),
        encode_ms_per_cycle=baselines["encode_ms"],
    )
    shutil.rmtree(work, ignore_errors=True)
    return run


def cycle_baselines(copies: Path, cycles: int, code: Path) -> dict[str, float]:
    """CPU ms per cycle of the JSON Patch baseline's encode and of snapsync's own encode
    (codec.encode_delta: diff, candidates, verification; what bench/RESULTS.md calls agent CPU),
    both over the last `cycles` consecutive pairs of the snapshots the agent collected, in a
    child process running the agent's code (`--code`)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, "-c", BASELINES, str(copies), str(cycles)],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def render(runs: list[Run]) -> str:
    out = [
        "# The agent's footprint: RSS and CPU of the real `snapsync agent` in watch mode",
        "",
        "Command: `python bench/bench_agent_footprint.py` (see its docstring; `--code DIR "
        "--label before` ran main's code before the change)  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared "
        f"with other work: CPU is noisy, compare the ratio of one run), Python "
        f"{platform.python_version()}",
        "",
        "Peak = VmHWM when the first (full) version is acknowledged: the initial LIST and its "
        "upload. Steady = the largest VmRSS sample after the warm-up cycles. CPU/cycle = the "
        "agent process's utime + stime per acknowledged version. JSON Patch = "
        "snapsync.sim.baselines.json_patch_gzip on the same cycles' snapshots; snapsync encode = "
        "codec.encode_delta on the same pairs (bench/RESULTS.md's agent CPU: collection and "
        "canonicalization excluded); both in a child process running the agent's code.",
        "",
        "Notes: the emulator sends a bookmark per watch about once a minute, as kube-apiserver "
        "does; the rows dated before 2026-12-03 15:50 UTC ran against an emulator that sent one "
        "every second per kind (~30 kinds), so their watch threads did more than against a "
        "cluster, and they compare only with each other. At 50,000 objects one churn step of "
        "the emulator takes seconds, so a cycle carries less churn than at 1k and 10k. Timings "
        "are CPU time on 2 cores shared with other work; compare ratios within one row.",
        "",
        "| label | objects | cycles | peak MB | steady MB | peak/steady | HWM at end MB "
        "| agent CPU ms/cycle | JSON Patch encode ms/cycle | ratio | snapsync encode ms/cycle "
        "| ratio | date |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        out.append(
            f"| {r.label} | {r.objects:,} | {r.acks - 1} | {r.peak_mb:.0f} | {r.steady_mb:.0f} "
            f"| {r.peak_mb / r.steady_mb:.2f} | {r.final_hwm_mb:.0f} | {r.cpu_ms_per_cycle:.0f} "
            f"| {r.patch_ms_per_cycle:.0f} | {r.ratio:.3f} | {r.encode_ms_per_cycle:.0f} "
            f"| {r.encode_ratio:.3f} | {r.date} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--interval", type=float, default=15.0, help="seconds per cycle")
    parser.add_argument("--warm", type=int, default=3, help="versions before the steady state")
    parser.add_argument("--cycles", type=int, default=4, help="steady cycles measured")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per size at most")
    parser.add_argument("--code", default=str(ROOT), help="checkout the agent runs from")
    parser.add_argument("--label", default="after")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the agent's main thread")
    parser.add_argument("--render", action="store_true", help="only render the saved runs")
    args = parser.parse_args()
    for size in [] if args.render else args.sizes:
        run = run_size(size, args)
        print(json.dumps(asdict(run)), flush=True)
        if args.profile:
            continue  # a profiled agent is slower: its figures are not results
        with RUNS.open("a") as out:
            out.write(json.dumps(asdict(run)) + "\n")
    runs = [Run(**json.loads(line)) for line in RUNS.read_text().splitlines() if line.strip()]
    RESULTS.write_text(render(runs))


if __name__ == "__main__":
    main()
