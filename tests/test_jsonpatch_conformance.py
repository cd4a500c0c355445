"""The public JSON Patch conformance suite (tests/json_patch_tests/) against
snapsync.delta.jsondiff (diff) and snapsync.delta.patch (apply).

Every enabled case: our applier gives the expected document (or just succeeds, for cases of only
`test` operations), or raises DeltaError where the case expects an error; our diff of
(doc, expected), applied by jsonpatch itself, gives the expected document back. Cases marked
`disabled` upstream are skipped.
"""

import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from snapsync.delta.diff import apply_ops, diff_objects
from snapsync.delta.jsondiff import diff, same
from snapsync.delta.patch import apply_patch
from snapsync.errors import DeltaError

SUITE = Path(__file__).parent / "json_patch_tests"


def _cases() -> list[Any]:
    params = []
    for name in ("tests.json", "spec_tests.json"):
        for number, case in enumerate(json.loads((SUITE / name).read_text())):
            if "patch" not in case:
                continue  # a comment-only record
            marks = [pytest.mark.skip(reason="disabled upstream")] if case.get("disabled") else []
            label = f"{name.removesuffix('.json')}-{number}"
            params.append(pytest.param(case, id=label, marks=marks))
    return params


CASES = _cases()
EXPECTED = [p for p in CASES if "expected" in p.values[0]]


def test_suite_is_all_there() -> None:
    assert len(CASES) >= 90
    assert sum("error" in p.values[0] for p in CASES) >= 20


@pytest.mark.parametrize("case", CASES)
def test_apply_patch(case: dict[str, Any]) -> None:
    before = json.dumps(case["doc"])
    if "error" in case:
        with pytest.raises(DeltaError):
            apply_patch(case["doc"], case["patch"])
    else:
        result = apply_patch(case["doc"], case["patch"])
        assert result == case.get("expected", case["doc"])
    assert json.dumps(case["doc"]) == before  # the input document is never modified


@pytest.mark.parametrize("case", [p for p in CASES if isinstance(p.values[0]["doc"], dict)])
def test_apply_ops(case: dict[str, Any]) -> None:
    """The object-level entry point: same verdicts on every case whose document is a map."""
    expected = case.get("expected", case["doc"])
    if "error" in case or not isinstance(expected, dict):
        with pytest.raises(DeltaError):
            apply_ops(case["doc"], case["patch"])
    else:
        assert apply_ops(case["doc"], case["patch"]) == expected


@pytest.mark.parametrize("case", EXPECTED)
def test_diff_reproduces_expected(case: dict[str, Any]) -> None:
    doc, expected = case["doc"], case["expected"]
    ops = diff(doc, expected)
    assert same(jsonpatch.apply_patch(doc, ops), expected)
    assert same(apply_patch(doc, ops), expected)
    if isinstance(doc, dict) and isinstance(expected, dict):
        assert diff_objects(doc, expected) == ops
