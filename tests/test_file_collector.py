from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import SnapshotBuilder
from snapsync.collect import FileCollector
from snapsync.errors import InputError

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"}}
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"}}


def collect(*paths: str | Path) -> set[str]:
    builder = SnapshotBuilder(load_profile())
    FileCollector(list(paths)).collect(builder)
    return {str(k) for k in builder.build().keys}


def test_kubectl_list_json(tmp_path: Path) -> None:
    path = tmp_path / "dump.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [POD, CM]}))
    assert collect(path) == {"Pod/d/p", "ConfigMap/d/c"}


def test_raw_api_list_items_inherit_kind(tmp_path: Path) -> None:
    items = [{"metadata": {"name": "a", "namespace": "x"}}]
    path = tmp_path / "deployments.json"
    path.write_text(json.dumps({"apiVersion": "apps/v1", "kind": "DeploymentList", "items": items}))
    assert collect(path) == {"Deployment.apps/x/a"}


def test_multi_document_yaml_with_unquoted_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "stream.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: d, "
        "creationTimestamp: 2024-01-01T00:00:00Z}\n---\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: d}\n"
    )
    builder = SnapshotBuilder(load_profile())
    FileCollector([path]).collect(builder)
    pod = builder.build().objects[ObjectKey("", "Pod", "d", "p")].data
    assert pod["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(json.dumps(POD).encode()), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    assert collect("-") == {"Pod/d/p"}


def test_same_object_in_two_files_is_kept_once(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(POD))
    (tmp_path / "b.json").write_text(json.dumps([POD, CM]))
    assert collect(tmp_path / "a.json", tmp_path / "b.json") == {"Pod/d/p", "ConfigMap/d/c"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty input"),
        ("{not json", "not valid JSON"),
        ("key: [unclosed", "not valid JSON or YAML"),
        ("42", "expected a Kubernetes object or List"),
        ('{"kind": "Pod", "metadata": {"name": "x"}}', "object 1: object without apiVersion"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {on: 1}\n", "not a string"),
    ],
)
def test_bad_input_names_the_file_and_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as info:
        collect(path)
    assert str(path) in str(info.value)


def test_conflicting_duplicates_are_an_error(tmp_path: Path) -> None:
    changed = {**POD, "spec": {"nodeName": "n2"}}
    (tmp_path / "a.json").write_text(json.dumps([POD, changed]))
    with pytest.raises(InputError, match="appears twice with different contents"):
        collect(tmp_path / "a.json")


def test_missing_file() -> None:
    with pytest.raises(InputError, match="no such file"):
        collect("/nonexistent/dump.json")
