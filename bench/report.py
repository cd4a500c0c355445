# Turns bench.runner results into bench/RESULTS.md (tables, machine, command) and PNG plots
# (bytes per day per approach and size, bytes per cycle over each trace). Pure formatting: it
# measures nothing itself.
"""Markdown tables and matplotlib plots of a benchmark run."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.runner import (
    APPROACHES,
    FLOOR,
    FRAME,
    FULL_JSON,
    FULL_MSGPACK,
    JSON_PATCH,
    SNAPSYNC,
    VS_FLOOR,
    CatchUp,
    Series,
    TraceResult,
    per_day,
)
from snapsync.protocol.request import DEFAULT_OVERHEAD as HTTP_OVERHEAD
from tools.traces import CYCLES_PER_DAY


@dataclass
class Run:
    """Everything one `python -m bench` invocation measured."""

    command: str
    traces: list[TraceResult] = field(default_factory=list)
    fleet: list[TraceResult] = field(default_factory=list)
    catch_up: dict[int, list[CatchUp]] = field(default_factory=dict)  # by object count
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores (shared with other work: timings are noisy), "
        f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    )


def _fmt(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _p95(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _ratio(a: Series, b: Series) -> float:
    """Mean bytes of a over mean bytes of b, on the cycles both measured."""
    common = set(a.cycles) & set(b.cycles)
    den = b.mean_on(common)
    return a.mean_on(common) / den if common and den else math.nan


def _wire_ratio(name: str, series: Series, patch: Series) -> float:
    """Both on the wire: a baseline's body plus one HTTP exchange per cycle (the same per-exchange
    overhead snapsync is charged, `AgentConfig.overhead`) against JSON Patch's body plus one."""
    if name in (FRAME, FLOOR):
        return math.nan
    common = set(series.cycles) & set(patch.cycles)
    extra = 0 if name == SNAPSYNC else HTTP_OVERHEAD
    return (series.mean_on(common) + extra) / (patch.mean_on(common) + HTTP_OVERHEAD)


