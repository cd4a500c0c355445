"""What the agent's exchanges cost on the link, charged to its data budget.

A request is charged its allowance (its body, the overhead budgeted per exchange, the largest
answer) when it is handed out, and settled to what it cost when it ends, so a crash in between
leaves the budget charged, never short. Where the transport counts the wire, the budget is
charged what it counted, and each exchange is budgeted for the largest overhead seen; before the
first count, for a new connection. What crossed the link is reported to the server (Ping/Chunk
`spent`) until an answer confirms the report.
"""

from __future__ import annotations

from snapsync.protocol.budget import Budget
from snapsync.protocol.request import Request


class Meter:
    def __init__(
        self, budget: Budget, overhead: int, connect_allowance: int, wire_counted: bool
    ) -> None:
        self.budget = budget
        self.estimate = overhead  # beyond the bodies, when the transport counts nothing
        # budgeted per exchange beyond its bodies; grows to the largest overhead counted
        self.overhead = overhead + (connect_allowance if wire_counted else 0)
        self.unreported = 0  # wire bytes not yet reported to the server
        self._counted = False
        self._reserved_in = 0.0  # the budget period the request in flight was charged in

    def charge(self, request: Request, now: float) -> None:
        self.budget.spend(request.allowance, now)
        self._reserved_in = self.budget.period_started

    def settle(self, request: Request, received: int, now: float, wire: int | None) -> None:
        """The exchange ended, `received` answer bytes; `wire`: what the transport counted."""
        cost = len(request.body) + received + self.estimate if wire is None else wire
        self.unreported += cost
        self.budget.roll(now)
        if self.budget.period_started == self._reserved_in:
            cost -= request.allowance  # settle what `charge` charged
        self.budget.spend(cost, now)

    def counted(self, beyond_bodies: int) -> None:
        """Budget each exchange for the most one has cost beyond its bodies (a reconnect's
        handshake included), once the transport has counted real ones."""
        if not self._counted:
            self._counted = True
            self.overhead = self.estimate
        self.overhead = max(self.overhead, beyond_bodies)

    def reported(self, spent: int | None) -> None:
        """The server answered a request that reported `spent`."""
        self.unreported = max(0, self.unreported - (spent or 0))
