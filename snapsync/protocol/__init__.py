"""The sync protocol: agent and server state machines that never touch a socket or a clock."""

from snapsync.protocol.agent import AgentConfig, AgentProtocol, Request
from snapsync.protocol.budget import BudgetConfig
from snapsync.protocol.memory import MemoryStore
from snapsync.protocol.messages import Command, CommandResult, Version
from snapsync.protocol.schedule import Intervals
from snapsync.protocol.server import Reply, ServerConfig, ServerProtocol, VersionStore

__all__ = [
    "AgentConfig",
    "AgentProtocol",
    "BudgetConfig",
    "Command",
    "CommandResult",
    "Intervals",
    "MemoryStore",
    "Reply",
    "Request",
    "ServerConfig",
    "ServerProtocol",
    "Version",
    "VersionStore",
]
