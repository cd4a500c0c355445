"""The data budget: bytes per period, counted on everything sent and received.

The budget is checked before a request goes out, against the request and the largest answer it
can bring back, so it is never exceeded; an upload that does not fit waits for the next period
while pings go on from a small reserve (so the server still sees the site alive and the delta
held back). Periods are fixed windows: whole days (UTC), calendar months (UTC), or N seconds
counted from the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from snapsync.errors import InputError

DAY = 86_400


@dataclass(frozen=True)
class BudgetConfig:
    limit: int = 0  # bytes per period; 0 = unlimited
    period: str = "month"  # "day", "month", or a number of seconds
    reserve: float = 0.05  # share of the limit kept for pings and command results

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise InputError("data budget must be a positive number of bytes (0: unlimited)")
        if not 0 <= self.reserve < 1:
            raise InputError("budget reserve must be a fraction between 0 and 1")
        period_start(self.period, 0.0)


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


def parse_size(text: str) -> int:
    """`500MB`, `1GiB`, `250k`, `0` -> bytes (decimal and binary suffixes, as people write them)."""
    units = {
        "": 1,
        "b": 1,
        "k": 10**3,
        "kb": 10**3,
        "m": 10**6,
        "mb": 10**6,
        "g": 10**9,
        "gb": 10**9,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
    }
    cleaned = text.strip().lower().replace(" ", "")
    number = cleaned.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = cleaned[len(number) :]
    if unit not in units or not number:
        raise InputError(f"size {text!r}: expected a number with an optional unit (MB, GiB, ...)")
    try:
        return int(float(number) * units[unit])
    except ValueError:
        raise InputError(f"size {text!r} is not a number") from None


@dataclass
class Budget:
    """Mutable meter for one period; its fields are part of the persisted agent state."""

    config: BudgetConfig
    period_started: float = 0.0
    used: int = 0

    def roll(self, now: float) -> None:
        start = period_start(self.config.period, now)
        if start != self.period_started:
            self.period_started = start
            self.used = 0

    @property
    def unlimited(self) -> bool:
        return self.config.limit == 0

    def remaining(self, now: float) -> int | None:
        self.roll(now)
        return None if self.unlimited else max(0, self.config.limit - self.used)

    def allows(self, size: int, now: float, *, essential: bool) -> bool:
        """Whether `size` bytes fit; non-essential traffic may not touch the reserve."""
        self.roll(now)
        return self.unlimited or self.used + size <= self._ceiling(essential)

    def ever_allows(self, size: int, *, essential: bool) -> bool:
        """Whether `size` bytes fit in a whole period: if not, waiting for one is pointless."""
        return self.unlimited or size <= self._ceiling(essential)

    def _ceiling(self, essential: bool) -> int:
        if essential:
            return self.config.limit
        return self.config.limit - int(self.config.limit * self.config.reserve)

    def spend(self, size: int, now: float) -> None:
        self.roll(now)
        self.used += size

    def next_period(self, now: float) -> float:
        """When the current period ends."""
        return period_end(self.config.period, now)
