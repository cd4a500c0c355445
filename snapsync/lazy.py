"""Package names that load on first use (PEP 562), so importing a package costs only what is used.

The command line reads the agent's settings on every command and should not pay for httpx, the
agent loop or the `kubernetes` client unless it runs them; an embedder importing `snapsync`
should not pay for the server. Each package lists its names and the module each comes from.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of `package`: a listed name is imported from its module once, then
    kept in the package's namespace; any other name is an AttributeError as usual."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
