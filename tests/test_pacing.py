"""The pacer (snapsync.protocol.pacing) through the budget meter: its promises as properties.

Spent bytes never exceed the budget in any period, whatever is asked when; demand below the pace
never waits; demand above it is spaced but never stopped while the bucket accrues; the first full
snapshot and a week-offline catch-up go at once when the period's budget carries them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.bench_budget_month import BURST, LIMIT, Deltas, percentile, simulate
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.errors import InputError
from snapsync.protocol import AgentConfig, Intervals
from snapsync.protocol.budget import Budget, BudgetConfig, period_start
from snapsync.protocol.pacing import (
    AHEAD,
    CREDIT,
    FLOOR,
    REPAYING,
    SPENT,
    UNPACED,
    WITHIN,
    Cost,
    TokenBucket,
    Window,
    schedule,
)
from snapsync.protocol.values import BudgetReport
from snapsync.sim.link import ENV, Sim
from snapsync.sim.sample_cluster import SampleCluster

WEEK = 7 * 86_400


@st.composite
def configs(draw: st.DrawFn, policy: str | None = None) -> BudgetConfig:
    limit = draw(st.integers(10_000, 10**9))
    reserve = draw(st.sampled_from([0.0, 0.05, 0.3]))
    uploads = limit - int(limit * reserve)
    burst = draw(st.none() | st.integers(1, uploads // 2))
    floor = draw(st.floats(0, 600))
    return BudgetConfig(
        limit=limit,
        period=draw(st.sampled_from(["day", "month", "3600", "90.5"])),
        reserve=reserve,
        policy=policy or draw(st.sampled_from(["fixed", "paced"])),
        burst=burst,
        interval_floor=floor,
        interval_ceiling=floor + draw(st.floats(1, 7200)),
    )


@dataclass(frozen=True)
class Ask:
    after: float  # seconds since the previous ask
    share: float  # size as a share of the limit
    essential: bool
    continuing: bool
    settle: float  # what the exchange cost, as a share of what was charged


asks = st.builds(
    Ask,
    after=st.floats(0, 3 * 86_400) | st.floats(0, 120),
    share=st.floats(0, 1.1) | st.floats(0, 0.01),
    essential=st.booleans(),
    continuing=st.booleans(),
    settle=st.floats(0, 1),
)


@given(configs(), st.lists(asks, max_size=60), st.floats(0, 4e9))
def test_spent_never_exceeds_the_budget_in_any_period(
    config: BudgetConfig, sequence: list[Ask], start: float
) -> None:
    budget = Budget(config)
    spent: dict[float, int] = {}
    now = start
    for ask in sequence:
        now += ask.after
        size = max(1, int(config.limit * ask.share))
        if not budget.allows(size, now, essential=ask.essential, continuing=ask.continuing):
            continue
        period = period_start(config.period, now)
        budget.spend(size, now)  # charged when handed out, settled when it ends (the agent's way)
        budget.spend(int(size * ask.settle) - size, now)
        spent[period] = spent.get(period, 0) + int(size * ask.settle)
        ceiling = config.limit if ask.essential else config.uploads_limit
        assert spent[period] <= ceiling
        assert budget.used == spent[period]


def pace_rate(config: BudgetConfig, now: float) -> float:
    return Budget(config).pace(1, now).rate


@given(configs("paced"), st.lists(st.floats(0, 1), min_size=1, max_size=80), st.data())
def test_demand_below_the_pace_never_waits(
    config: BudgetConfig, shares: list[float], data: st.DataObject
) -> None:
    """Each upload costs no more than the pace accrued since the previous one (nor more than
    the burst cap), and comes at least `floor` later: every one goes at once."""
    budget = Budget(config)
    start = period_start(config.period, 1e9)
    rate = pace_rate(config, start)
    gap = max(config.interval_floor, 2 / rate) * data.draw(st.floats(1, 100))
    now = start + gap
    for share in shares:
        if budget.next_period(now) != budget.next_period(start):
            break  # a new period starts the bucket afresh (its first upload may wait)
        size = max(1, int(min(rate * gap, config.burst_bytes) * share))
        pace = budget.pace(size, now)
        assert pace.ready_at <= now and pace.reason == WITHIN
        assert budget.allows(size, now, essential=False)
        budget.spend(size, now)
        now += gap


@given(
    configs("paced"),
    st.lists(st.floats(0, 1), min_size=20, max_size=200),
    st.sampled_from([10.0, 60.0]),
)
def test_demand_above_the_pace_is_spaced_but_never_stopped(
    config: BudgetConfig, shares: list[float], tick: float
) -> None:
    """An upload is always waiting (its size grows with the time since the last one started, at
    up to 100x the pace): uploads start at least `floor` apart, at most
    max(ceiling, repaying the previous credit) + one tick apart, and in all spend no more than
    the pace has accrued and one upload's credit."""
    budget = Budget(config)
    start = period_start(config.period, 2e9)
    rate = pace_rate(config, start)
    horizon = (period_start(config.period, start + 1) + _length(config, start) - start) / 4
    biggest = config.uploads_limit / 4
    now, last, debt, total = start, None, 0.0, 0
    for index in range(4000):
        if now - start > horizon:
            break
        waited = tick if last is None else now - last
        size = max(1, int(min(biggest, rate * waited * 100 * shares[index % len(shares)])))
        if budget.allows(size, now, essential=False):
            if last is not None:
                assert now - last >= config.interval_floor - 1e-6
                limit = max(config.interval_ceiling, debt / rate, config.interval_floor)
                assert now - last <= limit + tick + 1e-6
            budget.spend(size, now)
            total += size
            last, debt = now, max(0.0, -budget.bucket.tokens)
        elif last is not None:
            pace = budget.pace(size, now)
            assert pace.reason in (AHEAD, CREDIT, REPAYING, FLOOR)
            assert pace.ready_at <= last + max(config.interval_ceiling, debt / rate) + 1e-6
        now += tick
    # the opening and the pace, and one credit
    assert total <= config.opening_bytes + rate * (now - start) + biggest + 1


