"""The records messages carry: acknowledged versions, commands and their results, the agent's
budget state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from snapsync.errors import RemoteProtocolError
from snapsync.protocol.pacing import AHEAD, CREDIT, FLOOR, REPAYING, SPENT, UNPACED, WITHIN
from snapsync.protocol.readers import is_digest, is_int

# The pacer's reasons as they travel (`BudgetReport.reason`): a code is its index. New reasons
# go at the end; a code this side does not know reads as UNKNOWN_REASON, not as an error.
PACE_REASONS = (UNPACED, WITHIN, FLOOR, AHEAD, CREDIT, REPAYING, SPENT)
UNKNOWN_REASON = "unknown"
MAX_REASON = 127  # one msgpack byte; any code above is malformed
MAX_INTERVAL = 2**32  # seconds (136 years): an interval past it is reported as this


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


@dataclass(frozen=True)
class BudgetReport:
    """The agent's data budget as a ping reports it (`b`), for the server to show.

    `used` of `limit` bytes spent this period; `rate`: the pace in bytes per second (0: not
    paced, or the period is spent); `interval`: seconds between upload starts the pacer's
    latest decision gives, and `reason` why (PACE_REASONS). Whole numbers: a few bytes a ping.
    The agent builds it with `Budget.report`.
    """

    used: int
    limit: int
    rate: int = 0
    interval: int = 0
    reason: str = UNPACED

    def wire(self) -> list[int]:
        reason = PACE_REASONS.index(self.reason) if self.reason in PACE_REASONS else MAX_REASON
        return [self.used, self.limit, self.rate, self.interval, reason]

    @classmethod
    def parse(cls, raw: Any) -> BudgetReport:
        """Five non-negative integers; a longer list is read for its first five (room for later
        fields, which an older server ignores)."""
        if (
            not isinstance(raw, list)
            or len(raw) < 5
            or not all(is_int(value) for value in raw[:5])
            or raw[3] > MAX_INTERVAL
            or raw[4] > MAX_REASON
        ):
            raise RemoteProtocolError("malformed budget report")
        used, limit, rate, interval, code = raw[:5]
        reason = PACE_REASONS[code] if code < len(PACE_REASONS) else UNKNOWN_REASON
        return cls(used, limit, rate, interval, reason)
