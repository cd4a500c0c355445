"""Issue #18, what the server shows: the Ping's budget report (`b`: its wire form, its cost in
bytes, its bounds against a hostile peer, older agents without it), the agent filling it in, the
store keeping it (SQLite and PostgreSQL, and an existing database gaining the table), and each
environment's snapshot age, lag and budget through a real server on loopback: the browse API,
the fleet list and environment page, and /metrics."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from snapsync.agent.transport import PATHS
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot, rfc3339
from snapsync.cli import cli
from snapsync.codec.encode import encode_snapshot
from snapsync.errors import RemoteProtocolError
from snapsync.protocol import AgentConfig, Intervals
from snapsync.protocol.auth import sign
from snapsync.protocol.budget import Budget, BudgetConfig
from snapsync.protocol.messages import BudgetReport, Chunk, Ping, Pong, UploadReply, decode
from snapsync.protocol.pacing import AHEAD, CREDIT, SPENT, UNPACED, WITHIN
from snapsync.protocol.values import MAX_INTERVAL, MAX_REASON, PACE_REASONS, UNKNOWN_REASON
from snapsync.server import ServerSettings
from snapsync.server.environments import AgentSecrets, enroll
from snapsync.server.store import Stores, open_store
from snapsync.sim.link import ENV, Sim
from snapsync.sim.sample_cluster import SampleCluster
from tests.support_postgres import (  # noqa: F401 (fixtures)
    postgres_dsn,
    postgres_server,
    sql_store_fixture,
)
from tests.support_server import Clock, live_server

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
MONTHLY = BudgetReport(123_456_789, 500_000_000, 183, 65, AHEAD)
TOKEN = "freshness-test-token-01"
SHARED = b"fleet-wide shared secret for freshness"


# ----- the wire field ----------------------------------------------------------------------------

counts = st.integers(0, 2**63 - 1)
reports = st.builds(
    BudgetReport,
    used=counts,
    limit=counts,
    rate=counts,
    interval=st.integers(0, MAX_INTERVAL),
    reason=st.sampled_from(PACE_REASONS),
)


@given(reports, st.integers(0, 2**32), st.integers(0, 2**40))
def test_a_budget_report_round_trips_in_a_ping(report: BudgetReport, spent: int, wait: int) -> None:
    ping = Ping(
        have=(b"d" * 16,), latest=b"d" * 16, cursor=3, waiting=wait, spent=spent, budget=report
    )
    assert decode(ping.encode(), Ping) == ping


hostile = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=7),
    max_leaves=20,
)


@given(hostile)
def test_whatever_a_peer_sends_as_b_parses_within_bounds_or_is_refused(raw: Any) -> None:
    body = msgpack.packb({"v": 1, "t": "ping", "h": [], "c": 0, "b": raw}, use_bin_type=True)
    try:
        report = decode(body, Ping).budget
    except RemoteProtocolError:
        return
    assert report is not None
    assert all(0 <= n < 2**63 for n in (report.used, report.limit, report.rate))
    assert 0 <= report.interval <= MAX_INTERVAL
    assert report.reason in (*PACE_REASONS, UNKNOWN_REASON)


def test_edge_values_of_b() -> None:
    def parse(raw: Any) -> BudgetReport | None:
        body = msgpack.packb({"v": 1, "t": "ping", "h": [], "c": 0, "b": raw})
        return decode(body, Ping).budget

    assert parse([1, 2, 3, 4, 6]) == BudgetReport(1, 2, 3, 4, SPENT)
    assert parse([1, 2, 3, 4, MAX_REASON]) == BudgetReport(1, 2, 3, 4, UNKNOWN_REASON)
    assert parse([1, 2, 3, 4, 0, "a later field"]) == BudgetReport(1, 2, 3, 4, UNPACED)
    for bad in ([1, 2, 3, 4], [1, 2, 3, MAX_INTERVAL + 1, 0], [1, 2, 3, 4, MAX_REASON + 1],
                [1, 2, -3, 4, 0], [1, True, 3, 4, 0], [1, 2, 3.5, 4, 0], {"u": 1}, 7):  # fmt: skip
        with pytest.raises(RemoteProtocolError, match="malformed budget report"):
            parse(bad)


def test_an_older_agents_ping_parses_and_a_ping_without_a_report_is_unchanged() -> None:
    older = msgpack.packb({"v": 1, "t": "ping", "h": [b"d" * 16], "c": 2, "w": 10, "s": 99})
    ping = Ping(have=(b"d" * 16,), latest=b"d" * 16, cursor=2, waiting=10, spent=99)
    assert decode(older, Ping) == ping and ping.budget is None
    assert ping.encode() == older


def test_the_report_costs_a_few_bytes_a_ping() -> None:
    """17 bytes for a monthly SIM part-way through its month (key 2, list 1, 123 MB 5, 500 MB 5,
    183 B/s 2, 65 s 1, the reason 1); 14 for the issue's 60 kB per 2 min."""
    bare = Ping(have=(b"d" * 16,), cursor=3, spent=1234)
    assert len(replace(bare, budget=MONTHLY).encode()) - len(bare.encode()) == 17
    small = BudgetReport(30_000, 60_000, 475, 2, WITHIN)
    assert len(replace(bare, budget=small).encode()) - len(bare.encode()) == 14


