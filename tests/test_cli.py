"""The command line through click's runner, plus real subprocesses for what only a process shows."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from snapsync.cli import cli
from snapsync.codec.decode import decode_snapshot

OBJECTS = [
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "shop", "resourceVersion": "9"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    },
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "data": {"password": "aHVudGVyMg=="},
    },
]


@pytest.fixture
def dump_file(tmp_path: Path) -> Path:
    path = tmp_path / "dump.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": OBJECTS}))
    return path


def run(*args: str, input: bytes | None = None) -> tuple[int, bytes, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout_bytes, result.stderr


def test_dump_then_inspect(dump_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.snap"
    code, _, err = run("dump", "--from-file", str(dump_file), "-o", str(out))
    assert code == 0
    snapshot = decode_snapshot(out.read_bytes())
    assert f"wrote {out}: 3 objects, digest {snapshot.digest.hex()}" in err
    code, stdout, _ = run("inspect", "--json", str(out))
    summary = json.loads(stdout)
    assert summary["digest"] == snapshot.digest.hex()
    assert summary["counts"]["by_kind"] == {"Namespace": 1, "Pod": 1, "Secret": 1}
    assert summary["counts"]["by_namespace"] == {"(cluster)": 1, "shop": 2}
    assert summary["sizes"]["compressed"] == out.stat().st_size
    assert summary["complete"] is True
    code, stdout, _ = run("inspect", str(out))
    assert code == 0 and b"objects by kind" in stdout


def test_json_format_is_the_decoded_snapshot_and_reads_back(
    dump_file: Path, tmp_path: Path
) -> None:
    code, stdout, _ = run("dump", "--from-file", str(dump_file), "--format", "json")
    assert code == 0
    doc = json.loads(stdout)
    assert [o["key"] for o in doc["objects"]] == [
        "Namespace/shop",
        "Pod/shop/web-0",
        "Secret/shop/db",
    ]
    (tmp_path / "s.json").write_bytes(stdout)
    code, stdout, _ = run("inspect", "--json", str(tmp_path / "s.json"))
    assert json.loads(stdout)["digest"] == doc["digest"]


def test_dump_from_stdin_to_stdout(dump_file: Path) -> None:
    code, stdout, _ = run("dump", "--from-file", "-", input=dump_file.read_bytes())
    assert code == 0
    assert len(decode_snapshot(stdout)) == 3


def test_same_input_gives_the_same_digest(dump_file: Path, tmp_path: Path) -> None:
    reversed_file = tmp_path / "reversed.json"
    reversed_file.write_text(json.dumps(list(reversed(OBJECTS))))
    digests = set()
    for source in (dump_file, reversed_file):
        _, stdout, _ = run("dump", "--from-file", str(source), "--format", "json")
        digests.add(json.loads(stdout)["digest"])
    assert len(digests) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty input, not a snapsync frame"),
        (b"PK\x03\x04 a zip file, not a frame at all, long enough for a header.....", "bad magic"),
        (b'{"objects": 3}', "not a snapsync snapshot document"),
    ],
)
def test_inspect_rejects_bad_files_in_one_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.snap"
    path.write_bytes(content)
    code, _, err = run("inspect", str(path))
    assert code == 2
    assert err.strip().count("\n") == 0
    assert str(path) in err and message in err


def test_inspect_rejects_truncated_and_corrupted_frames(dump_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.snap"
    run("dump", "--from-file", str(dump_file), "-o", str(out))
    data = out.read_bytes()
    cases = {
        "truncated": data[:-10],
        "header-only": data[:30],
        "corrupted": data[:60] + bytes([data[60] ^ 0x01]) + data[61:],
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.snap"
        path.write_bytes(blob)
        code, _, err = run("inspect", str(path))
        assert code == 2, name
        assert err.startswith(f"snapsync: error: {path}: "), err
        assert "Traceback" not in err


def test_missing_source_and_bad_profile_are_user_errors(dump_file: Path) -> None:
    code, _, err = run("dump", "--kubeconfig", "/nonexistent/kubeconfig")
    assert code == 2 and "kubeconfig" in err and "Traceback" not in err
    code, _, err = run("dump", "--from-file", str(dump_file), "--profile", "nope")
    assert code == 2 and "no profile 'nope'" in err


def test_failed_dump_leaves_the_previous_output_intact(tmp_path: Path, dump_file: Path) -> None:
    out = tmp_path / "s.snap"
    run("dump", "--from-file", str(dump_file), "-o", str(out))
    before = out.read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_text('[{"apiVersion": "v1", "kind": "Pod"}]')
    code, _, _ = run("dump", "--from-file", str(bad), "-o", str(out))
    assert code == 2
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _snapsync(*args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "snapsync", *args], capture_output=True, timeout=60, **kwargs
    )


def test_real_process_round_trip(dump_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.snap"
    assert _snapsync("dump", "--from-file", str(dump_file), "-o", str(out)).returncode == 0
    result = _snapsync("inspect", "--json", str(out))
    assert result.returncode == 0
    assert json.loads(result.stdout)["objects"] == 3
    bad = _snapsync("inspect", str(dump_file))
    assert bad.returncode == 2
    assert bad.stderr.decode().startswith(f"snapsync: error: {dump_file}: ")
    assert b"Traceback" not in bad.stderr


def test_binary_is_never_written_to_a_terminal(dump_file: Path) -> None:
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "snapsync", "dump", "--from-file", str(dump_file)],
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=60,
            env={**os.environ, "COLUMNS": "120"},
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 2
    assert b"refusing to write a binary snapshot to a terminal" in result.stderr


def _help_lines(command: str) -> dict[str, str]:
    """`snapsync COMMAND --help`, one line per option (no wrapping), keyed by its long flag."""
    result = CliRunner().invoke(cli, [command, "--help"], terminal_width=400, max_content_width=400)
    assert result.exit_code == 0, result.output
    records: list[str] = []
    for line in result.output.splitlines():
        if line.startswith("  -"):
            records.append(line.strip())
        elif records and line.startswith("   "):  # help after a long flag and metavar
            records[-1] += " " + line.strip()
    return {record.split()[0].rstrip(","): record for record in records}


@pytest.mark.parametrize("command", ["agent", "serve", "demo"])
def test_help_shows_each_options_variable_default_and_unit(command: str) -> None:
    lines = _help_lines(command)
    options = [p for p in cli.commands[command].params if isinstance(p, click.Option)]
    for option in options:
        flag = max(option.opts, key=len)
        line = lines[flag]
        if option.envvar:
            assert f"env var: {option.envvar}" in line, line
        if isinstance(option.default, int | float | str) and not option.is_flag:
            assert "default: " in line, line
        if flag[2:].endswith("-interval"):  # the agent's; demo's --interval is a DURATION
            assert f"{flag} SECONDS" in line and "Seconds" in line, line
        if flag == "--budget":
            assert f"{flag} SIZE" in line and "MB" in line, line
    if command == "serve":
        assert lines["--keep-days"].startswith("--keep-days DAYS")


def test_missing_agent_secret_names_the_variable_in_one_line() -> None:
    result = CliRunner().invoke(
        cli,
        ["agent", "--server-url", "http://127.0.0.1:9", "--edge-id", "shop-17", "--once"],
        env={"SNAPSYNC_AGENT_SECRET": None},
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "snapsync: error: missing --agent-secret: pass the flag or set SNAPSYNC_AGENT_SECRET\n"
    )
