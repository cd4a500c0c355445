"""The agent's cluster actions through the official `kubernetes` client, over HTTP, against the API
emulator: each command's effect shows in the next collection; missing RBAC, missing objects,
malformed arguments and a dead API server each give a clear failed result and change nothing; and a
command queued on a server reaches a real Agent and its result comes back to the server's store.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kubernetes import client as k8s
from support_kube import (  # noqa: F401  (fixtures)
    collect,
    emulator_fixture,
    fast_options,
    kubeconfig_fixture,
)

from snapsync.agent import Agent, HttpTransport, KubeCommandRunner
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import Snapshot
from snapsync.cli import cli
from snapsync.collect.kube import KubeCollector
from snapsync.collect.kubeapi import ClientSettings, build_client
from snapsync.protocol import AgentConfig, Intervals, MemoryStore
from snapsync.protocol.messages import Command, CommandResult
from snapsync.server import ServerSettings, SharedSecret
from tests.support_server import live_server
from tools.kube_emulator import ClusterState, KubeEmulator, RequestInfo

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STAMP = "2026-01-01T00:00:00Z"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
FORBIDDEN_SCALE = (
    "forbidden: the agent's RBAC does not allow patch on deployments/scale in namespace shop "
    "(apply deploy/agent/actions)"
)


def workload(kind: str, name: str, replicas: int | None = 2) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "shop", "generation": 1},
        "spec": spec,
        "status": {"replicas": replicas or 0},
    }


def shop_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
        "status": {"phase": "Running"},
    }


@pytest.fixture(name="kube_objects")
def shop_objects() -> list[dict[str, Any]]:
    """A small shop: one workload of every kind the commands act on, and their pods."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        workload("Deployment", "web"),
        workload("StatefulSet", "db", replicas=1),
        workload("ReplicaSet", "web-7f9c", replicas=None),  # the API server's default: 1
        workload("DaemonSet", "node-agent", replicas=None),
        shop_pod("web-0"),
        shop_pod("web-1"),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop"},
            "data": {"mode": "fast"},
        },
    ]


@pytest.fixture(name="runner")
def runner_fixture(kubeconfig: Path) -> Iterator[KubeCommandRunner]:
    with KubeCommandRunner(fast_options(kubeconfig), clock=lambda: NOW) as runner:
        yield runner


def writes(state: ClusterState) -> list[RequestInfo]:
    """Every PATCH and DELETE the emulator receives from now on (appended as they arrive)."""
    seen: list[RequestInfo] = []
    state.hooks.append(lambda info: seen.append(info) if info.verb in ("patch", "delete") else None)
    return seen


def run(runner: KubeCommandRunner, command: str, /, **args: Any) -> CommandResult:
    return runner(Command(7, command, args))


def spec_of(snapshot: Snapshot, kind: str, name: str, group: str = "apps") -> dict[str, Any]:
    data = snapshot.objects[ObjectKey(group, kind, "shop", name)].data
    return dict(data.get("spec") or {})


# ----- each command, for real ----------------------------------------------------------------


def test_each_command_acts_and_the_next_collection_shows_it(
    emulator: KubeEmulator, kubeconfig: Path, runner: KubeCommandRunner
):
    seen = writes(emulator.state)
    results = [
        run(runner, "scale", kind="Deployment", namespace="shop", name="web", replicas=5),
        run(runner, "scale", kind="StatefulSet", namespace="shop", name="db", replicas=3),
        run(runner, "scale", kind="ReplicaSet", namespace="shop", name="web-7f9c", replicas=0),
        run(runner, "restart-rollout", kind="Deployment", namespace="shop", name="web"),
        run(runner, "restart-rollout", kind="StatefulSet", namespace="shop", name="db"),
        run(runner, "restart-rollout", kind="DaemonSet", namespace="shop", name="node-agent"),
        run(runner, "delete-pod", namespace="shop", name="web-1"),
    ]
    assert [(r.id, r.ok) for r in results] == [(7, True)] * 7
    assert [r.message for r in results] == [
        "scaled Deployment shop/web to 5",
        "scaled StatefulSet shop/db to 3",
        "scaled ReplicaSet shop/web-7f9c to 0",
        f"restarted Deployment shop/web ({RESTARTED_AT}={STAMP})",
        f"restarted StatefulSet shop/db ({RESTARTED_AT}={STAMP})",
        f"restarted DaemonSet shop/node-agent ({RESTARTED_AT}={STAMP})",
        "deleted Pod shop/web-1",
    ]
    assert [(i.verb, i.subresource) for i in seen] == [("patch", "scale")] * 3 + [
        ("patch", "")
    ] * 3 + [("delete", "")]

    snapshot = collect(fast_options(kubeconfig))
    assert spec_of(snapshot, "Deployment", "web")["replicas"] == 5
    assert spec_of(snapshot, "StatefulSet", "db")["replicas"] == 3
    assert spec_of(snapshot, "ReplicaSet", "web-7f9c")["replicas"] == 0
    for kind, name in (("Deployment", "web"), ("StatefulSet", "db"), ("DaemonSet", "node-agent")):
        template = spec_of(snapshot, kind, name)["template"]
        assert template["metadata"]["annotations"] == {RESTARTED_AT: STAMP}
        assert template["spec"]["containers"][0]["image"] == "nginx:1.27"  # merged, not replaced
    pods = {k.name for k, _ in snapshot if k.kind == "Pod"}
    assert pods == {"web-0"}


