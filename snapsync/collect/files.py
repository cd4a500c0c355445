"""Collect from `kubectl get -o json|yaml` output, so everything works without a cluster.

Accepted: a List (`kind: List` from kubectl, or `PodList`-style from the raw API, whose items
carry no apiVersion/kind), a single object, a multi-document YAML stream, or a JSON array; `-`
reads standard input. Errors name the file and, where known, the document.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml

from snapsync.canonical.keys import is_list_kind
from snapsync.collect.base import Sink
from snapsync.errors import InputError, SnapsyncError
from snapsync.fileio import display_name, read_text

MAX_NESTING = 64  # Lists within Lists: kubectl writes one level; more is a mistake or an attack
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _DumpLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Safe YAML with timestamps left as strings, as the API serves them in JSON."""

    yaml_implicit_resolvers: ClassVar = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }


class FileCollector:
    def __init__(self, paths: Sequence[str | Path]) -> None:
        if not paths:
            raise InputError("no input files given")
        self.paths = [str(p) for p in paths]

    def collect(self, sink: Sink) -> None:
        for path in self.paths:
            position = 0
            try:
                for raw in iter_objects(read_documents(path)):
                    position += 1
                    try:
                        sink.add(raw)
                    except SnapsyncError as exc:
                        raise InputError(f"object {position}: {exc}") from exc
            except InputError as exc:
                raise InputError(f"{display_name(path)}: {exc}") from exc


def read_documents(path: str) -> list[Any]:
    """Parsed top-level documents of one file (or stdin for `-`)."""
    text = read_text(path)
    if not text.strip():
        raise InputError("empty input")
    if text.lstrip()[:1] in "[{":
        try:
            return [json.loads(text)]
        except RecursionError:
            raise InputError("not valid JSON: nested too deep") from None
        except json.JSONDecodeError as exc:
            if path.endswith(".json"):
                raise InputError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    try:
        return [doc for doc in yaml.load_all(text, Loader=_DumpLoader) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputError(f"not valid JSON or YAML: {problem}{where}") from exc


def iter_objects(documents: list[Any], depth: int = 0) -> Iterator[dict[str, Any]]:
    """Flatten Lists and arrays into objects, filling the apiVersion/kind a raw API list omits.

    A List inside a List's items (or an array) is flattened too, to any depth the parser
    allowed: were it kept whole, the Secrets inside would escape redaction (canonicalize
    redacts objects of kind Secret, and refuses List-shaped objects as the last line).
    """
    if depth > MAX_NESTING:
        raise InputError(f"Lists nested more than {MAX_NESTING} deep")
    for doc in documents:
        if isinstance(doc, list):
            yield from iter_objects(doc, depth + 1)
            continue
        if not isinstance(doc, dict):
            raise InputError(f"expected a Kubernetes object or List, found {type(doc).__name__}")
        kind = doc.get("kind")
        if not (isinstance(kind, str) and is_list_kind(kind) and "items" in doc):
            yield doc
            continue
        items = doc["items"] or []
        if not isinstance(items, list):
            raise InputError(f"{kind}.items is not a list")
        item_kind = kind[: -len("List")] if kind != "List" else None
        for item in items:
            if not isinstance(item, dict):
                raise InputError(f"{kind} holds a {type(item).__name__}, not an object")
            if item_kind and "kind" not in item:
                item = {"apiVersion": doc.get("apiVersion"), "kind": item_kind, **item}
            yield from iter_objects([item], depth + 1)
