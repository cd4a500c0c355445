"""What each agent costs and when it was last heard from (tables usage, bytes per UTC day;
agents: last seen, newest digest it reported, bytes its budget holds back; agent_budgets: the
budget state its latest ping reported). Bookkeeping: not durable, a power cut may lose a moment
of it.

agent_budgets is a table of its own rather than columns of agents: `CREATE TABLE IF NOT EXISTS`
adds it to an existing database at start-up, on SQLite and PostgreSQL alike, with no migration
step; an environment whose agent never reported (an older agent, or no limit) has no row."""

from __future__ import annotations

from snapsync.protocol.messages import BudgetReport
from snapsync.server.storage import utc_day
from snapsync.server.store.sql import Database


class Usage:
    def __init__(self, db: Database) -> None:
        self.db = db

    def seen(
        self, env: str, now: float, latest: bytes, waiting: int, budget: BudgetReport | None = None
    ) -> None:
        with self.db.tx(durable=False) as db:
            self.db.run(
                db,
                "INSERT INTO agents (env, last_seen, latest, waiting) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (env) DO UPDATE SET last_seen = excluded.last_seen, "
                "latest = excluded.latest, waiting = excluded.waiting",
                (env, now, latest, waiting),
            )
            if budget is not None:
                b = budget
                self.db.run(
                    db,
                    "INSERT INTO agent_budgets (env, reported_at, used, budget, rate, "
                    "pace_interval, reason) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (env) DO "
                    "UPDATE SET reported_at = excluded.reported_at, used = excluded.used, "
                    "budget = excluded.budget, rate = excluded.rate, "
                    "pace_interval = excluded.pace_interval, reason = excluded.reason",
                    (env, now, b.used, b.limit, b.rate, b.interval, b.reason),
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
