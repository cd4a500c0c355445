"""`snapsync get`, `snapsync envs` and `snapsync health -e` against a real server on loopback
whose SQLite store holds the broken cluster of tests/support_broken.py: kubectl's tables,
checked line by line, `-o yaml|json|name|wide`, kind aliases, and one-line errors (exit 2) for a
server that is down, a wrong token, an unknown environment, kind or object."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from snapsync.cli import cli
from snapsync.client.kinds import resolve
from snapsync.errors import InputError
from snapsync.server import ServerSettings
from snapsync.server.environments import AgentSecrets
from snapsync.server.store import open_store
from tests.support_broken import COLLECTED_AT, store_broken
from tests.support_server import live_server
from tools.serving import free_port

TOKEN = "get-test-token-0123"
HEADER = re.compile(
    r"^shop-17 · version 1 · collected 2024-04-20T11:05:00Z \((\d+y\d*d?|\d+d) ago\)$"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = open_store(str(tmp_path_factory.mktemp("get") / "server.db"))
    store_broken(store, "shop-17", time.time())
    settings = ServerSettings(
        secrets=AgentSecrets(store.registry, None), stores=store, api_token=TOKEN
    )
    with live_server(settings) as url:
        yield url
    store.close()


def run(server: str, *args: str, token: str = TOKEN) -> Result:
    env = {"SNAPSYNC_SERVER": server, "SNAPSYNC_API_TOKEN": token}
    return CliRunner().invoke(cli, list(args), env=env)


def table(server: str, *args: str) -> list[str]:
    """The lines of a table output, after checking its header line."""
    result = run(server, *args)
    assert result.exit_code == 0, result.output
    first, *lines = result.stdout.splitlines()
    assert HEADER.match(first), first
    return lines


def test_pods_in_a_namespace(server: str) -> None:
    assert table(server, "get", "pods", "-e", "shop-17", "-n", "shop") == [
        "NAME                       READY   STATUS             RESTARTS   AGE",
        "checkout-6c9f7d5b8-crash   0/1     CrashLoopBackOff   14         2d1h",
        "checkout-6c9f7d5b8-pend    0/1     Pending            0          2d1h",
        "checkout-6c9f7d5b8-pull    0/1     ImagePullBackOff   0          2d1h",
        "checkout-6c9f7d5b8-q7w2x   1/1     Running            0          2d1h",
        "migrate-28571230-x7k2p     0/1     Completed          0          2d1h",
    ]


def test_several_kinds_by_alias_span_namespaces_without_n(server: str) -> None:
    assert table(server, "get", "deploy,svc,cm,secret,no,ns,pvc", "-e", "shop-17") == [
        "NAMESPACE   NAME       READY   UP-TO-DATE   AVAILABLE   AGE",
        "shop        checkout   3/3     3            3           77d",
        "shop        payments   1/3     3            1           77d",
        "",
        "NAMESPACE   NAME       TYPE        CLUSTER-IP    EXTERNAL-IP   PORT(S)   AGE",
        "shop        checkout   ClusterIP   10.96.142.7   <none>        80/TCP    77d",
        "",
        "NAMESPACE   NAME              DATA   AGE",
        "shop        checkout-config   1      77d",
        "",
        "NAMESPACE   NAME          TYPE     DATA   AGE",
        "shop        checkout-db   Opaque   2      77d",
        "",
        "NAME       STATUS     ROLES    AGE   VERSION",
        "worker-2   Ready      <none>   21d   v1.29.2",
        "worker-3   NotReady   <none>   21d   v1.29.2",
        "",
        "NAME   STATUS   AGE",
        "shop   Active   <unknown>",
        "",
        "NAMESPACE   NAME              STATUS    VOLUME       CAPACITY   ACCESS MODES   "
        "STORAGECLASS   AGE",
        "shop        data-postgres-0   Pending                           RWO            "
        "fast-ssd       25m",
        "shop        data-redis-0      Bound     pvc-1f2e3d   10Gi       RWO            "
        "fast-ssd       25m",
    ]


def test_events_are_timed_to_the_collection(server: str) -> None:
    lines = table(server, "get", "events", "-e", "shop-17", "-n", "shop")
    message = (
        'Readiness probe failed: Get "http://10.244.1.17:8080/ready": dial tcp '
        "10.244.1.17:8080: connect: connection refused"
    )
    assert lines == [
        "LAST SEEN              TYPE      REASON      OBJECT                         MESSAGE",
        f"3h5m (x7 over 3h25m)   Warning   Unhealthy   pod/checkout-6c9f7d5b8-q7w2x   {message}",
        f"6m20s (x7 over 33m)    Warning   Unhealthy   pod/checkout-6c9f7d5b8-q7w2x   {message}",
        f"5m (x7 over 6m)        Normal    Unhealthy   pod/checkout-6c9f7d5b8-q7w2x   {message}",
    ]


def test_wide_and_selector(server: str) -> None:
    lines = table(
        server, "get", "po", "-e", "shop-17", "-l", "app.kubernetes.io/name=checkout", "-o", "wide"
    )
    assert lines[0].split() == [
        "NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
    ]  # fmt: skip
    assert lines[4].split() == [
        "shop", "checkout-6c9f7d5b8-q7w2x", "1/1", "Running", "0", "2d1h", "10.244.1.17",
        "worker-2",
    ]  # fmt: skip
    assert len(lines) == 6  # the Job's pod has other labels
    nodes = table(server, "get", "nodes", "-e", "shop-17", "-o", "wide")
    assert nodes[0].split()[5:] == ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION",
                                    "CONTAINER-RUNTIME"]  # fmt: skip


def test_one_object_as_yaml_json_and_name(server: str) -> None:
    result = run(server, "get", "deploy/payments", "-e", "shop-17", "-o", "yaml")
    assert result.exit_code == 0 and HEADER.match(result.stderr.strip())
    assert result.stdout.startswith("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n")
    assert "  - image: ghcr.io/acme/checkout:2.4.1\n" in result.stdout  # kubectl's list layout
    assert yaml.safe_load(result.stdout)["status"]["unavailableReplicas"] == 2
    as_json = json.loads(
        run(server, "get", "deployment", "payments", "-e", "shop-17", "-o", "json").stdout
    )
    assert as_json["metadata"]["name"] == "payments"
    names = run(server, "get", "deploy/payments", "svc/checkout", "-e", "shop-17", "-o", "name")
    assert names.stdout == "deployment.apps/payments\nservice/checkout\n"
    many = yaml.safe_load(run(server, "get", "nodes", "-e", "shop-17", "-o", "yaml").stdout)
    assert many["kind"] == "List" and [n["metadata"]["name"] for n in many["items"]] == [
        "worker-2",
        "worker-3",
    ]


def test_envs_and_health(server: str) -> None:
    envs = run(server, "envs")
    assert envs.exit_code == 0
    assert envs.stdout.splitlines() == [
        "NAME      GROUP    STATUS   HEALTH    ERRORS   LAST SEEN   VERSION   OBJECTS",
        "shop-17   <none>   never    failing   <none>   never       1         18",
    ]
    health = run(server, "health", "-e", "shop-17")
    assert health.exit_code == 0, health.output
    lines = health.stdout.splitlines()
    assert lines[0].endswith("· health failing") and HEADER.match(lines[0].rsplit(" · ", 1)[0])
    assert lines[2:6] == [
        "PODS NOT READY OR CRASH-LOOPING (3)",
        "NAMESPACE   OBJECT                         STATUS             READY   RESTARTS   WHY",
        "shop        pod/checkout-6c9f7d5b8-crash   CrashLoopBackOff   0/1     14         "
        "back-off 5m0s restarting failed container=checkout",
        "shop        pod/checkout-6c9f7d5b8-pend    Pending            0/1     0          "
        "0/3 nodes are available: 3 Insufficient cpu.",
    ]
    assert "NODES NOT READY (1)" in lines and "PERSISTENTVOLUMECLAIMS NOT BOUND (1)" in lines
    doc = json.loads(run(server, "health", "-e", "shop-17", "-o", "json").stdout)
    assert doc["collected_at"] == COLLECTED_AT and doc["counts"]["workloads"] == 1


def test_health_without_env_keeps_the_heartbeat_meaning(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    beat.touch()
    assert CliRunner().invoke(cli, ["health", "--file", str(beat)]).exit_code == 0
    missing = CliRunner().invoke(cli, ["health"], env={"SNAPSYNC_HEALTH_FILE": None})
    assert missing.exit_code == 2 and "give --file" in missing.output


@pytest.mark.parametrize(
    ("args", "token", "message"),
    [
        (("get", "pods", "-e", "nope"), TOKEN, "no environment 'nope' (404)"),
        (("get", "gizmos", "-e", "shop-17"), TOKEN, "unknown kind 'gizmos'"),
        (("get", "deploy/web", "-e", "shop-17"), TOKEN, 'deployments.apps "web" not found'),
        (("get", "pods", "-e", "shop-17"), "wrong", "refused the API token (401)"),
        (("envs",), "", "the browse API needs a token"),
    ],
)
def test_errors_are_one_line_exit_2(
    server: str, args: tuple[str, ...], token: str, message: str
) -> None:
    result = run(server, *args, token=token)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_server_that_is_down_is_one_line_exit_2() -> None:
    result = run(f"http://127.0.0.1:{free_port()}", "envs")
    assert result.exit_code == 2 and result.output.startswith("snapsync: error: cannot reach")
    assert result.output.count("\n") == 1


def test_kind_names() -> None:
    for word in ("po", "pod", "pods", "Pod", "POD"):
        assert resolve(word) == "Pod"
    assert resolve("deploy") == resolve("deployments.apps") == "Deployment.apps"
    assert [resolve(w) for w in ("svc", "no", "cm", "ns", "ev", "pvc", "sts", "ds", "cj")] == [
        "Service", "Node", "ConfigMap", "Namespace", "Event", "PersistentVolumeClaim",
        "StatefulSet.apps", "DaemonSet.apps", "CronJob.batch",
    ]  # fmt: skip
    assert resolve("ingresses") == "Ingress.networking.k8s.io"
    held = ["Widget.example.com", "Gadget.example.com"]
    assert resolve("widgets", held) == resolve("widget.example.com", held) == "Widget.example.com"
    with pytest.raises(InputError, match="unknown kind"):
        resolve("gizmo", held)
