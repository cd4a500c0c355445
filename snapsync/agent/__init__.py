"""The embeddable agent loop and its transports.

KubeCommandRunner (cluster actions with the `kubernetes` client) loads on first use, so agents
that never touch a cluster do not pay for importing the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from snapsync.agent.loop import Agent, StepReport, format_report, refuse_cluster_commands
from snapsync.agent.settings import AgentSettings
from snapsync.agent.state import StateDir
from snapsync.agent.transport import Answer, HttpTransport, Transport

if TYPE_CHECKING:
    from snapsync.agent.kube_commands import KubeCommandRunner

__all__ = [
    "Agent",
    "AgentSettings",
    "Answer",
    "HttpTransport",
    "KubeCommandRunner",
    "StateDir",
    "StepReport",
    "Transport",
    "format_report",
    "refuse_cluster_commands",
]


def __getattr__(name: str) -> Any:
    if name == "KubeCommandRunner":
        from snapsync.agent.kube_commands import KubeCommandRunner

        return KubeCommandRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
