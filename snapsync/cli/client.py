"""The click face of the client: `snapsync get`, `snapsync envs` and the server half of
`snapsync health -e` (health.py keeps `health --file` for the agent's heartbeat).

Decisions where kubectl has no answer for a snapshot:
- There is no current context, so no current namespace: without -n, `get` spans every namespace
  (as -A does) and a name is looked up in all of them (two matches: say which, ask for -n).
- Tables begin with one line naming the environment, the version and how long ago it was
  collected; ages in the table are measured to that collection. `-o yaml|json|name` print only
  the objects (machine formats stay clean) and the line goes to stderr.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from snapsync.canonical.keys import split_kind_ref
from snapsync.client.api import DEFAULT_SERVER, BrowseClient
from snapsync.client.kinds import plural, resolve
from snapsync.client.tables import render, table
from snapsync.errors import InputError
from snapsync.kubeview import age, parse_time, to_yaml

OUTPUTS = ("wide", "yaml", "json", "name")


def server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--server and --api-token, from SNAPSYNC_SERVER and SNAPSYNC_API_TOKEN."""
    command = click.option(
        "--api-token",
        envvar="SNAPSYNC_API_TOKEN",
        help="The server's API token ($SNAPSYNC_API_TOKEN).",
    )(command)
    return click.option(
        "--server",
        envvar="SNAPSYNC_SERVER",
        default=DEFAULT_SERVER,
        show_default=True,
        help="The snapsync server's URL ($SNAPSYNC_SERVER).",
    )(command)


def _env_option(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "-e",
        "--env",
        "env",
        required=required,
        metavar="ENV",
        help="The environment (its edge id, as `snapsync envs` lists).",
    )


@click.command(name="get")
@click.argument("resources", nargs=-1, required=True)
@_env_option(required=True)
@click.option("-n", "--namespace", help="Only this namespace [default: every namespace].")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace (the default).")
@click.option("-l", "--selector", default="", help="Labels: app=web,tier (equality, as kubectl).")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), help="wide, yaml, json or name.")
@server_options
def get(
    resources: tuple[str, ...],
    env: str,
    namespace: str | None,
    all_namespaces: bool,
    selector: str,
    output: str | None,
    server: str,
    api_token: str | None,
) -> None:
    """Objects of ENV's newest snapshot, as `kubectl get` shows them.

    \b
    snapsync get pods -e shop-17 -n shop
    snapsync get deploy/web -e shop-17 -o yaml
    snapsync get po,svc -e shop-17 -A -o wide
    """
    if all_namespaces:
        namespace = None
    with BrowseClient(server, api_token) as client:
        summary = client.environment(env)
        held = {k["kind"]: k["namespace"] for k in summary.get("kinds") or ()}
        scoped = _namespaced(summary)
        wanted = _requests(resources, held)
        collected = _collected(summary)
        found: list[tuple[str, list[dict[str, Any]]]] = []
        for ref, names in wanted:
            ns = namespace if scoped.get(ref, True) else None
            found.append((ref, _fetch(client, env, ref, ns, names, selector)))
    header = _header(summary, collected)
    if output in ("yaml", "json", "name"):
        click.echo(header, err=True)
        objects = [o for _, rows in found for o in rows]
        if objects or output != "name":
            click.echo(_machine(objects, output), nl=output != "yaml")
        return
    click.echo(header)
    printed = False
    for ref, rows in found:
        if not rows:
            continue
        spans = namespace is None and scoped.get(ref, True)
        text = table(ref, rows, collected, wide=output == "wide", namespaces=spans)
        click.echo(("\n" if printed else "") + text)
        printed = True
    if not printed:
        where = f"in {namespace} namespace" if namespace else "in any namespace"
        click.echo(f"No resources found {where}.", err=True)


@click.command(name="envs")
@click.option("-o", "--output", type=click.Choice(("json",)), help="json: the API's answer.")
@server_options
def envs(output: str | None, server: str, api_token: str | None) -> None:
    """The server's environments: freshness, health, collection errors, version."""
    with BrowseClient(server, api_token) as client:
        found = client.environments()
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    now = time.time()
    rows = [("NAME", "GROUP", "STATUS", "HEALTH", "ERRORS", "LAST SEEN", "VERSION", "OBJECTS")]
    for e in found:
        seen = parse_time(e.get("last_seen"))
        rows.append(
            (
                str(e.get("edge_id", "")),
                str(e.get("group") or "<none>"),
                str(e.get("status", "")),
                str(e.get("health") or "unknown"),
                _errors(e.get("errors") or []),
                age(None if seen is None else now - seen) if seen else "never",
                str(e.get("version") or "-"),
                str(e.get("objects", 0)),
            )
        )
    click.echo(render(rows) if found else "No environments.")


