"""The hypothesis profiles of tests/conftest.py govern every test: none fixes max_examples."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# #17 (wt-proto) merges the flaky-link and protocol-sim machines and drops their overrides:
# delete the entry then (test_exemptions_are_current fails until it is).
EXEMPT = {"test_flaky_link.py"}


def _fixing_max_examples() -> set[str]:
    """Test modules that pass max_examples to anything (settings(...), a decorator, a profile)."""
    found = set()
    for path in TESTS.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.keyword) and node.arg == "max_examples":
                found.add(path.name)
    return found


def test_no_test_fixes_its_own_max_examples() -> None:
    assert _fixing_max_examples() - EXEMPT == set()


def test_exemptions_are_current() -> None:
    assert EXEMPT - _fixing_max_examples() == set()
