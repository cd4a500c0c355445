"""The agent's cluster actions, for real: scale, delete-pod and restart-rollout against a live API.

    runner = KubeCommandRunner(KubeOptions(in_cluster=True))
    agent = Agent(collector, transport, state_dir, commands=runner)
    ...
    runner.close()

Invariants:
- Calling the runner never raises. Every outcome (done, refused, forbidden by RBAC, not found,
  API server unreachable, a bug) is a CommandResult with a one-line message of at most
  MAX_MESSAGE characters: results ride on pings over a metered link.
- Arguments are validated again (snapsync.protocol.commands.validate_command) before any request:
  the runner is public and an embedder may call it without the protocol in front of it.
- One request per command and no retries: the protocol promises at most once, so a write that
  timed out or lost its connection is reported as possibly applied, never sent again.
- The client is built as the collector's is (kubeapi.build_client: its own Configuration, never
  the client library's process-wide default, no urllib3 retries), on first use, and kept; every
  request carries `_request_timeout`; responses are read raw, so a successful write is never
  reported as failed because the client could not deserialize the answer.
- Writes are JSON merge patches: for the fields touched here (spec.replicas, one pod-template
  annotation) they mean what a strategic merge patch means, on any server version.
- The agent's default RBAC is read-only (deploy/agent); scale and delete-pod need the opt-in
  overlay deploy/agent/actions (the scale subresource, delete on pods), restart-rollout the
  overlay deploy/agent/actions/restart (patch on the workload: the one pod-template annotation
  `kubectl rollout restart` sets has no subresource, and RBAC cannot grant one field), and a 403
  names the overlay.
- With `namespaces` set (`--command-namespaces`), a command on an object in any other namespace
  is refused before any request and reported as refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from snapsync.canonical.snapshot import rfc3339
from snapsync.collect.kube import KubeOptions, client_settings
from snapsync.collect.kubeapi import (
    ApiConnectionLost,
    ApiTimeout,
    build_client,
    status_error,
    transport_error,
)
from snapsync.errors import SnapsyncError
from snapsync.protocol.commands import PROTOCOL_COMMANDS, validate_command
from snapsync.protocol.messages import Command, CommandResult

MAX_MESSAGE = 300
MERGE_PATCH = "application/merge-patch+json"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
OVERLAY = "deploy/agent/actions"
RESTART_OVERLAY = "deploy/agent/actions/restart"

_PLURALS = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "ReplicaSet": "replicasets",
    "DaemonSet": "daemonsets",
}
# AppsV1Api methods by kind: PATCH of the scale subresource, PATCH of the object
_PATCH_SCALE = {
    "Deployment": "patch_namespaced_deployment_scale",
    "StatefulSet": "patch_namespaced_stateful_set_scale",
    "ReplicaSet": "patch_namespaced_replica_set_scale",
}
_PATCH_OBJECT = {
    "Deployment": "patch_namespaced_deployment",
    "StatefulSet": "patch_namespaced_stateful_set",
    "DaemonSet": "patch_namespaced_daemon_set",
}


@dataclass(frozen=True)
class Action:
    """One API write a command makes, in the words RBAC and users use for it."""

    verb: str  # RBAC verb: patch | delete
    group: str  # RBAC API group: "" (core) | apps
    resource: str  # RBAC resource: deployments/scale, pods, ...
    kind: str
    namespace: str
    name: str
    overlay: str = OVERLAY  # the deploy/ overlay whose RBAC grants it

    @property
    def target(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def action_for(command: Command) -> Action:
    """The write a valid cluster command makes: what the agent's RBAC must allow for it."""
    args = command.args
    if command.name == "delete-pod":
        return Action("delete", "", "pods", "Pod", args["namespace"], args["name"])
    if command.name not in ("scale", "restart-rollout"):
        raise ValueError(f"{command.name} is not a cluster command")
    kind, namespace, name = args["kind"], args["namespace"], args["name"]
    if command.name == "scale":
        return Action("patch", "apps", _PLURALS[kind] + "/scale", kind, namespace, name)
    return Action("patch", "apps", _PLURALS[kind], kind, namespace, name, RESTART_OVERLAY)


