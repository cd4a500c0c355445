"""Commands queued for agents and their results (table commands): numbered per environment
under its lock, each result recorded once (a late duplicate changes nothing)."""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from snapsync.protocol.messages import Command, CommandResult
from snapsync.server.storage import CommandRecord
from snapsync.server.store.sql import Database


class Commands:
    def __init__(self, db: Database) -> None:
        self.db = db

    def queue_command(
        self, env: str, name: str, args: dict[str, object] | None = None, now: float = 0.0
    ) -> Command:
        with self.db.tx() as db:
            self.db.lock_env(db, env)
            (last,) = self.db.run(
                db, "SELECT COALESCE(MAX(id), 0) FROM commands WHERE env = ?", (env,)
            ).fetchone()
            command = Command(last + 1, name, args or {})
            self.db.run(
                db,
                "INSERT INTO commands (env, id, name, args, queued_at) VALUES (?, ?, ?, ?, ?)",
                (env, command.id, name, msgpack.packb(dict(command.args)), now),
            )
        return command

    def commands_after(self, env: str, cursor: int, limit: int) -> Sequence[Command]:
        rows = self.db.read(
            "SELECT id, name, args FROM commands WHERE env = ? AND id > ? ORDER BY id LIMIT ?",
            (env, cursor, limit),
        )
        return [Command(i, name, msgpack.unpackb(bytes(args))) for i, name, args in rows]

    def record_results(self, env: str, results: Sequence[CommandResult], now: float) -> None:
        if not results:
            return
        with self.db.tx() as db:
            self.db.many(
                db,
                "UPDATE commands SET result_ok = ?, result_message = ?, result_at = ? "
                "WHERE env = ? AND id = ? AND result_ok IS NULL",
                [(int(r.ok), _storable(r.message), now, env, r.id) for r in results],
            )

    def results(self, env: str) -> dict[int, CommandResult]:
        rows = self.db.read(
            "SELECT id, result_ok, result_message FROM commands "
            "WHERE env = ? AND result_ok IS NOT NULL",
            (env,),
        )
        return {i: CommandResult(i, bool(ok), message) for i, ok, message in rows}

    def command_records(self, env: str, limit: int = 100) -> list[CommandRecord]:
        rows = self.db.read(
            "SELECT id, name, args, queued_at, result_ok, result_message, result_at "
            "FROM commands WHERE env = ? ORDER BY id DESC LIMIT ?",
            (env, limit),
        )
        return [
            CommandRecord(
                Command(i, name, msgpack.unpackb(bytes(args))),
                queued_at,
                None if ok is None else CommandResult(i, bool(ok), message or ""),
                result_at,
            )
            for i, name, args, queued_at, ok, message, result_at in rows
        ]


def _storable(text: str) -> str:
    """An agent's free text as a text column holds it: PostgreSQL refuses NUL, so a hostile
    result message would fail every later ping (U+FFFD marks where it was)."""
    return text.replace("\x00", "\ufffd")
