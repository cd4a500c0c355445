"""`snapsync demo`: short runs through the CLI (no terminal, so plain lines), the incremental
snapshot feed against a full rebuild, one-line errors, and which modules its helpers may reach.
Byte counts are compared, never times: a seed gives the same bytes. (tests/test_wheel.py runs
the demo from an installed wheel.)"""

from __future__ import annotations

import ast
import math
import re
from io import StringIO
from itertools import pairwise
from pathlib import Path
from time import time as current_time

import pytest
from click.testing import CliRunner
from rich.console import Console

import snapsync
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import build_snapshot
from snapsync.cli import cli
from snapsync.demo import DemoOptions, DemoRun, parse_duration
from snapsync.demo.feed import ClusterFeed, patch_stride
from snapsync.demo.run import prepare_database
from snapsync.demo.scenario import HOUR, LINKS
from snapsync.demo.view import live_table
from snapsync.errors import InputError
from snapsync.sim.link import ENV
from snapsync.sim.sample_cluster import SampleCluster
from tests.support_demo import converged_store

SMALL = ["--objects", "60", "--duration", "2h", "--seed", "3"]
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: fixed, so the runs below are byte-identical
HELPERS = (
    "snapsync.sim.sample_cluster",
    "snapsync.sim.baselines",
)  # the demo's, beside the data path


def demo(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["demo", *args])
    return result.exit_code, result.output


