# `python -m bench`: the one command that runs the trace benchmarks (bench.runner) at every size
# and scenario of a plan and writes RESULTS.md and the plots (bench.report).
"""Bytes per day against the baselines, CPU and memory per cycle, idle and catch-up costs.

    python -m bench              # full plan: 1k, 10k, 50k objects -> bench/RESULTS.md, bench/plots/
    python -m bench --quick      # <2 min: 1,000 objects, few cycles -> $TMPDIR/snapsync-bench-quick
    python -m bench --sizes 1000 --scenarios steady busy --out /tmp/bench

Plots need matplotlib: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import pickle
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import Run, plot, render
from bench.runner import RunOptions, catch_up, run_trace
from tools.traces import TraceSpec, fleet_specs

BENCH_DIR = Path(__file__).resolve().parent
OFFLINE = [60.0, 1440.0, 10080.0]  # 1 hour, 1 day, 1 week


@dataclass(frozen=True)
class SizePlan:
    """Cycles per scenario at one size and how often the costly baselines run."""

    cycles: dict[str, int]
    full_every: int
    patch_every: int  # a multiple of full_every, so (2)'s cycles are also (1)'s
    patch_memory: bool = True


@dataclass(frozen=True)
class Plan:
    sizes: dict[int, SizePlan]
    fleet: tuple[int, int, int]  # clusters, objects, cycles
    catch_up_sizes: tuple[int, ...]
    breakdown: tuple[str, int, int]  # scenario, objects, every n-th cycle
    notes: list[str] = field(default_factory=list)


FULL = Plan(
    sizes={
        # Strides prime to 5: CronJobs fire every 5, 15 and 60 minutes, so a stride of 20 or 40
        # would measure only the cycles where they fire (the heaviest ones).
        1000: SizePlan({"quiet": 360, "steady": 1440, "busy": 360}, full_every=1, patch_every=7),
        10000: SizePlan({"quiet": 60, "steady": 240, "busy": 60}, full_every=7, patch_every=7),
        50000: SizePlan({"steady": 20}, full_every=3, patch_every=3, patch_memory=False),
    },
    fleet=(5, 1000, 120),
    catch_up_sizes=(1000, 10000),
    breakdown=("steady", 10000, 10),
    notes=[
        "Trace lengths: 1,000 objects: steady a full day (1,440 cycles), quiet and busy 6 h; "
        "10,000: steady 4 h, quiet and busy 1 h; 50,000: steady only, 20 cycles (a "
        "--quick-style reduced run: one snapshot of 50k objects per cycle costs ~1.5 s here).",
        "Baselines (1), (3), (4) run every cycle at 1k, every 7th at 10k, 3rd at 50k; (2) JSON "
        "Patch every 7th, 7th and 3rd (make_patch of the whole state takes 1.3 s at 10k, "
        "~7 s at 50k, plus as much to apply); every plan also measures cycle 1. The strides are "
        "prime to 5 because the trace's CronJobs fire every 5, 15 and 60 minutes: a stride of "
        "20 or 40 (as in earlier runs) measured only the cycles where they fire, the heaviest.",
    ],
)
QUICK = Plan(
    sizes={1000: SizePlan({"quiet": 5, "steady": 15, "busy": 5}, full_every=1, patch_every=5)},
    fleet=(3, 300, 8),
    catch_up_sizes=(300,),
    breakdown=("steady", 1000, 5),
    notes=["--quick: 1,000 objects, 5-15 cycles per scenario; figures are indicative only."],
)


def execute(
    plan: Plan, sizes: list[int], scenarios: list[str], catch_up_sizes: list[int], command: str
) -> Run:
    """Run every trace of the plan (progress on stderr) and return the results."""
    started = time.monotonic()
    run = Run(command, notes=list(plan.notes))
    for objects in sizes:
        size_plan = plan.sizes[objects]
        for scenario in scenarios:
            cycles = size_plan.cycles.get(scenario)
            if not cycles:
                continue
            b_scenario, b_objects, b_every = plan.breakdown
            options = RunOptions(
                full_every=size_plan.full_every,
                patch_every=size_plan.patch_every,
                patch_memory=size_plan.patch_memory,
                breakdown_every=b_every if (scenario, objects) == (b_scenario, b_objects) else 0,
            )
            _progress(started, f"{scenario} at {objects:,} objects, {cycles} cycles")
            run.traces.append(run_trace(TraceSpec(scenario, objects, cycles), options))
    if "fleet" in scenarios:
        clusters, objects, cycles = plan.fleet
        for spec in fleet_specs(objects, clusters, cycles, seed=100):
            _progress(started, f"fleet: {spec.label}, {cycles} cycles")
            run.fleet.append(run_trace(spec, RunOptions(full_every=1, patch_every=7)))
    for objects in catch_up_sizes:
        _progress(started, f"catch-up at {objects:,} objects")
        run.catch_up[objects] = catch_up(TraceSpec("steady", objects), OFFLINE)
    run.seconds = time.monotonic() - started
    return run


def merge(runs: list[Run]) -> Run:
    """One report from runs of parts of the plan (e.g. one size each, run side by side)."""
    order = {name: i for i, name in enumerate(("quiet", "steady", "busy"))}
    commands = [_display_command(r.command) for r in runs]
    merged = Run(
        "; ".join(dict.fromkeys(commands)),
        traces=sorted(
            (t for r in runs for t in r.traces),
            key=lambda t: (t.spec.objects, order[t.spec.scenario]),
        ),
        fleet=[t for r in runs for t in r.fleet],
        catch_up={k: v for r in runs for k, v in r.catch_up.items()},
        notes=list(dict.fromkeys(n for r in runs for n in r.notes)),
        seconds=max(r.seconds for r in runs),
    )
    if len(runs) > 1:
        merged.notes.append(
            f"This report merges {len(runs)} runs made side by side (--save, then --render "
            "with every saved file); the time shown is the longest one's."
        )
    return merged


def _display_command(command: str) -> str:
    """The command without where its output went (--save/--out and their values)."""
    words = shlex.split(command)
    kept = [
        w
        for i, w in enumerate(words)
        if w not in ("--save", "--out") and (i == 0 or words[i - 1] not in ("--save", "--out"))
    ]
    return shlex.join(kept)


def _progress(started: float, what: str) -> None:
    print(f"[{time.monotonic() - started:6.0f} s] {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 objects, few cycles (~1-2 min)")
    parser.add_argument("--sizes", type=int, nargs="*", help="object counts of the plan to run")
    parser.add_argument(
        "--scenarios",
        nargs="*",
        default=["quiet", "steady", "busy", "fleet"],
        choices=["quiet", "steady", "busy", "fleet"],
    )
    parser.add_argument(
        "--catch-up",
        choices=["yes", "no", "only"],
        default="yes",
        help="the 1 hour / 1 day / 1 week offline probes (to split a run over processes)",
    )
    parser.add_argument("--out", type=Path, help="directory for RESULTS.md and plots/")
    parser.add_argument("--save", type=Path, help="also pickle the raw results to this file")
    parser.add_argument(
        "--render", type=Path, nargs="*", help="only render (and merge) results saved by --save"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    sizes = args.sizes or list(plan.sizes)
    unknown = [s for s in sizes if s not in plan.sizes]
    if unknown:
        parser.error(f"sizes {unknown} are not in the plan ({', '.join(map(str, plan.sizes))})")
    # Quick results are indicative only: they go outside the tree unless --out says otherwise.
    quick_dir = Path(tempfile.gettempdir()) / "snapsync-bench-quick"
    out = args.out or (quick_dir if args.quick else BENCH_DIR)
    if args.render:
        run = merge([pickle.loads(path.read_bytes()) for path in args.render])
    else:
        command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
        scenarios = [] if args.catch_up == "only" else args.scenarios
        catch_up_sizes = [
            s
            for s in plan.catch_up_sizes
            if args.catch_up != "no" and (not args.sizes or s in sizes)
        ]
        run = execute(plan, sizes, scenarios, catch_up_sizes, command.strip())
        if args.save:
            args.save.write_bytes(pickle.dumps(run))
    plots = plot(run, out / "plots")
    out.mkdir(parents=True, exist_ok=True)
    (out / "RESULTS.md").write_text(render(run, plots, out), encoding="utf-8")
    print(f"wrote {out / 'RESULTS.md'} and {len(plots)} plots", file=sys.stderr)


if __name__ == "__main__":
    main()
