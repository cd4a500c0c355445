"""What each agent costs and when it was last heard from (tables usage, bytes per UTC day, and
agents: last seen, newest digest it reported, bytes its budget holds back). Bookkeeping: not
durable, a power cut may lose a moment of it."""

from __future__ import annotations

from snapsync.server.storage import utc_day
from snapsync.server.store.sql import Database


class Usage:
    def __init__(self, db: Database) -> None:
        self.db = db

    def seen(self, env: str, now: float, latest: bytes, waiting: int) -> None:
        with self.db.tx(durable=False) as db:
            self.db.run(
                db,
                "INSERT INTO agents (env, last_seen, latest, waiting) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (env) DO UPDATE SET last_seen = excluded.last_seen, "
                "latest = excluded.latest, waiting = excluded.waiting",
                (env, now, latest, waiting),
            )

    def record_traffic(self, env: str, now: float, received: int, sent: int) -> None:
        with self.db.tx(durable=False) as db:
            self.db.run(
                db,
                "INSERT INTO usage (env, day, received, sent) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (env, day) DO UPDATE SET received = usage.received + "
                "excluded.received, sent = usage.sent + excluded.sent",
                (env, utc_day(now), received, sent),
            )
            self.db.run(
                db,
                "INSERT INTO agents (env, last_seen, latest, waiting) VALUES (?, ?, ?, 0) "
                "ON CONFLICT (env) DO UPDATE SET last_seen = excluded.last_seen",
                (env, now, b""),
            )

    # -- browsing ----------------------------------------------------------------------------------
