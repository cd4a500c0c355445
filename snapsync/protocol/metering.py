"""What the agent's exchanges cost on the link, charged to its data budget.

A request is charged its allowance (its body, the overhead budgeted per exchange, the largest
answer) when it is handed out, and settled to what it cost when it ends, so a crash in between
leaves the budget charged, never short. Where the transport counts the wire, the budget is
charged what it counted, and each exchange is budgeted for the largest overhead seen; before the
first count, for a new connection. What crossed the link is reported to the server (Ping/Chunk
`spent`) until an answer confirms the report.

What the pacer plans with (`cost`) is finer than that worst case: an exchange on the connection
the transport keeps costs the most a kept-alive one has cost (`warm`), one after the server has
closed it costs the most a new connection has cost (`cold`: TCP set-up and a TLS handshake, ~1.5
kB more; snapsync.sim.link.RECONNECT). The agent takes the connection to be open until
`keep_alive` seconds after the last answer (AgentConfig.keep_alive: the server's idle keep-alive,
`snapsync serve --keep-alive`, 150 s by default) and closed after a failed exchange, and learns
each figure from the exchanges it classed so. An interval the pacer stretches past the
keep-alive is planned at the cold cost. A wrong assumption moves only the plan: the allowance
above, which the budget's hard check uses, is the most any exchange has cost either way.
"""

from __future__ import annotations

import math

from snapsync.protocol.budget import Budget
from snapsync.protocol.pacing import Cost
from snapsync.protocol.request import AgentConfig, Request


class Meter:
    def __init__(
        self,
        budget: Budget,
        overhead: int,
        connect_allowance: int,
        wire_counted: bool,
        keep_alive: float = math.inf,
    ) -> None:
        self.budget = budget
        self.estimate = overhead  # beyond the bodies, when the transport counts nothing
        # budgeted per exchange beyond its bodies; grows to the largest overhead counted
        self.overhead = overhead + (connect_allowance if wire_counted else 0)
        self.unreported = 0  # wire bytes not yet reported to the server
        self.keep_alive = keep_alive
        self.open_until = -math.inf  # the connection is taken to be open until then
        # planned beyond the bodies on a kept-alive / a new connection, until counted
        self.warm, self.cold = overhead, self.overhead
        self._counted = False
        self._counted_warm = self._counted_cold = False
        self._charged_cold = True  # the request in flight went on a new connection
        self._reserved_in = 0.0  # the budget period the request in flight was charged in

    @classmethod
    def for_agent(cls, budget: Budget, config: AgentConfig, wire_counted: bool) -> Meter:
        return cls(
            budget, config.overhead, config.connect_allowance, wire_counted, config.keep_alive
        )

    def charge(self, request: Request, now: float) -> None:
        self.budget.spend(request.allowance, now)
        self._reserved_in = self.budget.period_started
        self._charged_cold = now > self.open_until

    def settle(self, request: Request, received: int, now: float, wire: int | None) -> None:
        """The exchange ended, `received` answer bytes (the connection is kept open until a
        `dropped`); `wire`: what the transport counted."""
        cost = len(request.body) + received + self.estimate if wire is None else wire
        self.unreported += cost
        self.open_until = now + self.keep_alive
        self.budget.roll(now)
        if self.budget.period_started == self._reserved_in:
            cost -= request.allowance  # settle what `charge` charged
        self.budget.spend(cost, now)

    def dropped(self) -> None:
        """The exchange failed: the next one opens a new connection."""
        self.open_until = -math.inf

    def counted(self, beyond_bodies: int) -> None:
        """Budget each exchange for the most one has cost beyond its bodies (a reconnect's
        handshake included), once the transport has counted real ones; plan a kept-alive or a
        new connection at the most one of its kind has cost."""
        if not self._counted:
            self._counted = True
            self.overhead = self.estimate
        self.overhead = max(self.overhead, beyond_bodies)
        if self._charged_cold:
            self.cold = max(self.cold, beyond_bodies) if self._counted_cold else beyond_bodies
            self._counted_cold = True
        else:
            self.warm = max(self.warm, beyond_bodies) if self._counted_warm else beyond_bodies
            self._counted_warm = True

    def cost(self, bodies: int) -> Cost:
        """What an exchange with `bodies` bytes of request and answer is planned to cost, by
        when it starts, and its allowance (`most`: `bodies` + `overhead`)."""
        warm, cold = min(self.warm, self.overhead), min(self.cold, self.overhead)
        most = bodies + self.overhead
        return Cost(bodies + warm, bodies + max(warm, cold), self.open_until, most)

    def reported(self, spent: int | None) -> None:
        """The server answered a request that reported `spent`."""
        self.unreported = max(0, self.unreported - (spent or 0))
