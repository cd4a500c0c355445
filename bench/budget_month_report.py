"""bench/results/budget_month.md and bench/plots/budget_month.png: the month under a data cap.

Reads the real-protocol runs (bench/budget_month_protocol.py's JSON, one per span), runs the model
(bench/bench_budget_month.py: the real Budget and pacer on measured frame sizes) on the same
objects, budget and days, and sets them side by side; then the model's whole month at 10,000
objects, as before.

    python bench/budget_month_report.py     # seconds: the runs are read, the model is cheap
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench_budget_month import (
    BURST,
    DAYS,
    DELTAS,
    LIMIT,
    MINUTES,
    PLOT,
    RESULTS,
    Deltas,
    Month,
    describe,
    percentile,
    render,
    simulate,
)
from bench.budget_month_deltas import results as deltas_for
from snapsync.protocol.budget import BudgetConfig

RUNS = RESULTS.parent
SPANS = (
    ("steady, before the burst", 0, BURST[0]),
    ("burst (days 8-10)", BURST[0], BURST[1]),
    ("steady, after the burst", BURST[1], MINUTES),
)


@dataclass(frozen=True)
class Run:
    """One real-protocol run: a span of the month, both policies, as recorded at the server."""

    path: Path
    raw: dict[str, Any]

    @property
    def objects(self) -> int:
        return int(self.raw["objects"])

    @property
    def limit(self) -> int:
        return int(self.raw["limit"])

    @property
    def first(self) -> int:
        """The span's first minute of the month."""
        return int(self.raw["first_day"]) * 1440

    @property
    def minutes(self) -> int:
        return int(self.raw["minutes_run"])

    @property
    def days(self) -> range:
        """The days run, the last one possibly in part."""
        first_day = int(self.raw["first_day"])
        return range(first_day, first_day + math.ceil(self.minutes / 1440))

    def share(self, day: int) -> float:
        """How much of `day` was run (1: all of it)."""
        run = min(1440, self.first + self.minutes - day * 1440)
        return run / 1440

    def ages(self, policy: str) -> list[float | None]:
        """Age at the end of each minute of the span, None while the server held no version
        (runs written before None was recorded left those first minutes out: put back)."""
        ages: list[float | None] = list(self.raw["policies"][policy]["ages"])
        return [None] * (self.minutes - len(ages)) + ages

    def without_version(self, policy: str) -> int:
        """Minutes at the span's start in which the server held no version of this agent."""
        return sum(1 for age in self.ages(policy) if age is None)

    def per_day(self, policy: str) -> list[int]:
        return list(self.raw["policies"][policy]["per_day"])[: len(self.days)]

    def longest_gap(self, policy: str) -> float:
        arrived = [a for _, a in self.raw["policies"][policy]["arrivals"]]
        return max((b - a for a, b in itertools.pairwise(arrived)), default=0.0)


def runs() -> list[Run]:
    found = [Run(p, json.loads(p.read_text())) for p in RUNS.glob("budget_month_protocol_*.json")]
    return sorted((r for r in found if r.minutes >= 60), key=lambda r: r.objects)


def models(run: Run) -> dict[str, Month]:
    """The model on the run's objects and budget (the whole month: a span is read from it)."""
    deltas = Deltas.load(deltas_for(run.objects) if run.objects != 10_000 else DELTAS)
    return {
        policy: simulate(
            policy, BudgetConfig(limit=run.limit, period="month", policy=policy), deltas
        )
        for policy in ("fixed", "paced")
    }


def cells(ages: list[float | None]) -> str:
    ages = [age for age in ages if age is not None]
    if not ages:
        return "- | - | -"
    return " | ".join(
        describe(v) for v in (percentile(ages, 0.5), percentile(ages, 0.99), max(ages))
    )


