"""deploy/: the Dockerfile and the Kubernetes manifests, checked without Docker or a cluster.

Every kustomization names files that exist; every Deployment's selector, service account,
volumes, Secrets and probes resolve; every SNAPSYNC_* variable is one the `snapsync` command it
runs actually reads (taken from the click commands, not from a list kept here); probes hit routes
the server app really serves and a `snapsync health` the CLI really parses. The RBAC stays
read-only: tests/test_collect_kube_deploy.py checks the rules, this checks that the Deployment
runs as the account those rules are bound to, and that no overlay here adds a role.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from snapsync.agent import Agent, HttpTransport
from snapsync.cli import cli
from snapsync.server import ServerSettings, SharedSecret, create_app
from snapsync.server.store import open_store
from snapsync.units import parse_size

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))
NAMESPACE = "snapsync"
IMAGE_UID = 10001
# Variables read by something other than the click command, each with the reader.
FOREIGN_ENV = {"PGPASSWORD": "libpq, for the PostgreSQL store"}
READ_VERBS = {"get", "list", "watch"}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization(folder: Path) -> dict[str, Any]:
    data = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def build(folder: Path) -> list[dict[str, Any]]:
    """A small `kustomize build`: resources, recursively, then `$patch: delete` and the
    strategic-merge patches this repository uses (containers, env and volumes merged by name)."""
    k = kustomization(folder)
    docs: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        target = folder / entry
        docs.extend(build(target) if target.is_dir() else load_all(target))
    for patch in k.get("patches", []):
        body = (folder / patch["path"]).read_text() if "path" in patch else patch["patch"]
        parsed = yaml.safe_load(body)
        if isinstance(parsed, list):  # a JSON 6902 patch: checked on its own below
            continue
        index = next(i for i, d in enumerate(docs) if ident(d) == ident(parsed))
        if parsed.get("$patch") == "delete":
            del docs[index]
        else:
            docs[index] = merge(docs[index], parsed)
    return docs


def ident(doc: dict[str, Any]) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(base.get(key), value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and all("name" in x for x in patch):
        out_list = list(base)
        for item in patch:
            at = next((i for i, x in enumerate(out_list) if x.get("name") == item["name"]), None)
            if at is None:
                out_list.append(item)
            else:
                out_list[at] = merge(out_list[at], item)
        return out_list
    return patch


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def command_envvars(name: str) -> dict[str, click.Parameter]:
    command = cli.commands[name]
    found: dict[str, click.Parameter] = {}
    for param in command.params:
        envvars = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
        found.update({e: param for e in envvars if e})
    return found


def env_values(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def deployment(folder: Path, name: str) -> dict[str, Any]:
    docs = build(folder)
    return next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == name)


# -- kustomizations ------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_kustomization_names_only_files_that_exist(folder: Path) -> None:
    k = kustomization(folder)
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    for entry in k["resources"]:
        target = folder / entry
        assert target.is_file() or (target / "kustomization.yaml").is_file(), entry
    for patch in k.get("patches", []):
        assert "path" in patch or "patch" in patch
        if "path" in patch:
            assert (folder / patch["path"]).is_file(), patch["path"]


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_object_is_complete_and_in_the_namespace(folder: Path) -> None:
    docs = build(folder)
    assert len({ident(d) for d in docs}) == len(docs), "an object is defined twice"
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
        cluster_wide = doc["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding")
        assert doc["metadata"].get("namespace", "") == ("" if cluster_wide else NAMESPACE), doc
    # a Secret with a value never comes out of `kubectl apply -k`: placeholders would overwrite
    # the real one on every apply
    assert not of_kind(docs, "Secret")


def test_json6902_patches_point_at_what_they_replace() -> None:
    folder = DEPLOY / "agent" / "persistent"
    (patch,) = kustomization(folder)["patches"]
    target = deployment(DEPLOY / "agent", patch["target"]["name"])
    (op,) = yaml.safe_load(patch["patch"])
    assert op["op"] == "replace"
    node: Any = target
    for part in op["path"].strip("/").split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    assert node["name"] == op["value"]["name"] == "state"
    claims = {d["metadata"]["name"] for d in of_kind(build(folder), "PersistentVolumeClaim")}
    assert op["value"]["persistentVolumeClaim"]["claimName"] in claims


# -- the Deployments -----------------------------------------------------------------------------

DEPLOYMENTS = [
    (DEPLOY / "agent", "snapsync-agent", "agent"),
    (DEPLOY / "agent" / "persistent", "snapsync-agent", "agent"),
    (DEPLOY / "agent" / "secrets", "snapsync-agent", "agent"),
    (DEPLOY / "agent" / "actions", "snapsync-agent", "agent"),
    (DEPLOY / "agent" / "actions" / "restart", "snapsync-agent", "agent"),
    (DEPLOY / "server", "snapsync-server", "serve"),
    (DEPLOY / "server" / "postgres", "snapsync-server", "serve"),
]
IDS = [f"{p.relative_to(DEPLOY)}" for p, _, _ in DEPLOYMENTS]


@pytest.mark.parametrize(("folder", "name", "command"), DEPLOYMENTS, ids=IDS)
def test_deployment_resolves_and_runs_unprivileged(folder: Path, name: str, command: str) -> None:
    docs = build(folder)
    found = deployment(folder, name)
    spec, pod = found["spec"], found["spec"]["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    container = only_container(found)
    assert container["image"].split(":")[0].endswith("snapsync")
    assert container["args"][0] == command
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID  # the image's USER
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "memory" in container["resources"]["limits"]
    # volumes: every mount has a volume; every claim exists
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes.keys()
    claims = {d["metadata"]["name"] for d in of_kind(docs, "PersistentVolumeClaim")}
    for volume in volumes.values():
        assert len(set(volume) - {"name"}) == 1, volume  # exactly one source
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in claims
    if spec["replicas"] == 1:
        assert spec["strategy"]["type"] == "Recreate"  # never two writers of one state


@pytest.mark.parametrize(("folder", "name", "command"), DEPLOYMENTS, ids=IDS)
def test_environment_variables_are_ones_the_command_reads(
    folder: Path, name: str, command: str
) -> None:
    container = only_container(deployment(folder, name))
    known = command_envvars(command)
    for entry in container["env"]:
        assert entry["name"] in known or entry["name"] in FOREIGN_ENV, entry["name"]
        assert ("value" in entry) != ("valueFrom" in entry), entry
        if "value" in entry:
            assert isinstance(entry["value"], str), entry  # Kubernetes wants strings
            if entry["name"] in known:
                param = known[entry["name"]]
                ctx = cli.commands[command].make_context(command, [], resilient_parsing=True)
                param.type_cast_value(ctx, entry["value"])  # parses as the CLI would
    # and every required option of the command is given
    given = {e["name"] for e in container["env"]}
    for envvar, param in known.items():
        if param.required:
            assert envvar in given, envvar


SECRET_EXAMPLES = sorted(DEPLOY.rglob("secret.example.yaml"))


def test_secrets_are_referenced_by_name_and_key_and_documented() -> None:
    documented: dict[str, set[str]] = {}
    for path in SECRET_EXAMPLES:
        (secret,) = load_all(path)
        assert secret["kind"] == "Secret" and secret["metadata"]["namespace"] == NAMESPACE
        assert all(v.startswith("REPLACE-") for v in secret["stringData"].values()), path
        assert "kubectl" in path.read_text() and "create secret" in path.read_text()
        documented[secret["metadata"]["name"]] = set(secret["stringData"])
    for folder, name, _ in DEPLOYMENTS:
        for entry in only_container(deployment(folder, name))["env"]:
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in documented.get(ref["name"], set()), (folder, ref)
    agent_env = only_container(deployment(DEPLOY / "agent", "snapsync-agent"))["env"]
    secret = next(e for e in agent_env if e["name"] == "SNAPSYNC_AGENT_SECRET")
    assert secret["valueFrom"]["secretKeyRef"]["name"] == "snapsync-agent"


def test_agent_runs_as_the_read_only_account_in_the_cluster() -> None:
    docs = build(DEPLOY / "agent")
    pod = deployment(DEPLOY / "agent", "snapsync-agent")["spec"]["template"]["spec"]
    (account,) = of_kind(docs, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    bindings = of_kind(docs, "ClusterRoleBinding")
    assert {b["roleRef"]["name"] for b in bindings} == {"snapsync-agent-read"}
    assert all(s["name"] == account["metadata"]["name"] for b in bindings for s in b["subjects"])
    env = env_values(only_container(deployment(DEPLOY / "agent", "snapsync-agent")))
    assert env["SNAPSYNC_IN_CLUSTER"] == "1"
    # the persistent overlay adds storage, nothing that grants anything
    added = {ident(d) for d in build(DEPLOY / "agent" / "persistent")} - {ident(d) for d in docs}
    assert {kind for kind, _, _ in added} == {"PersistentVolumeClaim"}
    # the server needs no API access at all
    for folder in (DEPLOY / "server", DEPLOY / "server" / "postgres"):
        assert not [d for d in build(folder) if "Role" in d["kind"]]


def test_agent_state_and_heartbeat_live_on_writable_volumes() -> None:
    container = only_container(deployment(DEPLOY / "agent", "snapsync-agent"))
    env = env_values(container)
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    for variable in ("SNAPSYNC_STATE_DIR", "SNAPSYNC_HEALTH_FILE"):
        assert any(env[variable].startswith(m.rstrip("/") + "/") for m in mounts), variable
    assert parse_size(env["SNAPSYNC_BUDGET"]) > 0  # the example sets a real budget


def test_agent_probes_run_the_health_command_on_the_heartbeat_file() -> None:
    container = only_container(deployment(DEPLOY / "agent", "snapsync-agent"))
    heartbeat = env_values(container)["SNAPSYNC_HEALTH_FILE"]
    # the loop steps at least every `max_sleep` seconds; one exchange may take a request timeout
    longest_quiet = (
        inspect.signature(Agent.run).parameters["max_sleep"].default
        + inspect.signature(HttpTransport).parameters["timeout"].default
    )
    for probe_name in ("startupProbe", "livenessProbe"):
        argv = container[probe_name]["exec"]["command"]
        assert argv[0] == "snapsync" and argv[1] == "health"
        ctx = cli.commands["health"].make_context("health", list(argv[2:]))
        assert str(ctx.params["health_file"]) == heartbeat
        assert ctx.params["max_age"] > longest_quiet
        assert container[probe_name]["timeoutSeconds"] >= 5
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # the first full cycle


@pytest.mark.parametrize("folder", [DEPLOY / "server", DEPLOY / "server" / "postgres"])
def test_server_probes_and_service_hit_real_routes_and_ports(folder: Path, tmp_path: Path) -> None:
    docs = build(folder)
    found = deployment(folder, "snapsync-server")
    container = only_container(found)
    env = env_values(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(env["SNAPSYNC_PORT"]) in ports.values()
    assert env["SNAPSYNC_HOST"] == "0.0.0.0"  # reachable from the Service, not only loopback
    store = open_store(str(tmp_path / "probe.db"))
    app = create_app(ServerSettings(secrets=SharedSecret(b"x"), stores=store))
    routes = {getattr(r, "path", "") for r in app.routes}
    store.close()
    probes = {name: container[name]["httpGet"] for name in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["path"] in routes
        assert probe["port"] in ports or probe["port"] in ports.values()
    (service,) = of_kind(docs, "Service")
    labels = found["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports or port["targetPort"] in ports.values()


def test_postgres_overlay_swaps_the_database_and_drops_the_claim() -> None:
    sqlite = env_values(only_container(deployment(DEPLOY / "server", "snapsync-server")))
    assert not sqlite["SNAPSYNC_DATABASE"].startswith("postgres")
    docs = build(DEPLOY / "server" / "postgres")
    assert not of_kind(docs, "PersistentVolumeClaim")
    found = deployment(DEPLOY / "server" / "postgres", "snapsync-server")
    container = only_container(found)
    assert env_values(container)["SNAPSYNC_DATABASE"].startswith("postgresql://")
    password = next(e for e in container["env"] if e["name"] == "PGPASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"] == "snapsync-postgres"
    assert found["spec"]["replicas"] > 1  # the point of PostgreSQL: several servers
    assert "password" not in env_values(container)["SNAPSYNC_DATABASE"]


# -- the Dockerfile ------------------------------------------------------------------------------

DOCKERFILE = DEPLOY / "Dockerfile"
SECRETISH = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|PRIVATE", re.IGNORECASE)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(x for x in text.splitlines() if not x.startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_snapsync_as_a_non_root_user() -> None:
    steps = instructions(DOCKERFILE.read_text())
    stages = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(stages) >= 2  # a build stage and a runtime stage
    final = steps[stages[-1] :]
    assert "slim" in DOCKERFILE.read_text().split("PYTHON_IMAGE=")[1].split()[0]
    assert "3.11" in DOCKERFILE.read_text().split("PYTHON_IMAGE=")[1].split()[0]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0") and int(uid) == IMAGE_UID
    entrypoint = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["snapsync"]  # exec form: signals reach it
    exposed = [rest for word, rest in final if word == "EXPOSE"]
    serve_port = next(p for p in cli.commands["serve"].params if p.name == "port").default
    assert exposed == [str(serve_port)]


def test_dockerfile_bakes_in_no_secret_and_no_stray_file() -> None:
    steps = instructions(DOCKERFILE.read_text())
    for word, rest in steps:
        if word in ("ENV", "ARG", "LABEL"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest) or [rest.split()[0]]:
                assert not SECRETISH.search(name), (word, rest)
        if word in ("COPY", "ADD"):
            sources = shlex.split(rest)[:-1]
            sources = [s for s in sources if not s.startswith("--")]
            assert "." not in sources, "copy named files, not the whole context"
            assert not any(s.startswith(("http://", "https://")) for s in sources)
        assert not (word == "RUN" and SECRETISH.search(rest)), rest
    # the context is an allow-list: whatever lies in the checkout, only these can be copied
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "schemas", "snapsync"}
    copied = {
        s.rstrip("/")
        for word, rest in steps
        if word == "COPY" and "--from" not in rest
        for s in shlex.split(rest)[:-1]
    }
    assert copied <= allowed
    # hatchling needs these to build the wheel (pyproject's readme and force-include)
    assert {"pyproject.toml", "README.md", "schemas", "snapsync"} <= copied


def test_no_manifest_or_dockerfile_holds_a_credential() -> None:
    for path in [DOCKERFILE, *DEPLOY.rglob("*.yaml")]:
        for doc in load_all(path) if path.suffix == ".yaml" else []:
            if doc.get("kind") == "Secret":
                assert path.name == "secret.example.yaml", path
            for container in _containers(doc):
                for entry in container.get("env", []):
                    if SECRETISH.search(entry["name"]):
                        assert "valueFrom" in entry, (path, entry["name"])


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def test_every_read_only_kustomization_grants_only_reads() -> None:
    """Extends test_collect_kube_deploy to the overlays added here (persistent)."""
    for folder in (DEPLOY / "agent", DEPLOY / "agent" / "persistent"):
        for role in of_kind(build(folder), "ClusterRole"):
            for rule in role.get("rules") or ():
                assert set(rule["verbs"]) <= READ_VERBS, (folder, role["metadata"]["name"])
