# The emulated cluster: objects by resource, one global resourceVersion, a bounded watch-event log,
# paginated list snapshots behind continue tokens, and scripted faults.
#
# Invariants:
# - Every write bumps the global resourceVersion by one and stamps it on the object; the event log
#   holds (rv, type, object) in rv order, so a watch from rv R replays exactly the writes after R.
# - A paginated LIST serves one consistent snapshot (taken at its first page) until its continue
#   token expires; an expired or compacted token is answered 410 Expired, as the real server does.
# - All state is behind one lock; `changed` wakes watch streams after every write.
# - Writes through the API (PATCH, DELETE) take the same path as scripted changes (`put`, `delete`):
#   a patch that changes nothing is a no-op (no new resourceVersion, no event), as on a real server.
from __future__ import annotations

import base64
import copy
import itertools
import json
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.kube_emulator.resources import (
    BUILTIN,
    METRICS,
    PREFERRED,
    Resource,
    derive,
)

ResKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace, name)


@dataclass
class Fault:
    """A scripted misbehaviour for matching requests (see `ClusterState.add_fault`).

    kind:   kind ref (`Pod`, `Deployment.apps`) or None for every kind; for `on="discovery"` a
            group version (`v1`, `metrics.k8s.io/v1beta1`) or None for all discovery documents.
    on:     "list" (every page), "continue" (pages after the first), "watch", "discovery", "get",
            "patch", "delete", "any". `status=403` with a write verb is how a test takes a
            permission away (see `ClusterState.forbid`).
    status: answer with this HTTP status and the real Status body (403, 404, 429, 500, 503, ...).
    action: "status" (answer `status`; without one, only the delay and callback apply) |
            "expire" (410 Expired, as for a stale continue token) | "drop" (close the connection
            without an answer) | "die" (drop it and stop the whole server, as a crash does).
    delay:  seconds to wait before answering (slow responses; client read timeouts).
    callback: called before answering, e.g. to change objects between two pages.
    subresource: None matches requests on the object and its subresources alike; "" only the
            object itself; "scale" (or another name) only that subresource.
    after:  let this many matching requests through first; times: then misbehave this many times
            (None: forever).
    """

    kind: str | None = None
    on: str = "list"
    status: int | None = None
    action: str = "status"
    retry_after: int | None = None
    delay: float = 0.0
    after: int = 0
    times: int | None = None
    callback: Callable[[RequestInfo], None] | None = None
    subresource: str | None = None
    seen: int = 0
    fired: int = 0


@dataclass(frozen=True)
class RequestInfo:
    """What a fault or hook sees of a request."""

    verb: str  # discovery | list | watch | get | patch | delete | other
    path: str
    resource: Resource | None = None
    group_version: str = ""
    namespace: str = ""
    continued: bool = False
    query: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    subresource: str = ""  # "scale", or "" for the object itself


@dataclass
class _ListSnapshot:
    rv: int
    items: list[dict[str, Any]]
    created: float


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    bytes_out: int = 0


