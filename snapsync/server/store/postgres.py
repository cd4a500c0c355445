"""The server's database on PostgreSQL, for fleets that outgrow one machine.

Several server processes behind a load balancer share one database: everything, uploads in
progress included, lives in it, never in a process. Each write is one transaction; a commit or
a command queued for an environment first takes a transaction-scoped advisory lock on that
environment's id, so two processes' commits for one environment run one after the other (the
second sees the first's version and numbers itself after it). Schema creation takes the lock of
the empty id, so servers starting together do not race. Nonces of signed requests are
remembered in the database too, so a request replayed to another process is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from snapsync.errors import InputError
from snapsync.server.store.sql import SCHEMA, Database


class PostgreSQLDatabase(Database):
    placeholder = "%s"
    unavailable = (psycopg.OperationalError, psycopg.InterfaceError)

    def __init__(self, dsn: str) -> None:
        super().__init__(shared_by_processes=True)
        self.dsn = dsn
        try:
            self._create_schema()
        except psycopg.Error as exc:
            raise InputError(f"database {_redacted(dsn)}: {_first_line(exc)}") from None

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)

    def _schema(self) -> str:
        return SCHEMA.format(int="BIGINT", blob="BYTEA", real="DOUBLE PRECISION")

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator[psycopg.Connection[Any]]:
        db: psycopg.Connection[Any] = self._db()
        with db.transaction():
            if not durable:
                db.execute("SET LOCAL synchronous_commit = off")
            yield db

    def _db(self) -> Any:
        db = super()._db()
        if db.closed or db.broken:
            self._local.db = None
            db = super()._db()
        return db

    def lock_env(self, db: Any, env: str) -> None:
        self.run(db, "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (env,))

    def many(self, db: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            with db.cursor() as cursor:
                cursor.executemany(self._q(sql), rows)

    def __repr__(self) -> str:
        return f"PostgreSQLDatabase({_redacted(self.dsn)!r})"


def _redacted(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://…"
    info.pop("password", None)
    host, port, name = info.get("host", ""), info.get("port", ""), info.get("dbname", "")
    return f"postgresql://{info.get('user', '')}@{host}:{port}/{name}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
