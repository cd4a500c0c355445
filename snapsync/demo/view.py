# The demo's faces: a live rich view at a terminal, one plain line per simulated hour
# elsewhere (CI logs, pipes), and the closing report. Pure rendering of Progress and Result
# values from run.py; nothing here touches the simulation.
"""How a demo run looks: live view, plain log lines, and the closing report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from snapsync.demo.run import Progress, Result
from snapsync.demo.scenario import HOUR, DemoOptions, format_duration
from snapsync.units import format_size

_BARS = "▁▂▃▄▅▆▇█"


def ratio(baseline: int, ours: int) -> str:
    return f"{baseline / ours:.1f}x" if ours else "-"


def _kinds(progress: Progress) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in progress.kinds) or "none yet"


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _budget(progress: Progress) -> str:
    if not progress.budget:
        return "unlimited"
    left = progress.budget_left if progress.budget_left is not None else progress.budget
    text = f"{format_size(left)} of {format_size(progress.budget)} left today"
    return text + (f", {progress.deferred} upload(s) deferred" if progress.deferred else "")


def _faults(progress: Progress) -> str:
    names = {"loss": "lost", "answer_loss": "answers lost", "truncate": "cut", "refused": "refused"}
    found = [f"{count} {names.get(name, name)}" for name, count in progress.faults if count]
    return ", ".join(found) or "none"


def sparkline(values: tuple[int, ...]) -> str:
    if not values:
        return ""
    # Scaled to the 90th percentile, so one full snapshot does not flatten every delta.
    top = sorted(values)[int(0.9 * (len(values) - 1))] or max(values) or 1
    return "".join(_BARS[min(len(_BARS) - 1, int(v / top * (len(_BARS) - 1)))] for v in values)


def live_table(progress: Progress, title: str) -> Group:
    """The live view: one row per thing a user watches."""
    share = min(1.0, progress.elapsed / progress.duration)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    phase = {"running": "", "settling": "  (run over: letting the agent converge)", "done": ""}
    grid.add_row(
        "simulated",
        f"{_clock(progress.clock)}  +{format_duration(progress.elapsed)} of "
        f"{format_duration(progress.duration)} ({share:.0%}){phase[progress.phase]}",
    )
    last = progress.recent[-1] if progress.recent else 0
    grid.add_row(
        "cycles",
        f"{progress.cycles} collections of {progress.objects} objects · frames: {_kinds(progress)}",
    )
    grid.add_row("bytes/cycle", f"{sparkline(progress.recent)}  last {format_size(last)}")
    grid.add_row(
        "shipped",
        Text.assemble(
            ("snapsync ", "bold"), (format_size(progress.wire), "bold green"), " (all traffic)"
        ),
    )
    grid.add_row(
        "baselines",
        f"full JSON + gzip {format_size(progress.full_json)} "
        f"({ratio(progress.full_json, progress.wire)})   JSON Patch + gzip "
        f"~{format_size(progress.json_patch)} ({ratio(progress.json_patch, progress.wire)})",
    )
    grid.add_row("budget", _budget(progress))
    link_style = {"up": "green", "flaky": "yellow", "down": "bold red"}[progress.link]
    grid.add_row(
        "link",
        Text.assemble((progress.link, link_style), f"   faults so far: {_faults(progress)}"),
    )
    server = f"version {progress.server_seq}" if progress.server_seq else "nothing stored yet"
    state = ("converged: server digest = agent digest", "green")
    if not progress.converged:
        state = ("catching up", "yellow")
    grid.add_row("server", Text.assemble(f"{server} · ", state))
    return Group(Text(title, style="bold"), grid)


def titles(options: DemoOptions) -> tuple[str, str]:
    """What is simulated, in two lines: the scenario, then the link."""
    return (
        f"snapsync demo · {options.objects} objects, {options.churn} churn · "
        f"{format_duration(options.duration)} simulated · seed {options.seed}",
        f"{options.link} link: {options.profile.summary}",
    )


def plain_line(progress: Progress) -> str:
    """One log line: what a CI log or a pipe gets instead of the live view."""
    last = progress.recent[-1] if progress.recent else 0
    return (
        f"+{format_duration(progress.elapsed):>7} cycles {progress.cycles} · "
        f"frames {_kinds(progress)} · last cycle {format_size(last)} · "
        f"snapsync {format_size(progress.wire)} "
        f"vs full JSON+gzip {format_size(progress.full_json)} "
        f"({ratio(progress.full_json, progress.wire)}) · budget {_budget(progress)} · "
        f"link {progress.link} · {'converged' if progress.converged else 'catching up'}"
    )


@dataclass
class LiveView:
    """Draws each Progress on a running rich Live display, at most ten times a second."""

    live: Live
    title: str
    _drawn: float = 0.0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._drawn < 0.1 and progress.phase != "done":
            return
        self._drawn = now
        self.live.update(live_table(progress, self.title))


@dataclass
class PlainView:
    """A line per simulated hour (or per `every` seconds), and the last state at the end."""

    echo: Callable[[str], None]
    every: float = HOUR
    _next: float = field(default=0.0)

    def __call__(self, progress: Progress) -> None:
        if progress.elapsed >= self._next or progress.phase == "done":
            self.echo(plain_line(progress))
            while self._next <= progress.elapsed:
                self._next += self.every


def _sampled(progress: Progress) -> str:
    if progress.patch_samples >= progress.cycles - 1:
        return "measured on every cycle"
    return (
        f"estimated from {progress.patch_samples} of {progress.cycles} cycles: "
        "it is slow to compute"
    )


def report(result: Result, browse: list[str]) -> list[str]:
    """The closing report: ratios, what the link did, convergence, where to look next."""
    p, options = result.progress, result.options
    overhead = p.wire - p.frames
    down = sum(length for _, length in result.outages)
    lines = [
        f"snapsync demo: {format_duration(options.duration)} simulated in "
        f"{result.real_seconds:.0f} s — {options.objects} objects, {options.churn} churn, "
        f"{options.link} link, seed {options.seed}",
        f"  cycles             {p.cycles} collections every {format_duration(options.interval)}; "
        f"frames acknowledged: {_kinds(p)}",
        f"  snapsync           {format_size(p.wire)} on the wire, everything counted (frames "
        f"{format_size(p.frames)}; pings, HTTP/TLS/TCP overhead, reconnects, retries "
        f"{format_size(overhead)})",
        f"  full JSON + gzip   {format_size(p.full_json)}: ratio {ratio(p.full_json, p.wire)} "
        "snapsync's bytes (one whole state per cycle)",
        f"  JSON Patch + gzip  {format_size(p.json_patch)}: ratio {ratio(p.json_patch, p.wire)} "
        f"snapsync's bytes ({_sampled(p)})",
        "                     (baselines count payloads only: no headers, no retries)",
        f"  link               {len(result.outages)} outage(s), {format_duration(down)} down; "
        f"faults: {_faults(p)}"
        + (
            f"; back in sync {format_duration(max(result.catch_ups))} or less after the link "
            "returned"
            if result.catch_ups
            else ""
        ),
        "  budget             "
        + (
            f"{format_size(options.budget)}/day; busiest day {format_size(result.busiest_day)}; "
            f"{p.deferred} upload(s) deferred"
            if options.budget
            else f"unlimited; busiest day {format_size(result.busiest_day)}"
        ),
    ]
    if p.converged:
        lines.append(
            f"  converged          yes: the server holds the agent's latest snapshot "
            f"(digest {result.agent_digest})"
        )
    else:
        lines.append(
            f"  converged          NO: server at {result.server_digest[:12] or 'nothing'}, "
            f"agent at {result.agent_digest[:12]}"
            + (" (the data budget holds the upload back)" if p.deferred else "")
        )
    lines.append(f"  database           {result.database}")
    lines += [f"  {'browse' if i == 0 else '':<18} {line}" for i, line in enumerate(browse)]
    return lines