def _length(config: BudgetConfig, at: float) -> float:
    budget = Budget(config)
    return budget.next_period(at) - period_start(config.period, at)


@given(configs("paced"), st.floats(0, 1), st.floats(0, 1))
def test_the_first_snapshot_and_a_week_offline_catch_up_go_at_once(
    config: BudgetConfig, first_share: float, catch_up_share: float
) -> None:
    """A full snapshot bigger than the burst cap, then after a week offline a catch-up: each
    goes when asked, as long as what is left of the period carries it."""
    budget = Budget(config)
    start = period_start(config.period, 1.5e9)
    first = max(1, int(config.uploads_limit * first_share))
    assert budget.allows(first, start, essential=False)
    budget.spend(first, start)
    later = start + WEEK
    catch_up = max(1, int(config.uploads_limit * catch_up_share))
    left = config.uploads_limit - (budget.used if budget.fits(0, later, essential=False) else 0)
    goes = budget.allows(catch_up, later, essential=False)
    debt = max(0.0, -budget.bucket.tokens)
    if catch_up <= left and debt <= 0 and config.interval_ceiling <= WEEK:
        assert goes
    if not goes and catch_up > left:
        pace = budget.pace(catch_up, later)
        assert pace.reason == SPENT and pace.ready_at == budget.next_period(later)


def test_a_big_upload_waits_for_the_next_period_only_when_this_one_cannot_carry_it() -> None:
    config = BudgetConfig(limit=1_000_000, period="86400", reserve=0.0, policy="paced")
    budget = Budget(config)
    budget.spend(900_000, 0.0)  # most of today spent (on credit)
    assert not budget.allows(200_000, 3600.0, essential=False)
    pace = budget.pace(200_000, 3600.0)
    assert pace.reason == SPENT and pace.ready_at == 86_400.0
    assert budget.allows(200_000, 86_400.0 + 900, essential=False)


