"""Which kinds a cluster serves: API discovery, with an optional per-environment cache file.

Invariants:
- Every served group is considered (core, named groups, aggregated APIs, CRDs); a group's
  preferred version comes first, and a kind is collected once, from the first version serving it
  (so a kind served as v2 and v1 is listed once, as v2).
- Only resources that support `list` count; subresources (`pods/log`) never do.
- A group version whose discovery fails (an aggregated API whose backend is down) is recorded as
  an error for that group and the rest goes on; failing to read /api or /apis fails the whole
  collection, since then nothing is known.
- Aggregated discovery (two documents for everything) is asked for first; older servers get the
  legacy walk (/api, /apis, then one document per group version).
- The cache file (legacy walk only) belongs to one environment (the agent's state dir) and
  names the server it was read from; it is only used while the server lists the same group
  versions, expires after a TTL, and is deleted whenever discovery or a LIST shows it wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapsync.canonical.keys import kind_ref
from snapsync.canonical.snapshot import KindFailure
from snapsync.collect.kubeapi import ApiStatusError, ApiTimeout, KubeApi

CACHE_FILE = "discovery.json"
CACHE_FORMAT = 1
AGGREGATED_KIND = "APIGroupDiscoveryList"
# aggregated discovery (GA in 1.30, beta since 1.26), falling back to the legacy documents
AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)


@dataclass(frozen=True, slots=True)
class ApiKind:
    """One listable kind as discovery reported it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...]

    @property
    def ref(self) -> str:
        return kind_ref(self.group, self.kind)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "") -> str:
        """The collection URL, cluster-wide or in one namespace."""
        root = f"/apis/{self.group}/{self.version}" if self.group else "/api/v1"
        if namespace and self.namespaced:
            return f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{root}/{self.plural}"


@dataclass(frozen=True)
class Discovery:
    kinds: tuple[ApiKind, ...]
    errors: tuple[KindFailure, ...]
    requests: int
    from_cache: bool


class DiscoveryCache:
    """Resource lists per group version of one server, in one JSON file (atomic writes)."""

    def __init__(self, directory: Path, server: str, ttl: float) -> None:
        self.path = Path(directory) / CACHE_FILE
        self.server = server
        self.ttl = ttl

    def load(self, group_versions: list[str]) -> dict[str, list[dict[str, Any]]] | None:
        """The cached resource lists when they match this server and its group versions."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != CACHE_FORMAT
            or doc.get("server") != self.server
            or doc.get("group_versions") != group_versions
            or not isinstance(doc.get("fetched"), int | float)
            or time.time() - doc["fetched"] > self.ttl
            or not isinstance(doc.get("resources"), dict)
        ):
            return None
        resources: dict[str, list[dict[str, Any]]] = doc["resources"]
        return resources

    def save(self, group_versions: list[str], resources: dict[str, list[dict[str, Any]]]) -> None:
        doc = {
            "format": CACHE_FORMAT,
            "server": self.server,
            "fetched": time.time(),
            "group_versions": group_versions,
            "resources": resources,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".discovery.")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(doc, out)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs requests next time

    def invalidate(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def discover(api: KubeApi, cache: DiscoveryCache | None = None) -> Discovery:
    """Listable kinds of the cluster behind `api`. Raises the api's exceptions for /api, /apis.

    Servers with aggregated discovery (Kubernetes 1.26+) describe everything in two documents,
    /api and /apis; older ones need one more request per group version, which `cache` saves.
    """
    before = api.requests
    core = api.get("/api", accept=AGGREGATED_ACCEPT)
    if core.get("kind") == AGGREGATED_KIND:
        named = api.get("/apis", accept=AGGREGATED_ACCEPT)
        ordered, documents = _aggregated(core, named)
        kinds, errors = _select(ordered, lambda gv: documents[gv])
        return Discovery(kinds, errors, api.requests - before, from_cache=False)
    ordered = _legacy_groups(core, api.get("/apis"))
    group_versions = [_gv(g, v) for g, versions in ordered for v in versions]
    cached = cache.load(group_versions) if cache is not None else None
    fetched: dict[str, list[dict[str, Any]]] = {}

    def resources_of(gv: str) -> list[dict[str, Any]] | str:
        if cached is not None and gv in cached:
            fetched[gv] = cached[gv]
            return cached[gv]
        try:
            doc = api.get(f"/apis/{gv}" if "/" in gv else "/api/v1")
        except (ApiStatusError, ApiTimeout) as exc:
            return str(exc)
        fetched[gv] = list(doc.get("resources") or [])
        return fetched[gv]

    kinds, errors = _select(ordered, resources_of)
    if cache is not None:
        if len(fetched) < len(group_versions):
            cache.invalidate()
        elif cached is None:
            cache.save(group_versions, fetched)
    return Discovery(kinds, errors, api.requests - before, from_cache=cached is not None)


def _gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def _legacy_groups(core: dict[str, Any], groups: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(group, versions with the preferred one first) from APIVersions and APIGroupList."""
    ordered: list[tuple[str, list[str]]] = []
    if "v1" in (core.get("versions") or []):
        ordered.append(("", ["v1"]))
    for group in groups.get("groups") or []:
        name = str(group.get("name") or "")
        versions = [str(v.get("version")) for v in group.get("versions") or [] if v.get("version")]
        preferred = str((group.get("preferredVersion") or {}).get("version") or "")
        if preferred in versions:
            versions.remove(preferred)
            versions.insert(0, preferred)
        if name and versions:
            ordered.append((name, versions))
    return ordered


