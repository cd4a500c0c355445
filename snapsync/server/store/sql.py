"""The database under the server's repositories: one connection per thread, transactions, and
the few things SQLite (sqlite.py) and PostgreSQL (postgres.py) do differently (how to connect,
how a transaction starts, how to lock one environment, how to write many rows).

Every repository (versions, uploads, commands, nonces, registry, usage, queries) holds the one
`Database` of its server and writes SQL with `?` placeholders; `run` rewrites them for the
dialect. The driver's operational errors (locked, disk full, connection lost) come out of
`read`, `tx` and `durable` as StorageError, an outage the agent waits out; any other exception
is a bug. Schema creation, at start-up, lets the driver's errors through as they are (a bad path
or DSN is the user's to fix).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any, TypeVar

from snapsync.errors import StorageError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    env TEXT NOT NULL,
    seq {int} NOT NULL,
    digest {blob} NOT NULL,
    base_seq {int},
    frame {blob} NOT NULL,
    frame_bytes {int} NOT NULL,
    snapshot {blob},
    objects {int} NOT NULL,
    changed {int} NOT NULL,
    received_at {real} NOT NULL,
    PRIMARY KEY (env, seq)
);
CREATE INDEX IF NOT EXISTS versions_digest ON versions (env, digest);
CREATE INDEX IF NOT EXISTS versions_time ON versions (env, received_at);
CREATE TABLE IF NOT EXISTS objects (
    env TEXT NOT NULL,
    key TEXT NOT NULL,
    grp TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    digest {blob} NOT NULL,
    seq {int} NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (env, key)
);
CREATE INDEX IF NOT EXISTS objects_kind ON objects (env, kind, namespace, name);
CREATE TABLE IF NOT EXISTS object_history (
    env TEXT NOT NULL,
    key TEXT NOT NULL,
    seq {int} NOT NULL,
    grp TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    digest {blob},
    data TEXT,
    PRIMARY KEY (env, key, seq)
);
CREATE INDEX IF NOT EXISTS object_history_seq ON object_history (env, seq);
CREATE TABLE IF NOT EXISTS collections (
    env TEXT PRIMARY KEY,
    seq {int} NOT NULL,
    collected_at TEXT NOT NULL,
    errors TEXT NOT NULL
);
DROP TABLE IF EXISTS partials;
CREATE TABLE IF NOT EXISTS uploads (
    env TEXT NOT NULL,
    upload {blob} NOT NULL,
    base {blob} NOT NULL,
    target {blob} NOT NULL,
    total {int} NOT NULL,
    received {int} NOT NULL,
    updated_at {real} NOT NULL,
    PRIMARY KEY (env, upload)
);
CREATE INDEX IF NOT EXISTS uploads_time ON uploads (updated_at);
CREATE TABLE IF NOT EXISTS upload_chunks (
    env TEXT NOT NULL,
    upload {blob} NOT NULL,
    first_byte {int} NOT NULL,
    data {blob} NOT NULL,
    PRIMARY KEY (env, upload, first_byte)
);
CREATE TABLE IF NOT EXISTS commands (
    env TEXT NOT NULL,
    id {int} NOT NULL,
    name TEXT NOT NULL,
    args {blob} NOT NULL,
    queued_at {real} NOT NULL,
    result_ok {int},
    result_message TEXT,
    result_at {real},
    PRIMARY KEY (env, id)
);
CREATE TABLE IF NOT EXISTS agents (
    env TEXT PRIMARY KEY,
    last_seen {real} NOT NULL,
    latest {blob} NOT NULL,
    waiting {int} NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_budgets (
    env TEXT PRIMARY KEY,
    reported_at {real} NOT NULL,
    used {int} NOT NULL,
    budget {int} NOT NULL,
    rate {int} NOT NULL,
    pace_interval {int} NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    env TEXT NOT NULL,
    day TEXT NOT NULL,
    received {int} NOT NULL,
    sent {int} NOT NULL,
    PRIMARY KEY (env, day)
);
DROP TABLE IF EXISTS nonces;
CREATE TABLE IF NOT EXISTS request_nonces (
    edge TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at {real} NOT NULL,
    PRIMARY KEY (edge, nonce)
);
CREATE INDEX IF NOT EXISTS request_nonces_time ON request_nonces (seen_at);
CREATE TABLE IF NOT EXISTS environments (
    edge_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    grp TEXT NOT NULL,
    tags TEXT NOT NULL,
    secret {blob} NOT NULL,
    created_at {real} NOT NULL
);
"""