def test_a_budget_reports_its_state_and_an_unlimited_one_none() -> None:
    assert Budget(BudgetConfig()).report(0, T0) is None
    config = BudgetConfig(limit=31_000_000, period="month", reserve=0.0, policy="paced")
    budget = Budget(config)
    month = 31 * 86400
    rate = round((config.uploads_limit - config.opening_bytes) / month)
    first = budget.report(0, T0)
    assert first == BudgetReport(0, 31_000_000, rate, 0, WITHIN)
    assert budget.allows(300_000, T0, essential=False)  # the opening (310 kB) carries it
    budget.spend(300_000, T0)
    waiting = budget.report(15_000, T0 + 60)
    assert waiting is not None and (waiting.used, waiting.reason) == (300_000, AHEAD)
    assert 60 < waiting.interval < 900  # it starts once the pace has covered it
    later = budget.report(200_000, T0 + 900)  # more than the pace covers: the ceiling
    assert later is not None and later.reason == CREDIT and later.interval == 900
    fixed = Budget(BudgetConfig(limit=10_000, period="day"))
    fixed.spend(10_000, T0)
    assert fixed.report(1, T0) == BudgetReport(10_000, 10_000, 0, 0, SPENT)


def test_the_agent_reports_its_budget_in_its_pings_and_the_server_keeps_it() -> None:
    cluster = SampleCluster(objects=40, shape="application", seed=5)
    for config, reported in ((BudgetConfig(), False), (_hourly(), True)):
        sim = Sim(AgentConfig(intervals=Intervals(ping=60.0, jitter=0.0), budget=config))
        sim.collect(build_snapshot(cluster.objects(), load_profile()))
        for _ in range(3):  # the first ping, the upload, a ping after it
            sim.run_exchanges()
            sim.now += 70
        kept = sim.store.env(ENV).budget
        if not reported:
            assert kept is None  # no limit: nothing to pace, nothing sent
            continue
        assert kept is not None and kept.limit == 200_000 and kept.reason in PACE_REASONS
        assert 0 < kept.used <= sim.bytes_in_period(sim.now - sim.now % 3600, sim.now)


def _hourly() -> BudgetConfig:
    return BudgetConfig(limit=200_000, period="3600", policy="paced")


# ----- the store ---------------------------------------------------------------------------------


def _snapshot(collected: float) -> Snapshot:
    pod = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}
    return build_snapshot([pod], load_profile(), collected_at=rfc3339(collected))


