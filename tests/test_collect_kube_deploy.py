"""The agent's RBAC in deploy/agent: read-only, Secrets only through the opt-in overlay, and
every group the collector lists by default covered (so a default install records no 403s). The
actions overlay grants exactly what the command vocabulary writes, binds the agent's own service
account and never leaks into the aggregated read role."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from snapsync.agent.kube_commands import action_for
from snapsync.protocol.commands import COMMANDS, validate_command
from snapsync.protocol.messages import Command
from tools.kube_emulator import BUILTIN, METRICS

AGENT = Path(__file__).resolve().parent.parent / "deploy" / "agent"


def _documents(folder: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        target = folder / entry
        if target.is_dir():
            docs.extend(_documents(target))
        else:
            docs.extend(d for d in yaml.safe_load_all(target.read_text()) if d)
    return docs


def _rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    roles = [d for d in docs if d["kind"] == "ClusterRole"]
    return [rule for role in roles for rule in role.get("rules") or ()]


def _grants(rules: list[dict[str, Any]], group: str, resource: str) -> bool:
    return any(
        (group in r["apiGroups"] or "*" in r["apiGroups"])
        and (resource in r["resources"] or "*" in r["resources"])
        for r in rules
    )


def test_base_is_read_only_and_without_secrets():
    rules = _rules(_documents(AGENT))
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in rules)
    assert not _grants(rules, "", "secrets")
    for res in (*BUILTIN, *METRICS):
        if "list" in res.verbs and res.kind_ref != "Secret":
            assert _grants(rules, res.group, res.plural), res.kind_ref


def test_secrets_overlay_adds_only_secrets():
    docs = _documents(AGENT / "secrets")
    rules = _rules(docs)
    assert _grants(rules, "", "secrets")
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in rules)
    aggregated = next(d for d in docs if d["metadata"]["name"] == "snapsync-agent-read")
    selector = aggregated["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
    secrets_role = next(d for d in docs if d["metadata"]["name"].endswith("-secrets"))
    assert selector.items() <= secrets_role["metadata"]["labels"].items()
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "snapsync-agent-read"


# ----- the opt-in overlay for the agent's commands (deploy/agent/actions) ---------------------

ROLE_KINDS = ("ClusterRole", "Role")
READ = {"get", "list", "watch"}


def _triples(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(api group, resource, verb) for every rule of every role, wildcards kept as "*"."""
    return {
        (group, resource, verb)
        for doc in docs
        if doc["kind"] in ROLE_KINDS
        for rule in doc.get("rules") or ()
        for group in rule.get("apiGroups") or ()
        for resource in rule.get("resources") or ()
        for verb in rule.get("verbs") or ()
    }


def _key(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def _needed(overlay: str) -> set[tuple[str, str, str]]:
    """What the runner writes, for every kind the command vocabulary accepts, that `overlay`
    (a path under the repository root) is the one to grant."""
    commands = [Command(1, "delete-pod", {"namespace": "shop", "name": "web-0"})]
    for name in ("scale", "restart-rollout"):
        for kind in COMMANDS[name]["kind"]:
            args = {"kind": kind, "namespace": "shop", "name": "web"}
            commands.append(Command(1, name, {**args, "replicas": 1} if name == "scale" else args))
    actions = [action_for(c) for c in commands if not validate_command(c)]
    assert len(actions) == len(commands)
    return {(a.group, a.resource, a.verb) for a in actions if a.overlay == overlay}


OVERLAYS = [(AGENT, AGENT / "actions"), (AGENT / "actions", AGENT / "actions" / "restart")]


@pytest.mark.parametrize(("below", "folder"), OVERLAYS, ids=["actions", "actions/restart"])
def test_actions_overlays_grant_exactly_what_their_commands_write(below: Path, folder: Path):
    base = _documents(below)
    overlay = _documents(folder)
    base_keys = {_key(d) for d in base}
    assert all(d in overlay for d in base)  # the overlay includes what it builds on, unchanged
    added = [d for d in overlay if _key(d) not in base_keys]
    assert {d["kind"] for d in added} <= {*ROLE_KINDS, "ClusterRoleBinding", "RoleBinding"}
    granted = _triples(added)
    assert granted == _needed(str(folder.relative_to(AGENT.parent.parent)))
    assert not any("*" in triple for triple in granted)
    assert all(not rule.get("resourceNames") for d in added for rule in d.get("rules") or ())


def test_scale_and_delete_pod_never_patch_a_whole_workload():
    """Issue 16: scale goes through the scale subresource; patching a workload (restart) is
    the separate restart overlay."""
    granted = _triples(_documents(AGENT / "actions"))
    patched = {resource for group, resource, verb in granted if verb == "patch"}
    assert patched == {"deployments/scale", "statefulsets/scale", "replicasets/scale"}


@pytest.mark.parametrize(("below", "folder"), OVERLAYS, ids=["actions", "actions/restart"])
def test_actions_overlays_bind_the_agent_and_stay_out_of_the_read_role(below: Path, folder: Path):
    base = _documents(below)
    overlay = _documents(folder)
    base_keys = {_key(d) for d in base}
    added = [d for d in overlay if _key(d) not in base_keys]
    roles = {d["metadata"]["name"] for d in added if d["kind"] in ROLE_KINDS}
    bindings = [d for d in added if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert roles and {b["roleRef"]["name"] for b in bindings} == roles
    account = next(d for d in base if d["kind"] == "ServiceAccount")
    for binding in bindings:
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": account["metadata"]["namespace"],
            }
        ]
    read = next(d for d in base if d["metadata"]["name"] == "snapsync-agent-read")
    selector = read["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
    for doc in added:
        labels = doc["metadata"].get("labels") or {}
        assert not selector.items() <= labels.items(), doc["metadata"]["name"]


def test_base_and_secrets_overlay_stay_read_only():
    for folder in (AGENT, AGENT / "secrets"):
        docs = _documents(folder)
        assert all(verb in READ for _, _, verb in _triples(docs)), folder
        bound = {d["roleRef"]["name"] for d in docs if d["kind"].endswith("Binding")}
        assert bound == {"snapsync-agent-read"}, folder