def test_repeating_a_command_is_harmless(emulator: KubeEmulator, runner: KubeCommandRunner):
    first = run(runner, "scale", kind="Deployment", namespace="shop", name="web", replicas=4)
    rv = emulator.state.rv
    again = run(runner, "scale", kind="Deployment", namespace="shop", name="web", replicas=4)
    assert first.ok and again.ok and again.message == "scaled Deployment shop/web to 4"
    assert emulator.state.rv == rv  # a patch that changes nothing writes nothing
    gone = run(runner, "delete-pod", namespace="shop", name="web-0")
    twice = run(runner, "delete-pod", namespace="shop", name="web-0")
    assert gone.ok and (twice.ok, twice.message) == (False, "not found: Pod shop/web-0")


# ----- refusals: nothing changes ---------------------------------------------------------------


def test_missing_rbac_is_a_clear_failure_and_changes_nothing(
    emulator: KubeEmulator, runner: KubeCommandRunner
):
    state = emulator.state
    state.forbid("Deployment.apps", "patch", subresource="scale")
    state.forbid("DaemonSet.apps", "patch")
    state.forbid("Pod", "delete")
    before, rv = copy.deepcopy(state.objects()), state.rv
    results = [
        run(runner, "scale", kind="Deployment", namespace="shop", name="web", replicas=9),
        run(runner, "restart-rollout", kind="DaemonSet", namespace="shop", name="node-agent"),
        run(runner, "delete-pod", namespace="shop", name="web-0"),
    ]
    assert [r.ok for r in results] == [False] * 3
    assert [r.message for r in results] == [
        FORBIDDEN_SCALE,
        "forbidden: the agent's RBAC does not allow patch on daemonsets in namespace shop "
        "(apply deploy/agent/actions/restart)",
        "forbidden: the agent's RBAC does not allow delete on pods in namespace shop "
        "(apply deploy/agent/actions)",
    ]
    assert state.objects() == before and state.rv == rv
    # only the scale subresource was taken away: restarting the Deployment still works
    assert run(runner, "restart-rollout", kind="Deployment", namespace="shop", name="web").ok


def test_commands_outside_the_allowed_namespaces_are_refused_without_a_request(
    emulator: KubeEmulator, kubeconfig: Path
):
    """--command-namespaces: the agent refuses on its own, whatever its RBAC would allow."""
    state = emulator.state
    seen = writes(state)
    before, rv = copy.deepcopy(state.objects()), state.rv
    with KubeCommandRunner(fast_options(kubeconfig), namespaces=["kiosk", "lab"]) as fenced:
        results = [
            run(fenced, "scale", kind="Deployment", namespace="shop", name="web", replicas=0),
            run(fenced, "restart-rollout", kind="DaemonSet", namespace="shop", name="node-agent"),
            run(fenced, "delete-pod", namespace="shop", name="web-0"),
            run(fenced, "collect-now"),  # not a cluster command: no namespace to check
        ]
    assert [r.ok for r in results] == [False] * 4
    assert results[0].message == (
        "refused: scale of Deployment shop/web: this agent runs commands only in namespaces "
        "kiosk, lab (--command-namespaces)"
    )
    assert all(r.message.startswith("refused: ") for r in results[:3])
    assert "sync protocol" in results[3].message
    assert seen == [] and state.objects() == before and state.rv == rv
    with KubeCommandRunner(fast_options(kubeconfig), namespaces=["shop"]) as allowed:
        assert run(allowed, "delete-pod", namespace="shop", name="web-0").ok
    assert [(w.verb, w.namespace, w.name) for w in seen] == [("delete", "shop", "web-0")]


