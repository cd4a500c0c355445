"""The commands a server may queue, and the shape of their arguments.

A small, safe set: two the protocol handles itself (a full snapshot, a collection now) and three
cluster actions the agent runs with whatever RBAC the user granted it. Anything else is refused
with a reported error, never guessed at. `Ledger` keeps the agent's side: what it received, what
runs, and the results the server has not confirmed yet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from snapsync.errors import LocalProtocolError
from snapsync.protocol.messages import Command, CommandResult

PROTOCOL_COMMANDS = frozenset({"full-snapshot", "collect-now"})
OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")

# name -> {argument: allowed values ("name" = a DNS-1123 name, "count" = an integer 0..10000)}
COMMANDS: Mapping[str, Mapping[str, Any]] = {
    "full-snapshot": {},
    "collect-now": {},
    "scale": {
        "kind": ("Deployment", "StatefulSet", "ReplicaSet"),
        "namespace": "name",
        "name": "name",
        "replicas": "count",
    },
    "delete-pod": {"namespace": "name", "name": "name"},
    "restart-rollout": {
        "kind": ("Deployment", "StatefulSet", "DaemonSet"),
        "namespace": "name",
        "name": "name",
    },
}


def validate_command(command: Command) -> str:
    """'' when the command is known and well-formed, else why it is refused."""
    spec = COMMANDS.get(command.name)
    if spec is None:
        return f"unknown command {command.name!r}"
    extra = sorted(set(command.args) - set(spec))
    if extra:
        return f"{command.name}: unexpected argument(s) {', '.join(map(str, extra))}"
    for arg, allowed in spec.items():
        if arg not in command.args:
            return f"{command.name}: missing argument {arg!r}"
        value = command.args[arg]
        if allowed == "name":
            ok = isinstance(value, str) and OBJECT_NAME.fullmatch(value) is not None
        elif allowed == "count":
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10_000
        else:
            ok = value in allowed
        if not ok:
            return f"{command.name}: bad value for {arg!r}: {value!r}"
    return ""


@dataclass
class Ledger:
    """The agent's side of commands, each executed at most once.

    The cursor (the highest id received) moves before a command is handed out, and the caller
    persists it before the command runs; a command seen running at a restart is reported as
    interrupted, never run again. Results wait here until a ping that carried them is answered.
    """

    cursor: int = 0
    running: set[int] = field(default_factory=set)
    results: list[CommandResult] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        """A command runs or a result waits: the agent pings more often."""
        return bool(self.results or self.running)

    def admit(self, command: Command) -> bool:
        """A command from a pong is new and well-formed; a refused one leaves its result."""
        if command.id <= self.cursor:
            return False  # delivered again: at most once
        self.cursor = command.id
        problem = validate_command(command)
        if problem:
            self.results.append(CommandResult(command.id, False, problem))
        return not problem

    def finished(self, result: CommandResult) -> None:
        if result.id not in self.running:
            raise LocalProtocolError(f"command {result.id} is not running")
        self.running.discard(result.id)
        self.results.append(result)

    def delivered(self, sent: Iterable[CommandResult]) -> None:
        """A ping carrying these results was answered."""
        ids = {r.id for r in sent}
        self.results = [r for r in self.results if r.id not in ids]

    def restarted(self, running: Iterable[int]) -> None:
        """Commands that were running when the agent stopped: reported, not run again."""
        for command_id in running:
            self.results.append(
                CommandResult(
                    command_id, False, "interrupted: the agent restarted while running it"
                )
            )
