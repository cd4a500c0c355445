"""The server's database as the command line opens it: `serve`, `env add` and `env list` get their
store here and nowhere else, so how storage is built changes in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snapsync.server.sqlstore import SQLStore
    from snapsync.server.storage import Retention


def open_server_store(
    database: str,
    retention: Retention | None = None,
    cache_bytes: int | None = None,
    processes: int = 1,
) -> SQLStore:
    """`database`: a SQLite file or a postgresql:// URL; `processes` > 1: server processes share
    it, so each refuses the replays the others accepted."""
    from snapsync.server.database import open_store
    from snapsync.server.statecache import DEFAULT_CACHE_BYTES

    store = open_store(
        database, retention, DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes
    )
    if processes > 1:
        store.shared_by_processes = True
    return store
