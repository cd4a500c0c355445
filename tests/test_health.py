"""The agent's liveness: a heartbeat file renewed after every exchange and every step, whatever
the link does (a dead server is not a dead agent), and `snapsync health` reading its age for a
container's liveness probe. Ages are set with os.utime, never waited for."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from snapsync.agent import Agent, HttpTransport, format_report
from snapsync.agent.loop import StepReport
from snapsync.agent.transport import Answer, Transport
from snapsync.cli import cli
from snapsync.collect import FileCollector
from snapsync.protocol import AgentConfig, Intervals, MemoryStore
from snapsync.protocol.pacing import AHEAD, Pace
from snapsync.server import ServerSettings, SharedSecret
from snapsync.sim.sample_cluster import SampleCluster
from tests.support_server import live_server

SECRET = "heartbeat secret"
EDGE = "shop-9"


def write_dump(path: Path, objects: int = 40) -> Path:
    path.write_text(json.dumps(SampleCluster(objects=objects, seed=3).list_document()))
    return path


class Watching:
    """A transport that notes, before each request, whether the heartbeat file exists."""

    def __init__(self, inner: Transport, heartbeat: Path) -> None:
        self.inner, self.heartbeat = inner, heartbeat
        self.seen: list[bool] = []

    def post(self, kind: str, body: bytes, limit: int) -> Answer:
        self.seen.append(self.heartbeat.exists())
        return self.inner.post(kind, body, limit)

    def close(self) -> None:
        self.inner.close()


def make_agent(
    url: str, tmp_path: Path, heartbeat: Path | None, transport: Transport | None = None
) -> Agent:
    return Agent(
        FileCollector([write_dump(tmp_path / "dump.json")]),
        transport or HttpTransport(url, EDGE, SECRET.encode(), timeout=5),
        tmp_path / "state",
        AgentConfig(intervals=Intervals(jitter=0.0)),
        environment_id=EDGE,
        seed=1,
        heartbeat=heartbeat,
    )


def test_each_exchange_and_step_renews_the_heartbeat(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    with live_server(
        ServerSettings(secrets=SharedSecret(SECRET.encode()), store=MemoryStore())
    ) as url:
        transport = Watching(HttpTransport(url, EDGE, SECRET.encode(), timeout=5), beat)
        agent = make_agent(url, tmp_path, beat, transport)
        report = agent.step()
        agent.close()
    assert report.in_sync and report.exchanges >= 2
    # nothing before the first exchange; renewed after it, while the step goes on
    assert transport.seen[0] is False and all(transport.seen[1:])
    assert beat.read_text().split()[1] == "in_sync=true"
    assert not list(tmp_path.glob(".heartbeat*"))  # no temporary file left behind
    # the log line shows the agent's resident memory, read from the kernel
    assert report.rss_bytes is not None and report.rss_bytes > 0
    assert f"rss_mb={report.rss_bytes / 2**20:.0f}" in format_report(report).split()


def test_an_unreachable_server_still_counts_as_alive(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    agent = make_agent("http://127.0.0.1:9", tmp_path, beat)
    report = agent.step()
    agent.close()
    assert not report.in_sync
    assert beat.read_text().split()[1] == "in_sync=false"
    assert CliRunner().invoke(cli, ["health", "--file", str(beat)]).exit_code == 0


def test_without_a_heartbeat_nothing_is_written(tmp_path: Path) -> None:
    agent = make_agent("http://127.0.0.1:9", tmp_path, None)
    agent.step()
    agent.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.json", "state"]


def test_an_unwritable_heartbeat_is_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    beat = tmp_path / "missing-dir" / "heartbeat"
    agent = make_agent("http://127.0.0.1:9", tmp_path, beat)
    with caplog.at_level(logging.WARNING, logger="snapsync.agent"):
        agent.step()
    agent.close()
    assert not beat.exists()
    assert any("heartbeat" in r.getMessage() for r in caplog.records)


def test_health_command_exit_codes(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    runner = CliRunner()
    missing = runner.invoke(cli, ["health", "--file", str(beat)])
    assert missing.exit_code == 1 and "no heartbeat" in missing.output
    beat.write_text("1 in_sync=true\n")
    fresh = runner.invoke(cli, ["health", "--file", str(beat), "--max-age", "60"])
    assert fresh.exit_code == 0, fresh.output
    assert "alive" in fresh.output
    past = time.time() - 120
    os.utime(beat, (past, past))
    stale = runner.invoke(cli, ["health", "--file", str(beat), "--max-age", "60"])
    assert stale.exit_code == 1 and "limit 60 s" in stale.output
    # the container's variables are enough: the probe needs no flags
    env = {"SNAPSYNC_HEALTH_FILE": str(beat), "SNAPSYNC_HEALTH_MAX_AGE": "300"}
    assert runner.invoke(cli, ["health"], env=env).exit_code == 0
    assert runner.invoke(cli, ["health"], env={}).exit_code == 2  # no file named: usage error


def test_agent_command_passes_the_health_file_through(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    dump = write_dump(tmp_path / "dump.json")
    store = MemoryStore()
    with live_server(ServerSettings(secrets=SharedSecret(SECRET.encode()), store=store)) as url:
        env = {
            "SNAPSYNC_SERVER_URL": url,
            "SNAPSYNC_EDGE_ID": EDGE,
            "SNAPSYNC_AGENT_SECRET": SECRET,
            "SNAPSYNC_STATE_DIR": str(tmp_path / "state"),
            "SNAPSYNC_HEALTH_FILE": str(beat),
        }
        result = CliRunner().invoke(
            cli, ["agent", "--from-file", str(dump), "--once"], env=env, catch_exceptions=False
        )
    assert result.exit_code == 0, result.output
    assert beat.read_text().split()[1] == "in_sync=true"


def test_the_log_line_shows_the_pace_and_why() -> None:
    pace = Pace(AHEAD, 250.0, 100.0, 12_345, 183.0, 2_100.0)
    line = format_report(StepReport(pace=pace))
    assert "pace='interval 1m40s (ahead of pace: 12,345 B at 183 B/s, bucket 2,100 B)'" in line
    assert "pace=" not in format_report(StepReport())
