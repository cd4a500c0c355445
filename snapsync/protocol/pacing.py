"""Pacing a data budget: it accrues through the period, so freshness degrades and never stalls.

The rule (the `paced` policy of snapsync.protocol.budget). Of a period's budget B, the reserve R
is kept for pings and command results; the rest, B' = B - R, goes into a bucket that holds at
most the burst cap C: an opening O (1% of B') when the period starts, then the pace
r = (B' - O) / period, continuously. Every byte sent (uploads, pings, command results) is taken
from the bucket; bytes it cannot hold are forfeited, and a new period starts it afresh (last
period's savings are not this period's bytes). So at any time t of a period the bucket holds at
most O + r x (t - start) - used: an upload the bucket covers keeps the period's bytes within
O + r x period = B'. The bucket goes below zero only on credit (below), and the budget's hard
check stays in force whatever the bucket says: an upload is sent only if the period's bytes stay
within B' with it, a ping only if they stay within B. The period's bytes never exceed the
budget, and the hard check binds only after credit.

A new upload (not a continuation of one already started) may start:

- *within pace*: the bucket holds its whole cost, and `floor` has passed since the previous start.
  Demand below the pace never waits.
- *ahead of pace*: when it does not, the upload waits until the bucket covers it. Meanwhile new
  collections replace it (the delta against the acknowledged base collapses repeated changes),
  so uploads come less often and each carries more; no backlog is queued.
- *on credit*: once `ceiling` has passed since the previous start and the bucket is not in debt,
  the upload goes even though the bucket does not cover it; the bucket dips below zero and
  accrual repays the debt before the next credit. This bounds the interval by the ceiling while
  no debt is being repaid, and it is the way through for the first full snapshot and a
  week-offline catch-up: the bucket is out of debt (it refills while nothing is sent) and the
  last start long ago (or never), so they go at once, as long as the period's remaining budget
  carries them (else at the next period: this one could not). Under churn no interval can
  carry, uploads come as each debt is repaid: spaced by what they cost at the pace, never
  stopped.

Why a token bucket rather than the straight line "spent by now <= B' x elapsed share" alone: the
line lets a quiet three weeks save the whole month for one afternoon; the cap bounds what a
burst draws beyond the pace to C. Its price is the forfeited savings, not the pace (only the
opening is taken from it). Why credit: an upload can exceed any sensible C (a full snapshot
after the agent lost its state, a catch-up), and waiting for tokens the bucket can never hold
would stall for good.

Pure and sans-IO: bytes and seconds in, a decision out; the budget module owns the period
arithmetic and passes the pace in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Why an upload waits or goes: the reasons a Pace gives, as the log line shows them.
UNPACED = "fixed window"  # the fixed-window policy, or no budget: only the period's total binds
WITHIN = "within pace"
FLOOR = "floor"  # the bucket covers it, but the previous upload started less than `floor` ago
AHEAD = "ahead of pace"  # waiting for the bucket to cover it
CREDIT = "ceiling, on credit"  # goes at the ceiling although the bucket does not cover it
REPAYING = "repaying credit"  # the bucket is in debt: nothing new starts until it is repaid
SPENT = "period spent"  # the period's budget cannot carry it: the next period

# Accrual is computed in floating point; an upload whose cost the bucket covers to within this
# many bytes goes (the hard check on whole bytes is what keeps the budget).
SLACK = 1e-3


@dataclass(frozen=True)
class Pace:
    """What the pacer decided for an upload of `need` bytes: when it may start, and why.

    `interval`: the spacing between upload starts this decision gives (seconds since the
    previous start, at `ready_at`; 0 for the first). `rate`: the pace in bytes per second
    (0: unpaced). `tokens`: the bucket now (negative: credit being repaid)."""

    reason: str
    ready_at: float
    interval: float
    need: int
    rate: float
    tokens: float

    def describe(self) -> str:
        """`interval 4m10s (ahead of pace: 12,345 B at 183 B/s, bucket 2,100 B)`, for the log."""
        text = f"interval {_duration(self.interval)} ({self.reason}"
        if self.rate:
            text += f": {self.need:,} B at {self.rate:,.0f} B/s, bucket {self.tokens:,.0f} B"
        return text + ")"


@dataclass
class TokenBucket:
    """Bytes the pace has accrued and not spent; `stamp`: the time it was accrued to."""

    capacity: float
    tokens: float
    stamp: float | None = None

    def accrue(self, now: float, rate: float) -> None:
        """Fill at `rate` bytes per second up to `now`, never above the capacity."""
        if self.stamp is not None and now > self.stamp and self.tokens < self.capacity:
            self.tokens = min(self.capacity, self.tokens + rate * (now - self.stamp))
        if self.stamp is None or now > self.stamp:
            self.stamp = now

    def take(self, size: float) -> None:
        """Spend (or, negative, refund) `size` bytes; a refund never fills past the capacity."""
        self.tokens = min(self.capacity, self.tokens - size)


@dataclass(frozen=True)
class Window:
    """The pacer's knobs as the budget resolved them for the current period."""

    rate: float  # bytes per second
    floor: float  # seconds between upload starts, at least
    ceiling: float  # seconds after which an upload goes on credit


