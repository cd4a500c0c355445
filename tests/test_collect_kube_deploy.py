"""The agent's RBAC in deploy/agent: read-only, Secrets only through the opt-in overlay, and
every group the collector lists by default covered (so a default install records no 403s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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
