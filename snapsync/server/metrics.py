"""Prometheus metrics of one server process, in a registry of its own (no global state).

Counters and histograms count what this process saw; behind a load balancer Prometheus sums
the processes. The environments-by-freshness gauge is read from the store at scrape time, so
every process reports the same fleet-wide numbers.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from snapsync.server.storage import FRESHNESS, ServerStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("snapsync.server")
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Freshness(Collector):
    def __init__(self, store: ServerStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "snapsync_environments",
            "Environments by freshness (fresh: heard from within 5 min, stale: within 1 h).",
            labels=["freshness"],
        )
        now = self.clock()
        try:
            tally = Tally(env.status(now) for env in self.store.environments(now))
        except Exception as exc:  # a scrape must not fail because the database hiccupped
            log.warning("metrics: cannot read environments: %s", type(exc).__name__)
            return
        for state in FRESHNESS:
            gauge.add_metric([state], tally.get(state, 0))
        yield gauge


class ServerMetrics:
    def __init__(self, store: ServerStore | None, clock: Callable[[], float]) -> None:
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
        if store is not None:
            r.register(_Freshness(store, clock))

    def render(self) -> bytes:
        return generate_latest(self.registry)
