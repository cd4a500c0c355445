"""The server's storage in SQL, once for both databases: SQLite (sqlite.py) and PostgreSQL
(postgres.py) only say how to connect, how a transaction starts and how to lock one environment.

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

Invariants:
- A commit is one transaction holding the environment's lock: version row, the changed
  objects, their history rows and the pruning all land together or not at all, and two commits
  for one environment never interleave (several server processes may share one PostgreSQL).
- Only the objects whose digest changed are written: the keys a delta touched when the new
  snapshot was derived from the newest version (snapsync.delta.incremental), else by digest.
- A version read back from rows is used only if the rows give exactly its digest; each process
  keeps the newest version per environment decoded (statecache.py) and checks at commit time,
  under the environment's lock, that it still is the newest.
- Pruning never removes a version whose snapshot is held, and always keeps, per key, the row
  that describes the oldest retained version.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, suppress
from typing import Any

import msgpack

from snapsync.canonical.keys import ObjectKey, split_kind_ref
from snapsync.canonical.snapshot import CanonicalObject, KindFailure, Snapshot, SnapshotHeader
from snapsync.codec.decode import decode_snapshot
from snapsync.codec.encode import encode_snapshot
from snapsync.delta.diff import Delta
from snapsync.delta.incremental import IncrementalSnapshot, derive
from snapsync.errors import DeltaError, InputError
from snapsync.protocol.auth import MIN_SECRET, Remembered
from snapsync.protocol.messages import Command, CommandResult, Version
from snapsync.protocol.server import PartialLimits, PartialUpload
from snapsync.server.statecache import DEFAULT_CACHE_BYTES, StateCache
from snapsync.server.storage import (
    CommandRecord,
    EnvironmentSummary,
    ObjectChange,
    ObjectQuery,
    ObjectRow,
    Registration,
    Retention,
    VersionInfo,
    bounded_errors,
    object_json,
    utc_day,
)

log = logging.getLogger("snapsync.server")

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

_OBJECT_COLUMNS = "grp, kind, namespace, name, digest, seq, data"
# The newest history row at or before a version, per key: that version's state of the object.
_AS_OF = (
    "SELECT h.grp, h.kind, h.namespace, h.name, h.digest, h.seq, h.data FROM object_history h "
    "WHERE h.env = ? AND h.digest IS NOT NULL AND h.seq = (SELECT MAX(h2.seq) FROM "
    "object_history h2 WHERE h2.env = h.env AND h2.key = h.key AND h2.seq <= ?)"
)


class SQLStore(ABC):
    """VersionStore and ServerStore over a DB-API connection per thread."""

    # Several server processes may serve one database (so replays are refused in it).
    shared_by_processes = False
    placeholder = "?"
    # What the database raises when it is away (locked, disk full, connection lost): an outage
    # the agent waits out, where any other exception is a bug.
    unavailable: tuple[type[Exception], ...] = ()

    def __init__(
        self,
        keep_versions: int = 3,
        retention: Retention | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.keep_versions = keep_versions
        self.retention = retention or Retention()
        self._local = threading.local()
        self._connections: list[Any] = []
        self._guard = threading.Lock()
        self.states = StateCache(cache_bytes)
        self.observe_batch: Callable[[int], None] | None = None  # sizes of committed batches

    # -- what a database must provide ---------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _tx(self, durable: bool = True) -> AbstractContextManager[Any]:
        """A write transaction on this thread's connection; rolled back on any exception.

        Not `durable`: bookkeeping (last seen, bytes, uploads in progress) that a power cut may
        roll back by a moment without harm (the agent resends from the offset the server
        confirms); it is still atomic and never lost to a process crash. Versions and command
        results are durable.
        """

    def _lock_env(self, db: Any, env: str) -> None:  # noqa: B027 (SQLite needs no more)
        """Hold `env` until the transaction ends (SQLite's writer lock already does)."""

    def _many(self, db: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            db.executemany(self._q(sql), rows)

    def _schema(self) -> str:
        return SCHEMA.format(int="INTEGER", blob="BLOB", real="REAL")

    # -- plumbing ------------------------------------------------------------------------------

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

    def _run(self, db: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        return db.execute(self._q(sql), tuple(params))

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._run(self._db(), sql, params).fetchall())

    def _create_schema(self) -> None:
        with self._tx() as db:
            self._lock_env(db, "")
            for statement in filter(None, (s.strip() for s in self._schema().split(";"))):
                self._run(db, statement)

    def ping(self) -> None:
        self._read("SELECT 1")

    def close(self) -> None:
        with self._guard:
            connections, self._connections = self._connections, []
        for db in connections:
            with suppress(Exception):  # closing from another thread may be refused
                db.close()

    # -- VersionStore ----------------------------------------------------------------------------

    def held(self, env: str) -> Sequence[Version]:
        rows = self._read(
            "SELECT seq, digest FROM versions WHERE env = ? AND snapshot IS NOT NULL "
            "ORDER BY seq DESC",
            (env,),
        )
        return [Version(seq, bytes(digest)) for seq, digest in rows]

    def snapshot(self, env: str, digest: bytes) -> Snapshot | None:
        cached = self.states.get(env, digest)
        held = "SELECT {} FROM versions WHERE env = ? AND digest = ? AND snapshot IS NOT NULL "
        if cached is not None:  # still held? (an indexed look-up, no decoding)
            return cached[1] if self._read(held.format("1") + "LIMIT 1", (env, digest)) else None
        rows = self._read(held.format("seq, snapshot") + "ORDER BY seq DESC LIMIT 1", (env, digest))
        if not rows:
            return None
        seq, stored = rows[0][0], decode_snapshot(bytes(rows[0][1]))
        # a whole snapshot (as stored before versions kept their header alone), or a header
        snap = (
            stored
            if stored.digest == digest
            else self._caught_up(env, seq, digest, stored.header)
            or self._from_rows(env, seq, digest, stored.header)
        )
        if snap is not None and self._newest_seq(env) == seq:
            self.states.put(env, seq, snap)
        return snap

    def _caught_up(
        self, env: str, seq: int, digest: bytes, header: SnapshotHeader
    ) -> Snapshot | None:
        """Version `seq` as the kept older version of `env` plus the object rows the versions
        after it changed (stored by another process): derived and checked like a delta, so the
        digest is exact; None when nothing older is kept or the rows do not give the digest
        (pruned meanwhile)."""
        kept = self.states.newest(env)
        if kept is None or kept[0] >= seq:
            return None
        old_seq, old = kept
        rows = self._read(
            "SELECT grp, kind, namespace, name, digest, data FROM object_history "
            "WHERE env = ? AND seq > ? AND seq <= ? ORDER BY seq",
            (env, old_seq, seq),
        )
        latest = {ObjectKey(g, k, ns, n): (d, data) for g, k, ns, n, d, data in rows}
        removed = tuple(sorted(key for key in latest if key in old.objects))
        added = {k: json.loads(data) for k, (d, data) in latest.items() if d is not None}
        try:
            return derive(old, Delta(old.digest, digest, header, removed, added))
        except DeltaError:
            return None

    def _from_rows(
        self, env: str, seq: int, digest: bytes, header: SnapshotHeader
    ) -> Snapshot | None:
        """Version `seq` from the object rows, if they give exactly its digest: the `objects`
        table while it is the newest, else the history (also when a commit got in between)."""
        reads: list[tuple[str, tuple[Any, ...]]] = [
            (f"SELECT {_OBJECT_COLUMNS} FROM objects h WHERE h.env = ?", (env,)),
            (_AS_OF, (env, seq)),
        ]
        for sql, params in reads:
            rows = self._read(sql, params)
            objects = {
                ObjectKey(g, k, ns, n): CanonicalObject.from_data(json.loads(data))
                for g, k, ns, n, _, _, data in rows
            }
            snap = Snapshot(header, objects)
            if snap.digest == digest:
                return snap
        log.error("%s: the rows of version %d do not give its digest", env, seq)
        return None

    def _newest_seq(self, env: str) -> int | None:
        rows = self._read("SELECT MAX(seq) FROM versions WHERE env = ?", (env,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def current(self, env: str) -> Snapshot | None:
        held = self.held(env)
        return self.snapshot(env, held[0].digest) if held else None

    def commit(
        self, env: str, snapshot: Snapshot, frame: bytes, base: Version | None, now: float
    ) -> Version:
        """Store `snapshot` as the newest version (durable before this returns). Writes only
        the objects whose digest changed: when `snapshot` was derived from the newest version
        (snapsync.delta.incremental) the keys its delta touched, else a comparison of digests. The
        version row keeps the snapshot's header; its objects are the rows (see snapshot())."""
        stored = encode_snapshot(Snapshot(snapshot.header, {}), 3)

        def write(db: Any) -> Version:
            return self._write_version(db, env, snapshot, frame, base, now, stored)

        version = self._durable(write)
        self.states.put(env, version.seq, snapshot)
        return version

    def _durable(self, write: Callable[[Any], Version]) -> Version:
        """`write` in a durable transaction (SQLite: shared with concurrent ones)."""
        with self._tx() as db:
            version = write(db)
        if self.observe_batch is not None:
            self.observe_batch(1)
        return version

    def _write_version(
        self,
        db: Any,
        env: str,
        snapshot: Snapshot,
        frame: bytes,
        base: Version | None,
        now: float,
        stored: bytes,
    ) -> Version:
        self._lock_env(db, env)
        row = self._run(
            db,
            "SELECT seq, digest FROM versions WHERE env = ? ORDER BY seq DESC LIMIT 1",
            (env,),
        ).fetchone()
        version = Version((row[0] if row else 0) + 1, snapshot.digest)
        newest = bytes(row[1]) if row else None
        if isinstance(snapshot, IncrementalSnapshot) and newest == snapshot.parent:
            touched = sorted(snapshot.touched)
            removed = [key for key in touched if key not in snapshot.objects]
            changed = [(k, snapshot.objects[k]) for k in touched if k in snapshot.objects]
        else:
            current = self._current_digests(db, env, newest)
            removed = [key for key in current if key not in snapshot.objects]
            changed = [(k, o) for k, o in snapshot.objects.items() if current.get(k) != o.digest]
        self._run(
            db,
            "INSERT INTO versions (env, seq, digest, base_seq, frame, frame_bytes, snapshot, "
            "objects, changed, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                env,
                version.seq,
                version.digest,
                base.seq if base else None,
                frame,
                len(frame),
                stored,
                len(snapshot),
                len(removed) + len(changed),
                now,
            ),
        )
        self._write_objects(db, env, version.seq, removed, changed)
        self._write_collection(db, env, version.seq, snapshot)
        self._run(
            db,
            "UPDATE versions SET snapshot = NULL WHERE env = ? AND snapshot IS NOT NULL "
            "AND seq <= ? AND seq != ?",
            (env, version.seq - self.keep_versions, base.seq if base else -1),
        )
        self._prune(db, env, version.seq, now)
        return version

    def _current_digests(self, db: Any, env: str, digest: bytes | None) -> dict[ObjectKey, bytes]:
        if digest is None:
            return {}
        cached = self.states.get(env, digest)
        if cached is not None:
            return {key: obj.digest for key, obj in cached[1].objects.items()}
        rows = self._run(
            db, "SELECT grp, kind, namespace, name, digest FROM objects WHERE env = ?", (env,)
        )
        return {ObjectKey(g, k, ns, n): bytes(d) for g, k, ns, n, d in rows}

    def _write_objects(
        self,
        db: Any,
        env: str,
        seq: int,
        removed: list[ObjectKey],
        changed: list[tuple[ObjectKey, Any]],
    ) -> None:
        self._many(
            db, "DELETE FROM objects WHERE env = ? AND key = ?", [(env, str(k)) for k in removed]
        )
        rows: list[tuple[Any, ...]] = [
            (env, str(k), *k.as_tuple(), o.digest, seq, object_json(o.data)) for k, o in changed
        ]
        self._many(
            db,
            "INSERT INTO objects (env, key, grp, kind, namespace, name, digest, seq, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (env, key) DO UPDATE SET "
            "digest = excluded.digest, seq = excluded.seq, data = excluded.data",
            rows,
        )
        history: list[tuple[Any, ...]] = [
            (e, key, s, g, k, ns, n, d, data) for e, key, g, k, ns, n, d, s, data in rows
        ]
        history += [(env, str(k), seq, *k.as_tuple(), None, None) for k in removed]
        self._many(
            db,
            "INSERT INTO object_history (env, key, seq, grp, kind, namespace, name, digest, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            history,
        )

    def _write_collection(self, db: Any, env: str, seq: int, snapshot: Snapshot) -> None:
        errors = [e.to_dict() for e in bounded_errors(snapshot.header.errors)]
        self._run(
            db,
            "INSERT INTO collections (env, seq, collected_at, errors) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (env) DO UPDATE SET seq = excluded.seq, "
            "collected_at = excluded.collected_at, errors = excluded.errors",
            (env, seq, snapshot.header.collected_at[:64], json.dumps(errors)),
        )

    def _prune(self, db: Any, env: str, newest: int, now: float) -> None:
        """Drop versions beyond retention, and the history rows only they needed. Rows are
        looked at only where the oldest version moved (from `before` to `oldest`): everything
        older was pruned when `before` became the oldest, so pruning costs what it removes,
        not what the environment holds."""
        keep = self.retention
        oldest_seq = newest - keep.keep_versions if keep.keep_versions is not None else 0
        oldest_time = now - keep.keep_seconds if keep.keep_seconds is not None else 0.0
        oldest_sql = "SELECT MIN(seq) FROM versions WHERE env = ?"
        (before,) = self._run(db, oldest_sql, (env,)).fetchone()
        gone = self._run(
            db,
            "DELETE FROM versions WHERE env = ? AND snapshot IS NULL AND (seq <= ? OR "
            "received_at < ?)",
            (env, oldest_seq, oldest_time),
        ).rowcount
        (oldest,) = self._run(db, oldest_sql, (env,)).fetchone()
        if not gone or oldest == before:
            return
        # Per key, rows older than the oldest version matter only as its state: keep the newest.
        # A row is superseded by a newer one at or before `oldest`, which is after `before`.
        self._run(
            db,
            "DELETE FROM object_history WHERE env = ? AND seq < ? AND key IN (SELECT key FROM "
            "object_history WHERE env = ? AND seq > ? AND seq <= ?) AND EXISTS (SELECT 1 FROM "
            "object_history h2 WHERE h2.env = object_history.env AND h2.key = object_history.key "
            "AND h2.seq > object_history.seq AND h2.seq <= ?)",
            (env, oldest, env, before, oldest, oldest),
        )
        self._run(
            db,
            "DELETE FROM object_history WHERE env = ? AND seq >= ? AND seq < ? AND digest IS NULL",
            (env, before, oldest),
        )

    def partial(self, env: str, upload: bytes) -> PartialUpload | None:
        rows = self._read(
            "SELECT base, target, total, received FROM uploads WHERE env = ? AND upload = ?",
            (env, upload),
        )
        if not rows:
            return None
        base, target, total, received = rows[0]
        return PartialUpload(bytes(base), bytes(target), total, received)

    def append_partial(
        self,
        env: str,
        upload: bytes,
        partial: PartialUpload,
        data: bytes,
        now: float,
        limits: PartialLimits,
    ) -> int:
        held = partial.received + len(data)
        with self._tx(durable=False) as db:
            if partial.received == 0:  # a new upload, or one that starts over
                self._drop_uploads(db, env, [upload])
                self._run(
                    db,
                    "INSERT INTO uploads (env, upload, base, target, total, received, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (env, upload, partial.base, partial.target, partial.total, held, now),
                )
            elif (
                self._run(
                    db,
                    "UPDATE uploads SET received = ?, updated_at = ? WHERE env = ? AND upload = ? "
                    "AND received = ? AND base = ? AND target = ? AND total = ?",
                    (
                        held,
                        now,
                        env,
                        upload,
                        partial.received,
                        partial.base,
                        partial.target,
                        partial.total,
                    ),
                ).rowcount
                != 1
            ):  # another request got there first
                row = self._run(
                    db, "SELECT received FROM uploads WHERE env = ? AND upload = ?", (env, upload)
                ).fetchone()
                return int(row[0]) if row else 0
            self._run(
                db,
                "INSERT INTO upload_chunks (env, upload, first_byte, data) VALUES (?, ?, ?, ?)",
                (env, upload, partial.received, data),
            )
            sizes = self._run(
                db, "SELECT upload, received, updated_at FROM uploads WHERE env = ?", (env,)
            ).fetchall()
            gone = limits.evicted(upload, [(bytes(u), n, t) for u, n, t in sizes])
            self._drop_uploads(db, env, gone)
        return held

    def _drop_uploads(self, db: Any, env: str, uploads: list[bytes]) -> None:
        rows = [(env, upload) for upload in uploads]
        self._many(db, "DELETE FROM upload_chunks WHERE env = ? AND upload = ?", rows)
        self._many(db, "DELETE FROM uploads WHERE env = ? AND upload = ?", rows)

    def partial_data(self, env: str, upload: bytes) -> bytes:
        rows = self._read(
            "SELECT data FROM upload_chunks WHERE env = ? AND upload = ? ORDER BY first_byte",
            (env, upload),
        )
        return b"".join(bytes(data) for (data,) in rows)

    def drop_partial(self, env: str, upload: bytes) -> None:
        held = "SELECT 1 FROM uploads WHERE env = ? AND upload = ?"
        if not self._read(held, (env, upload)):
            return  # the common case, a frame in one chunk: no write at all
        with self._tx(durable=False) as db:
            self._drop_uploads(db, env, [upload])

    def expire_partials(self, before: float) -> int:
        with self._tx(durable=False) as db:
            gone = self._run(
                db, "DELETE FROM uploads WHERE updated_at < ? RETURNING env, upload", (before,)
            ).fetchall()
            # An append that raced the delete finds no upload row and appends nothing.
            self._many(
                db,
                "DELETE FROM upload_chunks WHERE env = ? AND upload = ?",
                [(env, bytes(upload)) for env, upload in gone],
            )
        return len(gone)

    def queue_command(
        self, env: str, name: str, args: dict[str, object] | None = None, now: float = 0.0
    ) -> Command:
        with self._tx() as db:
            self._lock_env(db, env)
            (last,) = self._run(
                db, "SELECT COALESCE(MAX(id), 0) FROM commands WHERE env = ?", (env,)
            ).fetchone()
            command = Command(last + 1, name, args or {})
            self._run(
                db,
                "INSERT INTO commands (env, id, name, args, queued_at) VALUES (?, ?, ?, ?, ?)",
                (env, command.id, name, msgpack.packb(dict(command.args)), now),
            )
        return command

    def commands_after(self, env: str, cursor: int, limit: int) -> Sequence[Command]:
        rows = self._read(
            "SELECT id, name, args FROM commands WHERE env = ? AND id > ? ORDER BY id LIMIT ?",
            (env, cursor, limit),
        )
        return [Command(i, name, msgpack.unpackb(bytes(args))) for i, name, args in rows]

    def record_results(self, env: str, results: Sequence[CommandResult], now: float) -> None:
        if not results:
            return
        with self._tx() as db:
            self._many(
                db,
                "UPDATE commands SET result_ok = ?, result_message = ?, result_at = ? "
                "WHERE env = ? AND id = ? AND result_ok IS NULL",
                [(int(r.ok), _storable(r.message), now, env, r.id) for r in results],
            )

    def results(self, env: str) -> dict[int, CommandResult]:
        rows = self._read(
            "SELECT id, result_ok, result_message FROM commands "
            "WHERE env = ? AND result_ok IS NOT NULL",
            (env,),
        )
        return {i: CommandResult(i, bool(ok), message) for i, ok, message in rows}

    def command_records(self, env: str, limit: int = 100) -> list[CommandRecord]:
        rows = self._read(
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

    def seen(self, env: str, now: float, latest: bytes, waiting: int) -> None:
        with self._tx(durable=False) as db:
            self._run(
                db,
                "INSERT INTO agents (env, last_seen, latest, waiting) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (env) DO UPDATE SET last_seen = excluded.last_seen, "
                "latest = excluded.latest, waiting = excluded.waiting",
                (env, now, latest, waiting),
            )

    def nonce_seen(self, edge: str, nonce: str, now: float, window: float) -> bool:
        return bool(
            self._read(
                "SELECT 1 FROM request_nonces WHERE edge = ? AND nonce = ? AND seen_at >= ?",
                (edge, nonce, now - window),
            )
        )

    def remember_nonce(
        self, edge: str, nonce: str, timestamp: float, now: float, window: float, per_edge: int
    ) -> Remembered:
        """NonceMemory.remember in the database; forgets nonces the window already refuses."""
        with self._tx(durable=False) as db:
            self._run(db, "DELETE FROM request_nonces WHERE seen_at < ?", (now - window,))
            (held,) = self._run(
                db, "SELECT COUNT(*) FROM request_nonces WHERE edge = ?", (edge,)
            ).fetchone()
            if held >= per_edge:
                return "replayed" if self.nonce_seen(edge, nonce, now, window) else "edge-full"
            added = self._run(
                db,
                "INSERT INTO request_nonces (edge, nonce, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT (edge, nonce) DO NOTHING",
                (edge, nonce, timestamp),
            ).rowcount
        return "new" if added == 1 else "replayed"

    # -- registry and traffic --------------------------------------------------------------------

    def register(self, registration: Registration, secret: bytes) -> None:
        if len(secret.strip()) < MIN_SECRET:  # `snapsync env add` makes 43 characters
            raise InputError(f"an agent secret needs at least {MIN_SECRET} characters")
        with self._tx() as db:
            self._lock_env(db, "")
            taken = self._run(
                db,
                "SELECT edge_id, name FROM environments WHERE edge_id = ? OR name = ?",
                (registration.edge_id, registration.name),
            ).fetchone()
            if taken is not None:
                what = "name" if taken[1] == registration.name else "edge id"
                raise InputError(f"an environment with that {what} is already registered")
            self._run(
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
        rows = self._read(
            "SELECT edge_id, name, grp, tags, created_at FROM environments WHERE edge_id = ?",
            (edge_id,),
        )
        return _registration(rows[0]) if rows else None

    def registrations(self) -> list[Registration]:
        rows = self._read(
            "SELECT edge_id, name, grp, tags, created_at FROM environments ORDER BY name"
        )
        return [_registration(row) for row in rows]

    def agent_secret(self, edge_id: str) -> bytes | None:
        rows = self._read("SELECT secret FROM environments WHERE edge_id = ?", (edge_id,))
        return bytes(rows[0][0]) if rows else None

    def record_traffic(self, env: str, now: float, received: int, sent: int) -> None:
        with self._tx(durable=False) as db:
            self._run(
                db,
                "INSERT INTO usage (env, day, received, sent) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (env, day) DO UPDATE SET received = usage.received + "
                "excluded.received, sent = usage.sent + excluded.sent",
                (env, utc_day(now), received, sent),
            )
            self._run(
                db,
                "INSERT INTO agents (env, last_seen, latest, waiting) VALUES (?, ?, ?, 0) "
                "ON CONFLICT (env) DO UPDATE SET last_seen = excluded.last_seen",
                (env, now, b""),
            )

    # -- browsing ----------------------------------------------------------------------------------

    def environments(self, now: float, only: str | None = None) -> Sequence[EnvironmentSummary]:
        """Every environment known (registered, or heard from), or just `only`."""
        where, params = ("WHERE env = ?", [only]) if only is not None else ("", [])
        registered = {
            r.edge_id: r
            for r in (self.registrations() if only is None else [self.registration(only)])
            if r is not None
        }
        agents = self._read(f"SELECT env, last_seen, waiting FROM agents {where}", params)
        seen = {env: (t, w) for env, t, w in agents}
        newest = {
            env: (seq, bytes(digest), objects)
            for env, seq, digest, objects in self._read(
                "SELECT v.env, v.seq, v.digest, v.objects FROM versions v JOIN (SELECT env, "
                f"MAX(seq) AS m FROM versions {where} GROUP BY env) x "
                "ON v.env = x.env AND v.seq = x.m",
                params,
            )
        }
        collections = {
            env: (collected_at, _kind_errors(errors))
            for env, collected_at, errors in self._read(
                f"SELECT env, collected_at, errors FROM collections {where}", params
            )
        }
        today = utc_day(now)
        month = today[:8] + "01"
        usage = {
            env: (int(t or 0), int(m or 0), int(a or 0))
            for env, t, m, a in self._read(
                "SELECT env, SUM(CASE WHEN day = ? THEN received ELSE 0 END), "
                "SUM(CASE WHEN day >= ? THEN received ELSE 0 END), SUM(received) "
                f"FROM usage {where} GROUP BY env",
                [today, month, *params],
            )
        }
        out = []
        for env in sorted({*registered, *seen, *newest}):
            reg = registered.get(env)
            last_seen, waiting = seen.get(env, (None, 0))
            seq, digest, objects = newest.get(env, (None, None, 0))
            day, mon, total = usage.get(env, (0, 0, 0))
            collected_at, errors = collections.get(env, ("", ()))
            out.append(
                EnvironmentSummary(
                    edge_id=env,
                    name=reg.name if reg else env,
                    group=reg.group if reg else "",
                    tags=reg.tags if reg else (),
                    registered=reg is not None,
                    last_seen=last_seen,
                    version=seq,
                    digest=digest,
                    objects=objects,
                    bytes_today=day,
                    bytes_month=mon,
                    bytes_total=total,
                    waiting=waiting,
                    collected_at=collected_at,
                    errors=errors,
                )
            )
        return sorted(out, key=lambda e: (e.group, e.name))

    def versions(self, env: str, limit: int = 100) -> Sequence[VersionInfo]:
        return self._versions("env = ?", (env,), limit)

    def version(self, env: str, seq: int) -> VersionInfo | None:
        found = self._versions("env = ? AND seq = ?", (env, seq), 1)
        return found[0] if found else None

    def version_at(self, env: str, t: float) -> VersionInfo | None:
        found = self._versions("env = ? AND received_at <= ?", (env, t), 1)
        return found[0] if found else None

    def _versions(self, where: str, params: tuple[Any, ...], limit: int) -> list[VersionInfo]:
        rows = self._read(
            "SELECT seq, digest, base_seq, frame_bytes, objects, changed, received_at, "
            f"snapshot IS NOT NULL FROM versions WHERE {where} ORDER BY seq DESC LIMIT ?",
            (*params, limit),
        )
        return [
            VersionInfo(seq, bytes(d), base, size, n, changed, t, bool(held))
            for seq, d, base, size, n, changed, t, held in rows
        ]

    def objects(self, env: str, query: ObjectQuery, seq: int | None = None) -> list[ObjectRow]:
        if seq is None:
            sql = f"SELECT {_OBJECT_COLUMNS} FROM objects h WHERE h.env = ?"
            params: list[Any] = [env]
        else:
            sql, params = _AS_OF, [env, seq]
        if query.kind:
            group, kind = split_kind_ref(query.kind)
            sql += " AND h.kind = ?" + (" AND h.grp = ?" if group else "")
            params += [kind, group] if group else [kind]
        if query.namespace is not None:
            sql += " AND h.namespace = ?"
            params.append(query.namespace)
        if query.name:
            sql += " AND h.name LIKE ? ESCAPE '!'"
            escaped = query.name.replace("!", "!!").replace("%", "!%").replace("_", "!_")
            params.append(f"%{escaped}%")
        sql += " ORDER BY h.key"
        if not query.labels:
            sql += " LIMIT ? OFFSET ?"
            params += [query.limit, query.offset]
            return [_object_row(row) for row in self._read(sql, params)]
        rows = (_object_row(row) for row in self._read(sql, params))
        matching = [row for row in rows if query.matches_labels(row.labels)]
        return matching[query.offset : query.offset + query.limit]

    def object_at(self, env: str, key: ObjectKey, seq: int | None = None) -> ObjectRow | None:
        if seq is None:
            rows = self._read(
                f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE env = ? AND key = ?", (env, str(key))
            )
        else:
            rows = self._read(_AS_OF + " AND h.key = ?", (env, seq, str(key)))
        return _object_row(rows[0]) if rows else None

    def object_history(self, env: str, key: ObjectKey, limit: int = 100) -> list[ObjectChange]:
        rows = self._read(
            "SELECT h.seq, v.received_at, h.digest, h.data FROM object_history h LEFT JOIN "
            "versions v ON v.env = h.env AND v.seq = h.seq WHERE h.env = ? AND h.key = ? "
            "ORDER BY h.seq DESC LIMIT ?",
            (env, str(key), limit),
        )
        return [
            ObjectChange(
                s, t, None if d is None else bytes(d), None if j is None else json.loads(j)
            )
            for s, t, d, j in rows
        ]

    def kinds(self, env: str) -> list[tuple[str, str, int]]:
        rows = self._read(
            "SELECT grp, kind, namespace, COUNT(*) FROM objects WHERE env = ? "
            "GROUP BY grp, kind, namespace",
            (env,),
        )
        return sorted((ObjectKey(g, k, "", "x").kind_ref, ns, n) for g, k, ns, n in rows)

    def changes(
        self, env: str, from_seq: int, to_seq: int
    ) -> list[tuple[ObjectKey, dict[str, Any] | None, dict[str, Any] | None]]:
        touched = (
            " AND h.key IN (SELECT key FROM object_history WHERE env = ? AND seq > ? AND seq <= ?)"
        )
        lo, hi = sorted((from_seq, to_seq))
        states = []
        for seq in (from_seq, to_seq):
            rows = self._read(_AS_OF + touched, (env, seq, env, lo, hi))
            states.append({row.key: row for row in map(_object_row, rows)})
        before, after = states
        out = []
        for key in sorted({*before, *after}):
            old, new = before.get(key), after.get(key)
            if (old and old.digest) != (new and new.digest):
                out.append((key, old.data if old else None, new.data if new else None))
        return out

    def oldest_version(self, env: str) -> int | None:
        (oldest,) = self._read("SELECT MIN(seq) FROM versions WHERE env = ?", (env,))[0]
        return int(oldest) if oldest is not None else None


def _registration(row: Sequence[Any]) -> Registration:
    edge_id, name, group, tags, created_at = row
    return Registration(edge_id, name, group, tuple(json.loads(tags)), created_at)


def _storable(text: str) -> str:
    """An agent's free text as a text column holds it: PostgreSQL refuses NUL, so a hostile
    result message would fail every later ping (U+FFFD marks where it was)."""
    return text.replace("\x00", "\ufffd")


def _kind_errors(text: str) -> tuple[KindFailure, ...]:
    return tuple(KindFailure(e["kind"], e["reason"], e["message"]) for e in json.loads(text))


def _opt_bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _object_row(row: Sequence[Any]) -> ObjectRow:
    group, kind, namespace, name, digest, seq, data = row
    return ObjectRow(ObjectKey(group, kind, namespace, name), bytes(digest), seq, json.loads(data))
