"""`snapsync diff`, `snapsync apply` and `snapsync inspect` on delta frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import build_snapshot
from snapsync.cli import cli
from snapsync.codec.decode import decode_snapshot
from snapsync.codec.encode import encode_snapshot
from snapsync.sim.sample_cluster import SampleCluster


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    cluster = SampleCluster(objects=200, shape="application", seed=3)
    base = tmp_path / "base.snap"
    base.write_bytes(encode_snapshot(build_snapshot(cluster.objects(), load_profile())))
    cluster.step(churn="steady")
    new = tmp_path / "new.snap"
    new.write_bytes(encode_snapshot(build_snapshot(cluster.objects(), load_profile())))
    return base, new


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_diff_shows_every_candidate_and_apply_reproduces_the_target(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    base, new = pair
    delta = tmp_path / "d.frame"
    code, stdout, _ = run("diff", str(base), str(new), "-o", str(delta), "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert set(summary["candidates"]) == {"delta", "patch-from", "full"}
    assert summary["candidates"][summary["chosen"]] == delta.stat().st_size
    assert summary["chosen"] == min(summary["candidates"], key=summary["candidates"].get)

    out = tmp_path / "out.snap"
    code, _, err = run("apply", str(base), str(delta), "-o", str(out))
    assert code == 0, err
    assert "target digest verified" in err
    assert decode_snapshot(out.read_bytes()).digest == decode_snapshot(new.read_bytes()).digest

    code, stdout, _ = run("inspect", "--json", str(delta))
    doc = json.loads(stdout)
    assert doc["type"] == "delta" and doc["target_digest"] == summary["target_digest"]
    assert doc["delta"]["changed"] + doc["delta"]["added"] + doc["delta"]["removed"] > 0
    code, stdout, _ = run("inspect", str(delta))
    assert code == 0 and "operations:" in stdout


def test_apply_to_the_wrong_base_is_refused_and_writes_nothing(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    base, new = pair
    delta = tmp_path / "d.frame"
    run("diff", str(base), str(new), "-o", str(delta))
    out = tmp_path / "out.snap"
    code, _, err = run("apply", str(new), str(delta), "-o", str(out))
    assert code == 2
    assert err.startswith(f"snapsync: error: {delta}: ")
    assert not out.exists()


def test_corrupted_delta_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    base, new = pair
    delta = tmp_path / "d.frame"
    run("diff", str(base), str(new), "-o", str(delta))
    data = bytearray(delta.read_bytes())
    data[len(data) // 2] ^= 0x10
    delta.write_bytes(bytes(data))
    code, _, err = run("apply", str(base), str(delta), "-o", str(tmp_path / "x.snap"))
    assert code == 2 and "checksum" in err
