"""How fresh each environment's view is and how its agent spends its data budget, as the browse
API, the page and `/metrics` show them.

Freshness: the newest version's age (now less its collection time, the agent's clock) and its
lag (arrival, the server's clock, less collection: budget waits, the link, the apply). Budget:
what the agent's latest ping reported (`b` in wire.md) and the bytes it holds back (`w`).

`/metrics` has no per-environment series: at 20,000 environments a gauge labelled by
environment is 20,000 series per process (and per metric), a scrape of megabytes, and label
values named by whoever registered or authenticated. It shows the fleet's distribution instead
(a gauge histogram over AGE_BUCKETS, computed at scrape time) and counts by pacer reason, a
closed vocabulary; the browse API and the page name the environments.
"""

from __future__ import annotations

from typing import Any

from snapsync.canonical.snapshot import rfc3339
from snapsync.server.storage import EnvironmentSummary

# Seconds: the targets (2 min steady, 30 min through a burst) are bucket bounds, so an
# alert can say "any environment older than 30 min" exactly.
AGE_BUCKETS = (30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0)
# The page marks an age past the steady-churn target `late`, past the burst target `old`.
AGE_LATE = 120.0
AGE_OLD = 1800.0


def age_class(seconds: float | None) -> str:
    """The page's CSS class for a snapshot age: `age-old`, `age-late`, `age-unknown` (None)
    or none."""
    if seconds is None:
        return "age-unknown"
    return "age-old" if seconds > AGE_OLD else "age-late" if seconds > AGE_LATE else ""


def freshness_json(e: EnvironmentSummary, now: float) -> dict[str, Any]:
    """Whole seconds; null where a time is unknown (no version yet, or one stored before the
    server kept collection times).

    An agent whose clock runs ahead of the server's stamps a collection after its arrival:
    age and lag are then clamped to 0 (a negative age is no freshness anyone can act on, and
    an alert on age must not read it as "fresher than fresh"), and `clock_ahead_seconds` says
    by how much at least the agent's clock was ahead when the version arrived (0: no sign of
    it; an agent behind the server's clock only looks slower to arrive)."""
    age, lag = e.age(now), e.lag
    shown = lag if lag is not None else age  # below 0: collected after it arrived (or after now)
    return {
        "received_at": None if e.received_at is None else rfc3339(e.received_at),
        "age_seconds": None if age is None else max(0, round(age)),
        "lag_seconds": None if lag is None else max(0, round(lag)),
        "clock_ahead_seconds": None if shown is None else max(0, round(-shown)),
    }


def budget_json(e: EnvironmentSummary) -> dict[str, Any] | None:
    """The budget the agent's latest ping reported; null when it never reported one."""
    b = e.budget
    if b is None:
        return None
    return {
        "reported_at": None if e.budget_at is None else rfc3339(e.budget_at),
        "spent": b.used,
        "limit": b.limit,
        "waiting": e.waiting,
        "pace_bytes_per_second": b.rate,
        "interval_seconds": b.interval,
        "reason": b.reason,
    }
