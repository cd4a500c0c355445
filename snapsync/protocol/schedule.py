"""When the agent talks: intervals with jitter, and capped exponential backoff.

Jitter spreads a fleet's requests so that sites restarting together do not poll in lockstep;
backoff keeps an agent from hammering an unreachable server (or draining its data budget on
failures). Randomness comes from the caller's seeded generator, so a simulation replays exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from snapsync.errors import InputError


@dataclass(frozen=True)
class Intervals:
    ping: float = 60.0  # heartbeat; also how often queued commands are picked up
    snapshot: float = 60.0  # collect, and upload if anything changed
    command: float = 10.0  # faster pings while a command is running or a result is unsent
    jitter: float = 0.1  # each interval is stretched or shrunk by up to this share
    backoff_base: float = 5.0
    backoff_cap: float = 900.0

    def __post_init__(self) -> None:
        for name in ("ping", "snapshot", "command", "backoff_base", "backoff_cap"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} interval must be positive")
        if not 0 <= self.jitter < 1:
            raise InputError("jitter must be a fraction between 0 and 1")

    @property
    def longest(self) -> float:
        """The longest the agent stays quiet on its own schedule (jitter included): a connection
        kept idle this long carries every cycle."""
        return max(self.ping, self.snapshot) * (1 + self.jitter)


def jittered(seconds: float, jitter: float, rng: random.Random) -> float:
    return seconds * (1 + rng.uniform(-jitter, jitter))


def backoff_delay(failures: int, intervals: Intervals, rng: random.Random) -> float:
    """Delay after the n-th consecutive failure: base * 2^(n-1), capped, jittered down only."""
    exponent = min(max(failures - 1, 0), 32)
    delay = min(intervals.backoff_cap, intervals.backoff_base * 2**exponent)
    return float(delay * (1 - rng.uniform(0, intervals.jitter)))


@dataclass
class Backoff:
    """Consecutive failures, and how long the agent stays quiet after them (`until`).

    A server's retry-after (`ra`) is capped at the agent's own longest backoff: a server, or
    whatever answers in its name, cannot silence an agent for longer than its own worst failure
    would.
    """

    intervals: Intervals
    rng: random.Random
    failures: int = 0
    until: float = 0.0

    def failed(self, now: float, retry_after: float = 0.0) -> float:
        self.failures += 1
        delay = backoff_delay(self.failures, self.intervals, self.rng)
        self.until = now + max(self._capped(retry_after), delay)
        return self.until

    def succeeded(self) -> None:
        self.failures = 0

    def quiet(self, now: float, retry_after: float) -> None:
        """The server asked for quiet in an answer that was not a failure."""
        self.until = now + self._capped(retry_after)

    def _capped(self, retry_after: float) -> float:
        return min(retry_after, self.intervals.backoff_cap)
