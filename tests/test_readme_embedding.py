"""README's "Embedding the agent" code, run as written against a real `snapsync serve` on loopback.

Only the addresses change (server URL, secret, state directory, the cluster: the Kubernetes API
emulator instead of in-cluster credentials); each replaced text must be in the README, so the
test fails when the example drifts. The stored snapshot's header must name the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from support_kube import (  # noqa: F401  (fixtures)
    emulator_fixture,
    kube_objects_fixture,
    kubeconfig_fixture,
)
from test_server_integration import SHARED

from snapsync.server.store import open_store
from tools.serving import ServeProcess

README = Path(__file__).resolve().parent.parent / "README.md"


def _examples() -> list[str]:
    section = README.read_text().split("## Embedding the agent\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def _run(code: str, replacements: dict[str, str]) -> dict[str, Any]:
    for old, new in replacements.items():
        assert old in code, f"README example no longer contains {old!r}"
        code = code.replace(old, new)
    namespace: dict[str, Any] = {}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


def _stored_environment(database: str, edge: str) -> str:
    store = open_store(database)
    try:
        newest = store.held(edge)[-1]
        snapshot = store.snapshot(edge, newest.digest)
        assert snapshot is not None
        return snapshot.header.environment_id
    finally:
        store.close()


@pytest.fixture
def server(tmp_path: Path) -> Any:
    process = ServeProcess(str(tmp_path / "server.db"), tmp_path / "serve.log", secret=SHARED)
    process.start()
    yield process
    process.stop()


def test_the_embedding_examples_ship_snapshots_named_for_their_environment(
    server: ServeProcess, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit, from_env = _examples()
    database = server.database

    ran = _run(
        explicit,
        {
            '"https://fleet.example.com"': repr(server.url),
            'b"the agent secret"': repr(SHARED.encode()),
            '"/var/lib/snapsync"': repr(str(tmp_path / "explicit")),
            "KubeOptions(in_cluster=True)": f"KubeOptions(kubeconfig={str(kubeconfig)!r})",
            "agent.run()": "agent.close()",  # the loop would not return
        },
    )
    assert ran["report"].confirmed
    assert _stored_environment(database, "shop-17") == "shop-17"

    for name, value in {
        "SNAPSYNC_SERVER_URL": server.url,
        "SNAPSYNC_EDGE_ID": "shop-18",
        "SNAPSYNC_AGENT_SECRET": SHARED,
        "SNAPSYNC_STATE_DIR": str(tmp_path / "from-env"),
        "KUBECONFIG": str(kubeconfig),
    }.items():
        monkeypatch.setenv(name, value)
    ran = _run(from_env, {})
    ran["agent"].close()
    assert ran["report"].confirmed
    assert _stored_environment(database, "shop-18") == "shop-18"
