"""The hypothesis profiles of tests/conftest.py govern every test: none fixes max_examples."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _fixing_max_examples() -> set[str]:
    """Test modules that pass max_examples to anything (settings(...), a decorator, a profile)."""
    found = set()
    for path in TESTS.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.keyword) and node.arg == "max_examples":
                found.add(path.name)
    return found


def test_no_test_fixes_its_own_max_examples() -> None:
    assert _fixing_max_examples() == set()
