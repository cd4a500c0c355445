"""The month under a data cap, run by the real protocol over the simulated link (#18).

What runs, for each policy (fixed window, paced): snapsync.sim.link's `Sim` — the real Agent
(its exchange loop, persistence, the protocol's budget meter and pacer), SimTransport, the real
ServerProtocol behind the server's real request gate (every request signed), and the link's wire
cost per exchange (DEFAULT_OVERHEAD on a kept-alive connection, + RECONNECT after KEEP_ALIVE idle
seconds: #15's measurement). One trace feeds both agents in lockstep: the sample cluster
(tools.traces), stepped a minute at a time at the `steady` churn level, `busy` on days 8-10,
one snapshot collected a minute (stamped with the simulated time) and handed to both agents;
between collections each agent wakes when it asks (`wakeup_at`: the pacer's ready time, a ping;
a wake with nothing to send, such as the agent's own collection timer, which the runner does not
follow, ends the minute, so a ping due later in it goes at the next minute if an upload's ack
has not replaced it).
The agents share one memo of frames (snapsync.sim.frames.FrameMemo, through the documented
`AgentConfig.encoder`): the same (base, latest) pair is encoded once.

What is recorded at the server: after every exchange, the newest version the server holds; its
collection time and when it arrived. Age is sampled at the end of every minute (just before the
next collection), as in the model (bench/bench_budget_month.py): now minus the collection time
of the server's newest version. Wire bytes are the link's own count per exchange (`wire_bytes`),
summed per day and per budget period.

A span that starts after day 1 starts a fresh agent and server at its first minute on the trace
advanced to that day in 2-hour churn steps (tools.traces.offline_snapshots' way); its first
upload is a full snapshot, as on day 1. Its agents start as agents restarted then, having spent
`--spent-before` bytes of the month (what the days before cost: measure them with a run of
those days); the restart rebuilds the paced bucket from the pace line less what was spent, as
any restarted agent does (snapsync.protocol.budget).

    python bench/budget_month_protocol.py --objects 1000 --limit 50MB          # the whole month
    python bench/budget_month_protocol.py --objects 10000 --first-day 8 --days 4 \
        --spent-before 120MB

Writes bench/results/budget_month_protocol_<objects>_<first>-<last>.json every simulated hour
(a long run leaves what it finished); bench/budget_month_report.py renders it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.bench_budget_month import BURST, DAYS, START
from snapsync.canonical.snapshot import Snapshot, rfc3339
from snapsync.protocol import AgentConfig
from snapsync.protocol.budget import BudgetConfig
from snapsync.sim.frames import FrameMemo
from snapsync.sim.link import ENV, Sim
from snapsync.units import parse_size
from tools.traces import TraceSpec, start

RESULTS = Path(__file__).resolve().parent / "results"
POLICIES = ("fixed", "paced")
FAST_FORWARD = 120.0  # minutes per churn step up to a span's first day


@dataclass(frozen=True)
class Span:
    """What to run: `objects`, a monthly `limit`, days [first_day, first_day + days) (0-based),
    with `spent_before` bytes of the month spent before the span."""

    objects: int
    limit: int
    first_day: int = 0
    days: int = DAYS
    spent_before: int = 0

    @property
    def minutes(self) -> range:
        return range(self.first_day * 1440, (self.first_day + self.days) * 1440)

    @property
    def name(self) -> str:
        return f"{self.objects}_{self.first_day + 1}-{self.first_day + self.days}"


def config(policy: str, limit: int, memo: FrameMemo) -> AgentConfig:
    """The agent's defaults (a monthly SIM), the policy, the shared frame memo."""
    budget = BudgetConfig(limit=limit, period="month", policy=policy)
    return AgentConfig(budget=budget, encoder=memo)


