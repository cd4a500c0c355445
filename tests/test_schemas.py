"""Decoded structures validate against the JSON Schemas people read in schemas/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import KindFailure, SnapshotBuilder
from snapsync.codec.decode import snapshot_document
from snapsync.resources import schema
from tests.support_objects import raw_objects, unique_by_key

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_schemas_are_valid_json_schema(path: Path) -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


@given(st.lists(raw_objects(), max_size=6).map(unique_by_key))
def test_snapshot_document_matches_its_schema(objs: list[dict[str, Any]]) -> None:
    builder = SnapshotBuilder(load_profile(), environment_id="e", measure_source=True)
    for obj in objs:
        builder.add(obj)
    builder.record_error(KindFailure("Secret", "forbidden", "secrets is forbidden"))
    jsonschema.validate(snapshot_document(builder.build()), schema("snapshot"))
