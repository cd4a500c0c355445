"""A kind is never silently missing, at the server either (issue 21, item 1): the API emulator
forbids Secrets (403, as missing RBAC does), a real agent collects it over HTTP and uploads to a
real server on loopback, and the error it recorded in the snapshot header is in the browse API's
environment summary and fleet list, on the page, in /metrics and in `snapsync get`'s header. When
the permission comes back, the next upload clears it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from snapsync.cli import cli
from snapsync.server import ServerSettings
from snapsync.server.environments import AgentSecrets, enroll
from snapsync.server.store import Stores, open_store
from tests.support_broken import broken_objects, ship_once
from tests.support_kube import emulator_fixture, kubeconfig_fixture  # noqa: F401 (fixtures)
from tests.support_server import live_server
from tools.kube_emulator import KubeEmulator

TOKEN = "errors-test-token-0123"
SECRET: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db-password", "namespace": "shop"},
    "type": "Opaque",
    "data": {"password": "aHVudGVyMg=="},
}


@pytest.fixture(name="kube_objects")
def kube_objects_fixture() -> list[dict[str, Any]]:
    return [*broken_objects(), SECRET]


@dataclass
class Fleet:
    url: str
    edge: str
    secret: bytes
    store: Stores
    api: httpx.Client


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    store = open_store(str(tmp_path / "server.db"))
    made = enroll(store.registry, "Shop 17", time.time(), group="eu")
    settings = ServerSettings(
        secrets=AgentSecrets(store.registry, None), stores=store, api_token=TOKEN
    )
    with (
        live_server(settings) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20) as api,
    ):
        yield Fleet(url, made.registration.edge_id, made.token.encode(), store, api)
    store.close()


def test_a_forbidden_kind_reaches_the_api_page_metrics_and_get(
    emulator: KubeEmulator, kubeconfig: Path, fleet: Fleet, tmp_path: Path
) -> None:
    emulator.state.forbid("Secret", "list")
    latest = ship_once(kubeconfig, fleet.url, fleet.edge, fleet.secret, tmp_path / "agent")
    assert [e.kind for e in latest.header.errors] == ["Secret"]

    summary = fleet.api.get(f"/api/v1/environments/{fleet.edge}").json()
    (error,) = summary["errors"]
    assert (error["kind"], error["reason"]) == ("Secret", "forbidden")
    assert 'cannot list resource "secrets"' in error["message"]
    assert summary["collected_at"] == latest.header.collected_at
    assert "Secret" not in {k["kind"] for k in summary["kinds"]}
    (listed,) = fleet.api.get("/api/v1/environments").json()["environments"]
    assert listed["errors"] == summary["errors"] and listed["health"] == "failing"

    page = unescape(fleet.api.get(f"/env/{fleet.edge}").text)
    assert "1 kind could not be collected" in page and 'cannot list resource "secrets"' in page
    assert "1 kind not collected" in unescape(fleet.api.get("/").text)

    metrics = httpx.get(fleet.url + "/metrics").text
    assert "snapsync_environments_with_collection_errors 1.0" in metrics
    assert 'snapsync_collection_errors{reason="forbidden"} 1.0' in metrics

    env = {"SNAPSYNC_SERVER": fleet.url, "SNAPSYNC_API_TOKEN": TOKEN}
    result = CliRunner().invoke(cli, ["get", "cm", "-e", fleet.edge], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].endswith("· not collected: Secret:forbidden")

    # RBAC fixed: the Secret arrives and the error is gone from every view
    emulator.state.clear_faults()
    ship_once(kubeconfig, fleet.url, fleet.edge, fleet.secret, tmp_path / "agent")
    summary = fleet.api.get(f"/api/v1/environments/{fleet.edge}").json()
    assert summary["errors"] == [] and "Secret" in {k["kind"] for k in summary["kinds"]}
    assert (
        "snapsync_environments_with_collection_errors 0.0" in httpx.get(fleet.url + "/metrics").text
    )
