# The demo's scenario as values: link profiles (loss, bandwidth, latency, outages), durations,
# and the options of one run. No I/O and no clock here, so a scenario replays from its seed.
"""What a `snapsync demo` run simulates: the link profiles, the outage schedule, the options."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

from snapsync.errors import InputError
from snapsync.sim.link import LinkFaults
from snapsync.sim.sample_cluster import CHURN_LEVELS

MINUTE, HOUR, DAY = 60.0, 3600.0, 86_400.0


@dataclass(frozen=True)
class LinkProfile:
    """A kind of link: per-request faults, bandwidth and latency, and how often it goes away.

    Random outages come `outages_per_day` times a day on average, each lasting between
    `outage_min` and `outage_max` seconds; `fixed_outage` is one outage of that many seconds a
    quarter into the run (the dead-for-an-hour profile).
    """

    name: str
    summary: str
    faults: LinkFaults
    latency: float = 0.0  # seconds each way, on top of the transfer time
    outages_per_day: float = 0.0
    outage_min: float = 0.0
    outage_max: float = 0.0
    fixed_outage: float = 0.0

    def outages(self, duration: float, seed: int) -> list[tuple[float, float]]:
        """(start, length) in seconds from the run's start, in order; the same for a seed."""
        rng = random.Random(f"outages:{self.name}:{seed}")
        found: list[tuple[float, float]] = []
        if self.fixed_outage:
            found.append((max(duration / 4, 5 * MINUTE), self.fixed_outage))
        if self.outages_per_day:
            at = 0.0
            while True:
                at += rng.expovariate(self.outages_per_day / DAY)
                if at >= duration:
                    break
                length = rng.uniform(self.outage_min, self.outage_max)
                found.append((at, length))
                at += length
        return sorted(found)


GOOD = LinkProfile(
    "good",
    "LTE with a strong signal: 2 MB/s, 40 ms, no loss, no outage",
    LinkFaults(bandwidth=2_000_000, timeout=30.0),
    latency=0.04,
)
LINKS: dict[str, LinkProfile] = {
    profile.name: profile
    for profile in (
        GOOD,
        LinkProfile(
            "flaky",
            "a rural mobile link: 40 kB/s, 150 ms, 5% of requests and 3% of answers lost, "
            "2% of uploads cut, ~8 outages a day of 2-30 min",
            LinkFaults(loss=0.05, answer_loss=0.03, truncate=0.02, bandwidth=40_000, timeout=30.0),
            latency=0.15,
            outages_per_day=8,
            outage_min=2 * MINUTE,
            outage_max=30 * MINUTE,
        ),
        LinkProfile(
            "satellite",
            "a geostationary satellite: 16 kB/s, 650 ms, 2% loss, ~3 outages a day of 5-20 min",
            LinkFaults(loss=0.02, answer_loss=0.01, bandwidth=16_000, timeout=60.0),
            latency=0.65,
            outages_per_day=3,
            outage_min=5 * MINUTE,
            outage_max=20 * MINUTE,
        ),
        replace(
            GOOD,
            name="dead-for-an-hour",
            summary="the good link (2 MB/s, 40 ms, no loss), down for one hour a quarter in",
            fixed_outage=HOUR,
        ),
    )
}

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1.0, "s": 1.0, "m": MINUTE, "h": HOUR, "d": DAY, "w": 7 * DAY}


def parse_duration(text: str) -> float:
    """`1d`, `6h`, `30m`, `1h30m`, `90s` or plain seconds -> seconds."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise InputError(f"duration {text!r}: expected e.g. 1d, 6h, 30m or 1h30m")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise InputError(f"duration {text!r} must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as people read a span, two units at most: `1d 2h`, `6h`, `1h 5m`, `40s`."""
    total = round(seconds)
    units = (("d", int(DAY)), ("h", int(HOUR)), ("m", int(MINUTE)), ("s", 1))
    parts: list[str] = []
    for name, scale in units:
        count, total = divmod(total, scale)
        if count or parts:
            parts.append(f"{count}{name}")
    shown = [p for p in parts[:2] if not p.startswith("0")]
    return " ".join(shown) or "0s"


@dataclass(frozen=True)
class DemoOptions:
    """One demo run; defaults make a simulated day that finishes in well under a minute."""

    objects: int = 300
    churn: str = "steady"
    link: str = "flaky"
    duration: float = DAY
    interval: float = 5 * MINUTE  # the agent collects (and pings) this often
    speed: float = 0.0  # simulated seconds per real second at most; 0: as fast as possible
    seed: int = 0
    budget: int = 5_000_000  # bytes per UTC day; 0: unlimited
    shape: str = "application"
    patch_samples: int = 24  # cycles on which the slow JSON Patch baseline is computed
    settle: float = 6 * HOUR  # after the run, how long the agent may take to converge

    def __post_init__(self) -> None:
        if self.objects < 10 or self.objects > 20_000:
            raise InputError("--objects must be between 10 and 20000")
        if self.churn not in CHURN_LEVELS:
            raise InputError(f"--churn {self.churn!r}: expected one of {', '.join(CHURN_LEVELS)}")
        if self.link not in LINKS:
            raise InputError(f"--link {self.link!r}: expected one of {', '.join(LINKS)}")
        if self.duration < self.interval:
            raise InputError(
                f"--duration must be at least one collection interval "
                f"({format_duration(self.interval)})"
            )
        if self.duration > 30 * DAY:
            raise InputError("--duration is at most 30d")
        if self.interval < 10:
            raise InputError("--interval must be at least 10s")
        if self.speed < 0:
            raise InputError("--speed must be positive (0: as fast as possible)")
        if self.budget < 0:
            raise InputError("--budget must be a size such as 5MB (0: unlimited)")

    @property
    def profile(self) -> LinkProfile:
        return LINKS[self.link]
