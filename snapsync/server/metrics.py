"""Prometheus metrics of one server process, in a registry of its own (no global state).

Counters and histograms count what this process saw; behind a load balancer Prometheus sums
the processes. The fleet gauges (environments by freshness, collection errors) are read from the
store at scrape time, so every process reports the same fleet-wide numbers.

Collection errors (kinds an agent could not collect, from each environment's newest snapshot
header) are exposed without an environment or kind label: a fleet of thousands of environments
times ~150 kinds would be a series explosion, and both values come from the agents (hostile
input). The gauges say that something is missing and why (`reason`, clamped to the collectors'
closed vocabulary, anything else counted as `other`); the fleet list and the browse API's
`errors` field say where. Alert on `snapsync_environments_with_collection_errors > 0`.

Freshness and budgets likewise (server/freshness.py says why): `snapsync_snapshot_age_seconds`
and `snapsync_snapshot_lag_seconds` are gauge histograms of the fleet's newest versions, not a
series per environment; `snapsync_agents_by_pace` counts agents by the reason of their latest
budget report. Alert on an environment older than 30 min with
`snapsync_snapshot_age_seconds_gcount - on() snapsync_snapshot_age_seconds_bucket{le="1800.0"}`.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from snapsync.errors import StorageError
from snapsync.protocol.values import PACE_REASONS, UNKNOWN_REASON
from snapsync.server.freshness import AGE_BUCKETS
from snapsync.server.storage import FRESHNESS, EnvironmentSummary
from snapsync.server.store.queries import Queries

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("snapsync.server")
# The reasons collect/ records (collect/kube.py, collect/watch.py, collect/base.py).
ERROR_REASONS = (
    "forbidden",
    "not-found",
    "not-listable",
    "throttled",
    "unavailable",
    "timeout",
    "expired",
    "stale",
    "invalid",
    "error",
)
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Fleet(Collector):
    def __init__(self, queries: Queries, clock: Callable[[], float]) -> None:
        self.queries = queries
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "snapsync_environments",
            "Environments by freshness (fresh: heard from within 5 min, stale: within 1 h).",
            labels=["freshness"],
        )
        with_errors = GaugeMetricFamily(
            "snapsync_environments_with_collection_errors",
            "Environments whose newest snapshot records kinds the agent could not collect.",
        )
        errors = GaugeMetricFamily(
            "snapsync_collection_errors",
            "Kinds not collected, summed over the newest snapshot of every environment, by reason.",
            labels=["reason"],
        )
        now = self.clock()
        try:
            fleet = self.queries.environments(now)
        except StorageError as exc:  # a scrape must not fail because the database hiccupped
            log.warning("metrics: cannot read environments: %s", exc)
            return
        tally = Tally(env.status(now) for env in fleet)
        for state in FRESHNESS:
            gauge.add_metric([state], tally.get(state, 0))
        reasons = Tally(
            e.reason if e.reason in ERROR_REASONS else "other" for env in fleet for e in env.errors
        )
        with_errors.add_metric([], sum(1 for env in fleet if env.errors))
        for reason in (*ERROR_REASONS, "other"):
            errors.add_metric([reason], reasons.get(reason, 0))
        yield gauge
        yield with_errors
        yield errors
        yield from _freshness(fleet, now)


def _freshness(fleet: Sequence[EnvironmentSummary], now: float) -> Iterator[Metric]:
    """The fleet's snapshot ages and lags (environments with a known collection time), and its
    agents by pacer reason and the bytes their budgets hold back (agents that report one)."""
    ages = [age for env in fleet if (age := env.age(now)) is not None]
    lags = [lag for env in fleet if (lag := env.lag) is not None]
    yield _histogram(
        "snapsync_snapshot_age_seconds",
        "Environments by the age of their newest version (now less its collection time).",
        ages,
    )
    yield _histogram(
        "snapsync_snapshot_lag_seconds",
        "Environments by the lag of their newest version (arrival less collection time).",
        lags,
    )
    paces = GaugeMetricFamily(
        "snapsync_agents_by_pace",
        "Agents by the pacer's reason in their latest budget report.",
        labels=["reason"],
    )
    tally = Tally(env.budget.reason for env in fleet if env.budget is not None)
    for reason in (*PACE_REASONS, UNKNOWN_REASON):
        paces.add_metric([reason], tally.get(reason, 0))
    yield paces
    yield GaugeMetricFamily(
        "snapsync_bytes_waiting",
        "Bytes held back by agents' data budgets, summed over the fleet.",
        value=sum(env.waiting for env in fleet),
    )


def _histogram(name: str, documentation: str, values: list[float]) -> GaugeHistogramMetricFamily:
    buckets = [(str(bound), float(sum(1 for v in values if v <= bound))) for bound in AGE_BUCKETS]
    buckets.append(("+Inf", float(len(values))))
    return GaugeHistogramMetricFamily(name, documentation, buckets, gsum_value=sum(values))


class ServerMetrics:
    def __init__(self, queries: Queries | None, clock: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "snapsync_received_bytes", "Bytes of agent request bodies received.", registry=r
        )
        self.sent = Counter("snapsync_sent_bytes", "Bytes of answers to agents.", registry=r)
        self.requests = Counter(
            "snapsync_agent_requests",
            "Agent requests by endpoint and status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.applied = Counter(
            "snapsync_frames_applied", "Frames verified, applied and stored.", registry=r
        )
        self.refused = Counter(
            "snapsync_frames_refused", "Uploads refused, by reason.", ["reason"], registry=r
        )
        self.auth_refused = Counter(
            "snapsync_auth_refused", "Agent requests refused at authentication.", registry=r
        )
        self.upload_seconds = Histogram(
            "snapsync_upload_seconds",
            "Time to answer one upload chunk.",
            buckets=_LATENCY,
            registry=r,
        )
        self.apply_seconds = Histogram(
            "snapsync_apply_seconds",
            "Time to verify, apply and store a completed frame.",
            buckets=_LATENCY,
            registry=r,
        )
        self.commit_batch = Histogram(
            "snapsync_commit_batch_size",
            "Versions stored per durable transaction (SQLite group commit; 1 on PostgreSQL).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        if queries is not None:
            r.register(_Fleet(queries, clock))

    def render(self) -> bytes:
        return generate_latest(self.registry)
