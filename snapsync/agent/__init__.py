"""The embeddable agent loop and its transports."""

from snapsync.agent.loop import Agent, StepReport, format_report, refuse_cluster_commands
from snapsync.agent.state import StateDir
from snapsync.agent.transport import Answer, HttpTransport, Transport

__all__ = [
    "Agent",
    "Answer",
    "HttpTransport",
    "StateDir",
    "StepReport",
    "Transport",
    "format_report",
    "refuse_cluster_commands",
]
