"""Canonical profiles: named, versioned, user-editable lists of what to drop before hashing.

A profile is data (YAML, validated against schemas/profile.schema.json) so that a user can read
why each rule exists and pass their own with `--profile FILE`. Both ends of a link must use the
same profile for their digests to agree, which is why its name and version travel in every
snapshot header.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from snapsync import resources
from snapsync.canonical.keys import ObjectKey
from snapsync.errors import ProfileError

WILDCARD = "*"


@dataclass(frozen=True)
class Rule:
    id: str
    why: str
    remove: tuple[str, ...]
    kinds: frozenset[str] | None = None  # kind refs (Kind or Kind.group); None = every kind

    def applies_to(self, key: ObjectKey) -> bool:
        return self.kinds is None or key.kind in self.kinds or key.kind_ref in self.kinds


@dataclass(frozen=True)
class Profile:
    name: str
    version: int
    description: str
    rules: tuple[Rule, ...]
    excluded_kinds: frozenset[str]  # kind refs, `Kind` for core, `Kind.group` otherwise
    # namespaces whose objects (and Namespace object) a snapshot leaves out; live collection
    # never requests them, and keeps_namespace lets other collectors apply the same rule
    excluded_namespaces: frozenset[str] = frozenset()

    def keeps_kind(self, group: str, kind: str) -> bool:
        return _ref(group, kind) not in self.excluded_kinds

    def keeps_namespace(self, namespace: str) -> bool:
        return namespace not in self.excluded_namespaces

    def strip(self, key: ObjectKey, obj: dict[str, Any]) -> None:
        """Remove, in place, every field a rule names for this object's kind."""
        for rule in self.rules:
            if rule.applies_to(key):
                _remove_path(obj, rule.remove)


def _ref(group: str, kind: str) -> str:
    return f"{kind}.{group}" if group else kind


def load_profile(spec: str | Path = "default") -> Profile:
    """A built-in profile by name, or a profile file by path."""
    path = Path(spec)
    if not path.is_file():
        builtin = resources.builtin_profile_path(str(spec))
        if builtin is None:
            names = ", ".join(resources.builtin_profile_names())
            raise ProfileError(f"no profile {str(spec)!r}: not a file nor a built-in ({names})")
        path = builtin
    return _load(path, seen=())


def _load(path: Path, seen: tuple[Path, ...]) -> Profile:
    resolved = path.resolve()
    if resolved in seen:
        raise ProfileError(f"{path}: profiles extend each other in a loop")
    doc = _read_document(path)
    parent: Profile | None = None
    if "extends" in doc:
        parent_path = path.parent / doc["extends"]
        if not parent_path.is_file():
            builtin = resources.builtin_profile_path(doc["extends"])
            if builtin is None:
                raise ProfileError(f"{path}: extends unknown profile {doc['extends']!r}")
            parent_path = builtin
        parent = _load(parent_path, (*seen, resolved))
    rules = list(parent.rules) if parent else []
    dropped = set(doc.get("without_rules", []))
    unknown = dropped - {r.id for r in rules}
    if unknown:
        raise ProfileError(
            f"{path}: without_rules names no inherited rule: {', '.join(sorted(unknown))}"
        )
    rules = [r for r in rules if r.id not in dropped]
    rule_ids = {r.id for r in rules}
    for raw in doc.get("rules", []):
        if raw["id"] in rule_ids:
            raise ProfileError(f"{path}: rule id {raw['id']!r} is defined twice")
        rule_ids.add(raw["id"])
        kinds = raw.get("kinds")
        rules.append(
            Rule(
                id=raw["id"],
                why=raw["why"],
                remove=tuple(raw["remove"]),
                kinds=None if kinds is None or WILDCARD in kinds else frozenset(kinds),
            )
        )
    excluded = set(parent.excluded_kinds) if parent else set()
    excluded.update(item["kind"] for item in doc.get("exclude_kinds", []))
    excluded.difference_update(doc.get("include_kinds", []))
    namespaces = set(parent.excluded_namespaces) if parent else set()
    namespaces.update(item["namespace"] for item in doc.get("exclude_namespaces", []))
    namespaces.difference_update(doc.get("include_namespaces", []))
    return Profile(
        name=doc["name"],
        version=doc["version"],
        description=doc.get("description", ""),
        rules=tuple(rules),
        excluded_kinds=frozenset(excluded),
        excluded_namespaces=frozenset(namespaces),
    )


def _read_document(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {_first_line(exc)}") from exc
    validator = jsonschema.Draft202012Validator(resources.schema("profile"))
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ProfileError(f"{path}: invalid profile at {where}: {error.message}")
    assert isinstance(doc, dict)
    return doc


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _remove_path(node: Any, path: tuple[str, ...]) -> None:
    """Delete the field at `path`; a `*` segment fans out over list items and map values.

    Empty maps left behind (an annotations map whose only entry was removed) are removed too, so
    an object that never had the field and one that lost it canonicalize the same.
    """
    head, rest = path[0], path[1:]
    if head == WILDCARD:
        for child in _children(node):
            if rest:
                _remove_path(child, rest)
        return
    if not isinstance(node, dict) or head not in node:
        return
    if not rest:
        del node[head]
        return
    child = node[head]
    _remove_path(child, rest)
    if isinstance(child, dict) and not child:
        del node[head]


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        yield from node.values()
    elif isinstance(node, list):
        yield from node