def _aggregated(
    *documents: dict[str, Any],
) -> tuple[list[tuple[str, list[str]]], dict[str, list[dict[str, Any]] | str]]:
    """From APIGroupDiscoveryLists: groups (versions in the server's order, preferred first),
    and each version's resources in the legacy shape or why they are missing (freshness Stale).
    """
    ordered: list[tuple[str, list[str]]] = []
    resources: dict[str, list[dict[str, Any]] | str] = {}
    for doc in documents:
        for item in doc.get("items") or []:
            group = str((item.get("metadata") or {}).get("name") or "")
            versions: list[str] = []
            for entry in item.get("versions") or []:
                version = str(entry.get("version") or "")
                if not version:
                    continue
                versions.append(version)
                if entry.get("freshness") == "Stale":
                    resources[_gv(group, version)] = "discovery is stale (APIService unavailable)"
                    continue
                resources[_gv(group, version)] = [
                    {
                        "name": res.get("resource"),
                        "kind": (res.get("responseKind") or {}).get("kind"),
                        "namespaced": res.get("scope") == "Namespaced",
                        "verbs": res.get("verbs") or [],
                    }
                    for res in entry.get("resources") or []
                ]
            if versions:
                ordered.append((group, versions))
    return ordered, resources


def _select(
    ordered: list[tuple[str, list[str]]],
    resources_of: Callable[[str], list[dict[str, Any]] | str],
) -> tuple[tuple[ApiKind, ...], tuple[KindFailure, ...]]:
    """Each listable kind once, from the first (preferred) version serving it; a group none of
    whose versions could be read becomes an error for the whole group."""
    kinds: dict[tuple[str, str], ApiKind] = {}
    errors: list[KindFailure] = []
    for group, versions in ordered:
        failures: list[str] = []
        for version in versions:
            resources = resources_of(_gv(group, version))
            if isinstance(resources, str):
                failures.append(f"{_gv(group, version)}: {resources}")
                continue
            for kind in _listable(group, version, resources):
                kinds.setdefault((group, kind.kind), kind)
        if failures and not any(k[0] == group for k in kinds):
            errors.append(
                KindFailure(f"*.{group}" if group else "*", "unavailable", "; ".join(failures))
            )
    ordered_kinds = tuple(sorted(kinds.values(), key=lambda k: (k.group, k.kind)))
    return ordered_kinds, tuple(errors)


def _listable(group: str, version: str, resources: Iterable[Any]) -> Iterable[ApiKind]:
    for res in resources:
        if not isinstance(res, dict):
            continue
        name = str(res.get("name") or "")
        verbs = tuple(str(v) for v in res.get("verbs") or ())
        kind = str(res.get("kind") or "")
        if not name or "/" in name or not kind or "list" not in verbs:
            continue
        yield ApiKind(group, version, kind, name, bool(res.get("namespaced")), verbs)
