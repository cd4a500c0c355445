"""The commands a server may queue, and the shape of their arguments.

A small, safe set: two the protocol handles itself (a full snapshot, a collection now) and three
cluster actions the agent runs with whatever RBAC the user granted it. Anything else is refused
with a reported error, never guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from snapsync.protocol.messages import Command

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
