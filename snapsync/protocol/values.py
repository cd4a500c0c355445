"""The records messages carry: acknowledged versions, commands and their results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from snapsync.errors import RemoteProtocolError
from snapsync.protocol.readers import is_digest, is_int


@dataclass(frozen=True, order=True)
class Version:
    """A snapshot version the server acknowledged: its sequence and digest."""

    seq: int
    digest: bytes

    def wire(self) -> list[Any]:
        return [self.seq, self.digest]

    @classmethod
    def parse(cls, raw: Any) -> Version:
        if (
            not isinstance(raw, list)
            or len(raw) != 2
            or not is_int(raw[0])
            or not is_digest(raw[1])
        ):
            raise RemoteProtocolError("malformed version")
        return cls(raw[0], raw[1])


@dataclass(frozen=True)
class Command:
    """An action the server queued for the agent; ids grow monotonically per environment."""

    id: int
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def wire(self) -> list[Any]:
        return [self.id, self.name, dict(self.args)]

    @classmethod
    def parse(cls, raw: Any) -> Command:
        if (
            not isinstance(raw, list)
            or len(raw) != 3
            or not is_int(raw[0])
            or not isinstance(raw[1], str)
            or not isinstance(raw[2], dict)
        ):
            raise RemoteProtocolError("malformed command")
        return cls(raw[0], raw[1], raw[2])


@dataclass(frozen=True)
class CommandResult:
    id: int
    ok: bool
    message: str = ""

    def wire(self) -> list[Any]:
        return [self.id, self.ok, self.message]

    @classmethod
    def parse(cls, raw: Any) -> CommandResult:
        if (
            not isinstance(raw, list)
            or len(raw) != 3
            or not is_int(raw[0])
            or not isinstance(raw[1], bool)
            or not isinstance(raw[2], str)
        ):
            raise RemoteProtocolError("malformed command result")
        return cls(raw[0], raw[1], raw[2])