def test_a_short_demo_converges_and_leaves_a_database_to_browse(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    code, out = demo(*SMALL, "--link", "good", "--database", str(database))
    assert code == 0, out
    assert "full JSON + gzip" in out and "JSON Patch + gzip" in out
    assert re.search(r"full JSON \+ gzip .*ratio \d+\.\dx snapsync's bytes", out)
    assert re.search(r"JSON Patch \+ gzip .*ratio \d+\.\dx snapsync's bytes", out)
    assert f"snapsync serve --database {database} --api-token" in out
    with converged_store(out, database) as store:
        assert [r.name for r in store.registry.registrations()] == ["demo cluster"]
        assert len(store.queries.versions(ENV)) > 10  # the history is there to browse
        (summary,) = store.queries.environments(current_time())
        assert summary.bytes_total > 0  # data use, as the web layer would have counted it
    # one plain line per simulated hour (and the first and last), not a live view
    assert len(re.findall(r"^\+\s*\S+ cycles \d+", out, re.MULTILINE)) >= 3


def test_dead_for_an_hour_still_converges_afterwards(tmp_path: Path) -> None:
    code, out = demo(*SMALL, "--link", "dead-for-an-hour", "--dir", str(tmp_path / "d"))
    assert code == 0, out
    assert "1 outage(s), 1h down" in out
    assert "back in sync" in out
    assert re.search(r"converged\s+yes", out), out
    assert (tmp_path / "d" / "snapsync-demo.db").is_file()


def run(tmp_path: Path, name: str, **options: object) -> DemoRun:
    database = tmp_path / name
    return DemoRun(
        DemoOptions(**{"objects": 60, "duration": 2 * HOUR, "seed": 3, **options}),  # type: ignore[arg-type]
        prepare_database(database),
        database,
        START,
    )


def test_snapsync_ships_fewer_bytes_than_the_baselines_and_the_same_for_a_seed(
    tmp_path: Path,
) -> None:
    first = run(tmp_path, "a.db").run(lambda progress: None).progress
    again = run(tmp_path, "b.db").run(lambda progress: None).progress
    assert (first.wire, first.full_json, first.json_patch) == (
        again.wire,
        again.full_json,
        again.json_patch,
    )
    assert first.converged and first.cycles == 24
    assert first.wire < first.full_json
    assert first.frames < first.json_patch  # the frames themselves; the wire adds pings, headers


def test_a_budget_too_small_for_the_first_snapshot_is_reported_not_hidden(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, "c.db", budget=8_000, settle=HOUR).run(lambda progress: None)
    assert result.progress.deferred >= 1
    assert not result.progress.converged
    assert result.progress.wire <= 8_000  # the budget is never exceeded (one day)


def test_the_incremental_feed_equals_a_full_rebuild() -> None:
    profile = load_profile()
    feed = ClusterFeed(SampleCluster(objects=80, shape="application", seed=7), profile, ENV)
    for steps, churn in ((1, "steady"), (3, "busy"), (1, "quiet"), (2, "busy")):
        for _ in range(steps):  # objects touched by several steps are canonicalized once
            feed.step(churn, 5.0)
        rebuilt = build_snapshot(feed.cluster.objects(), profile)
        assert feed.snapshot("2026-01-01T00:00:00Z").digest == rebuilt.digest
        assert feed.snapshot() is feed.snapshot()  # nothing changed: the same snapshot


def test_the_live_view_renders_every_row(tmp_path: Path) -> None:
    progress = []
    run(tmp_path, "e.db", duration=HOUR, link="flaky").run(progress.append)
    console = Console(file=StringIO(), width=100, color_system=None)
    console.print(live_table(progress[-1], "title"))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for row in ("simulated", "cycles", "bytes/cycle", "shipped", "baselines", "budget", "link"):
        assert row in text
    assert "converged: server digest = agent digest" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objects", "abc"], "'abc' is not a valid integer"),
        (["--objects", "5"], "--objects must be between"),
        (["--churn", "wild"], "--churn"),
        (["--link", "wifi"], "--link"),
        (["--duration", "soon"], "duration 'soon'"),
        (["--duration", "1m"], "at least one collection interval"),
        (["--budget", "lots"], "size 'lots'"),
        (["--speed", "-1"], "--speed"),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    code, out = demo(*args)
    assert code == 2
    assert out.count("\n") == 1 and out.startswith("snapsync: error:"), out
    assert message in out


def test_an_existing_database_is_never_overwritten(tmp_path: Path) -> None:
    database = tmp_path / "taken.db"
    database.write_bytes(b"")
    code, out = demo("--database", str(database))
    assert code == 2 and "already exists" in out and out.count("\n") == 1
    code, out = demo("--database", str(database), "--dir", str(tmp_path))
    assert code == 2 and out.count("\n") == 1


def test_durations_and_link_profiles() -> None:
    assert parse_duration("1d") == 86_400
    assert parse_duration("1h30m") == 5_400
    assert parse_duration("45") == 45
    with pytest.raises(InputError):
        parse_duration("1x")
    outages = LINKS["dead-for-an-hour"].outages(6 * HOUR, seed=0)
    assert outages == [(1.5 * HOUR, HOUR)]
    flaky = LINKS["flaky"].outages(30 * 86_400, seed=1)
    assert flaky == LINKS["flaky"].outages(30 * 86_400, seed=1)
    assert 120 < len(flaky) < 360  # ~8 a day
    assert all(a + length <= b for (a, length), (b, _) in pairwise(flaky))


def _imported(path: Path) -> set[str]:
    """Every module `path` imports by absolute name (`from a import b` counts a and a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _is_helper(name: str) -> bool:
    return any(name == helper or name.startswith(helper + ".") for helper in HELPERS)


def test_only_the_demo_reaches_the_sample_cluster_and_the_baselines() -> None:
    package = Path(snapsync.__file__).parent
    users: set[str] = set()
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        if not _is_helper(module) and any(map(_is_helper, _imported(path))):
            users.add(module)
    assert users and all(module.startswith("snapsync.demo.") for module in users), users
    for path in (package / "sample_cluster").rglob("*.py"):  # a leaf: it needs nothing above it
        outside = {n for n in _imported(path) if n.startswith("snapsync") and not _is_helper(n)}
        assert not outside, (path, outside)


@pytest.mark.parametrize(
    ("cycles", "samples"), [(289, 24), (1440, 24), (24, 24), (10, 100), (720, 12)]
)
def test_the_json_patch_baseline_is_sampled_off_the_hour(cycles: int, samples: int) -> None:
    stride = patch_stride(cycles, samples)
    assert math.gcd(stride, 60) == 1  # never the same minute of the hour (CronJobs fire on it)
    assert cycles // stride >= samples // 2 or stride == 1
