"""The registry of environments (table environments): name, group, tags and each one's agent
secret. Registration takes the lock of the empty id, so two servers never register one name
twice; the secret is never part of a Registration."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from snapsync.errors import InputError
from snapsync.protocol.auth import MIN_SECRET
from snapsync.server.storage import Registration
from snapsync.server.store.sql import Database


class Registry:
    def __init__(self, db: Database) -> None:
        self.db = db

    def register(self, registration: Registration, secret: bytes) -> None:
        if len(secret.strip()) < MIN_SECRET:  # `snapsync env add` makes 43 characters
            raise InputError(f"an agent secret needs at least {MIN_SECRET} characters")
        with self.db.tx() as db:
            self.db.lock_env(db, "")
            taken = self.db.run(
                db,
                "SELECT edge_id, name FROM environments WHERE edge_id = ? OR name = ?",
                (registration.edge_id, registration.name),
            ).fetchone()
            if taken is not None:
                what = "name" if taken[1] == registration.name else "edge id"
                raise InputError(f"an environment with that {what} is already registered")
            self.db.run(
                db,
                "INSERT INTO environments (edge_id, name, grp, tags, secret, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    registration.edge_id,
                    registration.name,
                    registration.group,
                    json.dumps(list(registration.tags)),
                    secret,
                    registration.created_at,
                ),
            )

    def registration(self, edge_id: str) -> Registration | None:
        rows = self.db.read(
            "SELECT edge_id, name, grp, tags, created_at FROM environments WHERE edge_id = ?",
            (edge_id,),
        )
        return _registration(rows[0]) if rows else None

    def registrations(self) -> list[Registration]:
        rows = self.db.read(
            "SELECT edge_id, name, grp, tags, created_at FROM environments ORDER BY name"
        )
        return [_registration(row) for row in rows]

    def agent_secret(self, edge_id: str) -> bytes | None:
        rows = self.db.read("SELECT secret FROM environments WHERE edge_id = ?", (edge_id,))
        return bytes(rows[0][0]) if rows else None


def _registration(row: Sequence[Any]) -> Registration:
    edge_id, name, group, tags, created_at = row
    return Registration(edge_id, name, group, tuple(json.loads(tags)), created_at)
