"""What the agent persists between runs: everything a restart needs besides the snapshots.

The embedding code writes `export_state` beside the snapshots `snapshots_to_keep` names (see
snapsync.agent.state) after every exchange, and a new process resumes with `restore_state`: the
acknowledged bases, the latest snapshot, an upload in progress, the command ledger, the budget
spent and the bytes not yet reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from snapsync.canonical.snapshot import Snapshot
from snapsync.protocol.messages import CommandResult, Version
from snapsync.protocol.upload import Upload

if TYPE_CHECKING:
    from snapsync.protocol.agent import AgentProtocol


def export_state(agent: AgentProtocol) -> dict[str, Any]:
    """Everything a restart needs besides the snapshots themselves (msgpack-able)."""
    upload = agent.upload
    return {
        "bases": [v.wire() for v, _ in agent.bases],
        "latest": agent.latest.digest if agent.latest is not None else None,
        "upload": None
        if upload is None
        else {
            "id": upload.id,
            "base": upload.base.wire() if upload.base else None,
            "target": upload.target.digest,
            "frame": upload.frame,
            "kind": upload.kind,
            "confirmed": upload.confirmed,
        },
        "need_full": agent.need_full,
        "cursor": agent.commands.cursor,
        "running": sorted(agent.commands.running),
        "results": [r.wire() for r in agent.commands.results],
        "budget": [agent.budget.period_started, agent.budget.used],
        "unreported": agent.meter.unreported,
    }


def snapshots_to_keep(agent: AgentProtocol) -> Iterable[Snapshot]:
    """The snapshots `export_state` refers to, which the caller persists beside it."""
    seen: dict[bytes, Snapshot] = {s.digest: s for _, s in agent.bases}
    if agent.latest is not None:
        seen[agent.latest.digest] = agent.latest
    if agent.upload is not None:
        seen[agent.upload.target.digest] = agent.upload.target
    return seen.values()


def restore_state(
    agent: AgentProtocol, state: dict[str, Any], snapshots: dict[bytes, Snapshot]
) -> None:
    """Resume from `export_state` output; commands seen running are reported interrupted."""
    for raw in state.get("bases", []):
        version = Version.parse(raw)
        if version.digest in snapshots:
            agent.bases.remember(version, snapshots[version.digest])
    latest = state.get("latest")
    agent.latest = snapshots.get(latest) if latest else None
    upload = state.get("upload")
    if upload and upload["target"] in snapshots:
        agent.upload = Upload(
            id=upload["id"],
            base=Version.parse(upload["base"]) if upload["base"] else None,
            target=snapshots[upload["target"]],
            frame=upload["frame"],
            kind=upload["kind"],
            candidates={upload["kind"]: len(upload["frame"])},
            confirmed=upload["confirmed"],
        )
    agent.need_full = bool(state.get("need_full", False))
    agent.commands.cursor = int(state.get("cursor", 0))
    agent.commands.results = [CommandResult.parse(r) for r in state.get("results", [])]
    agent.commands.restarted(state.get("running", []))
    period_started, used = state.get("budget", [0.0, 0])
    agent.budget.period_started, agent.budget.used = float(period_started), int(used)
    agent.meter.unreported = int(state.get("unreported", 0))