OBJECT_COLUMNS = "grp, kind, namespace, name, digest, seq, data"
# The newest history row at or before a version, per key: that version's state of the object.
AS_OF = (
    "SELECT h.grp, h.kind, h.namespace, h.name, h.digest, h.seq, h.data FROM object_history h "
    "WHERE h.env = ? AND h.digest IS NOT NULL AND h.seq = (SELECT MAX(h2.seq) FROM "
    "object_history h2 WHERE h2.env = h.env AND h2.key = h.key AND h2.seq <= ?)"
)


class Database(ABC):
    """A DB-API connection per thread, and the dialect's differences."""

    placeholder = "?"
    # What the driver raises when the database is away (locked, disk full, connection lost):
    # raised on as StorageError, an outage the agent waits out; any other exception is a bug.
    unavailable: tuple[type[Exception], ...] = ()

    def __init__(self, shared_by_processes: bool = False) -> None:
        # Several server processes serve this database (`serve --workers`, or PostgreSQL behind
        # a load balancer): replays are refused in it, and SQLite writers take turns across them.
        self.shared_by_processes = shared_by_processes
        self._local = threading.local()
        self._connections: list[Any] = []
        self._guard = threading.Lock()
        self.observe_batch: Callable[[int], None] | None = None  # sizes of committed batches

    # -- what a dialect must provide ---------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _transaction(self, durable: bool) -> AbstractContextManager[Any]:
        """A write transaction on this thread's connection; rolled back on any exception.

        Not `durable`: bookkeeping (last seen, bytes, uploads in progress) that a power cut may
        roll back by a moment without harm (the agent resends from the offset the server
        confirms); it is still atomic and never lost to a process crash. Versions and command
        results are durable.
        """

    def lock_env(self, db: Any, env: str) -> None:  # noqa: B027 (SQLite needs no more)
        """Hold `env` until the transaction ends (SQLite's writer lock already does)."""

    def many(self, db: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            db.executemany(self._q(sql), rows)

    def _schema(self) -> str:
        return SCHEMA.format(int="INTEGER", blob="BLOB", real="REAL")

    def durable(self, write: Callable[[Any], T]) -> T:
        """`write` in a durable transaction (SQLite: shared with concurrent ones)."""
        with self.tx() as db:
            value = write(db)
        if self.observe_batch is not None:
            self.observe_batch(1)
        return value

    # -- for the repositories ----------------------------------------------------------------

    @contextmanager
    def outage(self) -> Iterator[None]:
        """The driver's operational errors as StorageError (the type and first line only)."""
        try:
            yield
        except self.unavailable as exc:
            text = str(exc).strip()
            line = f": {text.splitlines()[0]}" if text else ""
            raise StorageError(f"{type(exc).__name__}{line}") from exc

    @contextmanager
    def tx(self, durable: bool = True) -> Iterator[Any]:
        """A write transaction (see `_transaction`), its outages as StorageError."""
        with self.outage(), self._transaction(durable) as db:
            yield db

    def run(self, db: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        return db.execute(self._q(sql), tuple(params))

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.outage():
            return list(self.run(self._db(), sql, params).fetchall())

    def ping(self) -> None:
        """StorageError when the database does not answer (readiness)."""
        self.read("SELECT 1")

    def close(self) -> None:
        with self._guard:
            connections, self._connections = self._connections, []
        for db in connections:
            with suppress(Exception):  # closing from another thread may be refused
                db.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _db(self) -> Any:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
            with self._guard:
                self._connections.append(db)
        return db

    def _create_schema(self) -> None:
        """At start-up: the driver's errors come through as they are (a bad path or DSN)."""
        with self._transaction(True) as db:
            self.lock_env(db, "")
            for statement in filter(None, (s.strip() for s in self._schema().split(";"))):
                self.run(db, statement)
