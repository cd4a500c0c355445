"""Nonces of signed requests (table request_nonces), for servers whose processes share the
database: a request replayed to another process is refused. The request gate (gate.py) uses
this as its NonceTable; bounded per edge, forgotten once the signature window refuses them."""

from __future__ import annotations

from snapsync.protocol.auth import Remembered
from snapsync.server.store.sql import Database


class Nonces:
    def __init__(self, db: Database) -> None:
        self.db = db

    def nonce_seen(self, edge: str, nonce: str, now: float, window: float) -> bool:
        return bool(
            self.db.read(
                "SELECT 1 FROM request_nonces WHERE edge = ? AND nonce = ? AND seen_at >= ?",
                (edge, nonce, now - window),
            )
        )

    def remember_nonce(
        self, edge: str, nonce: str, timestamp: float, now: float, window: float, per_edge: int
    ) -> Remembered:
        """NonceMemory.remember in the database; forgets nonces the window already refuses."""
        with self.db.tx(durable=False) as db:
            self.db.run(db, "DELETE FROM request_nonces WHERE seen_at < ?", (now - window,))
            (held,) = self.db.run(
                db, "SELECT COUNT(*) FROM request_nonces WHERE edge = ?", (edge,)
            ).fetchone()
            if held >= per_edge:
                return "replayed" if self.nonce_seen(edge, nonce, now, window) else "edge-full"
            added = self.db.run(
                db,
                "INSERT INTO request_nonces (edge, nonce, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT (edge, nonce) DO NOTHING",
                (edge, nonce, timestamp),
            ).rowcount
        return "new" if added == 1 else "replayed"

    # -- registry and traffic --------------------------------------------------------------------
