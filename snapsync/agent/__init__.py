"""The embeddable agent loop and its transports.

Every name loads on first use (PEP 562): the command line reads the agent's settings on every
command, and should not pay for httpx and the agent loop unless it runs an agent; nor should an
agent that never touches a cluster pay for the `kubernetes` client (KubeCommandRunner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from snapsync.lazy import exports

if TYPE_CHECKING:
    from snapsync.agent.kube_commands import KubeCommandRunner
    from snapsync.agent.loop import Agent, StepReport, format_report, refuse_cluster_commands
    from snapsync.agent.settings import AgentSettings
    from snapsync.agent.state import StateDir
    from snapsync.agent.transport import Answer, HttpTransport, Transport

_LAZY = {
    "Agent": "snapsync.agent.loop",
    "AgentSettings": "snapsync.agent.settings",
    "Answer": "snapsync.agent.transport",
    "HttpTransport": "snapsync.agent.transport",
    "KubeCommandRunner": "snapsync.agent.kube_commands",
    "StateDir": "snapsync.agent.state",
    "StepReport": "snapsync.agent.loop",
    "Transport": "snapsync.agent.transport",
    "format_report": "snapsync.agent.loop",
    "refuse_cluster_commands": "snapsync.agent.loop",
}

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


__getattr__ = exports(__name__, _LAZY)
