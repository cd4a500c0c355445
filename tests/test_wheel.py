"""The wheel on its own, as a user installs it: built from this tree, installed with its
dependencies into a fresh virtual environment, and run from a directory outside the checkout, so
neither the tree nor its tools/ and bench/ can be imported. `snapsync demo` must work there.

Slow (a virtual environment and a dependency install from the package index, ~50 s), so every
test here shares one environment, built once per run; CI runs it like any other test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapsync.sim.link import ENV
from snapsync.sim.sample_cluster import SampleCluster
from tests.support_demo import converged_store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 900.0  # seconds; a shared machine and a cold package cache
RUN_TIMEOUT = 300.0
# what the demo reads at run time besides Python modules
DATA = (
    "snapsync/sim/sample_cluster/__init__.py",
    "snapsync/sim/baselines.py",
    "snapsync/codec/dictionaries/manifest.json",
    "snapsync/canonical/profiles/default.yaml",
    "snapsync/server/templates/base.html",
    "snapsync/server/static/snapsync.css",
    "snapsync/_schemas/profile.schema.json",
)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    cwd: Path  # outside the checkout
    env: dict[str, str]

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.venv / "bin" / program), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    python = [sys.executable, "-m"]
    _run([*python, "pip", "wheel", "--no-deps", "-w", str(base / "dist"), str(ROOT)], base, env)
    (wheel,) = (base / "dist").glob("snapsync-*.whl")
    venv = base / "venv"
    _run([*python, "venv", str(venv)], base, env)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", str(wheel)], base, env)
    cwd = base / "elsewhere"
    cwd.mkdir()
    return Installed(wheel, venv, cwd, env)


def test_the_wheel_ships_the_generator_the_baselines_and_their_data(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    assert set(DATA) <= names
    assert {"snapsync/sim/sample_cluster/__main__.py", "snapsync/demo/feed.py"} <= names
    assert not [n for n in names if n.startswith(("tools/", "bench/", "tests/"))]


def test_the_installed_wheel_runs_the_demo_outside_the_checkout(installed: Installed) -> None:
    probe = installed.run(
        "python",
        "-c",
        "import importlib.util as u, json, snapsync\n"
        "print(json.dumps([snapsync.__file__, *(bool(u.find_spec(m)) for m in"
        " ('tools', 'bench'))]))",
    )
    where, has_tools, has_bench = json.loads(probe.stdout)
    assert Path(where).is_relative_to(installed.venv)
    assert not Path(where).is_relative_to(ROOT)
    assert not has_tools and not has_bench
    database = installed.cwd / "run" / "snapsync-demo.db"
    out = installed.run(
        "snapsync", "demo", "--objects", "20", "--duration", "1h", "--link", "good", "--dir", "run"
    ).stdout
    assert "full JSON + gzip" in out and "JSON Patch + gzip" in out
    with converged_store(out, database) as store:
        assert len(store.queries.versions(ENV)) > 1


def test_the_installed_generator_writes_the_same_cluster(installed: Installed) -> None:
    installed.run("python", "-m", "snapsync.sim.sample_cluster", "--objects", "30", "-o", "c.json")
    document = json.loads((installed.cwd / "c.json").read_text(encoding="utf-8"))
    assert document == SampleCluster(objects=30).list_document()
