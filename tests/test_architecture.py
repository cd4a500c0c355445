"""The shape of snapsync/: imports flow one way through the layers, and modules stay small.

The import graph is read with `ast` from every module of snapsync/: top-level imports, imports
inside functions (a lazy import is still a dependency) and imports under `if TYPE_CHECKING:`.
TYPE_CHECKING imports count: a type a module names is a dependency on the module defining it,
and a layering that held at run time but not for the type checker would let a cycle back in
through annotations. Imports by string (`importlib.import_module`, as the lazy re-exports of
snapsync/__init__.py and collect/__init__.py do) are not seen; they stay inside their package.

A unit is a subpackage of snapsync (canonical, codec, ...) or a top-level module (errors,
cli, ...); `snapsync/__init__.py` is the facade, above every layer (it re-exports them all).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SNAPSYNC = Path(__file__).resolve().parent.parent / "snapsync"
FACADE = "snapsync"

# Lowest first. A unit may import units of lower layers only: never a higher layer, never
# another unit of its own layer (so the graph between units is acyclic by construction).
# collect sits above canonical: it fills snapshots, names kinds with canonical.keys and records
# canonical.snapshot.KindFailure; canonical knows nothing of where objects come from. sim sits
# above agent/server: the flaky-link simulation drives the real protocol (and, by #17, the real
# Agent); only demo (and bench/, tests/) may import it, which test_only_demo_imports_sim checks.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),  # foundations: the error tree ...
    ("bounds", "fileio", "lazy", "resources", "units"),  # ... and what every stage shares
    ("canonical",),  # objects, keys, profiles, snapshots
    ("collect", "delta", "kubeview"),  # sources of objects; what changed; kubectl-like views
    ("codec",),  # snapshots and deltas to frames and back
    ("protocol",),  # the sans-IO conversation
    ("agent", "server", "client"),  # the edges: the agent, the server, `snapsync get`
    ("sim",),  # the simulated cluster, link and baselines
    ("demo",),
    ("cli",),
    ("__main__",),  # python -m snapsync
    (FACADE,),
)

# Imports that break the layering today, each with the issue that removes it. Delete an entry
# when its import is gone (test_allowed_violations_still_exist fails until then).
ALLOWED_VIOLATIONS: dict[tuple[str, str], str] = {}

MAX_LINES = 500
EXEMPT_FROM_SIZE = ("snapsync/sim/sample_cluster/",)  # generated-cluster tables, not logic

RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module of snapsync/."""
    for path in sorted(SNAPSYNC.rglob("*.py")):
        parts = path.relative_to(SNAPSYNC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else FACADE


def _is_module(dotted: str) -> bool:
    path = SNAPSYNC.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(module: str, path: Path) -> Iterator[str]:
    """Every snapsync module `module` imports, wherever the import statement is."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == FACADE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != FACADE:
                continue
            for alias in node.names:  # `from snapsync import cli` imports the module snapsync.cli
                sub = f"{base}.{alias.name}"
                yield sub if _is_module(sub) else base


def unit_edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> the module imports behind it, across units only."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, path in modules():
        for target in imported(module, path):
            pair = (unit_of(module), unit_of(target))
            if pair[0] != pair[1]:
                edges.setdefault(pair, []).append(f"{module} -> {target}")
    return edges


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module) for module, _ in modules()}
    assert units - RANK.keys() == set(), "place new packages/modules in LAYERS"
    assert RANK.keys() - units == set(), "LAYERS names units that no longer exist"


def test_imports_flow_down_the_layers() -> None:
    wrong = {
        pair: sorted(how)
        for pair, how in unit_edges().items()
        if RANK[pair[0]] <= RANK[pair[1]] and pair not in ALLOWED_VIOLATIONS
    }
    assert wrong == {}


def test_allowed_violations_still_exist() -> None:
    edges = unit_edges()
    assert [pair for pair in ALLOWED_VIOLATIONS if pair not in edges] == []


def test_the_unit_graph_is_acyclic() -> None:
    """Holds by the layering; checked apart so that an allowed violation cannot hide a cycle."""
    graph: dict[str, set[str]] = {}
    for importer, target in unit_edges():
        graph.setdefault(importer, set()).add(target)
    done: set[str] = set()

    def visit(unit: str, path: tuple[str, ...]) -> None:
        assert unit not in path, f"import cycle: {' -> '.join((*path, unit))}"
        if unit in done:
            return
        for target in sorted(graph.get(unit, ())):
            visit(target, (*path, unit))
        done.add(unit)

    for unit in sorted(graph):
        visit(unit, ())


def test_only_demo_imports_sim() -> None:
    importers = {importer for importer, target in unit_edges() if target == "sim"}
    assert importers <= {"demo"}


def test_the_facade_imports_only_at_type_checking_time_beyond_the_errors() -> None:
    """`import snapsync` loads the error tree (and the lazy loader) and nothing else: the rest
    is lazy (PEP 562)."""
    tree = ast.parse((SNAPSYNC / "__init__.py").read_text())
    eager = {
        node.module
        for node in tree.body  # module level, outside `if TYPE_CHECKING:`
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("snapsync")
    }
    assert eager == {"snapsync.errors", "snapsync.lazy"}


def _line_counts() -> dict[str, int]:
    root = SNAPSYNC.parent
    return {
        str(path.relative_to(root)): len(path.read_text().splitlines())
        for _, path in modules()
        if not str(path.relative_to(root)).startswith(EXEMPT_FROM_SIZE)
    }


def test_every_module_is_at_most_500_lines() -> None:
    over = {name: lines for name, lines in _line_counts().items() if lines > MAX_LINES}
    assert over == {}
