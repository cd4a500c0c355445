"""The sync protocol: agent and server state machines that never touch a socket or a clock.

The names below load on first use (PEP 562): importing one module of the protocol (the budget
for a command line option's default, the messages for a size) does not build both state
machines and the codec they drive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from snapsync.lazy import exports

if TYPE_CHECKING:
    from snapsync.protocol.agent import AgentProtocol
    from snapsync.protocol.budget import BudgetConfig
    from snapsync.protocol.memory import MemoryStore
    from snapsync.protocol.messages import Command, CommandResult, Version
    from snapsync.protocol.request import AgentConfig, Request
    from snapsync.protocol.schedule import Intervals
    from snapsync.protocol.server import Reply, ServerConfig, ServerProtocol, VersionStore

_LAZY = {
    "AgentConfig": "snapsync.protocol.request",
    "AgentProtocol": "snapsync.protocol.agent",
    "BudgetConfig": "snapsync.protocol.budget",
    "Command": "snapsync.protocol.messages",
    "CommandResult": "snapsync.protocol.messages",
    "Intervals": "snapsync.protocol.schedule",
    "MemoryStore": "snapsync.protocol.memory",
    "Reply": "snapsync.protocol.server",
    "Request": "snapsync.protocol.request",
    "ServerConfig": "snapsync.protocol.server",
    "ServerProtocol": "snapsync.protocol.server",
    "Version": "snapsync.protocol.messages",
    "VersionStore": "snapsync.protocol.server",
}

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


__getattr__ = exports(__name__, _LAZY)
