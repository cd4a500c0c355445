"""Which store a `--database` value names: `postgresql://…` (or `postgres://…`) is PostgreSQL,
anything else a SQLite file. Errors a user can fix (no such directory, server refused) come
back as one-line InputErrors, never a traceback."""

from __future__ import annotations

from pathlib import Path

from snapsync.errors import InputError
from snapsync.server.sqlite import SQLiteStore
from snapsync.server.sqlstore import SQLStore
from snapsync.server.storage import Retention


def open_store(database: str, retention: Retention | None = None) -> SQLStore:
    if database.startswith(("postgresql://", "postgres://")):
        from snapsync.server.postgres import PostgreSQLStore

        return PostgreSQLStore(database, retention=retention)
    parent = Path(database).expanduser().resolve().parent
    if not parent.is_dir():
        raise InputError(f"database {database}: directory {parent} does not exist")
    return SQLiteStore(Path(database).expanduser(), retention=retention)
