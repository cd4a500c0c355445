"""The benchmark's core on a tiny trace: structure, determinism, and snapsync below JSON Patch.

Byte counts are deterministic and asserted; timings never are (shared, noisy machines).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

from bench.report import Run, render
from bench.runner import (
    APPROACHES,
    FRAME,
    JSON_PATCH,
    SNAPSYNC,
    RunOptions,
    TraceResult,
    catch_up,
    run_trace,
)
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import build_snapshot
from snapsync.protocol.request import DEFAULT_OVERHEAD
from snapsync.sim.sample_cluster import SampleCluster
from tools.traces import TraceSpec, replay

SPEC = TraceSpec("steady", objects=100, cycles=3)


@cache
def result() -> TraceResult:
    return run_trace(SPEC, RunOptions(breakdown_every=1))


def test_every_approach_measures_every_cycle() -> None:
    res = result()
    assert set(res.series) == set(APPROACHES)
    for name in APPROACHES:
        series = res.series[name]
        assert series.cycles == [1, 2, 3], name
        assert all(size > 0 for size in series.sizes), name
        assert len(series.agent_ms) == len(series.server_ms) == 3
    assert res.chosen and sum(res.chosen.values()) <= 3
    assert res.first_contact > max(res.series[FRAME].sizes)  # the full snapshot, once
    assert 0 < res.idle_cycle < 1024
    assert set(res.breakdown) >= {"by part", "by kind"}
    assert not math.isnan(res.memory_mb[FRAME])


def test_snapsync_ships_fewer_bytes_than_json_patch() -> None:
    series = result().series
    frames, patch, wire = series[FRAME].sizes, series[JSON_PATCH].sizes, series[SNAPSYNC].sizes
    assert sum(frames) < sum(patch)
    # On the wire snapsync pays two exchanges per cycle (upload, ping); JSON Patch at least one.
    assert sum(wire) < sum(patch) + 3 * 2 * DEFAULT_OVERHEAD


def test_byte_counts_are_deterministic() -> None:
    again = run_trace(SPEC, RunOptions(memory=False))
    for name in APPROACHES:
        assert again.series[name].sizes == result().series[name].sizes, name


def test_trace_snapshots_equal_a_full_rebuild() -> None:
    cluster = SampleCluster(SPEC.objects, SPEC.shape, SPEC.seed)
    for cycle in replay(SPEC):
        if cycle.index:
            cluster.step(churn=SPEC.churn, minutes=SPEC.minutes)
        at = cycle.snapshot.header.collected_at
        full = build_snapshot(cluster.objects(), load_profile(), collected_at=at)
        assert full.digest == cycle.snapshot.digest


def test_catch_up_ships_one_frame_and_report_renders(tmp_path: Path) -> None:
    rows = catch_up(TraceSpec("steady", objects=60), [60.0])
    assert len(rows) == 1 and rows[0].frame > 0 and "," not in rows[0].chosen
    run = Run("python -m bench --test", traces=[result()], catch_up={60: rows})
    text = render(run, [], tmp_path)
    assert "Main table" in text and "(2) JSON Patch + gzip-6" in text
