"""The data budget: bytes per period, counted on everything sent and received.

The budget is checked before a request goes out, against the request and the largest answer it
can bring back, so it is never exceeded. Pings and command results may use a small reserve the
uploads may not touch (so the server still sees the site alive and the delta held back). Periods
are fixed windows: whole days (UTC), calendar months (UTC), or N seconds counted from the epoch.

Two policies decide when an upload goes within the period (`paced` by default: a busy week
should cost freshness, never blindness):
- `fixed`: whenever the period's remaining budget carries it. A busy week early in the month
  spends the month, and the server then sees nothing new until the next one.
- `paced`: the budget accrues through the period and a burst may draw on what accrued, up to a
  cap (snapsync.protocol.pacing has the rule and why it never exceeds the budget). Freshness
  degrades as churn grows, and uploads never stop while the budget accrues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from snapsync.errors import InputError
from snapsync.protocol.pacing import SPENT, UNPACED, Cost, Pace, TokenBucket, Window, schedule
from snapsync.protocol.values import MAX_INTERVAL, BudgetReport

DAY = 86_400
POLICIES = ("fixed", "paced")
# The default burst cap: a day of the period's pace (a quarter of periods of a day or less).
BURST_DAYS = 1
# Each period opens with this share of its upload budget in the bucket (at most the burst cap),
# which the pace gives back over the period: a full snapshot at 10,000 objects (1.1 MB) at the
# start of a 500 MB month goes at once without leaving the bucket in debt.
OPENING = 0.01


@dataclass(frozen=True)
class BudgetConfig:
    """A data budget and how it is spent through its period.

    Paced defaults suit a monthly SIM: savings of up to a day's budget for a burst (15 MB of
    500 MB a month), an upload at most every 10 s and, while churn runs ahead of the pace, at
    least every 15 min unless credit is being repaid (snapsync.protocol.pacing).
    """

    limit: int = 0  # bytes per period; 0 = unlimited
    period: str = "month"  # "day", "month", or a number of seconds
    reserve: float = 0.05  # share of the limit kept for pings and command results
    policy: str = "paced"  # "paced" or "fixed" (module docstring)
    burst: int | None = None  # paced: the bucket's capacity in bytes; None: BURST_DAYS' pace
    interval_floor: float = 10.0  # paced: seconds between upload starts, at least
    interval_ceiling: float = 900.0  # paced: after this long an upload may go on credit

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise InputError("data budget must be a positive number of bytes (0: unlimited)")
        if not 0 <= self.reserve < 1:
            raise InputError("budget reserve must be a fraction between 0 and 1")
        period_start(self.period, 0.0)
        if self.policy not in POLICIES:
            raise InputError(f"budget policy {self.policy!r}: expected fixed or paced")
        if self.burst is not None and self.burst <= 0:
            raise InputError("budget burst cap must be a positive number of bytes")
        if self.interval_floor < 0:
            raise InputError("upload interval floor must be zero or more seconds")
        if self.interval_ceiling <= 0:
            raise InputError("upload interval ceiling must be a positive number of seconds")
        if self.interval_ceiling < self.interval_floor:
            raise InputError(
                f"upload interval ceiling ({self.interval_ceiling:g} s) is below its floor "
                f"({self.interval_floor:g} s)"
            )
        if self.limit and self.burst_bytes > self.uploads_limit:
            raise InputError(
                f"budget burst cap ({self.burst_bytes:,} B) is larger than the budget less its "
                f"reserve ({self.uploads_limit:,} B)"
            )

    @property
    def uploads_limit(self) -> int:
        """Bytes per period uploads may use: the limit less the reserve."""
        return self.limit - int(self.limit * self.reserve)

    @property
    def opening_bytes(self) -> int:
        """Paced: what the bucket holds when a period opens (OPENING)."""
        return min(self.burst_bytes, int(self.uploads_limit * OPENING))

    @property
    def burst_bytes(self) -> int:
        if self.burst is not None:
            return self.burst
        share = min(0.25, BURST_DAYS * DAY / longest_period(self.period))
        return int(self.uploads_limit * share)

    def check_pings(self, every: float, cost: int) -> None:
        """Refuse a budget that cannot pay for a ping of `cost` bytes every `every` seconds
        (paced: out of its pace, which pings share with uploads)."""
        if not self.limit:
            return
        seconds = longest_period(self.period)
        payable = self.limit
        if self.policy == "paced":
            payable = self.uploads_limit
        if payable * every < cost * seconds:
            raise InputError(
                f"data budget of {self.limit:,} B per {self.period} does not pay for a ping "
                f"every {every:g} s (~{cost:,} B each, {cost * seconds / every:,.0f} B per "
                f"period{' at its pace' if self.policy == 'paced' else ''}): raise the budget "
                "or the ping interval"
            )


def longest_period(period: str) -> float:
    """The longest a period can last, in seconds (a month: 31 days)."""
    if period == "day":
        return DAY
    if period == "month":
        return 31 * DAY
    return period_end(period, 0.0)


def period_start(period: str, now: float) -> float:
    """Start of the period containing `now` (seconds since the epoch)."""
    if period == "day":
        return now - now % DAY
    if period == "month":
        moment = datetime.fromtimestamp(now, UTC)
        return datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()
    try:
        seconds = float(period)
    except ValueError:
        raise InputError(f"budget period {period!r}: expected day, month or seconds") from None
    if seconds <= 0:
        raise InputError("budget period must be positive")
    return now - now % seconds


def period_end(period: str, now: float) -> float:
    """End of the period containing `now` (the start of the next one)."""
    if period == "day":
        return period_start(period, now) + DAY
    if period == "month":
        moment = datetime.fromtimestamp(now, UTC)
        year, month = divmod(moment.year * 12 + moment.month, 12)
        return datetime(year, month + 1, 1, tzinfo=UTC).timestamp()
    return period_start(period, now) + float(period)


@dataclass
class Budget:
    """Mutable meter for one period, and the pacer's bucket (rebuilt from `used` after a restart).

    Under the paced policy, `allows` answering yes for a new upload (not essential, not
    `continuing` one already started) counts as that upload's start: the caller sends it.
    """

    config: BudgetConfig
    period_started: float = 0.0
    used: int = 0
    bucket: TokenBucket = field(init=False)
    last_start: float | None = None  # when the latest upload started (allows said yes)

    def __post_init__(self) -> None:
        self.bucket = TokenBucket(capacity=float(self.config.burst_bytes), tokens=0.0)

    def roll(self, now: float) -> None:
        start = period_start(self.config.period, now)
        if start != self.period_started:
            self.period_started = start
            self.used = 0

    @property
    def unlimited(self) -> bool:
        return self.config.limit == 0

    @property
    def paced(self) -> bool:
        return self.config.policy == "paced" and not self.unlimited

    def remaining(self, now: float) -> int | None:
        self.roll(now)
        return None if self.unlimited else max(0, self.config.limit - self.used)

    def allows(
        self,
        size: int,
        now: float,
        *,
        essential: bool,
        continuing: bool = False,
        cost: Cost | None = None,
    ) -> bool:
        """Whether `size` bytes may go now; non-essential traffic may not touch the reserve,
        and under the paced policy a new upload waits for the pace (`pace`).

        `size` is the most the request can cost (the hard check); `cost` what the pacer plans
        with (default: `size`)."""
        if not self.fits(size, now, essential=essential):
            return False
        if essential or continuing:
            return True
        if self.paced and self._schedule(cost or Cost.flat(size), now).ready_at > now:
            return False
        self.last_start = now
        return True

    def fits(self, size: int, now: float, *, essential: bool) -> bool:
        """Whether `size` bytes fit in what is left of the period (the hard check)."""
        self.roll(now)
        return self.unlimited or self.used + size <= self._ceiling(essential)

    def ever_allows(self, size: int, *, essential: bool) -> bool:
        """Whether `size` bytes fit in a whole period: if not, waiting for one is pointless."""
        return self.unlimited or size <= self._ceiling(essential)

    def _ceiling(self, essential: bool) -> int:
        return self.config.limit if essential else self.config.uploads_limit

    def spend(self, size: int, now: float) -> None:
        """Charge `size` bytes (negative: settle a charge that was too high)."""
        if self.paced:
            self._accrue(now)
            self.bucket.take(size)
        self.roll(now)
        self.used += size

    def next_period(self, now: float) -> float:
        """When the current period ends."""
        return period_end(self.config.period, now)

    def pace(self, size: int, now: float, cost: Cost | None = None) -> Pace:
        """When a new upload of at most `size` bytes (planned at `cost`, default `size`) may
        start, and why (for the log line)."""
        if not self.fits(size, now, essential=False):
            return Pace(SPENT, self.next_period(now), self._since(now), size, 0.0, 0.0)
        if not self.paced:
            return Pace(UNPACED, now, self._since(now), size, 0.0, 0.0)
        return self._schedule(cost or Cost.flat(size), now)

    def report(self, need: int, now: float) -> BudgetReport | None:
        """The state a ping reports, with the pacer's decision for an upload of `need` bytes (0:
        none waits); None without a limit (nothing to pace; the server counts bytes from `s`)."""
        if self.unlimited:
            return None
        pace = self.pace(need, now)
        interval = min(MAX_INTERVAL, max(0, round(pace.interval)))
        return BudgetReport(self.used, self.config.limit, round(pace.rate), interval, pace.reason)

    def ready_at(self, size: int, now: float, cost: Cost | None = None) -> float:
        """When a new upload of `size` bytes may start, as far as the budget can tell now."""
        return self.pace(size, now, cost).ready_at

    def _since(self, now: float) -> float:
        return 0.0 if self.last_start is None else now - self.last_start

    def _schedule(self, cost: Cost, now: float) -> Pace:
        self._accrue(now)
        config = self.config
        window = Window(self.rate(now), config.interval_floor, config.interval_ceiling)
        return schedule(self.bucket, cost, now, window, self.last_start)

    def rate(self, now: float) -> float:
        """The pace in the period containing `now`: what B' leaves after the opening, over the
        period's length."""
        config = self.config
        length = period_end(config.period, now) - period_start(config.period, now)
        return (config.uploads_limit - config.opening_bytes) / length

    def _accrue(self, now: float) -> None:
        """Fill the bucket up to `now`. In a period it has not seen (a new one, or a restart), it
        holds the opening plus what the pace accrued since the period began, less what was used,
        up to the cap: last period's savings are not this period's bytes."""
        self.roll(now)
        bucket, rate = self.bucket, self.rate(now)
        if bucket.stamp is None or bucket.stamp < self.period_started:
            accrued = self.config.opening_bytes + rate * (now - self.period_started) - self.used
            bucket.tokens, bucket.stamp = min(bucket.capacity, accrued), now
        bucket.accrue(now, rate)
