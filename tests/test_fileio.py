"""Text input as people hand it over: compressed (by magic bytes), UTF-16 from PowerShell, and a
hint that says what a file that is not text looks like."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import build_snapshot
from snapsync.cli import cli
from snapsync.codec.encode import encode_snapshot
from snapsync.errors import InputError
from snapsync.fileio import read_text

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "café", "namespace": "d"}}
DUMP = json.dumps({"apiVersion": "v1", "kind": "List", "items": [POD]})


def _zstd(data: bytes) -> bytes:
    """Two zstd frames, as `zstd` writes for concatenated input: both are read."""
    half = len(data) // 2
    compressor = zstandard.ZstdCompressor()
    return compressor.compress(data[:half]) + compressor.compress(data[half:])


@pytest.mark.parametrize(
    "name, encode",
    [
        ("state.json.gz", lambda text: gzip.compress(text.encode())),
        ("state.json.zst", lambda text: _zstd(text.encode())),
        ("state.json", lambda text: gzip.compress(text.encode())),  # the name does not matter
        ("state.gz", lambda text: text.encode()),
        ("state-ps.json", lambda text: text.encode("utf-16")),  # PowerShell's `>`
        ("state-bom.json", lambda text: text.encode("utf-8-sig")),
    ],
)
def test_dump_reads_compressed_and_bom_marked_input(name: str, encode, tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(DUMP, encoding="utf-8")
    path = tmp_path / name
    path.write_bytes(encode(DUMP))
    assert read_text(str(path)) == DUMP
    results = [
        CliRunner().invoke(cli, ["dump", "--from-file", str(p), "--format", "json"])
        for p in (plain, path)
    ]
    assert [r.exit_code for r in results] == [0, 0], results[1].stderr
    assert json.loads(results[1].stdout)["digest"] == json.loads(results[0].stdout)["digest"]


def _snap() -> bytes:
    return encode_snapshot(build_snapshot([POD], load_profile()))


@pytest.mark.parametrize(
    "data, hint",
    [
        (_snap(), "it looks like a snapsync frame (a .snap file: `snapsync inspect` reads those)"),
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "it looks like a PNG image"),
        (b"PK\x03\x04" + bytes(range(128, 256)), "it looks like a ZIP archive (unzip it first)"),
        (b"BZh91AY&SY" + bytes(range(128, 256)), "bzip2-compressed data"),
        ("kind: Pod\nmetadata: {name: café}\n".encode("latin-1"), "text in another encoding"),
        (bytes(range(128, 256)), "it looks like binary data (128 bytes starting 80 81 82"),
    ],
)
def test_dump_says_what_a_file_that_is_not_text_looks_like(
    data: bytes, hint: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.json.gz"  # the name promises gzip; the bytes decide
    path.write_bytes(data)
    result = CliRunner().invoke(cli, ["dump", "--from-file", str(path), "--format", "json"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"snapsync: error: {path}: not UTF-8 text: ")
    assert hint in lines[0]


def test_broken_and_oversized_compressed_input_are_one_line_errors(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(gzip.compress(DUMP.encode())[:20])
    with pytest.raises(InputError, match=r"^not valid gzip data: "):
        read_text(str(truncated))
    garbage = tmp_path / "garbage.zst"
    garbage.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(40)))
    with pytest.raises(InputError, match=r"^not valid zstd data: "):
        read_text(str(garbage))
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(b" " * 100_000))  # ~150 bytes that inflate 600-fold
    with pytest.raises(InputError, match=r"^gzip data inflates to more than 65,536 bytes$"):
        read_text(str(bomb), limit=65_536)
    assert read_text(str(bomb), limit=100_000) == " " * 100_000
