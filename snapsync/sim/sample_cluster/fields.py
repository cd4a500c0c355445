# Server-side bookkeeping a real API server adds to objects: managedFields (fieldsV1 sets derived
# from the fields each manager wrote) and kubectl's last-applied-configuration annotation.
# fieldsV1 trees returned here may be shared between objects (pods of one template): callers treat
# them as immutable and replace, never edit, them.
from __future__ import annotations

import json
from sys import intern
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# Lists the API merges by key (listType=map); the value names the key fields in the k:{...} form.
_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "conditions": ("type",),
    "addresses": ("type",),
    "podIPs": ("ip",),
    "hostIPs": ("ip",),
    "ownerReferences": ("uid",),
}
# Struct fields that are plain (non-pointer) structs: no "." entry of their own.
_NO_DOT = frozenset({"metadata", "spec", "status", "template", "strategy", "updateStrategy"})


def fields_v1(node: dict[str, Any]) -> dict[str, Any]:
    """The fieldsV1 set naming every field present in `node`, as server-side apply records it.

    Maps get a "." entry (the map itself is owned) except plain structs such as spec/template.
    """
    out: dict[str, Any] = {}
    for name, value in node.items():
        field = intern("f:" + name)  # millions of copies of a few hundred names otherwise
        kind = type(value)
        if kind is dict:
            if not value or (name == "selector" and "matchLabels" in value):
                out[field] = {}  # empty or atomic (LabelSelector)
            elif name in _NO_DOT:
                out[field] = fields_v1(value)
            else:
                child: dict[str, Any] = {".": {}}
                child.update(fields_v1(value))
                out[field] = child
        elif kind is list and value and type(value[0]) is dict:
            out[field] = _keyed_list(name, value)
        else:
            out[field] = {}
    return out


def _keyed_list(name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    keys = _LIST_KEYS.get(name)
    if keys is None:
        if name == "ports":
            first = items[0]
            keys = (
                ("containerPort", "protocol") if "containerPort" in first else ("port", "protocol")
            )
        else:
            return {}  # atomic list (tolerations, images, containerStatuses, subsets, ...)
    out: dict[str, Any] = {".": {}}
    for item in items:
        ident = ",".join(f'"{k}":{_json_scalar(item.get(k))}' for k in keys)
        entry: dict[str, Any] = {".": {}}
        entry.update(fields_v1(item))
        out["k:{" + ident + "}"] = entry
    return out


def _json_scalar(value: Any) -> str:
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    ):
        return f'"{value}"'
    return json.dumps(value)


def managed_entry(
    manager: str,
    operation: str,
    api_version: str,
    time: str,
    fields: dict[str, Any],
    subresource: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "apiVersion": api_version,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        "manager": manager,
        "operation": operation,
    }
    if subresource:
        entry["subresource"] = subresource
    entry["time"] = time
    return entry


def last_applied(obj: dict[str, Any], body_fields: tuple[str, ...]) -> str:
    """The annotation kubectl apply writes: the applied manifest as compact JSON plus a newline."""
    meta = obj["metadata"]
    applied_meta: dict[str, Any] = {"annotations": {}}
    if meta.get("labels"):
        applied_meta["labels"] = meta["labels"]
    applied_meta["name"] = meta["name"]
    if meta.get("namespace"):
        applied_meta["namespace"] = meta["namespace"]
    applied: dict[str, Any] = {"apiVersion": obj["apiVersion"], "kind": obj["kind"]}
    for field in body_fields:
        if field in obj:
            applied[field] = obj[field]
    applied["metadata"] = applied_meta
    return json.dumps(applied, separators=(",", ":"), sort_keys=True) + "\n"


def bookkeep(
    obj: dict[str, Any],
    *,
    manager: str,
    time: str,
    body: tuple[str, ...] = ("spec",),
    applied: bool = False,
    status_manager: str | None = None,
    status_time: str | None = None,
    body_fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add what the server records for a created object: the last-applied annotation when it was
    `kubectl apply`-ed, and managedFields for its author (and for whoever writes its status).
    `body_fields`, when given, are the author's fieldsV1 for `body` (computed elsewhere)."""
    meta = obj["metadata"]
    if applied:
        meta.setdefault("annotations", {})[LAST_APPLIED] = last_applied(obj, body)
    own = {k: meta[k] for k in ("annotations", "labels") if meta.get(k)}
    fields: dict[str, Any] = {"f:metadata": fields_v1(own)} if own else {}
    if body_fields is None:
        body_fields = fields_v1({k: obj[k] for k in body if k in obj})
    fields.update(body_fields)
    api_version = obj["apiVersion"]
    entries = [managed_entry(manager, "Update", api_version, time, fields)]
    if status_manager and obj.get("status"):
        entries.append(
            managed_entry(
                status_manager,
                "Update",
                api_version,
                status_time or time,
                {"f:status": fields_v1(obj["status"])},
                subresource="status",
            )
        )
    meta["managedFields"] = entries
    return obj


def template_fields(owner: dict[str, Any]) -> dict[str, Any]:
    """fieldsV1 of the pod template's spec, taken from the owner's own managedFields."""
    for entry in owner["metadata"].get("managedFields", ()):
        spec = entry["fieldsV1"].get("f:spec", {})
        if "f:template" in spec:
            found: dict[str, Any] = spec["f:template"]["f:spec"]
            return found
    computed: dict[str, Any] = fields_v1({"spec": owner["spec"]["template"]["spec"]})["f:spec"]
    return computed
