"""`snapsync env add|list` and `snapsync serve`'s one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from snapsync.cli import cli
from snapsync.errors import InputError
from snapsync.server.environments import AgentSecrets
from snapsync.server.storage import Registration
from snapsync.server.store import open_store

SECRET = "a shared secret long enough"


def test_env_add_prints_a_working_join_token_once_and_list_shows_it(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    runner = CliRunner()
    added = runner.invoke(cli, ["env", "add", "Shop 17", "--group", "eu", "--tag", "retail",
                                "--database", db])  # fmt: skip
    assert added.exit_code == 0, added.output
    lines = dict(line.split(":", 1) for line in added.stdout.splitlines() if ":" in line)
    edge, token = lines["edge id"].strip(), lines["join token"].strip()
    assert edge == "shop-17"
    assert AgentSecrets(open_store(str(db)).registry, None)[edge] == token.encode()
    again = runner.invoke(cli, ["env", "add", "Shop 17", "--database", db])
    assert again.exit_code == 2 and "already registered" in again.output
    assert "Traceback" not in again.output
    listed = runner.invoke(cli, ["env", "list", "--json", "--database", db])
    (env,) = json.loads(listed.stdout)
    assert (env["edge_id"], env["group"], env["tags"], env["status"]) == (
        "shop-17", "eu", ["retail"], "never",
    )  # fmt: skip
    assert token not in listed.stdout


def test_serve_refuses_what_a_user_can_fix_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing_dir = runner.invoke(cli, ["serve", "--database", str(tmp_path / "no" / "s.db")])
    assert missing_dir.exit_code == 2 and "does not exist" in missing_dir.output
    nobody = runner.invoke(cli, ["serve", "--database", str(tmp_path / "s.db")])
    assert nobody.exit_code == 2 and "snapsync env add" in nobody.output
    refused = runner.invoke(
        cli,
        ["serve", "--database", "postgresql://me:hunter2@127.0.0.1:9/db", "--agent-secret", SECRET],
    )
    assert refused.exit_code == 2 and "hunter2" not in refused.output
    assert len(refused.output.strip().splitlines()) == 1


def test_secrets_and_tokens_too_short_to_be_secret_are_refused(tmp_path: Path) -> None:
    """A blank or short agent secret or API token is refused in one line naming the setting
    and the minimum, before anything starts."""
    runner = CliRunner()
    db = str(tmp_path / "s.db")
    cases = {
        "--agent-secret": (["serve", "--database", db, "--agent-secret", "short"], {}),
        "--api-token": (
            ["serve", "--database", db, "--agent-secret", SECRET, "--api-token", " "],
            {},
        ),
        "SNAPSYNC_AGENT_SECRET": (
            ["agent", "--server-url", "http://127.0.0.1:9", "--edge-id", "e", "--once"],
            {"SNAPSYNC_AGENT_SECRET": "   padded  "},
        ),
    }
    for setting, (args, env) in cases.items():
        result = runner.invoke(cli, args, env=env)
        assert result.exit_code == 2, (setting, result.output)
        line = result.output.strip()
        assert len(line.splitlines()) == 1 and setting in line and "16 characters" in line, line
    store = open_store(str(tmp_path / "s.db"))
    with pytest.raises(InputError, match="16 characters"):
        store.registry.register(Registration("e", "E"), b" " * 40)
    assert store.registry.registrations() == []