def test_each_reason_the_pacer_gives() -> None:
    window = Window(rate=100.0, floor=10.0, ceiling=600.0)
    full = TokenBucket(capacity=50_000, tokens=50_000, stamp=0.0)
    assert schedule(full, Cost.flat(1_000), 100.0, window, last_start=95.0).reason == FLOOR
    assert schedule(full, Cost.flat(1_000), 100.0, window, last_start=0.0).reason == WITHIN
    low = TokenBucket(capacity=50_000, tokens=500, stamp=0.0)
    ahead = schedule(low, Cost.flat(10_500), 100.0, window, last_start=0.0)
    assert ahead.reason == AHEAD and ahead.ready_at == pytest.approx(200.0)
    assert ahead.interval == pytest.approx(200.0)
    too_big = schedule(
        low, Cost.flat(60_000), 100.0, window, last_start=0.0
    )  # more than the bucket holds
    assert too_big.reason == CREDIT and too_big.ready_at == 600.0
    debt = TokenBucket(capacity=50_000, tokens=-100_000, stamp=0.0)
    repaying = schedule(debt, Cost.flat(60_000), 100.0, window, last_start=0.0)
    assert repaying.reason == REPAYING and repaying.ready_at == pytest.approx(1100.0)
    assert "repaying credit" in repaying.describe() and "18m20s" in repaying.describe()
    owing = schedule(debt, Cost.flat(10), 100.0, window, last_start=0.0)  # debt, not the pace
    assert owing.reason == REPAYING and owing.ready_at == pytest.approx(1100.0)
    fixed = Budget(BudgetConfig(limit=10_000, period="day", policy="fixed"))
    assert fixed.pace(100, 5.0).reason == UNPACED
    assert fixed.pace(20_000, 5.0).reason == SPENT


def test_a_ping_with_nothing_waiting_and_the_bucket_in_debt_says_repaying_credit() -> None:
    """Nothing waits, the bucket owes a full snapshot sent on credit: the ping's `b` says
    "repaying credit" (code 5, which servers before this fix already read so), not "ahead of
    pace"; once repaid, "within pace"."""
    config = BudgetConfig(limit=1_000_000, period="86400", reserve=0.0, policy="paced")
    budget = Budget(config)
    assert budget.allows(500_000, 0.0, essential=False)  # the first snapshot, on credit
    budget.spend(500_000, 0.0)
    report = budget.report(0, 60.0)
    assert report is not None and report.reason == REPAYING
    assert report.wire()[4] == 5 and BudgetReport.parse(report.wire()).reason == REPAYING
    later = budget.report(0, 86_000.0)
    assert later is not None and later.reason == WITHIN


def test_each_period_paces_its_own_budget_and_keeps_no_savings() -> None:
    """February 2024 (29 days) paces faster than January (31); a new month opens the bucket
    afresh, and a restart rebuilds it from the period's opening and pace less what was used."""
    config = BudgetConfig(limit=31_000_000, period="month", reserve=0.0, policy="paced")
    jan, feb = 1_704_067_200.0, 1_706_745_600.0  # 2024-01-01, 2024-02-01 UTC
    opening = config.opening_bytes
    assert opening == 310_000
    assert pace_rate(config, jan) == pytest.approx((31e6 - opening) / (31 * 86_400))
    assert pace_rate(config, feb) == pytest.approx((31e6 - opening) / (29 * 86_400))
    budget = Budget(config)
    budget.spend(100, jan + 20 * 86_400)  # twenty quiet days: the bucket is full
    assert budget.bucket.tokens == config.burst_bytes - 100
    budget.pace(1, feb + 3600)
    assert budget.bucket.tokens == pytest.approx(opening + pace_rate(config, feb) * 3600)
    restarted = Budget(config)
    restarted.period_started, restarted.used = feb, 10_000
    restarted.pace(1, feb + 3600)
    expected = opening + pace_rate(config, feb) * 3600 - 10_000
    assert restarted.bucket.tokens == pytest.approx(expected)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"burst": -1}, "burst cap must be a positive number of bytes"),
        ({"interval_floor": -1.0}, "floor must be zero or more seconds"),
        ({"interval_ceiling": 0.0}, "ceiling must be a positive number of seconds"),
        ({"interval_floor": 120.0, "interval_ceiling": 60.0}, "ceiling (60 s) is below its floor"),
        ({"limit": 1_000_000, "burst": 960_000}, "larger than the budget less its reserve"),
        ({"policy": "greedy"}, "budget policy 'greedy': expected fixed or paced"),
    ],
)
def test_bad_settings_get_one_clear_line(settings: dict[str, object], message: str) -> None:
    with pytest.raises(InputError) as caught:
        BudgetConfig(**settings)  # type: ignore[arg-type]
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_budget_smaller_than_one_ping_per_interval_is_refused() -> None:
    tiny = BudgetConfig(limit=50_000, period="day", policy="paced")
    with pytest.raises(InputError, match="does not pay for a ping every 60 s"):
        tiny.check_pings(60.0, 600)
    tiny.check_pings(3600.0, 600)  # one an hour it does
    BudgetConfig().check_pings(1.0, 600)  # unlimited
    monthly = BudgetConfig(limit=500_000_000, policy="paced")
    monthly.check_pings(60.0, 600)
    assert math.isclose(monthly.burst_bytes, 475_000_000 / 31, rel_tol=1e-6)