def _mean(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.fmean(clean) if clean else math.nan


SAME = "same"  # the frames-only row shares the on-the-wire row's CPU


def trace_table(result: TraceResult) -> list[str]:
    s = result.series
    ref_cpu = _mean(s[JSON_PATCH].agent_ms)
    ref_srv = _mean(s[JSON_PATCH].server_ms)
    lines = [
        "| approach | cycles measured | bytes/cycle mean | p95 | max | bytes/day | vs (2) | vs (1) "
        "| wire vs (2) wire | agent CPU ms/cycle | vs (2) | server CPU ms/cycle | vs (2) "
        "| peak heap MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in APPROACHES:
        series = s[name]
        if not series.sizes:
            continue
        mean = statistics.fmean(series.sizes)
        agent, server = _mean(series.agent_ms), _mean(series.server_ms)
        timing = name != FRAME  # the frame row shares the wire row's CPU
        lines.append(
            f"| {name} | {len(series.sizes)} | {mean:,.0f} | {_p95(series.sizes):,.0f} | "
            f"{max(series.sizes):,} | {per_day(mean):,.0f} | {_ratio(series, s[JSON_PATCH]):.3f} | "
            f"{_ratio(series, s[FULL_JSON]):.4f} | "
            f"{_fmt(_wire_ratio(name, series, s[JSON_PATCH]), 3)} | "
            f"{_fmt(agent, 1) if timing else SAME} | "
            f"{_fmt(agent / ref_cpu, 2) if timing else SAME} | "
            f"{_fmt(server, 1) if timing else SAME} | "
            f"{_fmt(server / ref_srv, 2) if timing else SAME} | "
            f"{_fmt(result.memory_mb.get(name if name != SNAPSYNC else FRAME, math.nan), 1)} |"
        )
    return lines


def _trace_section(result: TraceResult) -> list[str]:
    spec = result.spec
    minutes = spec.cycles * spec.minutes
    span = f"{minutes / 60:g} h" if minutes >= 60 else f"{minutes:g} min"
    chosen = ", ".join(f"{k} x{v}" for k, v in sorted(result.chosen.items()))
    parts = result.wire_parts
    total = sum(parts.values()) or 1
    return [
        f"### {spec.scenario}, {result.objects:,} objects ({spec.cycles} cycles = {span} "
        f"simulated, seed {spec.seed})",
        "",
        *trace_table(result),
        "",
        f"snapsync frames chosen: {chosen or 'none (nothing changed)'}; first contact (ping + "
        f"full snapshot upload) {result.first_contact:,} B on the wire; idle cycle "
        f"{result.idle_cycle:,} B; max RSS of the process so far {result.max_rss_mb:,.0f} MB.  ",
        "snapsync's wire bytes over the trace: "
        + "; ".join(f"{k} {v:,} B ({v / total:.0%})" for k, v in parts.items())
        + ".",
        "",
    ]


def _main_table(traces: list[TraceResult]) -> list[str]:
    steady = [t for t in traces if t.spec.scenario == "steady"]
    lines = [
        "| objects | approach | bytes/cycle (mean) | bytes/day | vs (2) JSON Patch | vs (1) full "
        "JSON | on the wire vs (2) on the wire | agent CPU vs (2) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in steady:
        s = result.series
        ref_cpu = _mean(s[JSON_PATCH].agent_ms)
        for name in APPROACHES:
            series = s[name]
            if not series.sizes:
                continue
            mean = statistics.fmean(series.sizes)
            cpu = _mean(series.agent_ms) / ref_cpu if name not in (FRAME, FLOOR) else math.nan
            lines.append(
                f"| {result.objects:,} | {name} | {mean:,.0f} | {per_day(mean):,.0f} | "
                f"{_ratio(series, s[JSON_PATCH]):.3f} | {_ratio(series, s[FULL_JSON]):.4f} | "
                f"{_fmt(_wire_ratio(name, series, s[JSON_PATCH]), 3)} | {_fmt(cpu, 2)} |"
            )
    return lines


def _summary(run: Run) -> list[str]:
    """The headline figures, computed from the tables below."""
    lines = ["## Summary", ""]
    for result in run.traces:
        if result.spec.scenario != "steady":
            continue
        s = result.series
        agent = _mean(s[SNAPSYNC].agent_ms) / _mean(s[JSON_PATCH].agent_ms)
        server = _mean(s[SNAPSYNC].server_ms) / _mean(s[JSON_PATCH].server_ms)
        lines.append(
            f"- steady, {result.objects:,} objects: snapsync frames are "
            f"{_ratio(s[FRAME], s[JSON_PATCH]):.3f}x the bytes of (2) JSON Patch + gzip and "
            f"{_ratio(s[FRAME], s[FULL_JSON]):.4f}x those of (1) full JSON + gzip; on the wire "
            f"(protocol messages and HTTP overhead on both sides) "
            f"{_wire_ratio(SNAPSYNC, s[SNAPSYNC], s[JSON_PATCH]):.3f}x (2). Frames are "
            f"{_ratio(s[FRAME], s[FLOOR]):.2f}x the floor estimate (4). Agent CPU "
            f"{agent:.2f}x and server CPU {server:.2f}x those of (2)."
        )
        vs_floor = result.breakdown.get(VS_FLOOR, {}).get("changed objects")
        if vs_floor and vs_floor[1]:
            lines.append(
                f"  On changed objects alone (where the floor compares like with like) snapsync "
                f"ships {vs_floor[0] / vs_floor[1]:.2f}x the floor's bytes."
            )
    return [*lines, ""]


def _fleet_section(fleet: list[TraceResult]) -> list[str]:
    if not fleet:
        return []
    spec = fleet[0].spec
    lines = [
        "## Fleet-wide",
        "",
        f"{len(fleet)} clusters of the application shape, ~{spec.objects:,} objects each, seeds "
        f"{fleet[0].spec.seed}-{fleet[-1].spec.seed} (same generator, shape and size; they differ "
        "in names, counts and which workloads churn when), each under steady churn for "
        f"{spec.cycles} cycles. Measured: what the whole fleet costs per day (sum over clusters, "
        "extrapolated from the measured cycles), the spread between clusters (so no figure rests "
        "on one lucky seed), and the onboarding cost (first contact: the full snapshot each "
        "cluster uploads once, which the per-cycle figures exclude).",
        "",
        "| approach | fleet bytes/day | per cluster bytes/cycle: min | median | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in APPROACHES:
        means = [statistics.fmean(t.series[name].sizes) for t in fleet if t.series[name].sizes]
        if not means:
            continue
        lines.append(
            f"| {name} | {per_day(sum(means)):,.0f} | {min(means):,.0f} | "
            f"{statistics.median(means):,.0f} | {max(means):,.0f} |"
        )
    onboarding = [t.first_contact for t in fleet]
    lines += [
        "",
        f"Onboarding (snapsync first contact, on the wire): {sum(onboarding):,} B for the fleet, "
        f"{min(onboarding):,}-{max(onboarding):,} B per cluster; baseline (1) pays about as much "
        "as its first cycle on every cycle.",
        "",
    ]
    return lines


def _catch_up_section(catch_up: dict[int, list[CatchUp]], traces: list[TraceResult]) -> list[str]:
    if not catch_up:
        return []
    lines = [
        "## Idle cycles and catching up",
        "",
        "An idle cycle is a cycle in which the collected snapshot equals the acknowledged one: the "
        "agent only pings (ping + pong bodies from the protocol's real messages, plus the agent's "
        "HTTP overhead estimate per exchange, `AgentConfig.overhead`).",
        "",
        "| scenario | objects | idle cycle B | idle day (1,440 pings) B |",
        "|---|---:|---:|---:|",
    ]
    for result in traces:
        lines.append(
            f"| {result.spec.scenario} | {result.objects:,} | {result.idle_cycle:,} | "
            f"{result.idle_cycle * CYCLES_PER_DAY:,} |"
        )
    lines += [
        "",
        "Catching up: the agent was offline (cluster churning under steady churn, nothing sent); "
        "on reconnecting it ships ONE coalesced frame from its last acknowledged snapshot to now. "
        "Wire = the whole round (ping, upload chunks, replies, HTTP overhead estimate).",
        "",
        "| objects | offline | snapsync wire B | frame B (kind) | agent CPU ms | server CPU ms "
        "| (1) full JSON+gzip | (2) JSON Patch+gzip | (3) msgpack+zstd | (4) floor |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {60: "1 hour", 1440: "1 day", 10080: "1 week"}
    for objects, rows in sorted(catch_up.items()):
        for row in rows:
            b = row.baselines
            offline = names.get(int(row.offline_minutes), f"{row.offline_minutes:g} min")
            lines.append(
                f"| {objects:,} | {offline} | {row.wire:,} | {row.frame:,} ({row.chosen}) | "
                f"{row.agent_ms:,.0f} | {row.server_ms:,.0f} | {b.get(FULL_JSON, 0):,} | "
                f"{_fmt(b.get(JSON_PATCH, math.nan))} | {b.get(FULL_MSGPACK, 0):,} | "
                f"{b.get(FLOOR, 0):,} |"
            )
    lines.append("")
    return lines


def _breakdown_section(traces: list[TraceResult]) -> list[str]:
    lines: list[str] = []
    for result in traces:
        if not result.breakdown:
            continue
        lines += [
            f"## Where the remaining bytes go ({result.spec.scenario}, {result.objects:,} objects)",
            "",
            "Each part of the sampled cycles' deltas packed in snapsync's compact wire form and "
            "compressed alone (zstd-19 + trained dictionary, as the delta candidate), minus an "
            "empty delta's bytes; parts compressed alone add up to a little more than the frames "
            "(shared context is lost), so read the shares, not the sums.",
            "",
        ]
        for view, parts in result.breakdown.items():
            if view == VS_FLOOR:
                lines += _versus_floor(parts)
                continue
            total_raw = sum(raw for raw, _ in parts.values()) or 1
            total = sum(packed for _, packed in parts.values()) or 1
            lines += [
                f"| {view} | raw msgpack B | share | compressed B | share |",
                "|---|---:|---:|---:|---:|",
            ]
            for name, (raw, packed) in sorted(parts.items(), key=lambda kv: -kv[1][1]):
                lines.append(
                    f"| {name} | {raw:,} | {raw / total_raw:.1%} | {packed:,} | "
                    f"{packed / total:.1%} |"
                )
            lines.append("")
    return lines


def _versus_floor(parts: dict[str, tuple[int, int]]) -> list[str]:
    """The floor measured part by part: it ships added objects whole, which snapsync does not."""
    lines = [
        "How close to the floor, part by part (same cycles; each part compressed alone): the "
        "floor sends added objects whole, snapsync sends most of them as differences from an "
        "object the receiver holds (an exemplar), so only the changed-objects row compares like "
        "with like.",
        "",
        "| part | snapsync B | floor B | snapsync / floor |",
        "|---|---:|---:|---:|",
    ]
    for name, (ours, floor) in parts.items():
        ratio = f"{ours / floor:.2f}" if floor else "-"
        lines.append(f"| {name} | {ours:,} | {floor:,} | {ratio} |")
    return [*lines, ""]


def render(run: Run, plots: list[Path], out_dir: Path) -> str:
    lines = [
        "# snapsync benchmark: bytes per cycle and per day against the baselines",
        "",
        f"Command: `{run.command}` ({run.seconds / 60:.1f} min)  ",
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "## How it is measured",
        "",
        "Each trace (tools/traces.py) is a seeded sequence of cluster states from the sample-"
        "cluster generator, one canonical snapshot per simulated minute. snapsync runs its real "
        "agent and server protocol (snapsync.sim.link.Sim, healthy link, pings and snapshots "
        "every 60 s without jitter, acks, the default EncodeOptions): **on the wire** counts every "
        "exchange of the cycle (upload chunk and reply, ping and pong, plus the per-exchange "
        f"overhead of {HTTP_OVERHEAD} B on a kept-alive TLS connection, HTTP heads, TLS records "
        "and TCP/IP headers, measured by bench/bench_wire.py, and a resumed TLS handshake when a "
        "connection idle longer than the server's keep-alive is reopened); **frames only** counts "
        "the frame bytes alone, "
        "comparable to the baselines' bodies, which carry no protocol or HTTP overhead. Baselines, "
        "in the same process on the same snapshots: (1) full canonical state as JSON + gzip-6; "
        "(2) jsonpatch.make_patch of the whole state {key: object} against the previous cycle's, "
        "JSON + gzip-6; (3) full canonical msgpack + zstd-3; (4) the floor estimate: removed keys, "
        "added objects whole and, per changed object, (path, new value) pairs, msgpack, zstd-22 "
        "with snapsync's trained dictionary.",
        "",
        "- Bytes/day = mean bytes per measured cycle x 1,440 (extrapolated when a trace is "
        "shorter than a day; the cycle counts are in each table).",
        "- The full-state baselines cost 0.3-7 s per cycle at 10k-50k objects, so they run on a "
        "subset of cycles (every n-th, listed as 'cycles measured'); ratios (vs (1), vs (2)) "
        "compare means on the cycles both approaches measured.",
        "- Agent CPU = process time of encoding (snapsync: the whole agent side of the exchange "
        "round, i.e. diff, candidates, verification, messages; collection and canonicalization "
        "are common to all and excluded). Server CPU = decoding and applying (snapsync: the "
        "server protocol's handling, apply + digest check + store). Timings are noisy (shared 2 "
        "cores); they are shown next to their ratio to baseline (2) of the same run.",
        "- Peak heap = tracemalloc peak above the already-held states of one cycle's encode + "
        "decode (the last cycle of the trace), per approach; the snapsync row's figure is for the "
        "encode + apply of its frame.",
        *[f"- {note}" for note in run.notes],
        "",
        *_summary(run),
        "## Main table: steady churn",
        "",
        *_main_table(run.traces),
        "",
    ]
    for plot in plots:
        lines += [f"![{plot.stem}]({plot.relative_to(out_dir).as_posix()})", ""]
    lines += ["## Every trace", ""]
    for result in run.traces:
        lines += _trace_section(result)
    lines += _fleet_section(run.fleet)
    lines += _catch_up_section(run.catch_up, run.traces)
    lines += _breakdown_section(run.traces)
    return "\n".join(lines).rstrip() + "\n"


# --- plots --------------------------------------------------------------------------------------

PLOTTED = (SNAPSYNC, FRAME, FULL_JSON, JSON_PATCH, FULL_MSGPACK, FLOOR)


def plot(run: Run, plot_dir: Path) -> list[Path]:
    """bytes_per_day.png and one bytes_per_cycle_<scenario>.png per scenario; [] without
    matplotlib (the `bench` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    if not run.traces:
        return []
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    scenarios = list(dict.fromkeys(t.spec.scenario for t in run.traces))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5 * len(scenarios), 4.5), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        results = [t for t in run.traces if t.spec.scenario == scenario]
        width = 0.8 / len(PLOTTED)
        for i, name in enumerate(PLOTTED):
            xs, ys = [], []
            for j, result in enumerate(results):
                sizes = result.series[name].sizes
                if sizes:
                    xs.append(j + (i - len(PLOTTED) / 2 + 0.5) * width)
                    ys.append(per_day(statistics.fmean(sizes)))
            ax.bar(xs, ys, width, label=name)
        ax.set_xticks(range(len(results)), [f"{r.objects:,}" for r in results])
        ax.set_yscale("log")
        ax.set_title(f"{scenario}: bytes per day")
        ax.set_xlabel("canonical objects")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0][0].set_ylabel("bytes per day (log)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    path = plot_dir / "bytes_per_day.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    for scenario in scenarios:
        results = [t for t in run.traces if t.spec.scenario == scenario]
        fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
        for ax, result in zip(axes[0], results, strict=True):
            for name in PLOTTED:
                series = result.series[name]
                if series.sizes:
                    style = "-" if len(series.sizes) == result.spec.cycles else "o-"
                    ax.plot(series.cycles, series.sizes, style, label=name, markersize=3, lw=1)
            ax.set_yscale("log")
            ax.set_title(f"{scenario}, {result.objects:,} objects")
            ax.set_xlabel("cycle (simulated minute)")
            ax.grid(which="both", alpha=0.3)
        axes[0][0].set_ylabel("bytes per cycle (log)")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        path = plot_dir / f"bytes_per_cycle_{scenario}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
