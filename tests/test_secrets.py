"""Secret values never leave the cluster unless the user opts in: checked on every output form."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings

from snapsync.cli import cli
from snapsync.codec import decode_snapshot, encode_snapshot, snapshot_document, snapshot_payload
from snapsync.profile import load_profile
from snapsync.snapshot import build_snapshot
from tests.support_objects import secrets


def leaks(blob: bytes, values: list[bytes]) -> list[bytes]:
    forms = []
    for value in values:
        forms += [value, base64.b64encode(value)]
        with contextlib.suppress(UnicodeDecodeError):
            forms.append(json.dumps(value.decode())[1:-1].encode())
    return [form for form in forms if form in blob]


def distinctive(values: list[bytes]) -> bool:
    """Values too regular to tell apart from frame bytes (runs of zeros) prove nothing."""
    return all(len(set(v)) >= 5 for v in values)


@given(secrets())
def test_no_secret_value_in_snapshot_frame_payload_or_json(
    case: tuple[dict[str, Any], list[bytes]],
) -> None:
    secret, values = case
    assume(distinctive(values))
    for profile in ("default", "minimal"):
        snapshot = build_snapshot([secret], load_profile(profile))
        outputs = [
            encode_snapshot(snapshot),
            snapshot_payload(snapshot),
            json.dumps(snapshot_document(snapshot)).encode(),
        ]
        for blob in outputs:
            assert leaks(blob, values) == []
        assert decode_snapshot(outputs[0]).digest == snapshot.digest


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secrets())
def test_no_secret_value_in_cli_output(
    tmp_path: Path, case: tuple[dict[str, Any], list[bytes]]
) -> None:
    secret, values = case
    assume(distinctive(values))
    source = tmp_path / "secret.json"
    source.write_text(json.dumps(secret))
    runner = CliRunner()
    for args in (["--format", "json"], ["-o", str(tmp_path / "s.snap")]):
        result = runner.invoke(cli, ["dump", "--from-file", str(source), *args])
        assert result.exit_code == 0, result.output
        assert leaks(result.stdout_bytes, values) == []
    snap = (tmp_path / "s.snap").read_bytes()
    assert leaks(snap, values) == []
    inspected = runner.invoke(cli, ["inspect", "--json", str(tmp_path / "s.snap")])
    assert inspected.exit_code == 0
    assert leaks(inspected.stdout_bytes, values) == []


def test_secret_values_are_digests_of_their_bytes() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "prod"},
        "data": {"password": base64.b64encode(b"hunter2").decode()},
        "stringData": {"same": "hunter2"},
    }
    obj = next(iter(build_snapshot([secret], load_profile()).objects.values())).data
    expected = "sha256:f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7"
    assert obj["data"]["password"] == expected
    assert obj["stringData"]["same"] == expected


def test_reveal_secrets_is_an_explicit_opt_in() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "prod"},
        "data": {"password": "aHVudGVyMg=="},
    }
    snapshot = build_snapshot([secret], load_profile(), reveal_secrets=True)
    assert next(iter(snapshot.objects.values())).data["data"]["password"] == "aHVudGVyMg=="