def test_the_store_keeps_arrival_and_the_latest_report(sql_store: Stores) -> None:
    snapshot = _snapshot(T0 - 100)
    sql_store.commit("a", snapshot, b"frame", None, T0 - 70)
    sql_store.seen("a", T0 - 40, snapshot.digest, 5000, MONTHLY)
    sql_store.seen("a", T0 - 20, snapshot.digest, 0)  # no report: the last one stays
    sql_store.seen("b", T0 - 10, b"", 0)
    found = {e.edge_id: e for e in sql_store.queries.environments(T0)}
    a, b = found["a"], found["b"]
    assert (a.budget, a.budget_at, a.waiting) == (MONTHLY, T0 - 40, 0)
    assert (a.received_at, a.lag, a.age(T0)) == (T0 - 70, 30.0, 100.0)
    assert (b.budget, b.received_at, b.lag, b.age(T0)) == (None, None, None, None)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_an_existing_database_gains_the_budget_table_at_start_up(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where = (
        str(tmp_path / "old.db") if kind == "sqlite" else request.getfixturevalue("postgres_dsn")
    )
    old = open_store(where)
    old.commit("a", _snapshot(T0 - 100), b"frame", None, T0 - 70)
    with old.db.tx() as db:
        old.db.run(db, "DROP TABLE agent_budgets")  # as a server before this table left it
    old.close()
    store = open_store(where)
    try:
        store.seen("a", T0, b"", 0, MONTHLY)
        (a,) = store.queries.environments(T0, only="a")
        assert (a.version, a.budget, a.lag) == (1, MONTHLY, 30.0)
    finally:
        store.close()


# ----- a real server on loopback -----------------------------------------------------------------


class Agent:
    """Signed requests from one enrolled environment, as its agent sends them."""

    def __init__(self, url: str, edge: str, secret: bytes, clock: Clock) -> None:
        self.client = httpx.Client(base_url=url, timeout=20)
        self.edge, self.secret, self.clock = edge, secret, clock

    def post(self, kind: str, body: bytes) -> bytes:
        path = PATHS[kind]
        auth = sign(self.secret, "POST", path, self.edge, body, self.clock())
        answer = self.client.post(path, content=body, headers={"Authorization": auth})
        assert answer.status_code == 200, answer.content
        return answer.content

    def upload(self, snapshot: Snapshot) -> None:
        frame = encode_snapshot(snapshot)
        upload = hashlib.blake2b(frame, digest_size=8).digest()
        chunk = Chunk(upload, b"", snapshot.digest, len(frame), 0, frame)
        assert decode(self.post(Chunk.TYPE, chunk.encode()), UploadReply).status == "ack"


@pytest.fixture
def served(sql_store: Stores) -> Iterator[tuple[httpx.Client, str]]:
    """A real server on loopback over each SQL store. Shop 1's agent uploads a snapshot
    collected 45 min before now (it waited on its budget), stored 30 s after collection, then
    pings with its budget state and 2 MB held back; Depot 2 (an older agent) pings without."""
    clock = Clock()
    shop = enroll(sql_store.registry, "Shop 1", T0, group="eu")
    depot = enroll(sql_store.registry, "Depot 2", T0, group="us")
    settings = ServerSettings(
        secrets=AgentSecrets(sql_store.registry, SHARED),
        stores=sql_store,
        clock=clock,
        api_token=TOKEN,
    )
    with live_server(settings) as url:
        agent = Agent(url, shop.registration.edge_id, shop.token.encode(), clock)
        snapshot = _snapshot(T0 - 2700)
        clock.now = T0 - 2670
        agent.upload(snapshot)
        clock.now = T0 - 60
        ping = Ping(have=(snapshot.digest,), waiting=2_000_000, spent=500, budget=MONTHLY)
        assert decode(agent.post(Ping.TYPE, ping.encode()), Pong).holds
        older = Agent(url, depot.registration.edge_id, depot.token.encode(), clock)
        older.post(Ping.TYPE, msgpack.packb({"v": 1, "t": "ping", "h": [], "c": 0}))
        agent.client.close()
        older.client.close()
        clock.now = T0
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20
        ) as client:
            yield client, shop.registration.edge_id


def test_the_api_shows_age_lag_and_budget(served: tuple[httpx.Client, str]) -> None:
    client, edge = served
    fleet = {e["edge_id"]: e for e in client.get("/api/v1/environments").json()["environments"]}
    shop = fleet[edge]
    assert shop["freshness"] == {
        "received_at": "2025-12-31T23:15:30Z",
        "age_seconds": 2700,
        "lag_seconds": 30,
        "clock_ahead_seconds": 0,
    }
    assert shop["budget"] == {
        "reported_at": "2025-12-31T23:59:00Z",
        "spent": 123_456_789,
        "limit": 500_000_000,
        "waiting": 2_000_000,
        "pace_bytes_per_second": 183,
        "interval_seconds": 65,
        "reason": "ahead of pace",
    }
    depot = fleet["depot-2"]
    assert depot["budget"] is None
    unknown = dict.fromkeys(("received_at", "age_seconds", "lag_seconds", "clock_ahead_seconds"))
    assert depot["freshness"] == unknown
    one = client.get(f"/api/v1/environments/{edge}").json()
    assert (one["freshness"], one["budget"]) == (shop["freshness"], shop["budget"])


