"""VersionStore on SQLite: one file, WAL, every apply in one transaction.

A crash at any point leaves the previous version intact: a commit writes the new version row,
its snapshot and the pruning of old snapshots in a single transaction. Snapshots are kept as
compressed snapshot frames for the versions the protocol may use as bases; every version's
frame (the delta as received) is kept as history.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import msgpack

from snapsync.codec import decode_snapshot, encode_snapshot
from snapsync.errors import InputError
from snapsync.protocol.messages import Command, CommandResult, Version
from snapsync.protocol.server import PartialUpload
from snapsync.snapshot import Snapshot

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    env TEXT NOT NULL,
    seq INTEGER NOT NULL,
    digest BLOB NOT NULL,
    base_seq INTEGER,
    frame BLOB NOT NULL,          -- as received: the delta (or full frame) that produced it
    snapshot BLOB,                -- a full snapshot frame while the version may serve as a base
    received_at REAL NOT NULL,
    PRIMARY KEY (env, seq)
);
CREATE INDEX IF NOT EXISTS versions_digest ON versions (env, digest);
CREATE TABLE IF NOT EXISTS partials (
    env TEXT NOT NULL,
    upload BLOB NOT NULL,
    base BLOB NOT NULL,
    target BLOB NOT NULL,
    total INTEGER NOT NULL,
    data BLOB NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (env, upload)
);
CREATE TABLE IF NOT EXISTS commands (
    env TEXT NOT NULL,
    id INTEGER NOT NULL,
    name TEXT NOT NULL,
    args BLOB NOT NULL,
    queued_at REAL NOT NULL,
    result_ok INTEGER,
    result_message TEXT,
    result_at REAL,
    PRIMARY KEY (env, id)
);
CREATE TABLE IF NOT EXISTS agents (
    env TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    latest BLOB NOT NULL,
    waiting INTEGER NOT NULL
);
"""


class SQLiteStore:
    def __init__(self, path: str | Path, keep_versions: int = 3) -> None:
        self.path = str(path)
        self.keep_versions = keep_versions
        self._local = threading.local()
        try:
            self._db().executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise InputError(f"database {self.path}: {exc}") from None

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def held(self, env: str) -> Sequence[Version]:
        rows = self._db().execute(
            "SELECT seq, digest FROM versions WHERE env = ? AND snapshot IS NOT NULL "
            "ORDER BY seq DESC",
            (env,),
        )
        return [Version(seq, bytes(digest)) for seq, digest in rows]

    def snapshot(self, env: str, digest: bytes) -> Snapshot | None:
        row = (
            self._db()
            .execute(
                "SELECT snapshot FROM versions WHERE env = ? AND digest = ? "
                "AND snapshot IS NOT NULL ORDER BY seq DESC LIMIT 1",
                (env, digest),
            )
            .fetchone()
        )
        return decode_snapshot(bytes(row[0])) if row else None

    def current(self, env: str) -> Snapshot | None:
        held = self.held(env)
        return self.snapshot(env, held[0].digest) if held else None

    def commit(
        self, env: str, snapshot: Snapshot, frame: bytes, base: Version | None, now: float
    ) -> Version:
        stored = encode_snapshot(snapshot, 3)
        with self._tx() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM versions WHERE env = ?", (env,)
            ).fetchone()
            version = Version(last + 1, snapshot.digest)
            db.execute(
                "INSERT INTO versions (env, seq, digest, base_seq, frame, snapshot, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (env, version.seq, version.digest, base.seq if base else None, frame, stored, now),
            )
            db.execute(
                "UPDATE versions SET snapshot = NULL WHERE env = ? AND snapshot IS NOT NULL "
                "AND seq <= ? AND seq != ?",
                (env, version.seq - self.keep_versions, base.seq if base else -1),
            )
        return version

    def partial(self, env: str, upload: bytes) -> PartialUpload | None:
        row = (
            self._db()
            .execute(
                "SELECT base, target, total, data FROM partials WHERE env = ? AND upload = ?",
                (env, upload),
            )
            .fetchone()
        )
        if row is None:
            return None
        return PartialUpload(bytes(row[0]), bytes(row[1]), row[2], bytes(row[3]))

    def save_partial(self, env: str, upload: bytes, partial: PartialUpload, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO partials VALUES (?, ?, ?, ?, ?, ?, ?)",
                (env, upload, partial.base, partial.target, partial.total, partial.data, now),
            )

    def drop_partial(self, env: str, upload: bytes) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM partials WHERE env = ? AND upload = ?", (env, upload))

    def queue_command(
        self, env: str, name: str, args: dict[str, object] | None = None, now: float = 0.0
    ) -> Command:
        with self._tx() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(id), 0) FROM commands WHERE env = ?", (env,)
            ).fetchone()
            command = Command(last + 1, name, args or {})
            db.execute(
                "INSERT INTO commands (env, id, name, args, queued_at) VALUES (?, ?, ?, ?, ?)",
                (env, command.id, name, msgpack.packb(dict(command.args)), now),
            )
        return command

    def commands_after(self, env: str, cursor: int, limit: int) -> Sequence[Command]:
        rows = self._db().execute(
            "SELECT id, name, args FROM commands WHERE env = ? AND id > ? ORDER BY id LIMIT ?",
            (env, cursor, limit),
        )
        return [Command(i, name, msgpack.unpackb(args)) for i, name, args in rows]

    def record_results(self, env: str, results: Sequence[CommandResult], now: float) -> None:
        if not results:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE commands SET result_ok = ?, result_message = ?, result_at = ? "
                "WHERE env = ? AND id = ? AND result_ok IS NULL",
                [(r.ok, r.message, now, env, r.id) for r in results],
            )

    def results(self, env: str) -> dict[int, CommandResult]:
        rows = self._db().execute(
            "SELECT id, result_ok, result_message FROM commands "
            "WHERE env = ? AND result_ok IS NOT NULL",
            (env,),
        )
        return {i: CommandResult(i, bool(ok), message) for i, ok, message in rows}

    def seen(self, env: str, now: float, latest: bytes, waiting: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO agents VALUES (?, ?, ?, ?)", (env, now, latest, waiting)
            )