@dataclass
class Policy:
    """One policy's agent and server over its own simulated link, and what the server shows."""

    label: str
    sim: Sim
    held: bytes | None = None
    # seconds, at the end of each minute; None while the server holds no version yet (a span
    # that starts after day 1 starts a fresh server: its first minutes may have none)
    ages: list[float | None] = field(default_factory=list)
    arrivals: list[tuple[float, float]] = field(default_factory=list)  # (collected, arrived)

    def minute(self, snapshot: Snapshot, now: float, collected: dict[bytes, float]) -> None:
        """Collect at `now`, then let the agent send what it asks for until the next minute."""
        sim, end = self.sim, now + 60.0
        if now > sim.now:
            sim.advance(now - sim.now)
        sim.collect(snapshot)
        for _ in range(100):  # bounded: a minute holds a few wake-ups (pace, ping, chunks)
            exchanged = sim.run_exchanges()
            self._look(collected)
            wake = sim.agent.wakeup_at(sim.now)
            if wake >= end or (not exchanged and wake <= sim.now):
                break  # the next thing it wants is past this minute, or the next collection
            sim.advance(max(0.0, wake - sim.now))
        if end > sim.now:
            sim.advance(end - sim.now)
        current = sim.store.current(ENV)
        self.ages.append(None if current is None else end - collected[current.digest])

    def _look(self, collected: dict[bytes, float]) -> None:
        """What the server holds now: a new version is an arrival."""
        current = self.sim.store.current(ENV)
        if current is not None and current.digest != self.held:
            self.held = current.digest
            self.arrivals.append((collected[current.digest], self.sim.now))

    def per_day(self, span: Span) -> list[int]:
        days: Counter[int] = Counter()
        for when, size in self.sim.wire_bytes:
            days[int((when - START) // 86_400)] += size
        return [days[day] for day in range(span.first_day, span.first_day + span.days)]


def run(span: Span, out: Path) -> None:
    memo = FrameMemo()
    first = START + span.minutes[0] * 60.0
    policies = [Policy(p, Sim(config(p, span.limit, memo), now=first)) for p in POLICIES]
    if span.spent_before:
        for policy in policies:
            policy.sim.agent.budget.spend(span.spent_before, first)
            policy.sim.restart_agent()  # rebuilds the bucket from the pace less what was spent
    live = start(TraceSpec("steady", span.objects))
    for _ in range(int(span.first_day * 1440 / FAST_FORWARD)):
        live.step("steady", FAST_FORWARD)
    collected: dict[bytes, float] = {}
    started, cpu = time.monotonic(), time.process_time()
    for minute in span.minutes:
        now = START + minute * 60.0
        if minute > span.minutes[0]:
            live.step("busy" if BURST[0] <= minute < BURST[1] else "steady", 1.0)
        snapshot = live.snapshot(rfc3339(now))
        collected[snapshot.digest] = now
        for policy in policies:
            policy.minute(snapshot, now, collected)
        if (minute + 1) % 60 == 0:
            elapsed = time.monotonic() - started
            seconds = time.process_time() - cpu
            write(out, span, policies, memo, elapsed, seconds)
            hours = (minute + 1) / 60
            print(f"hour {hours:g}: {elapsed:.0f} s wall, {seconds:.0f} s CPU", file=sys.stderr)


def write(
    out: Path, span: Span, policies: list[Policy], memo: FrameMemo, wall: float, cpu: float
) -> None:
    document = {
        "objects": span.objects,
        "limit": span.limit,
        "first_day": span.first_day,
        "days": span.days,
        "spent_before": span.spent_before,
        "minutes_run": len(policies[0].ages),
        "wall_seconds": round(wall),
        "cpu_seconds": round(cpu),
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "frame_memo": {"hits": memo.hits, "misses": memo.misses},
        "policies": {
            p.label: {
                "ages": p.ages,
                "arrivals": p.arrivals,
                "per_day": p.per_day(span),
                "wire_total": sum(size for _, size in p.sim.wire_bytes),
                "agent_budget_used": p.sim.agent.budget.used,
                "exchanges": len(p.sim.wire_bytes),
            }
            for p in policies
        },
    }
    temporary = out.with_suffix(".tmp")
    temporary.write_text(json.dumps(document) + "\n")
    temporary.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--limit", default="500MB", help="budget per month on the wire")
    parser.add_argument("--first-day", type=int, default=1, help="1-based")
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--spent-before", default="0", help="bytes spent before the span")
    args = parser.parse_args()
    spent = parse_size(args.spent_before)
    span = Span(args.objects, parse_size(args.limit), args.first_day - 1, args.days, spent)
    out = RESULTS / f"budget_month_protocol_{span.name}.json"
    run(span, out)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
