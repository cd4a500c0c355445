"""`snapsync dump` and `snapsync agent --once` against a live (emulated) API server over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from support_kube import (  # noqa: F401  (fixtures)
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
    with live_server(ServerSettings(secrets=SharedSecret(b"cli live secret!"), store=store)) as url:
        result = CliRunner().invoke(
            cli,
            ["agent", "--once", "--kubeconfig", str(kubeconfig), "--state-dir", str(tmp_path)],
            env={
                "SNAPSYNC_SERVER_URL": url,
                "SNAPSYNC_EDGE_ID": "site-9",
                "SNAPSYNC_AGENT_SECRET": "cli live secret!",
            },
        )
    assert result.exit_code == 0, result.stderr
    current = store.current("site-9")
    assert current is not None and current.digest == expected(emulator.state).digest
