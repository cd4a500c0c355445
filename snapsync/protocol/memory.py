"""A VersionStore in memory: for tests, simulations and the demo's throwaway server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from snapsync.canonical.snapshot import Snapshot
from snapsync.protocol.messages import BudgetReport, Command, CommandResult, Version
from snapsync.protocol.server import PartialLimits, PartialUpload


@dataclass
class HeldUpload:
    """An upload in progress: its chunks as received, appended and never rewritten."""

    meta: PartialUpload
    chunks: list[bytes]
    updated_at: float


@dataclass
class EnvironmentRecord:
    versions: list[tuple[Version, Snapshot]] = field(default_factory=list)  # newest first
    partials: dict[bytes, HeldUpload] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)
    results: dict[int, CommandResult] = field(default_factory=dict)
    last_seen: float = 0.0
    agent_latest: bytes = b""
    waiting: int = 0
    budget: BudgetReport | None = None
    frames: int = 0
    frame_bytes: int = 0


class MemoryStore:
    def __init__(self, keep_versions: int = 3) -> None:
        self.keep_versions = keep_versions
        self.environments: dict[str, EnvironmentRecord] = {}

    def env(self, env: str) -> EnvironmentRecord:
        return self.environments.setdefault(env, EnvironmentRecord())

    def held(self, env: str) -> Sequence[Version]:
        return [v for v, _ in self.env(env).versions]

    def snapshot(self, env: str, digest: bytes) -> Snapshot | None:
        return next((s for v, s in self.env(env).versions if v.digest == digest), None)

    def current(self, env: str) -> Snapshot | None:
        versions = self.env(env).versions
        return versions[0][1] if versions else None

    def commit(
        self, env: str, snapshot: Snapshot, frame: bytes, base: Version | None, now: float
    ) -> Version:
        record = self.env(env)
        seq = record.versions[0][0].seq + 1 if record.versions else 1
        version = Version(seq, snapshot.digest)
        kept = [(version, snapshot), *record.versions][: self.keep_versions]
        pinned = [(v, s) for v, s in record.versions[self.keep_versions - 1 :] if v == base]
        record.versions = kept + pinned
        record.frames += 1
        record.frame_bytes += len(frame)
        return version

    def partial(self, env: str, upload: bytes) -> PartialUpload | None:
        held = self.env(env).partials.get(upload)
        return held.meta if held is not None else None

    def append_partial(
        self,
        env: str,
        upload: bytes,
        partial: PartialUpload,
        data: bytes,
        now: float,
        limits: PartialLimits,
    ) -> int:
        partials = self.env(env).partials
        held = partials.get(upload)
        if partial.received == 0:
            held = partials[upload] = HeldUpload(partial, [], now)
        elif held is None or held.meta != partial:
            return held.meta.received if held is not None else 0
        held.chunks.append(data)
        held.meta = replace(partial, received=partial.received + len(data))
        held.updated_at = now
        sizes = [(u, h.meta.received, h.updated_at) for u, h in partials.items()]
        for gone in limits.evicted(upload, sizes):
            del partials[gone]
        return held.meta.received

    def partial_data(self, env: str, upload: bytes) -> bytes:
        held = self.env(env).partials.get(upload)
        return b"".join(held.chunks) if held is not None else b""

    def drop_partial(self, env: str, upload: bytes) -> None:
        self.env(env).partials.pop(upload, None)

    def expire_partials(self, before: float) -> int:
        gone = 0
        for record in self.environments.values():
            stale = [u for u, held in record.partials.items() if held.updated_at < before]
            for upload in stale:
                del record.partials[upload]
            gone += len(stale)
        return gone

    def queue_command(
        self, env: str, name: str, args: dict[str, object] | None = None, now: float = 0.0
    ) -> Command:
        record = self.env(env)
        command = Command(len(record.commands) + 1, name, args or {})
        record.commands.append(command)
        return command

    def commands_after(self, env: str, cursor: int, limit: int) -> Sequence[Command]:
        return [c for c in self.env(env).commands if c.id > cursor][:limit]

    def record_results(self, env: str, results: Sequence[CommandResult], now: float) -> None:
        record = self.env(env)
        for result in results:
            record.results.setdefault(result.id, result)

    def results(self, env: str) -> dict[int, CommandResult]:
        return dict(self.env(env).results)

    def seen(
        self, env: str, now: float, latest: bytes, waiting: int, budget: BudgetReport | None = None
    ) -> None:
        record = self.env(env)
        record.last_seen, record.agent_latest, record.waiting = now, latest, waiting
        record.budget = budget or record.budget