# -- through today's agent protocol, over the simulated link ------------------------------------


@cache
def churning(count: int) -> list[Snapshot]:
    """A small cluster under steady churn, one snapshot a minute."""
    cluster = SampleCluster(objects=80, shape="application", seed=3)
    snapshots = []
    for _ in range(count):
        snapshots.append(build_snapshot(cluster.objects(), load_profile()))
        cluster.step(churn="steady")
    return snapshots


def freshness(policy: str, limit: int, hours: int) -> tuple[list[float], Sim, float]:
    """Run the agent for `hours` under an hourly budget its churn overruns (pings every 5
    minutes, as a site on a tight budget would): the times the server got a new version."""
    budget = BudgetConfig(limit=limit, period="3600", policy=policy, interval_ceiling=600.0)
    intervals = Intervals(ping=300.0, jitter=0.0)
    # the server keeps the connection past the ping interval (--keep-alive), else every ping
    # reconnects and pings alone cost most of this budget
    sim = Sim(AgentConfig(intervals=intervals, budget=budget), keep_alive=400.0)
    sim.now -= sim.now % 3600
    start = sim.now
    arrivals: list[float] = []
    held = None
    for snapshot in churning(hours * 60):
        sim.collect(snapshot)
        for _ in range(6):  # the agent wakes within the minute as it asks
            sim.run_exchanges()
            current = sim.store.current(ENV)
            if current is not None and current.digest != held:
                held = current.digest
                arrivals.append(sim.now)
            sim.now += 10
    return arrivals, sim, start


def test_a_paced_agent_keeps_uploading_where_a_fixed_window_goes_blind() -> None:
    """The same churn and an hourly budget it overruns about twofold: the fixed window uploads
    every minute until the hour's budget is gone, then nothing until the next hour; the paced
    agent spaces its uploads through the hour. Neither spends more than the budget in any hour."""
    limit, hours = 30_000, 3
    fixed, fixed_sim, start = freshness("fixed", limit, hours)
    paced, paced_sim, _ = freshness("paced", limit, hours)
    for sim in (fixed_sim, paced_sim):
        for hour in range(hours):
            assert sim.bytes_in_period(start + hour * 3600, start + (hour + 1) * 3600) <= limit

    def longest_gap(arrivals: list[float]) -> float:
        later = [t for t in arrivals if t >= start + 3600]  # after the first snapshot's hour
        return max(b - a for a, b in itertools.pairwise(later))

    assert longest_gap(fixed) > 1800  # blind for half an hour and more
    assert longest_gap(paced) <= 600 + 60  # the ceiling, and the minute a collection takes


def test_the_month_benchmark_meets_issue_18s_targets() -> None:
    """bench/bench_budget_month.py on its measured deltas (deterministic: bytes and simulated
    minutes, no timings): paced, steady p99 age <= 2 min, burst max <= 30 min, never a wait
    with the period spent; the fixed window goes blind at the month's end. Both within 500 MB."""
    deltas = Deltas.load()
    fixed = simulate("fixed", BudgetConfig(limit=LIMIT, period="month", policy="fixed"), deltas)
    paced = simulate("paced", BudgetConfig(limit=LIMIT, period="month"), deltas)
    steady = paced.ages[: BURST[0]] + paced.ages[BURST[1] + 60 :]
    assert percentile(steady, 0.99) <= 120
    assert max(paced.ages[BURST[0] : BURST[1]]) <= 30 * 60
    assert paced.waited_spent == 0 and fixed.waited_spent > 0
    assert max(fixed.ages) > 3600
    assert paced.total <= LIMIT and fixed.total <= LIMIT
