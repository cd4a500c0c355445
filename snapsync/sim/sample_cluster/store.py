# The object store of the simulated API server: objects by key, the global resourceVersion
# counter (etcd's revision: every write bumps it and stamps it on the object), indexes by kind,
# uid and controller, and the record of what changed since `begin()`.
# Invariant: every add/write/delete goes through this class, so indexes and change records agree.
from __future__ import annotations

from typing import Any

from snapsync.sim.sample_cluster.api import ChangeSet, Key
from snapsync.sim.sample_cluster.fields import fields_v1, managed_entry

APP_LABEL = "app.kubernetes.io/name"


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def controller_uid(obj: dict[str, Any]) -> str | None:
    for ref in obj["metadata"].get("ownerReferences", ()):
        if ref.get("controller"):
            uid: str = ref["uid"]
            return uid
    return None


class Store:
    def __init__(self, first_resource_version: int) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.resource_version = first_resource_version
        self.by_kind: dict[str, dict[Key, None]] = {}
        self.by_uid: dict[str, Key] = {}
        self.children: dict[str, dict[Key, None]] = {}  # controller uid -> owned keys
        self.pods_by_app: dict[tuple[str, str], dict[Key, None]] = {}  # (namespace, app label)
        self._changes: dict[Key, str] = {}

    def _bump(self, obj: dict[str, Any]) -> None:
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)

    def add(self, obj: dict[str, Any]) -> Key:
        key = key_of(obj)
        if key in self.objects:
            raise ValueError(f"{key} already exists")
        self._bump(obj)
        self.objects[key] = obj
        self.by_kind.setdefault(obj["kind"], {})[key] = None
        self.by_uid[obj["metadata"]["uid"]] = key
        owner = controller_uid(obj)
        if owner is not None:
            self.children.setdefault(owner, {})[key] = None
        app = _app(obj)
        if app is not None:
            self.pods_by_app.setdefault(app, {})[key] = None
        self._changes[key] = "modified" if self._changes.get(key) == "deleted" else "added"
        return key

    def write(
        self,
        key: Key,
        time: str,
        manager: str,
        subresource: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record an update of `key` by `manager` at `time`; the caller has changed the object.

        The manager's managedFields entry gets the new time; a manager writing the object for
        the first time gets an entry owning `fields` (by default, for status writes, the status).
        """
        obj = self.objects[key]
        self._bump(obj)
        entries = obj["metadata"].setdefault("managedFields", [])
        for entry in entries:
            if entry["manager"] == manager and entry.get("subresource") == subresource:
                entry["time"] = time
                break
        else:
            if fields is None and subresource == "status":
                fields = {"f:status": fields_v1(obj["status"])}
            if fields is not None:
                entries.append(
                    managed_entry(manager, "Update", obj["apiVersion"], time, fields, subresource)
                )
        self._changes.setdefault(key, "modified")
        return obj

    def delete(self, key: Key) -> dict[str, Any]:
        obj = self.objects.pop(key)
        self.resource_version += 1
        del self.by_kind[obj["kind"]][key]
        uid = obj["metadata"]["uid"]
        self.by_uid.pop(uid, None)
        self.children.pop(uid, None)
        owner = controller_uid(obj)
        if owner is not None and owner in self.children:
            self.children[owner].pop(key, None)
        app = _app(obj)
        if app is not None:
            self.pods_by_app[app].pop(key, None)
        if self._changes.get(key) == "added":
            del self._changes[key]
        else:
            self._changes[key] = "deleted"
        return obj

    def keys(self, kind: str) -> list[Key]:
        return list(self.by_kind.get(kind, ()))

    def owned(self, uid: str) -> list[Key]:
        return list(self.children.get(uid, ()))

    def begin(self) -> None:
        self._changes = {}

    def change_set(self) -> ChangeSet:
        groups: dict[str, list[Key]] = {"added": [], "modified": [], "deleted": []}
        for key, what in self._changes.items():
            groups[what].append(key)
        return ChangeSet(*(tuple(sorted(groups[g])) for g in ("added", "modified", "deleted")))


def _app(obj: dict[str, Any]) -> tuple[str, str] | None:
    if obj["kind"] != "Pod":
        return None
    app = obj["metadata"].get("labels", {}).get(APP_LABEL)
    return (obj["metadata"]["namespace"], app) if app else None