def test_the_agent_command_checks_its_namespace_list(tmp_path: Path):
    """A bad --command-namespaces is one line and exit 2 before anything runs."""
    dump = tmp_path / "dump.json"
    dump.write_text('{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}')
    args = ["agent", "--from-file", str(dump), "--server-url", "http://127.0.0.1:9"]
    args += ["--edge-id", "e", "--agent-secret", "s" * 24, "--state-dir", str(tmp_path / "s")]
    env = {"SNAPSYNC_COMMAND_NAMESPACES": "shop, Not_A_Namespace"}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2
    assert "--command-namespaces: 'Not_A_Namespace' is not a namespace name" in result.output


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        (
            "scale",
            {"kind": "Deployment", "namespace": "shop", "name": "nope", "replicas": 1},
            "not found: Deployment shop/nope",
        ),
        (
            "restart-rollout",
            {"kind": "StatefulSet", "namespace": "elsewhere", "name": "db"},
            "not found: StatefulSet elsewhere/db",
        ),
        ("delete-pod", {"namespace": "shop", "name": "web-9"}, "not found: Pod shop/web-9"),
    ],
)
def test_missing_objects_are_reported_not_found(
    emulator: KubeEmulator, runner: KubeCommandRunner, name: str, args: dict[str, Any], message: str
):
    rv = emulator.state.rv
    result = run(runner, name, **args)
    assert (result.ok, result.message) == (False, message)
    assert emulator.state.rv == rv


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("drain-node", {"name": "node-0"}, "unknown command 'drain-node'"),
        (
            "scale",
            {"kind": "DaemonSet", "namespace": "shop", "name": "node-agent", "replicas": 2},
            "scale: bad value for 'kind': 'DaemonSet'",
        ),
        (
            "scale",
            {"kind": "Deployment", "namespace": "shop", "name": "web", "replicas": -1},
            "scale: bad value for 'replicas': -1",
        ),
        (
            "scale",
            {"kind": "Deployment", "namespace": "shop", "name": "web", "replicas": True},
            "scale: bad value for 'replicas': True",
        ),
        (
            "scale",
            {"kind": "Deployment", "namespace": "shop", "name": "web"},
            "scale: missing argument 'replicas'",
        ),
        (
            "delete-pod",
            {"namespace": "shop", "name": "../secrets/x"},
            "delete-pod: bad value for 'name': '../secrets/x'",
        ),
        (
            "restart-rollout",
            {"kind": "Deployment", "namespace": "shop", "name": "web", "force": True},
            "restart-rollout: unexpected argument(s) force",
        ),
        ("full-snapshot", {}, "full-snapshot is run by the sync protocol, not against the cluster"),
    ],
)
def test_malformed_commands_are_refused_before_any_request(
    emulator: KubeEmulator, runner: KubeCommandRunner, name: str, args: dict[str, Any], message: str
):
    seen = writes(emulator.state)
    result = run(runner, name, **args)
    assert (result.ok, result.message) == (False, message)
    assert seen == []


def test_other_api_errors_carry_the_servers_message(
    emulator: KubeEmulator, runner: KubeCommandRunner
):
    emulator.state.add_fault(kind="StatefulSet.apps", on="patch", status=500, times=1)
    result = run(runner, "scale", kind="StatefulSet", namespace="shop", name="db", replicas=2)
    assert not result.ok
    assert result.message.startswith("patch StatefulSet shop/db failed: 500 InternalError: ")
    assert "has prevented the request from succeeding" in result.message


def test_an_unreachable_or_unconfigured_cluster_is_a_result_not_an_exception(tmp_path: Path):
    dead = KubeEmulator(ClusterState([]))  # bound, never started, closed: nobody listens
    config = dead.write_kubeconfig(tmp_path / "kubeconfig")
    port = dead.port
    dead.stop()
    with KubeCommandRunner(fast_options(config)) as runner:
        result = run(runner, "delete-pod", namespace="shop", name="web-0")
    assert not result.ok
    assert result.message.startswith(
        f"delete Pod shop/web-0: cannot connect to http://127.0.0.1:{port}"
    )
    assert "\n" not in result.message and "may have been applied" not in result.message

    missing = KubeCommandRunner(fast_options(tmp_path / "no-such-kubeconfig"))
    result = run(missing, "scale", kind="Deployment", namespace="shop", name="web", replicas=1)
    assert not result.ok and "no such file" in result.message


def test_a_write_without_an_answer_is_reported_as_possibly_applied(
    emulator: KubeEmulator, kubeconfig: Path
):
    emulator.state.add_fault(kind="Pod", on="delete", action="drop")
    with KubeCommandRunner(fast_options(kubeconfig)) as runner:
        result = run(runner, "delete-pod", namespace="shop", name="web-0")
    assert not result.ok
    assert result.message.startswith("delete Pod shop/web-0: connection to ")
    assert result.message.endswith("(it may have been applied; check before sending it again)")


