"""What the agent persists between runs: everything a restart needs besides the snapshots.

`AgentState` is a frozen value: the acknowledged bases, the latest snapshot's digest, an upload
in progress, the command ledger, the budget spent and the bytes not yet reported. The embedding
code writes its document form (`document()`, msgpack-able) beside the snapshots
`snapshots_to_keep` names (snapsync.agent.state) after every exchange; a new process resumes
with `AgentState.from_document` and `restore_state`.

Format. The document is a map with a `format` key (FORMAT); a map without one is what agents
wrote before the key existed (same fields), and loads as format 1. Fields missing from such an
older map take the defaults those agents used. A document of another format, or whose fields are
not what they should be, is refused (InputError saying what is wrong), never half-read: the
caller decides (the agent stops with one line naming the file, which it leaves as it is).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from snapsync.canonical.snapshot import Snapshot
from snapsync.errors import InputError, RemoteProtocolError
from snapsync.protocol.messages import CommandResult, Version
from snapsync.protocol.upload import Upload

if TYPE_CHECKING:
    from snapsync.protocol.agent import AgentProtocol

FORMAT = 1
FIELDS = (
    "format",
    "bases",
    "latest",
    "upload",
    "need_full",
    "cursor",
    "running",
    "results",
    "budget",
    "unreported",
)
UPLOAD_FIELDS = ("id", "base", "target", "frame", "kind", "confirmed")


@dataclass(frozen=True)
class UploadState:
    """An upload in progress: its frame, and how much of it the server confirmed."""

    id: bytes
    base: Version | None
    target: bytes  # digest of the snapshot it uploads
    frame: bytes
    kind: str
    confirmed: int


@dataclass(frozen=True)
class AgentState:
    bases: tuple[Version, ...] = ()
    latest: bytes | None = None
    upload: UploadState | None = None
    need_full: bool = False
    cursor: int = 0
    running: tuple[int, ...] = ()
    results: tuple[CommandResult, ...] = ()
    budget_period: float = 0.0  # when the budget period that `budget_used` counts began
    budget_used: int = 0
    unreported: int = 0
    format: int = FORMAT

    def document(self) -> dict[str, Any]:
        """The msgpack-able form the state directory writes."""
        upload = self.upload
        return {
            "format": self.format,
            "bases": [v.wire() for v in self.bases],
            "latest": self.latest,
            "upload": None
            if upload is None
            else {
                "id": upload.id,
                "base": upload.base.wire() if upload.base else None,
                "target": upload.target,
                "frame": upload.frame,
                "kind": upload.kind,
                "confirmed": upload.confirmed,
            },
            "need_full": self.need_full,
            "cursor": self.cursor,
            "running": list(self.running),
            "results": [r.wire() for r in self.results],
            "budget": [self.budget_period, self.budget_used],
            "unreported": self.unreported,
        }

    @classmethod
    def from_document(cls, doc: Any) -> AgentState:
        """The state a document describes; InputError saying what is wrong with it."""
        if not isinstance(doc, Mapping):
            raise InputError("agent state is not a map")
        version = doc.get("format", FORMAT)
        if version != FORMAT:
            raise InputError(f"agent state of format {version!r:.20}; this agent reads {FORMAT}")
        unknown = sorted(str(k) for k in doc if k not in FIELDS)
        if unknown and "format" in doc:
            raise InputError(f"agent state has unknown field(s) {', '.join(unknown)[:80]}")
        try:
            return cls(
                bases=tuple(Version.parse(raw) for raw in _list(doc, "bases")),
                latest=_digest(doc.get("latest"), "latest"),
                upload=_upload(doc.get("upload")),
                need_full=_typed(doc, "need_full", bool, False),
                cursor=_count(doc.get("cursor", 0), "cursor"),
                running=tuple(_count(i, "running") for i in _list(doc, "running")),
                results=tuple(CommandResult.parse(raw) for raw in _list(doc, "results")),
                budget_period=_budget(doc)[0],
                budget_used=_budget(doc)[1],
                unreported=_count(doc.get("unreported", 0), "unreported"),
            )
        except RemoteProtocolError as exc:  # a version or command result read as on the wire
            raise InputError(f"agent state: {exc}") from None


def export_state(agent: AgentProtocol) -> AgentState:
    """Everything a restart needs besides the snapshots themselves."""
    upload = agent.upload
    return AgentState(
        bases=tuple(v for v, _ in agent.bases),
        latest=agent.latest.digest if agent.latest is not None else None,
        upload=None
        if upload is None
        else UploadState(
            upload.id,
            upload.base,
            upload.target.digest,
            upload.frame,
            upload.kind,
            upload.confirmed,
        ),
        need_full=agent.need_full,
        cursor=agent.commands.cursor,
        running=tuple(sorted(agent.commands.running)),
        results=tuple(agent.commands.results),
        budget_period=agent.budget.period_started,
        budget_used=agent.budget.used,
        unreported=agent.meter.unreported,
    )


def snapshots_to_keep(agent: AgentProtocol) -> Iterable[Snapshot]:
    """The snapshots `export_state` refers to, which the caller persists beside it."""
    seen: dict[bytes, Snapshot] = {s.digest: s for _, s in agent.bases}
    if agent.latest is not None:
        seen[agent.latest.digest] = agent.latest
    if agent.upload is not None:
        seen[agent.upload.target.digest] = agent.upload.target
    return seen.values()


def restore_state(
    agent: AgentProtocol, state: AgentState, snapshots: dict[bytes, Snapshot]
) -> None:
    """Resume from `state`; what refers to a snapshot that is gone is dropped (at most a full
    upload more), and commands seen running are reported interrupted."""
    for version in state.bases:
        if version.digest in snapshots:
            agent.bases.remember(version, snapshots[version.digest])
    agent.latest = snapshots.get(state.latest) if state.latest else None
    upload = state.upload
    if upload is not None and upload.target in snapshots:
        candidates = {upload.kind: len(upload.frame)}
        target = snapshots[upload.target]
        agent.upload = Upload(
            upload.id, upload.base, target, upload.frame, upload.kind, candidates, upload.confirmed
        )
    agent.need_full = state.need_full
    agent.commands.cursor = state.cursor
    agent.commands.results = list(state.results)
    agent.commands.restarted(state.running)
    agent.budget.period_started, agent.budget.used = state.budget_period, state.budget_used
    agent.meter.unreported = state.unreported


def _typed(doc: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    value = doc.get(name, default)
    if not isinstance(value, kind):
        raise InputError(f"agent state: field {name!r} is not a {kind.__name__}")
    return value


def _list(doc: Mapping[str, Any], name: str) -> list[Any]:
    value: list[Any] = _typed(doc, name, list, [])
    return value


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"agent state: field {name!r} is not a non-negative integer")
    return value


def _digest(value: Any, name: str) -> bytes | None:
    if value is not None and not (isinstance(value, bytes) and len(value) == 16):
        raise InputError(f"agent state: field {name!r} is not a digest")
    return value


def _budget(doc: Mapping[str, Any]) -> tuple[float, int]:
    value = doc.get("budget", [0.0, 0])
    if (
        not isinstance(value, list)
        or len(value) != 2
        or isinstance(value[0], bool)
        or not isinstance(value[0], int | float)
    ):
        raise InputError("agent state: field 'budget' is not [period start, bytes used]")
    return float(value[0]), _count(value[1], "budget")


def _upload(raw: Any) -> UploadState | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or sorted(raw) != sorted(UPLOAD_FIELDS):
        raise InputError(f"agent state: field 'upload' is not a map of {', '.join(UPLOAD_FIELDS)}")
    frame, upload_id, kind = raw["frame"], raw["id"], raw["kind"]
    if (
        not isinstance(frame, bytes)
        or not isinstance(upload_id, bytes)
        or not isinstance(kind, str)
    ):
        raise InputError("agent state: field 'upload' has a malformed id, frame or kind")
    confirmed = _count(raw["confirmed"], "upload.confirmed")
    if confirmed > len(frame):
        raise InputError("agent state: the upload confirms more than its frame")
    target = _digest(raw["target"], "upload.target")
    if target is None:
        raise InputError("agent state: field 'upload.target' is not a digest")
    base = None if raw["base"] is None else Version.parse(raw["base"])
    return UploadState(upload_id, base, target, frame, kind, confirmed)