def section(run: Run, model: dict[str, Month]) -> list[str]:
    first, last = run.first, run.first + run.minutes
    day_from, day_to = run.days[0] + 1, run.days[-1] + 1
    hour = run.minutes % 1440 // 60
    until = f" (to {hour}:00 of day {day_to})" if hour else ""
    spent = run.raw.get("spent_before", 0)
    lines = [
        f"## {run.objects:,} objects, {run.limit / 1e6:g} MB/month: days {day_from}-{day_to}"
        f"{until} by the real protocol",
        "",
        f"`python bench/budget_month_protocol.py --objects {run.objects} --limit "
        f"{run.limit / 1e6:g}MB --first-day {day_from} --days {run.raw['days']}"
        + (f" --spent-before {spent / 1e6:g}MB" if spent else "")
        + f"`, stopped after {run.minutes:,} minutes "
        f"({run.raw['wall_seconds']:,} s wall, {run.raw['cpu_seconds']:,} "
        f"s CPU, load average {run.raw['load_average'][0]} at the end; frames encoded "
        f"{run.raw['frame_memo']['misses']:,}, shared {run.raw['frame_memo']['hits']:,}). "
        "Model: `bench/bench_budget_month.py`'s, on frame sizes measured at this size, over the "
        "whole month, read on the same days.",
        "",
        "| span | policy | protocol p50 | p99 | max | model p50 | p99 | max |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    spans = [("whole span", first, last)] + [
        (name, max(a, first), min(b, last)) for name, a, b in SPANS if max(a, first) < min(b, last)
    ]
    for name, a, b in spans:
        for policy in ("fixed", "paced"):
            real = run.ages(policy)[a - first : b - first]
            modelled = model[policy].ages[a:b]
            lines.append(f"| {name} | {policy} | {cells(real)} | {cells(modelled)} |")
    lines += [
        "",
        "| policy | wire MB, protocol | model | versions stored | longest gap between them "
        "| minutes before the first version |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for policy in ("fixed", "paced"):
        wire = sum(run.per_day(policy))
        modelled = sum(run.share(d) * model[policy].per_day[d] for d in run.days)
        stored = len(run.raw["policies"][policy]["arrivals"])
        lines.append(
            f"| {policy} | {wire / 1e6:.1f} | {modelled / 1e6:.1f} | {stored:,} | "
            f"{describe(run.longest_gap(policy))} | {run.without_version(policy):,} |"
        )
    lines += ["", "Wire MB per day (protocol / model; a day run in part: its share):", ""]
    lines += ["| day | fixed | paced |", "| ---: | ---: | ---: |"]
    for index, day in enumerate(run.days):
        share = run.share(day)
        row = [
            f"{run.per_day(p)[index] / 1e6:.2f} / {share * model[p].per_day[day] / 1e6:.2f}"
            for p in ("fixed", "paced")
        ]
        part = "" if share == 1 else f" (first {share * 24:g} h)"
        lines.append(f"| {day + 1}{part} | " + " | ".join(row) + " |")
    return [*lines, ""]


def report(found: list[Run], modelled: list[dict[str, Month]]) -> str:
    paced = BudgetConfig(limit=LIMIT, period="month", policy="paced")
    week = BudgetConfig(limit=LIMIT, period="month", policy="paced", burst=paced.uploads_limit // 4)
    deltas = Deltas.load()
    months = [
        simulate("fixed", BudgetConfig(limit=LIMIT, period="month", policy="fixed"), deltas),
        simulate("paced", paced, deltas),
        simulate("paced, burst cap a week", week, deltas),
    ]
    lines = [
        "# A month under a data cap: snapshot age at the server, fixed window vs paced",
        "",
        "Real protocol (`bench/budget_month_protocol.py`): the real Agent, SimTransport, the "
        "real ServerProtocol behind the real request gate, the simulated link's wire cost per "
        "exchange (#15: 520 B kept-alive, +1,540 B after 150 s idle), one snapshot a minute from "
        "the sample cluster under steady churn with a busy burst on days 8-10, both policies in "
        "lockstep on one trace; age and arrivals recorded at the server. Model: the section "
        "after (`bench/bench_budget_month.py`).",
        "",
    ]
    for run, model in zip(found, modelled, strict=True):
        lines += section(run, model)
    lines += ["## The model over the whole month at 10,000 objects, 500 MB", ""]
    lines += render(months, paced).splitlines()[2:]
    return "\n".join(lines) + "\n"


def plot(found: list[Run], modelled: list[dict[str, Month]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(found) + 1
    figure, axes = plt.subplots(rows, 1, figsize=(10, 3.2 * rows))
    colours = {"fixed": "tab:blue", "paced": "tab:orange"}
    for axis, run, model in zip(axes, found, modelled, strict=False):
        first = run.first
        for policy in ("fixed", "paced"):
            x = [(first + i + 1) / 1440 for i in range(run.minutes)]
            real = [math.nan if a is None else a / 60 for a in run.ages(policy)]
            axis.plot(x, real, color=colours[policy],
                      linewidth=0.8, label=f"{policy}, protocol")  # fmt: skip
            ages = model[policy].ages[first : first + run.minutes]
            axis.plot(x, [a / 60 for a in ages], color=colours[policy], linestyle=":",
                      linewidth=0.8, label=f"{policy}, model")  # fmt: skip
        axis.axvspan(BURST[0] / 1440, BURST[1] / 1440, color="orange", alpha=0.12)
        axis.set_yscale("log")
        axis.set_ylabel("age at the server (min)")
        axis.set_title(f"{run.objects:,} objects, {run.limit / 1e6:g} MB/month (shaded: burst)")
        axis.legend(fontsize=7)
    days = axes[-1]
    for offset, run in enumerate(found):
        for shift, policy in enumerate(("fixed", "paced")):
            xs = [d + 1 + (offset * 2 + shift - 1.5) * 0.2 for d in run.days]
            daily = run.limit / DAYS
            bytes_ = zip(run.days, run.per_day(policy), strict=True)
            share = [b / (daily * run.share(d)) for d, b in bytes_]
            days.bar(xs, share, width=0.2, label=f"{run.objects:,}, {policy}")
    days.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    days.set_ylabel("wire bytes a day / (budget / 30)")
    days.set_xlabel("day of the month (real protocol)")
    days.set_xlim(0.5, DAYS + 0.5)
    days.legend(fontsize=7)
    figure.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    figure.savefig(PLOT, dpi=110)


def main() -> None:
    found = runs()
    modelled = [models(run) for run in found]
    text = report(found, modelled)
    RESULTS.write_text(text)
    print(text)
    plot(found, modelled)


if __name__ == "__main__":
    main()
