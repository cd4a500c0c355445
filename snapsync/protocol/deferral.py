"""The agent's "waiting for budget" phase: whether work may go now, and when it next may.

The budget (snapsync.protocol.budget) answers for one request; this keeps what the agent needs
between answers: the bytes held back (which pings report), when the budget says they may go
(so the agent wakes then, not only at its next snapshot or ping), and the pacer's latest
decision (the interval in use and why, for the log line and StepReport).

Rules the agent relies on:
- Later chunks of an upload in progress never wait for the pace (`continuing`): the pace spaces
  upload starts; a half-sent upload only holds the server's partial state longer.
- A held-back upload is not queued: a newer snapshot replaces it (the agent's coalescing), and
  the replacement is asked about afresh, so the wait is always for the newest change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from snapsync.protocol.budget import Budget
from snapsync.protocol.events import BudgetDeferred, Event
from snapsync.protocol.pacing import Cost, Pace


@dataclass
class BudgetGate:
    budget: Budget
    waiting: int = 0  # bytes of work held back by the budget (0: nothing waits)
    ready_at: float = math.inf  # when the held-back work may go, as the budget tells now
    pace: Pace | None = None  # the pacer's latest decision on a new upload

    def admit(
        self, cost: Cost, now: float, *, size: int, continuing: bool, events: list[Event]
    ) -> bool:
        """Whether an upload request costing `cost` (at most `cost.bound`; its frame: `size`
        bytes; snapsync.protocol.metering) may go now. If not, it waits; a BudgetDeferred
        event in `events` says so once per upload held back."""
        need = cost.bound
        if not continuing:
            self.pace = self.budget.pace(need, now, cost)
        if self.budget.allows(need, now, essential=False, continuing=continuing, cost=cost):
            self.clear()
            return True
        ready_at = self.budget.ready_at(need, now, cost)
        if self.waiting != size:
            remaining = self.budget.remaining(now) or 0
            events.append(BudgetDeferred(needed=need, remaining=remaining, until=ready_at))
        self.waiting, self.ready_at = size, ready_at
        return False

    def hold(self, need: int, now: float, waiting: int) -> bool:
        """Whether a request costing `need` that leads to an upload may go now (a
        reconciliation question); if not, `waiting` bytes are reported held back."""
        if self.budget.allows(need, now, essential=False):
            return True
        self.waiting, self.ready_at = waiting, self.budget.ready_at(need, now)
        return False

    def clear(self) -> None:
        self.waiting, self.ready_at = 0, math.inf
