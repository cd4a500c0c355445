"""The server's storage in SQL, once for both databases, as one repository per job over one
shared `Database` (sql.py; SQLite in sqlite.py, PostgreSQL in postgres.py, which only say how to
connect, how a transaction starts and how to lock one environment):

- versions.py   `Versions`: what the protocol commits and reads back (held, snapshot, commit)
- uploads.py    `Uploads`: uploads in progress, chunk by chunk
- commands.py   `Commands`: commands queued for agents, and their results
- nonces.py     `Nonces`: signed requests seen, when several processes share the database
- registry.py   `Registry`: registered environments and their agent secrets
- usage.py      `Usage`: bytes per day and when each agent was last heard from
- queries.py    `Queries`: what the browse API, the page and the fleet metrics read

`Stores` holds one of each, and is the protocol's `VersionStore` over them (it only delegates).
`open_store(database)` opens them for a `--database` value: `postgresql://…` (or
`postgres://…`) is PostgreSQL, anything else a SQLite file; errors a user can fix (no such
directory, server refused) are one-line InputErrors, never a traceback.

Tables, per environment (`env` = edge id):
- versions: every stored version with the frame that produced it (the history of deltas); while
  the version may serve as a base (the newest few and the agent's base) a snapshot frame of its
  header alone, its objects being the rows below (databases written before hold the whole
  snapshot there, and it is used as such when its digest is the version's).
- objects: the current version, one row per object (key, kind, namespace, name, digest, JSON).
- object_history: one row per object per version that changed it (its whole new JSON, or NULL
  when removed), so any retained version's state is "newest row at or before it, per key".
- collections: the newest version's snapshot header as the browse API shows it (collection
  time, kinds that could not be collected), so the fleet list needs no snapshot decoded.
- uploads (in progress) and upload_chunks (their bytes, one row per chunk, appended: a chunk
  never rewrites what came before), commands, agents (last seen), usage (bytes per UTC day),
  environments (the registry and each environment's agent secret), request_nonces (signed
  requests seen, per edge, when several server processes must refuse each other's replays).
  The tables `partials` (one blob per upload, rewritten per chunk) and `nonces` (one global
  key) that these replace are dropped: both hold only minutes of ephemeral state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from snapsync.canonical.snapshot import Snapshot
from snapsync.errors import InputError
from snapsync.protocol.messages import BudgetReport, Command, CommandResult, Version
from snapsync.protocol.server import PartialLimits, PartialUpload
from snapsync.server.statecache import DEFAULT_CACHE_BYTES
from snapsync.server.storage import Retention
from snapsync.server.store.commands import Commands
from snapsync.server.store.nonces import Nonces
from snapsync.server.store.queries import Queries
from snapsync.server.store.registry import Registry
from snapsync.server.store.sql import Database
from snapsync.server.store.sqlite import SQLiteDatabase
from snapsync.server.store.uploads import Uploads
from snapsync.server.store.usage import Usage
from snapsync.server.store.versions import Versions

__all__ = ["Stores", "open_store"]


@dataclass(frozen=True, repr=False)
class Stores:
    """The repositories of one server over one database; the protocol's store."""

    db: Database
    versions: Versions
    uploads: Uploads
    commands: Commands
    nonces: Nonces
    registry: Registry
    usage: Usage
    queries: Queries

    @classmethod
    def over(
        cls,
        db: Database,
        keep_versions: int = 3,
        retention: Retention | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> Stores:
        """`keep_versions`: versions held whole as bases; `cache_bytes`: the bound of the newest
        versions kept decoded (statecache.py)."""
        registry = Registry(db)
        return cls(
            db,
            Versions(db, keep_versions, retention, cache_bytes),
            Uploads(db),
            Commands(db),
            Nonces(db),
            registry,
            Usage(db),
            Queries(db, registry),
        )

    def close(self) -> None:
        self.db.close()

    def __repr__(self) -> str:
        return f"Stores({self.db!r})"

    # -- VersionStore (snapsync.protocol.server), delegated -------------------------------------

    def held(self, env: str) -> Sequence[Version]:
        return self.versions.held(env)

    def snapshot(self, env: str, digest: bytes) -> Snapshot | None:
        return self.versions.snapshot(env, digest)

    def commit(
        self, env: str, snapshot: Snapshot, frame: bytes, base: Version | None, now: float
    ) -> Version:
        return self.versions.commit(env, snapshot, frame, base, now)

    def partial(self, env: str, upload: bytes) -> PartialUpload | None:
        return self.uploads.partial(env, upload)

    def append_partial(
        self,
        env: str,
        upload: bytes,
        partial: PartialUpload,
        data: bytes,
        now: float,
        limits: PartialLimits,
    ) -> int:
        return self.uploads.append_partial(env, upload, partial, data, now, limits)

    def partial_data(self, env: str, upload: bytes) -> bytes:
        return self.uploads.partial_data(env, upload)

    def drop_partial(self, env: str, upload: bytes) -> None:
        self.uploads.drop_partial(env, upload)

    def expire_partials(self, before: float) -> int:
        return self.uploads.expire_partials(before)

    def commands_after(self, env: str, cursor: int, limit: int) -> Sequence[Command]:
        return self.commands.commands_after(env, cursor, limit)

    def record_results(self, env: str, results: Sequence[CommandResult], now: float) -> None:
        self.commands.record_results(env, results, now)

    def seen(
        self, env: str, now: float, latest: bytes, waiting: int, budget: BudgetReport | None = None
    ) -> None:
        self.usage.seen(env, now, latest, waiting, budget)


def open_store(
    database: str,
    retention: Retention | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    shared_by_processes: bool = False,
) -> Stores:
    """The stores of `database`; `shared_by_processes` when several server processes serve
    one SQLite file (`serve --workers`: replays refused across them; PostgreSQL always is)."""
    if database.startswith(("postgresql://", "postgres://")):
        from snapsync.server.store.postgres import PostgreSQLDatabase

        return Stores.over(PostgreSQLDatabase(database), 3, retention, cache_bytes)
    parent = Path(database).expanduser().resolve().parent
    if not parent.is_dir():
        raise InputError(f"database {database}: directory {parent} does not exist")
    db = SQLiteDatabase(Path(database).expanduser(), shared_by_processes)
    return Stores.over(db, 3, retention, cache_bytes)
