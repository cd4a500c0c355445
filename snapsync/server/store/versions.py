"""Versions: what the protocol commits and reads back (`held`, `snapshot`, `commit`), in the
tables versions, objects, object_history and collections (store/__init__.py has the layout).

Invariants:
- A commit is one transaction holding the environment's lock: version row, the changed
  objects, their history rows and the pruning all land together or not at all, and two commits
  for one environment never interleave (several server processes may share one PostgreSQL).
- Only the objects whose digest changed are written: the keys a delta touched when the new
  snapshot was derived from the newest version (snapsync.delta.incremental), else by digest.
- A version read back from rows is used only if the rows give exactly its digest; each process
  keeps the newest version per environment decoded (statecache.py) and checks at commit time,
  under the environment's lock, that it still is the newest.
- What is kept is a CompactSnapshot (delta.incremental.compact: four lists, a few objects for
  the garbage collector to walk whatever the size) with its sorted keys and pair encodings,
  checked against its digest when built from a full frame or rows, carried along by derive, so
  no delta pays for them: a delta costs the objects it touches, plus a copy of two lists and a
  dict and one BLAKE2b pass over ~60 bytes per object, which is how the target digest stays
  exact (the very bytes snapshot_digest hashes) without re-hashing unchanged objects.
- Pruning never removes a version whose snapshot is held, and always keeps, per key, the row
  that describes the oldest retained version.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import CanonicalObject, Snapshot, SnapshotHeader
from snapsync.codec.decode import decode_snapshot
from snapsync.codec.encode import encode_snapshot
from snapsync.delta.diff import Delta
from snapsync.delta.incremental import IncrementalSnapshot, compact, derive, indexed
from snapsync.errors import DeltaError
from snapsync.protocol.messages import Version
from snapsync.server.statecache import DEFAULT_CACHE_BYTES, StateCache
from snapsync.server.storage import Retention, bounded_errors, object_json
from snapsync.server.store.sql import AS_OF, OBJECT_COLUMNS, Database

log = logging.getLogger("snapsync.server")


class Versions:
    """Stored versions of every environment, the newest few held whole (bases for deltas)."""

    def __init__(
        self,
        db: Database,
        keep_versions: int = 3,
        retention: Retention | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.db = db
        self.keep_versions = keep_versions
        self.retention = retention or Retention()
        self.states = StateCache(cache_bytes)

    def held(self, env: str) -> Sequence[Version]:
        rows = self.db.read(
            "SELECT seq, digest FROM versions WHERE env = ? AND snapshot IS NOT NULL "
            "ORDER BY seq DESC",
            (env,),
        )
        return [Version(seq, bytes(digest)) for seq, digest in rows]

    def snapshot(self, env: str, digest: bytes) -> Snapshot | None:
        cached = self.states.get(env, digest)
        held = "SELECT {} FROM versions WHERE env = ? AND digest = ? AND snapshot IS NOT NULL "
        if cached is not None:  # still held? (an indexed look-up, no decoding)
            return cached[1] if self.db.read(held.format("1") + "LIMIT 1", (env, digest)) else None
        newest = held.format("seq, snapshot") + "ORDER BY seq DESC LIMIT 1"
        rows = self.db.read(newest, (env, digest))
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
            snap = compact(snap)
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
        rows = self.db.read(
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
            (f"SELECT {OBJECT_COLUMNS} FROM objects h WHERE h.env = ?", (env,)),
            (AS_OF, (env, seq)),
        ]
        for sql, params in reads:
            rows = self.db.read(sql, params)
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
        rows = self.db.read("SELECT MAX(seq) FROM versions WHERE env = ?", (env,))
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
        version row keeps the snapshot's header; its objects are the rows (see snapshot()).

        What does not need the database is done before the write joins a group commit (the
        header's frame, the touched objects' JSON, a full snapshot's pair encodings): the
        leader of a group runs every write of it while holding the writer lock."""
        stored = encode_snapshot(Snapshot(snapshot.header, {}), 3)
        snapshot = indexed(snapshot)
        touched = {
            key: object_json(snapshot.objects[key].data)
            for key in snapshot.touched
            if key in snapshot.objects
        }

        def write(db: Any) -> Version:
            return self._write_version(db, env, snapshot, frame, base, now, stored, touched)

        version = self.db.durable(write)
        self.states.put(env, version.seq, compact(snapshot))
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
        touched_json: dict[ObjectKey, str],
    ) -> Version:
        self.db.lock_env(db, env)
        row = self.db.run(
            db,
            "SELECT seq, digest FROM versions WHERE env = ? ORDER BY seq DESC LIMIT 1",
            (env,),
        ).fetchone()
        version = Version((row[0] if row else 0) + 1, snapshot.digest)
        newest = bytes(row[1]) if row else None
        objects = snapshot.objects
        if isinstance(snapshot, IncrementalSnapshot) and newest == snapshot.parent:
            touched = sorted(snapshot.touched)
            removed = [key for key in touched if key not in objects]
            changed = [(k, objects[k].digest, touched_json[k]) for k in touched if k in objects]
        else:
            current = self._current_digests(db, env, newest)
            removed = [key for key in current if key not in objects]
            changed = [
                (k, o.digest, object_json(o.data))
                for k, o in objects.items()
                if current.get(k) != o.digest
            ]
        self.db.run(
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
        self.db.run(
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
            return {key: obj.digest for key, obj in cached[1]}
        rows = self.db.run(
            db, "SELECT grp, kind, namespace, name, digest FROM objects WHERE env = ?", (env,)
        )
        return {ObjectKey(g, k, ns, n): bytes(d) for g, k, ns, n, d in rows}

    def _write_objects(
        self,
        db: Any,
        env: str,
        seq: int,
        removed: list[ObjectKey],
        changed: list[tuple[ObjectKey, bytes, str]],
    ) -> None:
        self.db.many(
            db, "DELETE FROM objects WHERE env = ? AND key = ?", [(env, str(k)) for k in removed]
        )
        rows: list[tuple[Any, ...]] = [
            (env, str(k), *k.as_tuple(), digest, seq, data) for k, digest, data in changed
        ]
        self.db.many(
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
        self.db.many(
            db,
            "INSERT INTO object_history (env, key, seq, grp, kind, namespace, name, digest, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            history,
        )

    def _write_collection(self, db: Any, env: str, seq: int, snapshot: Snapshot) -> None:
        errors = [e.to_dict() for e in bounded_errors(snapshot.header.errors)]
        self.db.run(
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
        (before,) = self.db.run(db, oldest_sql, (env,)).fetchone()
        gone = self.db.run(
            db,
            "DELETE FROM versions WHERE env = ? AND snapshot IS NULL AND (seq <= ? OR "
            "received_at < ?)",
            (env, oldest_seq, oldest_time),
        ).rowcount
        (oldest,) = self.db.run(db, oldest_sql, (env,)).fetchone()
        if not gone or oldest == before:
            return
        # Per key, rows older than the oldest version matter only as its state: keep the newest.
        # A row is superseded by a newer one at or before `oldest`, which is after `before`.
        self.db.run(
            db,
            "DELETE FROM object_history WHERE env = ? AND seq < ? AND key IN (SELECT key FROM "
            "object_history WHERE env = ? AND seq > ? AND seq <= ?) AND EXISTS (SELECT 1 FROM "
            "object_history h2 WHERE h2.env = object_history.env AND h2.key = object_history.key "
            "AND h2.seq > object_history.seq AND h2.seq <= ?)",
            (env, oldest, env, before, oldest, oldest),
        )
        self.db.run(
            db,
            "DELETE FROM object_history WHERE env = ? AND seq >= ? AND seq < ? AND digest IS NULL",
            (env, before, oldest),
        )