def show_health(env: str, server: str, api_token: str | None, output: str | None) -> None:
    """`snapsync health -e ENV`: the server's health view of ENV, section by section."""
    with BrowseClient(server, api_token) as client:
        summary = client.environment(env)
        doc = client.health(env)
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{_header(summary, _collected(summary))} · health {doc.get('health')}")
    errors = summary.get("errors") or []
    if errors:
        click.echo(f"\nNOT COLLECTED ({len(errors)})")
        rows: list[tuple[str, ...]] = [("KIND", "REASON", "MESSAGE")]
        rows += [(str(e["kind"]), str(e["reason"]), str(e["message"])) for e in errors]
        click.echo(render(rows))
    for section in (doc.get("sections") or {}).values():
        problems = section.get("problems") or []
        click.echo(f"\n{str(section.get('title', '')).upper()} ({section.get('total', 0)})")
        if not problems:
            click.echo("none")
            continue
        rows = [("NAMESPACE", "OBJECT", "STATUS", "READY", "RESTARTS", "COUNT", "WHY")]
        for p in problems:
            rows.append(
                (
                    str(p.get("namespace", "")),
                    _name_of(str(p.get("kind", "")), p),
                    str(p.get("status", "")),
                    str(p.get("ready", "")),
                    str(p.get("restarts", "")),
                    str(p.get("count", "")),
                    str(p.get("detail", "")),
                )
            )
        used = [i for i in range(len(rows[0])) if any(r[i] for r in rows[1:]) or i in (1, 2)]
        click.echo(render([[r[i] for i in used] for r in rows]))
        if len(problems) < int(section.get("total", 0)):
            click.echo(f"(showing {len(problems)} of {section.get('total')})")


def _requests(resources: Sequence[str], held: dict[str, str]) -> list[tuple[str, list[str]]]:
    """`pods` / `po,svc` / `pods web-0 web-1` / `deploy/web svc/web` -> (kind ref, names)."""
    if all("/" in r for r in resources):
        out: dict[str, list[str]] = {}
        for item in resources:
            word, _, name = item.partition("/")
            if not name:
                raise InputError(f"{item!r}: expected KIND/NAME")
            out.setdefault(resolve(word, held), []).append(name)
        return list(out.items())
    if any("/" in r for r in resources):
        raise InputError("there is no need to give a kind twice: use KIND NAME... or KIND/NAME...")
    kinds = [resolve(word, held) for word in resources[0].split(",") if word]
    names = list(resources[1:])
    if names and len(kinds) > 1:
        raise InputError("names go with one kind: `get pods web-0`, not `get pods,svc web-0`")
    return [(ref, names) for ref in kinds]


def _fetch(
    client: BrowseClient,
    env: str,
    ref: str,
    namespace: str | None,
    names: list[str],
    selector: str,
) -> list[dict[str, Any]]:
    # `kind=Event` also matches Event.events.k8s.io: keep the kind asked for
    if not names:
        rows = client.objects(env, ref, namespace, label=selector)
        return [row["object"] for row in rows if row.get("kind") == ref]
    out = []
    for name in names:
        rows = client.objects(env, ref, namespace, name=name, label=selector)
        exact = [row for row in rows if row.get("name") == name and row.get("kind") == ref]
        resource = _resource(ref)
        if not exact:
            raise InputError(f'{resource} "{name}" not found in {env}')
        if len(exact) > 1:
            spaces = ", ".join(str(row.get("namespace")) for row in exact)
            raise InputError(f'{resource} "{name}" is in several namespaces ({spaces}): give -n')
        out.append(exact[0]["object"])
    return out


def _namespaced(summary: dict[str, Any]) -> dict[str, bool]:
    """Kind ref -> whether its objects live in namespaces (per the environment's kinds)."""
    out: dict[str, bool] = {}
    for k in summary.get("kinds") or ():
        out[k["kind"]] = out.get(k["kind"], False) or bool(k["namespace"])
    return out


def _collected(summary: dict[str, Any]) -> float:
    """When ENV's newest snapshot was collected (else received; else now)."""
    versions = summary.get("versions") or [{}]
    for value in (summary.get("collected_at"), versions[0].get("received_at")):
        found = parse_time(value)
        if found is not None:
            return found
    return time.time()


def _header(summary: dict[str, Any], collected: float) -> str:
    if summary.get("version") is None:
        return f"{summary.get('edge_id')}: no snapshot yet"
    stamp = summary.get("collected_at") or "at an unknown time"
    old = age(time.time() - collected)
    line = (
        f"{summary.get('edge_id')} · version {summary['version']} · collected {stamp} ({old} ago)"
    )
    errors = summary.get("errors") or []
    if errors:
        line += f" · not collected: {_errors(errors)}"
    return line


def _errors(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "<none>"
    shown = ",".join(f"{e.get('kind')}:{e.get('reason')}" for e in errors[:3])
    return shown + (f" +{len(errors) - 3}" if len(errors) > 3 else "")


def _resource(ref: str) -> str:
    """kubectl's resource name: `deployments.apps`, `pods`."""
    group, kind = split_kind_ref(ref)
    return plural(kind) + (f".{group}" if group else "")


def _name_of(ref: str, obj: dict[str, Any]) -> str:
    """kubectl's `-o name`: `deployment.apps/web`, `pod/web-0`."""
    group, kind = split_kind_ref(ref)
    return f"{kind.lower()}{'.' + group if group else ''}/{obj.get('name', '')}"


def _machine(objects: list[dict[str, Any]], output: str) -> str:
    if output == "name":
        return "\n".join(
            _name_of(_ref_of(o), {"name": o.get("metadata", {}).get("name", "")}) for o in objects
        )
    doc: Any = (
        objects[0]
        if len(objects) == 1
        else {
            "apiVersion": "v1",
            "items": objects,
            "kind": "List",
            "metadata": {"resourceVersion": ""},
        }
    )
    return to_yaml(doc) if output == "yaml" else json.dumps(doc, indent=4, ensure_ascii=False)


def _ref_of(obj: dict[str, Any]) -> str:
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    kind = str(obj.get("kind", ""))
    return f"{kind}.{group}" if group else kind