@dataclass(frozen=True)
class Cost:
    """What a new upload is expected to take from the bucket, by when it starts: `warm` while
    the connection the agent holds is expected open (until `closes`), `cold` after it (the
    server closed the idle connection: TCP set-up and a TLS handshake again, see
    snapsync.protocol.metering). The pacer plans with the cost at the start it chooses, so an
    interval stretched past the server's keep-alive is an interval that pays a reconnect."""

    warm: int
    cold: int
    closes: float = math.inf
    most: int = 0  # the most it can cost (the budget's hard check); 0: the cold cost

    @classmethod
    def flat(cls, need: int) -> Cost:
        """The same whenever it starts (no connection to keep, or the cost is not known)."""
        return cls(need, need)

    @property
    def bound(self) -> int:
        """The most it can cost: what the budget's hard check counts."""
        return self.most or max(self.warm, self.cold)

    def at(self, when: float) -> int:
        return self.warm if when <= self.closes else self.cold


def schedule(
    bucket: TokenBucket, cost: Cost, now: float, window: Window, last_start: float | None
) -> Pace:
    """When a new upload may start, given the bucket accrued to `now`.

    The earliest of: the bucket covers it (not before the floor), or the ceiling has passed and
    the bucket is out of debt (credit). A bucket that can never hold it leaves only credit. Its
    cost is the warm one if that start comes while the connection is open, else the cold one:
    planned warm, a start past `cost.closes` is planned again at the cold cost.
    """
    pace = _schedule(bucket, cost.at(now), now, window, last_start)
    if pace.ready_at <= cost.closes or pace.need == cost.cold:
        return pace
    return _schedule(bucket, cost.cold, now, window, last_start)


def _schedule(
    bucket: TokenBucket, need: int, now: float, window: Window, last_start: float | None
) -> Pace:
    tokens, rate = bucket.tokens, window.rate
    since = -math.inf if last_start is None else last_start
    floor_at = since + window.floor
    if tokens + SLACK >= need:
        ready, reason = max(now, floor_at), WITHIN if now >= floor_at else FLOOR
    else:
        covered_at = now + (need - tokens) / rate if need <= bucket.capacity else math.inf
        repaid_at = now + max(0.0, -tokens) / rate
        credit_at = max(since + window.ceiling, repaid_at, floor_at, now)
        # In debt, nothing new starts before the debt is repaid, whatever waits (or nothing).
        if covered_at <= credit_at:
            ready, reason = max(covered_at, floor_at), REPAYING if tokens < 0 else AHEAD
        else:
            ready, reason = credit_at, REPAYING if tokens < 0 else CREDIT
    interval = 0.0 if last_start is None else ready - last_start
    return Pace(reason, ready, interval, need, rate, tokens)


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "unbounded"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
