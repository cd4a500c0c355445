"""Which store a `--database` value names: `postgresql://…` (or `postgres://…`) is PostgreSQL,
anything else a SQLite file. Errors a user can fix (no such directory, server refused) come
back as one-line InputErrors, never a traceback."""

from __future__ import annotations

from pathlib import Path

from snapsync.errors import InputError
from snapsync.server.sqlite import SQLiteStore
from snapsync.server.sqlstore import SQLStore
from snapsync.server.statecache import DEFAULT_CACHE_BYTES
from snapsync.server.storage import Retention


def open_store(
    database: str, retention: Retention | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES
) -> SQLStore:
    """`cache_bytes`: the bound of the newest versions kept decoded (statecache.py)."""
    if database.startswith(("postgresql://", "postgres://")):
        from snapsync.server.postgres import PostgreSQLStore

        return PostgreSQLStore(database, retention=retention, cache_bytes=cache_bytes)
    parent = Path(database).expanduser().resolve().parent
    if not parent.is_dir():
        raise InputError(f"database {database}: directory {parent} does not exist")
    return SQLiteStore(Path(database).expanduser(), retention=retention, cache_bytes=cache_bytes)
