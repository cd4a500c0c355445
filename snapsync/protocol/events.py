"""What the agent state machine tells its embedding loop (logs, metrics, actions to take)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from snapsync.protocol.messages import Command, Version


@dataclass(frozen=True)
class Event:
    """Base of every protocol event."""


@dataclass(frozen=True)
class Acked(Event):
    """The server stored the upload's target as `version`."""

    version: Version
    kind: str  # delta, patch-from or full
    frame_bytes: int
    candidates: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BaseUnknown(Event):
    """The server no longer holds the base of the upload: the next one uses another, or none."""

    base: Version | None


@dataclass(frozen=True)
class UploadRejected(Event):
    """The server refused the frame as unusable; the next upload is a full snapshot."""

    reason: str


@dataclass(frozen=True)
class BudgetDeferred(Event):
    """An upload does not fit the data budget now: it waits until `until`, when the pace has
    accrued what it costs or the next period starts (pings go on)."""

    needed: int
    remaining: int
    until: float


@dataclass(frozen=True)
class BackingOff(Event):
    until: float
    reason: str


@dataclass(frozen=True)
class AuthRejected(Event):
    """The server refused our credentials: a configuration problem a person must fix."""

    reason: str


@dataclass(frozen=True)
class PeerMisbehaved(Event):
    """The server answered outside the protocol (or the link damaged the answer)."""

    reason: str


@dataclass(frozen=True)
class CollectRequested(Event):
    """The server asked for a collection now (collect-now, full-snapshot)."""

    command_id: int


@dataclass(frozen=True)
class CommandReceived(Event):
    """A command for the embedding code to run; report it with `command_finished`."""

    command: Command
