# The benchmark core: replays a churn trace (tools.traces) through snapsync's real agent and
# server protocol over snapsync.sim.link.Sim and through the baselines (snapsync.sim.baselines)
# in the same process, cycle by cycle, and records bytes, CPU and memory. No file output here: the
# report module turns results into RESULTS.md and plots.
"""Replay traces through snapsync and the baselines; idle, catch-up and byte-breakdown probes.

Byte counts are deterministic (same spec, same bytes); CPU is process time and noisy on shared
machines, so the report shows it as ratios to a baseline of the same run next to absolutes.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import statistics
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.decode import apply_frame
from snapsync.codec.encode import EncodeOptions, encode_delta
from snapsync.codec.wire_pack import pack_delta
from snapsync.delta.diff import Delta, diff
from snapsync.protocol import AgentConfig, Intervals, ServerProtocol
from snapsync.protocol.events import Acked
from snapsync.sim import baselines as bl
from snapsync.sim.link import Sim
from tools.traces import CYCLES_PER_DAY, TraceSpec, offline_snapshots, replay

SNAPSYNC = "snapsync, on the wire"
FRAME = "snapsync, frames only"
FULL_JSON = "(1) full JSON + gzip-6"
JSON_PATCH = "(2) JSON Patch + gzip-6"
FULL_MSGPACK = "(3) full msgpack + zstd-3"
FLOOR = "(4) floor: changed fields, zstd-22 + dict"
VS_FLOOR = "snapsync vs floor"  # breakdown view: (snapsync, floor) compressed bytes per part
APPROACHES = (SNAPSYNC, FRAME, FULL_JSON, JSON_PATCH, FULL_MSGPACK, FLOOR)
# One simulated minute per cycle; no jitter so the agent collects exactly once per trace cycle.
BENCH_CONFIG = AgentConfig(intervals=Intervals(ping=60, snapshot=60, jitter=0.0))


@dataclass
class Series:
    """One approach on one trace: a value per measured cycle."""

    cycles: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    agent_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)

    def add(self, cycle: int, size: int, agent_ms: float, server_ms: float) -> None:
        self.cycles.append(cycle)
        self.sizes.append(size)
        self.agent_ms.append(agent_ms)
        self.server_ms.append(server_ms)

    def mean_on(self, cycles: Iterable[int]) -> float:
        """Mean bytes over the given cycles only (ratios compare matching cycles)."""
        wanted = set(cycles)
        picked = [s for c, s in zip(self.cycles, self.sizes, strict=True) if c in wanted]
        return statistics.fmean(picked) if picked else math.nan


@dataclass
class TraceResult:
    spec: TraceSpec
    objects: int  # canonical objects at the start
    series: dict[str, Series]
    first_contact: int  # wire bytes of the first exchange round (ping + full snapshot)
    chosen: Counter[str]  # frame kinds snapsync shipped
    wire_parts: dict[str, int]  # snapsync's wire bytes over the trace, by what carried them
    idle_cycle: int  # wire bytes of a cycle with nothing new (ping and pong only)
    memory_mb: dict[str, float] = field(default_factory=dict)  # tracemalloc peak, one cycle
    max_rss_mb: float = 0.0
    breakdown: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)


@dataclass
class RunOptions:
    """How much of a trace each baseline sees (the full-state ones cost 0.3-7 s per cycle)."""

    full_every: int = 1  # baselines (1), (3) and the floor every n-th cycle
    patch_every: int = 1  # baseline (2) every n-th cycle
    memory: bool = True  # tracemalloc probe of one cycle per approach
    patch_memory: bool = True  # include baseline (2) in the memory probe
    breakdown_every: int = 0  # 0: none; else byte breakdown every n-th cycle
    encode: EncodeOptions = field(default_factory=EncodeOptions)


class TimedServer(ServerProtocol):
    """The real server protocol, with the process CPU of each handled request accumulated."""

    cpu_ms: float = 0.0

    def handle(self, env: str, kind: str, body: bytes, now: float) -> Any:
        reply, ms = bl.timed(lambda: super(TimedServer, self).handle(env, kind, body, now))
        self.cpu_ms += ms
        return reply


def new_sim(seed: int, encode: EncodeOptions) -> tuple[Sim, TimedServer]:
    sim = Sim(dataclasses.replace(BENCH_CONFIG, encode=encode), seed=seed)
    server = TimedServer(sim.store)
    sim.server = server
    return sim, server


def run_trace(spec: TraceSpec, options: RunOptions | None = None) -> TraceResult:
    """Replay `spec` through snapsync over the simulated link and through every baseline."""
    options = options or RunOptions()
    series = {name: Series() for name in APPROACHES}
    sim, server = new_sim(spec.seed, options.encode)
    chosen: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    breakdown: dict[str, dict[str, tuple[int, int]]] = {}
    prev: Snapshot | None = None
    first_contact = objects = 0
    for cycle in replay(spec):
        snap, index = cycle.snapshot, cycle.index
        sim.now += 60 if index else 0
        mark = len(sim.wire_bytes)
        server.cpu_ms = 0.0
        sim.collect(snap)
        exchanges, total_ms = bl.timed(sim.run_exchanges)
        wire = sum(size for _, size in sim.wire_bytes[mark:])
        acked = [e for e in sim.events if isinstance(e, Acked)]
        sim.events.clear()
        frame = sum(e.frame_bytes for e in acked)
        if prev is None:
            first_contact, objects, prev = wire, len(snap), snap
            continue
        chosen.update(e.kind for e in acked)
        parts["frames"] += frame
        parts["HTTP overhead (estimate per exchange)"] += exchanges * sim.config.overhead
        parts["protocol messages (ping, pong, chunk envelope, reply)"] += (
            wire - frame - exchanges * sim.config.overhead
        )
        series[SNAPSYNC].add(index, wire, total_ms - server.cpu_ms, server.cpu_ms)
        series[FRAME].add(index, frame, total_ms - server.cpu_ms, server.cpu_ms)
        if index % options.full_every == 0 or index == 1:
            _full_baselines(series, index, prev, snap)
        if index % options.patch_every == 0 or index == 1:
            _patch_baseline(series, index, prev, snap)
        if options.breakdown_every and index % options.breakdown_every == 0:
            for view, sizes in delta_breakdown(prev, diff(prev, snap)).items():
                total = breakdown.setdefault(view, {})
                for name, (raw, packed) in sizes.items():
                    old = total.get(name, (0, 0))
                    total[name] = (old[0] + raw, old[1] + packed)
        prev = snap
    assert prev is not None
    idle = _idle_cycle(sim, prev)
    result = TraceResult(
        spec, objects, series, first_contact, chosen, dict(parts), idle, breakdown=breakdown
    )
    if options.memory and sim.agent.acked is not None:
        base = sim.agent.bases[sim.agent.acked.digest][1]
        result.memory_mb = memory_probe(base, prev, options)
    result.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _full_baselines(series: dict[str, Series], index: int, prev: Snapshot, snap: Snapshot) -> None:
    doc = bl.state_doc(snap)
    blob, agent = bl.timed(lambda: bl.full_json_gzip(doc))
    _, server = bl.timed(lambda: bl.read_full_json_gzip(blob))
    series[FULL_JSON].add(index, len(blob), agent, server)
    blob, agent = bl.timed(lambda: bl.full_msgpack_zstd(snap))
    _, server = bl.timed(lambda: bl.read_full_msgpack_zstd(blob))
    series[FULL_MSGPACK].add(index, len(blob), agent, server)
    series[FLOOR].add(index, len(bl.floor_bytes(diff(prev, snap))), math.nan, math.nan)


def _patch_baseline(series: dict[str, Series], index: int, prev: Snapshot, snap: Snapshot) -> None:
    old_doc, new_doc = bl.state_doc(prev), bl.state_doc(snap)
    blob, agent = bl.timed(lambda: bl.json_patch_gzip(old_doc, new_doc))
    _, server = bl.timed(lambda: bl.apply_json_patch_gzip(old_doc, blob))
    series[JSON_PATCH].add(index, len(blob), agent, server)


def _idle_cycle(sim: Sim, latest: Snapshot) -> int:
    """Wire bytes of one more cycle in which nothing changed: the agent only pings."""
    sim.now += 60
    mark = len(sim.wire_bytes)
    sim.collect(latest)
    sim.run_exchanges()
    sim.events.clear()
    return sum(size for _, size in sim.wire_bytes[mark:])


def memory_probe(base: Snapshot, new: Snapshot, options: RunOptions) -> dict[str, float]:
    """Peak Python heap (tracemalloc, MB) of one cycle's encode + decode, per approach, above
    what was already allocated (both states are held by every approach alike)."""
    old_doc, new_doc = bl.state_doc(base), bl.state_doc(new)

    def snapsync_cycle() -> None:
        apply_frame(base, encode_delta(base, new, options.encode).frame)

    probes: dict[str, Callable[[], object]] = {
        FRAME: snapsync_cycle,
        FULL_JSON: lambda: bl.read_full_json_gzip(bl.full_json_gzip(new_doc)),
        FULL_MSGPACK: lambda: bl.read_full_msgpack_zstd(bl.full_msgpack_zstd(new)),
    }
    if options.patch_memory:
        probes[JSON_PATCH] = lambda: bl.apply_json_patch_gzip(
            old_doc, bl.json_patch_gzip(old_doc, new_doc)
        )
    peaks: dict[str, float] = {}
    tracemalloc.start()
    try:
        for name, probe in probes.items():
            tracemalloc.reset_peak()
            start, _ = tracemalloc.get_traced_memory()
            probe()
            peaks[name] = (tracemalloc.get_traced_memory()[1] - start) / 2**20
    finally:
        tracemalloc.stop()
    return peaks


# --- where the bytes go -------------------------------------------------------------------------


def delta_breakdown(base: Snapshot, delta: Delta) -> dict[str, dict[str, tuple[int, int]]]:
    """Raw and compressed payload bytes of parts of one delta, each packed and compressed alone
    (as snapsync's delta candidate: compact wire form, zstd-19 + trained dictionary), minus what
    an empty delta costs. Parts compressed alone do not add up exactly to the whole frame."""
    empty = dataclasses.replace(delta, removed=(), added={}, changed={})
    empty_raw, empty_packed = _packed_sizes(base, empty)

    def part(sub: Delta) -> tuple[int, int]:
        raw, packed = _packed_sizes(base, sub)
        return max(raw - empty_raw, 0), max(packed - empty_packed, 0)

    by_part: dict[str, tuple[int, int]] = {
        "header (collection time, counts)": (empty_raw, empty_packed),
        "removed objects": part(dataclasses.replace(empty, removed=delta.removed)),
        "added objects": part(dataclasses.replace(empty, added=delta.added)),
    }
    sections: dict[str, dict[Any, tuple[Any, ...]]] = {}
    for key, ops in delta.changed.items():
        grouped: dict[str, list[Any]] = {}
        for op in ops:
            top = op["path"].split("/")[1] if op["path"].count("/") else ""
            section = top if top in ("status", "metadata", "spec") else "other fields"
            grouped.setdefault(section, []).append(op)
        for section, section_ops in grouped.items():
            sections.setdefault(section, {})[key] = tuple(section_ops)
    for section, changed in sorted(sections.items()):
        by_part[f"changed objects: {section}"] = part(dataclasses.replace(empty, changed=changed))
    by_kind: dict[str, tuple[int, int]] = {}
    kinds = sorted({k.kind for k in (*delta.removed, *delta.added, *delta.changed)})
    for kind in kinds:
        sub = dataclasses.replace(
            empty,
            removed=tuple(k for k in delta.removed if k.kind == kind),
            added={k: v for k, v in delta.added.items() if k.kind == kind},
            changed={k: v for k, v in delta.changed.items() if k.kind == kind},
        )
        by_kind[kind] = part(sub)
    floor_empty = len(bl.floor_bytes(empty))

    def versus(sub: Delta) -> tuple[int, int]:
        """(snapsync, floor) compressed bytes of one part, each minus its empty delta."""
        return part(sub)[1], max(len(bl.floor_bytes(sub)) - floor_empty, 0)

    vs_floor = {
        "removed objects": versus(dataclasses.replace(empty, removed=delta.removed)),
        "added objects": versus(dataclasses.replace(empty, added=delta.added)),
        "changed objects": versus(dataclasses.replace(empty, changed=delta.changed)),
    }
    return {"by part": by_part, "by kind": by_kind, VS_FLOOR: vs_floor}


def _packed_sizes(base: Snapshot, delta: Delta) -> tuple[int, int]:
    raw = pack_delta(base, delta).payload
    return len(raw), len(bl.zstd_max_with_dictionary(raw, level=19))


# --- catching up after an outage ----------------------------------------------------------------


@dataclass(frozen=True)
class CatchUp:
    offline_minutes: float
    wire: int  # snapsync: the round after reconnecting (ping, upload, ack), on the wire
    frame: int  # the one coalesced frame
    chosen: str
    agent_ms: float
    server_ms: float
    baselines: dict[str, int]  # bytes of each baseline for the same (base, now) pair


def catch_up(
    spec: TraceSpec, offsets_minutes: list[float], *, with_patch: bool = True
) -> list[CatchUp]:
    """After `offset` minutes offline (cluster churning, nothing sent), one coalesced frame goes
    from the last acknowledged snapshot to now; each offset is measured from the same ack."""
    results = []
    for offset, base, now in offline_snapshots(spec, offsets_minutes):
        sim, server = new_sim(spec.seed, EncodeOptions())
        sim.collect(base)
        sim.run_exchanges()
        sim.events.clear()
        sim.now += offset * 60
        mark = len(sim.wire_bytes)
        server.cpu_ms = 0.0
        sim.collect(now)
        _, total_ms = bl.timed(sim.run_exchanges)
        acked = [e for e in sim.events if isinstance(e, Acked)]
        doc = bl.state_doc(now)
        others = {
            FULL_JSON: len(bl.full_json_gzip(doc)),
            FULL_MSGPACK: len(bl.full_msgpack_zstd(now)),
            FLOOR: len(bl.floor_bytes(diff(base, now))),
        }
        if with_patch:
            others[JSON_PATCH] = len(bl.json_patch_gzip(bl.state_doc(base), doc))
        results.append(
            CatchUp(
                offset,
                sum(size for _, size in sim.wire_bytes[mark:]),
                sum(e.frame_bytes for e in acked),
                ",".join(e.kind for e in acked),
                total_ms - server.cpu_ms,
                server.cpu_ms,
                others,
            )
        )
    return results


def per_day(mean_bytes_per_cycle: float) -> float:
    return mean_bytes_per_cycle * CYCLES_PER_DAY