class ClusterState:
    """Objects, resource versions and faults of one emulated cluster; thread-safe."""

    def __init__(
        self,
        objects: Iterable[Mapping[str, Any]] = (),
        *,
        resources: Iterable[Resource] | None = None,
        aggregated: bool = True,
        history: int = 100_000,
        token_ttl: float = 300.0,
        max_lists: int = 1000,
    ) -> None:
        objects = list(objects)
        base = list(resources) if resources is not None else list(BUILTIN)
        if aggregated:
            base.extend(METRICS)
        base.extend(derive(objects, base))
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.resources: list[Resource] = []
        self._by_path: dict[tuple[str, str, str], Resource] = {}
        for res in base:
            self.add_resource(res)
        self.rv = 1
        self.compacted_rv = 1
        self.history = history
        self.token_ttl = token_ttl
        self.max_lists = max_lists
        self.events: deque[tuple[int, str, ResKey, dict[str, Any]]] = deque()
        self.store: dict[ResKey, dict[ObjKey, dict[str, Any]]] = {}
        self._lists: OrderedDict[str, _ListSnapshot] = OrderedDict()
        self._ids = itertools.count(1)
        self.faults: list[Fault] = []
        # group versions whose APIService backend is down: 503 on their discovery document,
        # freshness Stale in aggregated discovery, as kube-aggregator answers
        self.unavailable: set[str] = set()
        self.hooks: list[Callable[[RequestInfo], None]] = []
        self.stats = Stats()
        self.closing = False
        for obj in objects:
            self.put(obj, record=False)

    # ----- discovery -------------------------------------------------------------------------

    def add_resource(self, res: Resource) -> None:
        with self.lock:
            key = (res.group, res.version, res.plural)
            if key not in self._by_path:
                self._by_path[key] = res
                self.resources.append(res)

    def resource(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_path.get((group, version, plural))

    def groups(self) -> dict[str, list[str]]:
        """Group -> served versions, preferred first (the core group is "")."""
        found: dict[str, list[str]] = {}
        for res in self.resources:
            versions = found.setdefault(res.group, [])
            if res.version not in versions:
                versions.append(res.version)
        for group, versions in found.items():
            preferred = PREFERRED.get(group)
            if preferred in versions:
                versions.remove(preferred)
                versions.insert(0, preferred)
        return found

    def resource_for_kind(self, group: str, kind: str) -> Resource | None:
        preferred = self.groups().get(group, [""])[0]
        match = [r for r in self.resources if r.group == group and r.kind == kind]
        match.sort(key=lambda r: r.version != preferred)
        return match[0] if match else None

    # ----- writes ----------------------------------------------------------------------------

    def _res_key_of(self, obj: Mapping[str, Any]) -> tuple[ResKey, Resource]:
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        res = self.resource_for_kind(group, str(obj.get("kind", "")))
        if res is None:
            res = derive([obj], self.resources)[0]
            self.add_resource(res)
        return (res.group, res.plural), res

    def put(self, obj: Mapping[str, Any], *, record: bool = True) -> dict[str, Any]:
        """Create or replace an object (a new resourceVersion; uid kept across updates)."""
        with self.lock:
            rkey, res = self._res_key_of(obj)
            if obj.get("kind") == "CustomResourceDefinition":
                for crd_res in derive([obj], self.resources):
                    self.add_resource(crd_res)
            meta = dict(obj.get("metadata") or {})
            okey = (str(meta.get("namespace") or "") if res.namespaced else "", str(meta["name"]))
            bucket = self.store.setdefault(rkey, {})
            old = bucket.get(okey)
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            if old is not None:
                meta["uid"] = old["metadata"].get("uid")
                meta.setdefault("creationTimestamp", old["metadata"].get("creationTimestamp"))
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            new = {**obj, "metadata": meta}
            bucket[okey] = new
            if record:
                self._log("ADDED" if old is None else "MODIFIED", rkey, new)
            self.changed.notify_all()
            return new

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        with self.lock:
            group = api_version.rpartition("/")[0]
            res = self.resource_for_kind(group, kind)
            return res is not None and self._drop(res, namespace, name) is not None

    def _drop(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """Remove one object now (no finalizers, no grace period); it as deleted, or None."""
        with self.lock:
            rkey = (res.group, res.plural)
            old = self.store.get(rkey, {}).pop((namespace if res.namespaced else "", name), None)
            if old is None:
                return None
            self.rv += 1
            gone = {**old, "metadata": {**old["metadata"], "resourceVersion": str(self.rv)}}
            self._log("DELETED", rkey, gone)
            self.changed.notify_all()
            return gone

    # ----- writes through the API (PATCH, DELETE) --------------------------------------------

    def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        """The stored object; Rejected(404) when there is none."""
        with self.lock:
            okey = (namespace if res.namespaced else "", name)
            obj = self.store.get((res.group, res.plural), {}).get(okey)
        if obj is None:
            raise Rejected(404, f'{_qualified(res)} "{name}" not found', _details(res, name))
        return obj

    def patch(
        self, res: Resource, namespace: str, name: str, patch: Any, subresource: str = ""
    ) -> dict[str, Any]:
        """Apply a JSON merge patch (RFC 7386) to an object or its `scale`; the new object.

        Identity (apiVersion, kind, name, namespace, uid, creationTimestamp) stays the server's;
        a `metadata.resourceVersion` in the patch is a precondition (409 when stale); a spec
        change bumps `metadata.generation`. Raises Rejected for 404/409/422.
        """
        if not isinstance(patch, dict):
            raise Rejected(400, "the patch must be a JSON object")
        with self.lock:
            old = self.get(res, namespace, name)
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and str(wanted) != old["metadata"].get("resourceVersion"):
                raise Rejected(
                    409,
                    f'Operation cannot be fulfilled on {_qualified(res)} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and "
                    "try again",
                    _details(res, name),
                )
            if subresource == "scale":
                replicas = merge_patch(scale_of(old), patch).get("spec", {}).get("replicas")
                if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                    raise Rejected(
                        422,
                        f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                        f"{json.dumps(replicas)}: must be greater than or equal to 0",
                        _details(res, name),
                    )
                new = {**old, "spec": {**(old.get("spec") or {}), "replicas": replicas}}
            else:
                new = merge_patch(old, patch)
                new["metadata"] = {**(new.get("metadata") or {})}
                for key in ("name", "namespace", "uid", "creationTimestamp", "resourceVersion"):
                    if key in old["metadata"]:
                        new["metadata"][key] = old["metadata"][key]
                    else:
                        new["metadata"].pop(key, None)
                new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
            if new == old:
                return old
            if new.get("spec") != old.get("spec"):
                generation = int(old["metadata"].get("generation") or 1) + 1
                new["metadata"] = {**new["metadata"], "generation": generation}
            return self.put(new)

    def remove(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        """DELETE one object at once; the object as deleted; Rejected(404) when absent."""
        with self.lock:
            self.get(res, namespace, name)
            gone = self._drop(res, namespace, name)
        assert gone is not None
        return gone

    def forbid(self, kind: str, verb: str, subresource: str | None = None) -> Fault:
        """Answer 403 to `verb` on `kind` from now on, as missing RBAC does."""
        return self.add_fault(kind=kind, on=verb, status=403, subresource=subresource)

    def _log(self, kind: str, rkey: ResKey, obj: dict[str, Any]) -> None:
        self.events.append((self.rv, kind, rkey, obj))
        while len(self.events) > self.history:
            old_rv = self.events.popleft()[0]
            self.compacted_rv = max(self.compacted_rv, old_rv)

    def compact(self) -> None:
        """Forget the event log and every list snapshot, as etcd compaction does."""
        with self.lock:
            self.events.clear()
            self.compacted_rv = self.rv
            self._lists.clear()

    def expire_continue_tokens(self) -> None:
        with self.lock:
            self._lists.clear()

    def objects(self) -> list[dict[str, Any]]:
        """Every stored object, with apiVersion and kind, sorted by resource and key."""
        with self.lock:
            out = []
            for rkey in sorted(self.store):
                for okey in sorted(self.store[rkey]):
                    out.append(self.store[rkey][okey])
            return out

    def served_objects(self) -> list[dict[str, Any]]:
        """Every object as a client sees it when it lists each kind in its preferred version."""
        out = []
        for obj in self.objects():
            group = str(obj.get("apiVersion", "")).rpartition("/")[0]
            res = self.resource_for_kind(group, str(obj.get("kind", "")))
            out.append({**obj, "apiVersion": res.group_version} if res else obj)
        return out

    def apply_changes(self, cluster: Any, changes: Any) -> None:
        """Apply a sample-cluster ChangeSet (added/modified/deleted keys) from `cluster`."""
        current = {
            (
                o["apiVersion"],
                o["kind"],
                o["metadata"].get("namespace") or "",
                o["metadata"]["name"],
            ): o
            for o in cluster.objects()
        }
        for key in (*changes.added, *changes.modified):
            if key in current:
                self.put(current[key])
        for key in changes.deleted:
            self.delete(*key)

    # ----- reads -----------------------------------------------------------------------------

    def list_page(
        self,
        res: Resource,
        namespace: str,
        selector: Callable[[dict[str, Any]], bool],
        limit: int,
        token: str | None,
    ) -> tuple[list[dict[str, Any]], int, str, int]:
        """(items, list rv, next continue token or "", remaining) for one page.

        Raises `Expired` when the token is too old.
        """
        with self.lock:
            if token:
                lid, offset = _decode_token(token)
                snap = self._lists.get(lid)
                if snap is None or time.monotonic() - snap.created > self.token_ttl:
                    self._lists.pop(lid, None)
                    raise Expired(self._inconsistent_token(res, namespace, selector, snap, offset))
            else:
                bucket = self.store.get((res.group, res.plural), {})
                items = [
                    bucket[k]
                    for k in sorted(bucket)
                    if (not namespace or k[0] == namespace) and selector(bucket[k])
                ]
                snap = _ListSnapshot(self.rv, items, time.monotonic())
                lid, offset = str(next(self._ids)), 0
            end = offset + limit if limit > 0 else len(snap.items)
            page = snap.items[offset:end]
            remaining = max(0, len(snap.items) - end)
            next_token = ""
            if remaining:
                self._lists[lid] = snap
                self._lists.move_to_end(lid)
                while len(self._lists) > self.max_lists:
                    self._lists.popitem(last=False)
                next_token = _encode_token(lid, end)
            else:
                self._lists.pop(lid, None)
            return page, snap.rv, next_token, remaining

    def _inconsistent_token(
        self,
        res: Resource,
        namespace: str,
        selector: Callable[[dict[str, Any]], bool],
        snap: _ListSnapshot | None,
        offset: int,
    ) -> str:
        """The token a 410 carries: the rest of the list from current state, inconsistently."""
        bucket = self.store.get((res.group, res.plural), {})
        items = [
            bucket[k]
            for k in sorted(bucket)
            if (not namespace or k[0] == namespace) and selector(bucket[k])
        ][offset:]
        if not items:
            return ""
        lid = str(next(self._ids))
        self._lists[lid] = _ListSnapshot(self.rv, items, time.monotonic())
        return _encode_token(lid, 0)

    def events_since(self, rv: int, rkey: ResKey) -> list[tuple[int, str, dict[str, Any]]] | None:
        """Events of one resource after `rv`, or None when `rv` has been compacted away."""
        with self.lock:
            if rv < self.compacted_rv:
                return None
            return [(erv, t, obj) for erv, t, k, obj in self.events if erv > rv and k == rkey]

    # ----- faults ----------------------------------------------------------------------------

    def add_fault(self, fault: Fault | None = None, /, **fields: Any) -> Fault:
        """Script a fault: `state.add_fault(kind="Pod", status=403)`; returns it for inspection."""
        f = fault if fault is not None else Fault(**fields)
        with self.lock:
            self.faults.append(f)
        return f

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def match_faults(self, info: RequestInfo) -> list[Fault]:
        """The faults that fire for this request (each counted once)."""
        fired = []
        with self.lock:
            self.stats.requests[info.verb] += 1
            for fault in self.faults:
                if not _matches(fault, info):
                    continue
                fault.seen += 1
                if fault.seen <= fault.after:
                    continue
                if fault.times is not None and fault.fired >= fault.times:
                    continue
                fault.fired += 1
                fired.append(fault)
            hooks = list(self.hooks)
        for hook in hooks:
            hook(info)
        return fired


class Rejected(Exception):
    """A write the API server refuses: HTTP status, Status message and details."""

    def __init__(self, code: int, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; `target` is not modified (untouched subtrees are shared)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def scale_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale a real server derives from a workload (replicas default 1)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status: dict[str, Any] = {"replicas": int((obj.get("status") or {}).get("replicas") or 0)}
    selector = selector_string(spec.get("selector"))
    if selector:
        status["selector"] = selector
    keep = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in keep if k in meta},
        "spec": {"replicas": int(spec.get("replicas", 1))},
        "status": status,
    }


def selector_string(selector: Any) -> str:
    """A LabelSelector as the string form Scale.status.selector carries (`app=web,tier in (a)`)."""
    if not isinstance(selector, dict):
        return ""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or ():
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = ",".join(sorted(expr.get("values") or ()))
        terms.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(
                op, f"!{key}"
            )
        )
    return ",".join(sorted(terms))


def _qualified(res: Resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else res.plural


def _details(res: Resource, name: str) -> dict[str, Any]:
    return {"name": name, "group": res.group, "kind": res.plural}


class Expired(Exception):
    """A continue token is too old; carries the inconsistent-continue token of the real 410."""

    def __init__(self, inconsistent: str) -> None:
        super().__init__("expired")
        self.inconsistent = inconsistent


def _matches(fault: Fault, info: RequestInfo) -> bool:
    if fault.on == "discovery":
        return info.verb == "discovery" and fault.kind in (None, info.group_version)
    if fault.on == "continue":
        if info.verb != "list" or not info.continued:
            return False
    elif fault.on != "any" and fault.on != info.verb:
        return False
    if fault.subresource is not None and fault.subresource != info.subresource:
        return False
    if fault.kind is None:
        return True
    return info.resource is not None and info.resource.kind_ref == fault.kind


def _encode_token(lid: str, offset: int) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "id": lid, "start": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str) -> tuple[str, int]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(doc["id"]), int(doc["start"])
    except (ValueError, KeyError, TypeError):
        return "", 0
