"""Measured delta sizes at 10,000 objects for the month benchmark (bench/bench_budget_month.py).

A month of one-minute snapshots is ~43,000 encodes at 10,000 objects, hours of CPU; the month's
uploads only ever need "the frame that takes the server from the state k minutes ago to now",
so that is what is measured, once, from the sample cluster (tools/traces.py, seed 0):

- for the steady and the busy scenario, from two base states (minutes 0 and 120 of the trace),
  `encode_delta(base, base + k minutes)` for lags k of 1 minute to 4 hours (minute-by-minute
  churn), and to 3 days (coarse 2-hour churn steps, `tools.traces.offline_snapshots`);
- the full snapshot frame at the agent's level (9).

Results are written to bench/results/budget_month_deltas.json; the month reads them and
interpolates linearly between lags (the mean of the two bases at each lag).

    python bench/budget_month_deltas.py                   # ~5 minutes on one core
    python bench/budget_month_deltas.py --objects 1000    # -> budget_month_deltas_1000.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.encode import encode_delta, encode_snapshot
from tools.traces import TraceSpec, offline_snapshots, replay

OBJECTS = 10_000
BASES = (0, 120)  # minutes into the trace
LAGS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 180, 240)
LONG_LAGS = (480, 1440, 4320)  # coarse churn steps
FULL_LEVEL = 9  # AgentConfig.full_level
RESULTS = Path(__file__).resolve().parent / "results" / "budget_month_deltas.json"


def delta_sizes(scenario: str, objects: int = OBJECTS) -> dict[int, list[int]]:
    """Frame bytes taking each base to base + lag, per lag (one entry per base)."""
    sizes: dict[int, list[int]] = {lag: [] for lag in LAGS}
    held: dict[int, Snapshot] = {}
    wanted = {base + lag for base in BASES for lag in LAGS}
    for cycle in replay(TraceSpec(scenario, objects, cycles=max(wanted))):
        if cycle.index in BASES:
            held[cycle.index] = cycle.snapshot
        for base, snapshot in held.items():
            lag = cycle.index - base
            if lag in sizes:
                sizes[lag].append(len(encode_delta(snapshot, cycle.snapshot).frame))
    spec = TraceSpec(scenario, objects, cycles=0)
    for offset, base_snapshot, now in offline_snapshots(spec, [float(x) for x in LONG_LAGS]):
        sizes[int(offset)] = [len(encode_delta(base_snapshot, now).frame)]
    return sizes


def results(objects: int) -> Path:
    """Where the sizes for `objects` are (10,000: the month's own, without a suffix)."""
    return RESULTS if objects == OBJECTS else RESULTS.with_stem(f"{RESULTS.stem}_{objects}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=OBJECTS)
    objects = parser.parse_args().objects
    started = time.monotonic()
    first = next(iter(replay(TraceSpec("steady", objects, cycles=0)))).snapshot
    result: dict[str, object] = {
        "objects": objects,
        "full_frame": len(encode_snapshot(first, FULL_LEVEL)),
        "bases": list(BASES),
    }
    for scenario in ("steady", "busy"):
        result[scenario] = {str(lag): s for lag, s in delta_sizes(scenario, objects).items()}
        print(f"{scenario}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    result["command"] = "python bench/budget_month_deltas.py" + (
        f" --objects {objects}" if objects != OBJECTS else ""
    )
    out = results(objects)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