class KubeCommandRunner:
    """A CommandRunner (snapsync.agent.loop) that runs cluster commands with the official client.

    `clock` stamps restart-rollout's annotation (seconds since the epoch, UTC). `namespaces`,
    when given, are the only ones commands may act in.
    """

    def __init__(
        self,
        options: KubeOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
        namespaces: Collection[str] | None = None,
    ) -> None:
        self.options = options or KubeOptions()
        self.clock = clock
        self.namespaces = frozenset(namespaces) if namespaces is not None else None
        self._client: ApiClient | None = None

    def __call__(self, command: Command) -> CommandResult:
        try:
            ok, message = self.run(command)
        except Exception as exc:  # a bug here must cost one command, never the agent
            ok, message = False, f"{command.name}: internal error: {type(exc).__name__}: {exc}"
        return CommandResult(command.id, ok, clip(message))

    def run(self, command: Command) -> tuple[bool, str]:
        """(ok, message) for one command; raises only on a bug."""
        problem = validate_command(command)
        if problem:
            return False, problem
        if command.name in PROTOCOL_COMMANDS:
            return False, f"{command.name} is run by the sync protocol, not against the cluster"
        action = action_for(command)
        if self.namespaces is not None and action.namespace not in self.namespaces:
            allowed = ", ".join(sorted(self.namespaces)) or "none"
            return False, (
                f"refused: {command.name} of {action.target}: this agent runs commands only in "
                f"namespaces {allowed} (--command-namespaces)"
            )
        if command.name == "scale":
            return self._scale(action, command.args["replicas"])
        if command.name == "restart-rollout":
            return self._restart(action)
        return self._delete_pod(action)

    def _scale(self, action: Action, replicas: int) -> tuple[bool, str]:
        answer = self._patch(action, _PATCH_SCALE[action.kind], {"spec": {"replicas": replicas}})
        if isinstance(answer, str):
            return False, answer
        now = (answer.get("spec") or {}).get("replicas", replicas)
        return True, f"scaled {action.target} to {now}"

    def _restart(self, action: Action) -> tuple[bool, str]:
        stamp = rfc3339(self.clock())
        body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        answer = self._patch(action, _PATCH_OBJECT[action.kind], body)
        if isinstance(answer, str):
            return False, answer
        return True, f"restarted {action.target} ({RESTARTED_AT}={stamp})"

    def _delete_pod(self, action: Action) -> tuple[bool, str]:
        answer = self._write(
            action,
            lambda api: CoreV1Api(api).delete_namespaced_pod(
                action.name, action.namespace, **self._call_options()
            ),
        )
        if isinstance(answer, str):
            return False, answer
        # a kubelet-backed pod is only marked for deletion: it terminates gracefully
        terminating = (answer.get("metadata") or {}).get("deletionTimestamp")
        return True, f"deleted {action.target}" + (" (terminating)" if terminating else "")

    def close(self) -> None:
        """Release the client's connections; the next command builds a new client."""
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
            self._client = None

    def __enter__(self) -> KubeCommandRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call_options(self, content_type: str | None = None) -> dict[str, Any]:
        """Per-request options: a timeout always; the answer is read raw (see the invariants)."""
        timeout = self.options.request_timeout
        options: dict[str, Any] = {
            "_request_timeout": (timeout, timeout),
            "_preload_content": False,
        }
        if content_type is not None:
            options["_content_type"] = content_type
        return options

    def _api(self) -> ApiClient:
        if self._client is None:
            self._client = build_client(client_settings(self.options, 1))
        return self._client

    def _patch(self, action: Action, method: str, body: dict[str, Any]) -> dict[str, Any] | str:
        """A merge patch through the AppsV1Api `method`; see `_write`."""
        return self._write(
            action,
            lambda api: getattr(AppsV1Api(api), method)(
                action.name, action.namespace, body, **self._call_options(MERGE_PATCH)
            ),
        )

    def _write(self, action: Action, request: Callable[[ApiClient], Any]) -> dict[str, Any] | str:
        """The answer's JSON document (`{}` if it is not one), or a one-line failure."""
        try:
            client = self._api()
        except SnapsyncError as exc:
            return f"{action.verb} {action.target}: {exc}"
        server = str(client.configuration.host)
        try:
            response = request(client)
            try:
                data = response.data
            finally:
                response.release_conn()
        except ApiException as exc:
            return _refused(action, exc, server)
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # anything else is a bug: __call__
            return _transport_failure(action, exc, server)
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        return doc if isinstance(doc, dict) else {}


def _refused(action: Action, exc: ApiException, server: str) -> str:
    """One line for an error answer: what RBAC lacks, what is missing, or the API's message."""
    if not exc.status:  # the client reports TLS failures as status 0
        return _transport_failure(action, exc, server)
    body = exc.body if isinstance(exc.body, str | bytes) else b""
    error = status_error(
        int(exc.status), exc.reason, body.encode() if isinstance(body, str) else body, None
    )
    if error.status == 403:
        return (
            f"forbidden: the agent's RBAC does not allow {action.verb} on {action.resource} "
            f"in namespace {action.namespace} (apply {action.overlay})"
        )
    if error.status == 404:
        return f"not found: {action.target}"
    if error.status == 401:
        return f"unauthorized: {server} rejected the agent's credentials"
    detail = f": {error.message}" if error.message else ""
    return f"{action.verb} {action.target} failed: {error.status} {error.reason}{detail}"


def _transport_failure(action: Action, exc: BaseException, server: str) -> str:
    """One line for a request that got no answer; says when the write may have happened."""
    error = transport_error(exc, server)
    maybe = isinstance(error, ApiTimeout | ApiConnectionLost)
    note = " (it may have been applied; check before sending it again)" if maybe else ""
    return f"{action.verb} {action.target}: {error}{note}"


def clip(message: str) -> str:
    """One line of at most MAX_MESSAGE characters."""
    line = " ".join(message.split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"
