"""Uploads in progress: a frame's chunks as they arrive (tables uploads and upload_chunks, one
row per chunk, appended: a chunk never rewrites what came before), capped per environment by
the protocol's PartialLimits and expired when abandoned. Bookkeeping, not durable: after a
power cut the agent resends from the offset the server confirms."""

from __future__ import annotations

from typing import Any

from snapsync.protocol.server import PartialLimits, PartialUpload
from snapsync.server.store.sql import Database


class Uploads:
    def __init__(self, db: Database) -> None:
        self.db = db

    def partial(self, env: str, upload: bytes) -> PartialUpload | None:
        rows = self.db.read(
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
        with self.db.tx(durable=False) as db:
            if partial.received == 0:  # a new upload, or one that starts over
                self._drop_uploads(db, env, [upload])
                self.db.run(
                    db,
                    "INSERT INTO uploads (env, upload, base, target, total, received, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (env, upload, partial.base, partial.target, partial.total, held, now),
                )
            elif (
                self.db.run(
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
                row = self.db.run(
                    db, "SELECT received FROM uploads WHERE env = ? AND upload = ?", (env, upload)
                ).fetchone()
                return int(row[0]) if row else 0
            self.db.run(
                db,
                "INSERT INTO upload_chunks (env, upload, first_byte, data) VALUES (?, ?, ?, ?)",
                (env, upload, partial.received, data),
            )
            sizes = self.db.run(
                db, "SELECT upload, received, updated_at FROM uploads WHERE env = ?", (env,)
            ).fetchall()
            gone = limits.evicted(upload, [(bytes(u), n, t) for u, n, t in sizes])
            self._drop_uploads(db, env, gone)
        return held

    def _drop_uploads(self, db: Any, env: str, uploads: list[bytes]) -> None:
        rows = [(env, upload) for upload in uploads]
        self.db.many(db, "DELETE FROM upload_chunks WHERE env = ? AND upload = ?", rows)
        self.db.many(db, "DELETE FROM uploads WHERE env = ? AND upload = ?", rows)

    def partial_data(self, env: str, upload: bytes) -> bytes:
        rows = self.db.read(
            "SELECT data FROM upload_chunks WHERE env = ? AND upload = ? ORDER BY first_byte",
            (env, upload),
        )
        return b"".join(bytes(data) for (data,) in rows)

    def drop_partial(self, env: str, upload: bytes) -> None:
        held = "SELECT 1 FROM uploads WHERE env = ? AND upload = ?"
        if not self.db.read(held, (env, upload)):
            return  # the common case, a frame in one chunk: no write at all
        with self.db.tx(durable=False) as db:
            self._drop_uploads(db, env, [upload])

    def expire_partials(self, before: float) -> int:
        with self.db.tx(durable=False) as db:
            gone = self.db.run(
                db, "DELETE FROM uploads WHERE updated_at < ? RETURNING env, upload", (before,)
            ).fetchall()
            # An append that raced the delete finds no upload row and appends nothing.
            self.db.many(
                db,
                "DELETE FROM upload_chunks WHERE env = ? AND upload = ?",
                [(env, bytes(upload)) for env, upload in gone],
            )
        return len(gone)