def test_the_fleet_list_and_environment_page_show_them(served: tuple[httpx.Client, str]) -> None:
    client, edge = served
    fleet = unescape(client.get("/").text)
    assert '<th class="num">Snapshot age</th>' in fleet and "<th>Budget</th>" in fleet
    row = fleet[fleet.index(f'href="/env/{edge}"') : fleet.index('href="/env/depot-2"')]
    assert re.search(r'<span class="age age-old" title="collected 2025-12-31T23:15:00Z, stored '
                     r'30 s later">45 min</span>', fleet)  # fmt: skip
    assert (
        '<meter min="0" max="500000000" low="375000000" high="450000000" optimum="0" '
        'value="123456789"' in fleet
    )
    assert "123.5 MB / 500.0 MB" in fleet and "ahead of pace, 2.00 MB waiting" in fleet
    assert "not reported" in fleet and "not reported" not in row
    page = unescape(client.get(f"/env/{edge}").text)
    shown = ("snapshot age", "45 min", "collected → stored", "30 s", "183 B/s", "2.00 MB")
    for expected in (*shown, "upload every 1 min (ahead of pace)", "waiting on the budget"):
        assert expected in page, expected
    assert "style=" not in page + fleet and "<script" not in page + fleet


def test_metrics_show_the_fleets_ages_without_naming_environments(
    served: tuple[httpx.Client, str],
) -> None:
    client, edge = served
    text = client.get("/metrics").text
    for expected in (
        "# TYPE snapsync_snapshot_age_seconds histogram",
        'snapsync_snapshot_age_seconds_bucket{le="1800.0"} 0.0',
        'snapsync_snapshot_age_seconds_bucket{le="3600.0"} 1.0',
        'snapsync_snapshot_age_seconds_bucket{le="+Inf"} 1.0',
        "snapsync_snapshot_age_seconds_gcount 1.0",
        "snapsync_snapshot_age_seconds_gsum 2700.0",
        'snapsync_snapshot_lag_seconds_bucket{le="30.0"} 1.0',
        'snapsync_agents_by_pace{reason="ahead of pace"} 1.0',
        'snapsync_agents_by_pace{reason="within pace"} 0.0',
        "snapsync_bytes_waiting 2e+06",
    ):
        assert expected in text, expected
    assert edge not in text and "depot" not in text


def test_env_list_shows_snapshot_age_and_budget_and_a_clock_running_ahead(tmp_path: Path) -> None:
    """`snapsync env list` on a real database file: the newest version's age and the agent's
    budget report; an agent whose clock runs 90 s ahead stored a version "collected" after it
    arrived: age and lag 0, not negative, and the clock flagged (here and in the API's JSON,
    which is the same document)."""
    db = str(tmp_path / "s.db")
    store = open_store(db)
    now = float(int(time.time()))  # collection times are whole seconds
    snapshot = _snapshot(now - 2700)
    store.commit("shop-1", snapshot, b"frame", None, now - 2670)
    store.seen("shop-1", now - 60, snapshot.digest, 2_000_000, MONTHLY)
    ahead = _snapshot(now + 90)
    store.commit("van-2", ahead, b"frame", None, now)
    runner = CliRunner(env={"COLUMNS": "250"})
    listed = runner.invoke(cli, ["env", "list", "--database", db])
    assert listed.exit_code == 0, listed.output
    header, *rows = [
        line for line in listed.stdout.splitlines() if "shop-1" in line or "age" in line
    ]
    assert "snapshot age" in header and "budget" in header
    assert re.search(
        r"shop-1 .* 4[45]m .* 123\.5 MB of 500\.0 MB, ahead of pace, 2\.00 MB waiting", rows[0]
    )
    van = next(line for line in listed.stdout.splitlines() if "van-2" in line)
    assert "0s (agent clock 90s ahead)" in van and van.rstrip().endswith("-")
    found = {
        e["edge_id"]: e
        for e in json.loads(runner.invoke(cli, ["env", "list", "--json", "--database", db]).stdout)
    }
    assert found["van-2"]["freshness"]["age_seconds"] == 0
    assert found["van-2"]["freshness"]["lag_seconds"] == 0
    assert found["van-2"]["freshness"]["clock_ahead_seconds"] == 90
    assert found["shop-1"]["freshness"]["clock_ahead_seconds"] == 0
