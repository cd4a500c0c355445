"""`snapsync dump` and `snapsync agent --once` against a live (emulated) API server over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support_kube import (  # noqa: F401  (fixtures)
    config_map,
    emulator_fixture,
    expected,
    kube_objects_fixture,
    kubeconfig_fixture,
)

from snapsync.cli import cli
from snapsync.protocol import MemoryStore
from snapsync.server import ServerSettings, SharedSecret
from tests.support_server import live_server
from tools.kube_emulator import KubeEmulator

SECRET = "cli live secret!"


def _once(kubeconfig: Path, state: Path, url: str, secret: str = SECRET) -> Result:
    """`snapsync agent --once` against a live emulated cluster, over HTTP to `url`."""
    return CliRunner().invoke(
        cli,
        ["agent", "--once", "--kubeconfig", str(kubeconfig), "--state-dir", str(state)],
        env={
            "SNAPSYNC_SERVER_URL": url,
            "SNAPSYNC_EDGE_ID": "site-9",
            "SNAPSYNC_AGENT_SECRET": secret,
        },
    )


def test_dump_collects_a_live_cluster(kubeconfig: Path, emulator: KubeEmulator) -> None:
    result = CliRunner().invoke(cli, ["dump", "--kubeconfig", str(kubeconfig), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["digest"] == expected(emulator.state).digest.hex()
    assert doc["header"]["errors"] == []


def test_dump_filters_kinds_and_namespaces(kubeconfig: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["dump", "--kubeconfig", str(kubeconfig), "--format", "json", "--kind", "Pod"],
    )
    assert result.exit_code == 0, result.stderr
    kinds = {o["key"].split("/")[0] for o in json.loads(result.stdout)["objects"]}
    assert kinds == {"Pod"}


def test_agent_once_ships_a_live_cluster(
    kubeconfig: Path, emulator: KubeEmulator, tmp_path: Path
) -> None:
    store = MemoryStore()
    with live_server(ServerSettings(secrets=SharedSecret(SECRET.encode()), store=store)) as url:
        result = _once(kubeconfig, tmp_path, url)
    assert result.exit_code == 0, result.stderr
    current = store.current("site-9")
    assert current is not None and current.digest == expected(emulator.state).digest


def test_agent_once_fails_unless_the_server_confirms(
    kubeconfig: Path, emulator: KubeEmulator, tmp_path: Path
) -> None:
    """With the cluster unchanged since the last ack, the agent believes it is in sync; `--once`
    must still fail when nothing answers at the URL or the server refuses the secret."""
    store = MemoryStore()
    settings = ServerSettings(secrets=SharedSecret(SECRET.encode()), store=store)
    with live_server(settings) as url:
        first = _once(kubeconfig, tmp_path, url)
        assert first.exit_code == 0, first.stderr
        assert "confirmed=true" in first.stderr

        refused = _once(kubeconfig, tmp_path, url, secret="not-the-agent-secret")
        assert refused.exit_code == 1
        assert "in_sync=true" in refused.stderr and "confirmed=false" in refused.stderr
        assert "refused our credentials" in refused.stderr

        again = _once(kubeconfig, tmp_path, url)  # unchanged cluster, server up: confirmed
        assert again.exit_code == 0, again.stderr
        assert "sent=0" not in again.stderr  # it asked the server, it did not assume
    dead = _once(kubeconfig, tmp_path, url)  # the same URL, nothing listening any more
    assert dead.exit_code == 1
    assert "in_sync=true" in dead.stderr and "confirmed=false" in dead.stderr
    assert "did not confirm our latest version" in dead.stderr


def _until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll `condition` until it holds; a generous bound on a shared machine."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("mode", ["list", "watch"])
def test_long_running_agent_collects_by_list_or_watch(
    mode: str, kubeconfig: Path, emulator: KubeEmulator, tmp_path: Path
) -> None:
    """SNAPSYNC_COLLECT=list: every cycle LISTs and no WATCH is ever opened; watch: one LIST per
    kind, then changes arrive by WATCH. Either way Ctrl-C ends the agent cleanly."""
    state = emulator.state
    store = MemoryStore()

    def shipped() -> bool:
        current = store.current("site-9")
        return current is not None and current.digest == expected(state).digest

    with live_server(ServerSettings(secrets=SharedSecret(SECRET.encode()), store=store)) as url:
        log = tmp_path / "agent.log"
        command = [sys.executable, "-m", "snapsync", "agent", "--kubeconfig", str(kubeconfig)]
        command += ["--state-dir", str(tmp_path / "state"), "--snapshot-interval", "0.3"]
        env = {
            **os.environ,
            "SNAPSYNC_SERVER_URL": url,
            "SNAPSYNC_EDGE_ID": "site-9",
            "SNAPSYNC_AGENT_SECRET": SECRET,
            "SNAPSYNC_COLLECT": mode,
        }
        with log.open("wb") as out:
            agent = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            assert _until(shipped), log.read_text()
            lists = state.stats.requests["list"]
            state.put(config_map("cfg-new"))
            assert _until(shipped), log.read_text()
        finally:
            agent.send_signal(signal.SIGINT)
            try:
                interrupted = agent.wait(timeout=20)
            except subprocess.TimeoutExpired:  # its watch threads held it open
                agent.kill()
                agent.wait()
                interrupted = None
    assert interrupted == 0, log.read_text()  # Ctrl-C stops the agent and closes its watches
    if mode == "list":
        assert state.stats.requests["watch"] == 0
        assert state.stats.requests["list"] > lists  # the change came by a new LIST
    else:
        assert state.stats.requests["watch"] > 0
        assert state.stats.requests["list"] == lists  # the change came by WATCH
    assert "Connection pool is full" not in log.read_text()
