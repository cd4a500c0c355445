"""The embeddable agent: collector + protocol + transport + state store.

The clock is injected (`clock`): it times the protocol, the transport's signatures and the
snapshots' collection time; the state store is a port (`StateDir`, or `MemoryStateStore`), so
the simulation runs this very loop.

`step()` does one pass (collect if due, then every exchange the protocol wants now) and returns
what happened; `run()` repeats it, sleeping until the protocol's next wake-up, until stopped. The
protocol's state is saved after every exchange, so the process can be killed at any point.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from snapsync.agent.state import StateDir, StateStore
from snapsync.agent.transport import Transport
from snapsync.canonical.profile import Profile, load_profile
from snapsync.canonical.snapshot import SnapshotBuilder, rfc3339
from snapsync.collect import Collector
from snapsync.delta.incremental import following
from snapsync.errors import SnapsyncError, TransportError
from snapsync.protocol.agent import AgentConfig, AgentProtocol
from snapsync.protocol.events import (
    Acked,
    AuthRejected,
    BudgetDeferred,
    CollectRequested,
    CommandReceived,
    Event,
    PeerMisbehaved,
    UploadRejected,
)
from snapsync.protocol.messages import Command, CommandResult
from snapsync.protocol.pacing import Pace

log = logging.getLogger("snapsync.agent")

CommandRunner = Callable[[Command], CommandResult]


def refuse_cluster_commands(command: Command) -> CommandResult:
    """The runner for agents without cluster write access (file collectors, read-only RBAC)."""
    return CommandResult(command.id, False, f"{command.name}: this agent has no cluster access")


@dataclass
class StepReport:
    """One pass, for logs and for `--once`."""

    collected: bool = False
    collect_error: str = ""
    exchanges: int = 0
    wire_bytes: int = 0  # counted on the socket: TLS records and TCP/IP headers
    http_bytes: int = 0  # the HTTP messages alone, for comparison
    frame_kind: str = ""
    frame_bytes: int = 0
    version: int | None = None
    in_sync: bool = False
    # The server said, in an answer during this run, that its current version is our latest.
    # `in_sync` alone is what the agent believes (a restored ack); only this proves the server
    # was reached and accepted our credentials, which is what `--once` exits 0 on.
    confirmed: bool = False
    budget_left: int | None = None
    # The pacer's latest decision on a new upload: the interval in use and why (None: no upload
    # asked the budget yet).
    pace: Pace | None = None
    rss_bytes: int | None = None  # the process's resident memory (Linux), read after the pass
    events: list[Event] = field(default_factory=list)


class Agent:
    """`commands` runs the cluster commands the server queues, at once; None leaves them to the
    caller (CommandReceived in the report's events, answered with `protocol.command_finished`)."""

    def __init__(
        self,
        collector: Collector,
        transport: Transport,
        state_dir: str | Path | StateStore,
        config: AgentConfig | None = None,
        *,
        profile: Profile | None = None,
        environment_id: str = "",
        commands: CommandRunner | None = refuse_cluster_commands,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        heartbeat: Path | None = None,
    ) -> None:
        self.collector = collector
        self.transport = transport
        self.config = config or AgentConfig()
        self.profile = profile or load_profile()
        self.environment_id = environment_id
        self.commands = commands
        self.clock = clock
        self.state = StateDir(state_dir) if isinstance(state_dir, str | Path) else state_dir
        self.heartbeat = heartbeat
        self.protocol = AgentProtocol(self.config, seed=seed, wire_counted=True)
        saved = self.state.load()
        if saved is not None:
            self.protocol.restore_state(*saved)
        self._stop = threading.Event()
        self._builder: SnapshotBuilder | None = None  # the last collection's

    def step(self) -> StepReport:
        report = StepReport()
        now = self.clock()
        if self.protocol.snapshot_due(now):
            self._collect(now, report)
        self.exchange(report)
        now = self.clock()
        acked = self.protocol.acked
        report.version = acked.seq if acked else None
        report.in_sync = self.protocol.in_sync
        report.confirmed = self._server_confirms_latest()
        report.budget_left = self.protocol.budget.remaining(now)
        report.pace = self.protocol.gate.pace
        report.rss_bytes = resident_bytes()
        self.save()
        self._beat()
        return report

    def exchange(self, report: StepReport, limit: int | None = None) -> None:
        """Every exchange the protocol wants now (at most `limit` in all of `report`)."""
        now = self.clock()
        while (limit is None or report.exchanges < limit) and (
            request := self.protocol.next_request(now)
        ) is not None:
            report.exchanges += 1
            self.save()  # with the budget charged for the request: a crash cannot overspend
            try:
                answer = self.transport.post(request.kind, request.body, request.answer_limit)
            except TransportError as exc:
                report.wire_bytes += exc.wire_bytes
                events = self.protocol.fail(request, self.clock(), str(exc), exc.wire_bytes)
            else:
                report.wire_bytes += answer.wire_bytes
                report.http_bytes += answer.http_bytes
                events = self.protocol.receive(
                    request, answer.outcome, answer.body, self.clock(), answer.wire_bytes
                )
            self._handle(events, report)
            self.save()
            self._beat()  # a long upload is many exchanges: each one is progress
            now = self.clock()
        report.events += self.protocol.poll_events()

    def run(self, max_sleep: float = 60.0) -> None:
        """Step until `stop()`; sleeps in between, never longer than `max_sleep`."""
        while not self._stop.is_set():
            report = self.step()
            log.info("%s", format_report(report))
            delay = self.protocol.wakeup_at(self.clock()) - self.clock()
            self._stop.wait(min(max(delay, 0.05), max_sleep))

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Release the transport and the collector's watches and client (its threads would
        otherwise hold the process open at exit)."""
        self.transport.close()
        close_collector = getattr(self.collector, "close", None)
        if close_collector is not None:
            close_collector()

    def _server_confirms_latest(self) -> bool:
        """The server's current version, as its last answer in this run named it, is our latest.

        `server_current` is learned from pongs and upload replies and never restored from the
        state directory, so a dead server or refused credentials leave it unset.
        """
        current, latest = self.protocol.server_current, self.protocol.latest
        return current is not None and latest is not None and current.digest == latest.digest

    def _collect(self, now: float, report: StepReport) -> None:
        # the last cycle's builder's successor: a watch collector resumes it and gives it only
        # what changed since (collect.base.ResumableSink); any other collector fills it anew
        last, self._builder = self._builder, None
        if last is not None:
            builder = last.successor()
        else:
            builder = SnapshotBuilder(self.profile, environment_id=self.environment_id)
        try:
            self.collector.collect(builder)
        except SnapsyncError as exc:
            report.collect_error = str(exc)
            log.warning("collection failed: %s", exc)
            self.protocol.collection_failed(now)
            return
        self._builder = builder
        snapshot = builder.build(rfc3339(now))
        latest = self.protocol.latest
        if latest is not None:  # digest and key order from the last one's, in O(change)
            snapshot = following(latest, snapshot)
        self.protocol.snapshot_collected(snapshot, now)
        report.collected = True

    def _handle(self, events: list[Event], report: StepReport) -> None:
        for event in events:
            report.events.append(event)
            if isinstance(event, Acked):
                report.frame_kind, report.frame_bytes = event.kind, event.frame_bytes
            elif isinstance(event, CommandReceived) and self.commands is not None:
                self.save()  # the cursor is on disk before the command runs: at most once
                self.protocol.command_finished(self._run(event.command, self.commands))
            elif isinstance(event, CollectRequested):
                self.protocol.collect_now(self.clock())
            elif isinstance(event, AuthRejected):
                log.error(
                    "the server refused our credentials (%s): check edge id and secret",
                    event.reason,
                )
            elif isinstance(event, UploadRejected | PeerMisbehaved):
                log.warning("%s", event)
            elif isinstance(event, BudgetDeferred):
                spent = event.until >= self.protocol.budget.next_period(self.clock())
                log.log(  # waiting for the pace is routine; for the next period, not
                    logging.WARNING if spent else logging.INFO,
                    "data budget: an upload of %d bytes waits %.0f s (%d left this period)",
                    event.needed,
                    max(0.0, event.until - self.clock()),
                    event.remaining,
                )

    def _run(self, command: Command, runner: CommandRunner) -> CommandResult:
        try:
            return runner(command)
        except Exception as exc:  # a command failing must never stop the agent
            return CommandResult(command.id, False, f"{type(exc).__name__}: {exc}")

    def save(self) -> None:
        """Persist the protocol's state (done after every exchange and every step)."""
        self.state.save(self.protocol.export_state(), self.protocol.snapshots_to_keep())

    def _beat(self) -> None:
        """Renew the heartbeat file, whose mtime a liveness probe reads (`snapsync health`).

        Atomic (a temporary file renamed over it) but not fsynced: a lost heartbeat after a crash
        only means one more probe fails, which is what a crash should cause anyway. A failed
        write is logged, never fatal: the probe notices the stale file.
        """
        if self.heartbeat is None:
            return
        tmp = self.heartbeat.with_name(f".{self.heartbeat.name}.tmp")
        try:
            tmp.write_text(f"{self.clock():.0f} in_sync={str(self.protocol.in_sync).lower()}\n")
            os.replace(tmp, self.heartbeat)
        except OSError as exc:
            log.warning("heartbeat %s: %s", self.heartbeat, exc.strerror)


def resident_bytes() -> int | None:
    """VmRSS of this process from /proc/self/status, so an operator sees the agent's memory in
    its log; None where there is no such file (not Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def format_report(report: StepReport) -> str:
    """One structured log line per cycle."""
    parts = [
        f"wire={report.wire_bytes}",
        f"http={report.http_bytes}",
        f"frame={report.frame_kind or '-'}",
        f"frame_bytes={report.frame_bytes}",
        f"version={report.version if report.version is not None else '-'}",
        f"in_sync={str(report.in_sync).lower()}",
        f"confirmed={str(report.confirmed).lower()}",
        f"budget_left={'unlimited' if report.budget_left is None else report.budget_left}",
    ]
    if report.pace is not None:
        parts.append(f"pace={report.pace.describe()!r}")
    if report.rss_bytes is not None:
        parts.append(f"rss_mb={report.rss_bytes / 2**20:.0f}")
    if report.collect_error:
        parts.append(f"collect_error={report.collect_error!r}")
    return " ".join(parts)