# ----- the emulator's answers are what the official client expects ---------------------------


def test_emulator_answers_scale_and_delete_like_an_api_server(
    emulator: KubeEmulator, kubeconfig: Path
):
    api = build_client(ClientSettings(kubeconfig=str(kubeconfig)))
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    try:
        scale = apps.read_namespaced_replica_set_scale("web-7f9c", "shop")
        assert isinstance(scale, k8s.V1Scale) and scale.spec.replicas == 1
        rv = emulator.state.rv
        scale = apps.patch_namespaced_deployment_scale(
            "web",
            "shop",
            {"spec": {"replicas": 6}},
            _content_type="application/strategic-merge-patch+json",
        )
        assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
        assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (
            6,
            2,
            "app=web",
        )
        assert scale.metadata.resource_version == str(rv + 1)
        events = emulator.state.events_since(rv, ("apps", "deployments"))
        assert [(t, o["spec"]["replicas"]) for _, t, o in events or ()] == [("MODIFIED", 6)]
        deployment = apps.read_namespaced_deployment("web", "shop")
        assert deployment.metadata.generation == 2  # a spec change, as the real server counts it

        # a Success Status (the client leaves it a dict), or for pods the Pod itself
        status = core.delete_namespaced_config_map("settings", "shop")
        assert (status["kind"], status["status"]) == ("Status", "Success")
        assert status["details"] == {
            "name": "settings",
            "group": "",
            "kind": "configmaps",
            "uid": status["details"]["uid"],
        }
        pod = core.delete_namespaced_pod("web-0", "shop")
        assert isinstance(pod, k8s.V1Pod) and pod.metadata.name == "web-0"
        with pytest.raises(k8s.ApiException) as missing:
            core.delete_namespaced_pod("web-0", "shop")
        assert missing.value.status == 404
        assert json.loads(missing.value.body)["message"] == 'pods "web-0" not found'
        with pytest.raises(k8s.ApiException) as invalid:
            apps.patch_namespaced_stateful_set_scale(
                "db",
                "shop",
                {"spec": {"replicas": -2}},
                _content_type="application/merge-patch+json",
            )
        assert invalid.value.status == 422
    finally:
        api.close()


# ----- end to end: server queue -> agent -> cluster -> result on the server --------------------

SECRET = b"correct horse battery staple"
EDGE = "shop-17"


def test_a_queued_command_reaches_a_real_agent_and_its_result_is_recorded(
    emulator: KubeEmulator, kubeconfig: Path, tmp_path: Path
):
    store = MemoryStore()
    now = [NOW]
    emulator.state.forbid("Pod", "delete")
    options = fast_options(kubeconfig)
    with (
        live_server(ServerSettings(secrets=SharedSecret(SECRET), store=store)) as url,
        KubeCommandRunner(options, clock=lambda: now[0]) as runner,
        KubeCollector(options) as collector,
    ):
        agent = Agent(
            collector,
            HttpTransport(url, EDGE, SECRET),
            tmp_path / "state",
            AgentConfig(intervals=Intervals(jitter=0.0)),
            environment_id=EDGE,
            commands=runner,
            clock=lambda: now[0],
            seed=1,
        )
        try:
            assert agent.step().in_sync
            current = store.current(EDGE)
            assert current is not None and spec_of(current, "Deployment", "web")["replicas"] == 2

            scale = store.queue_command(
                EDGE,
                "scale",
                {"kind": "Deployment", "namespace": "shop", "name": "web", "replicas": 4},
            )
            delete = store.queue_command(EDGE, "delete-pod", {"namespace": "shop", "name": "web-0"})
            for _ in range(5):  # pick up, run, report back, ship the change: a few cycles
                now[0] += 61
                agent.step()
                current = store.current(EDGE)
                done = len(store.results(EDGE)) == 2 and current is not None
                if done and spec_of(current, "Deployment", "web")["replicas"] == 4:
                    break
        finally:
            agent.close()
    assert store.results(EDGE) == {
        scale.id: CommandResult(scale.id, True, "scaled Deployment shop/web to 4"),
        delete.id: CommandResult(
            delete.id,
            False,
            "forbidden: the agent's RBAC does not allow delete on pods in namespace shop "
            "(apply deploy/agent/actions)",
        ),
    }
    assert current is not None and current.digest == agent.protocol.latest.digest  # type: ignore[union-attr]
    assert spec_of(current, "Deployment", "web")["replicas"] == 4
    assert ObjectKey("", "Pod", "shop", "web-0") in current.objects
