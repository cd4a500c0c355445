"""Read-only queries for the browse API, the page and the fleet metrics: environments with their
freshness, usage and newest collection; versions; objects at any retained version, filtered;
an object's history; what changed between two versions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from snapsync.canonical.keys import ObjectKey, split_kind_ref
from snapsync.canonical.snapshot import KindFailure
from snapsync.protocol.messages import BudgetReport
from snapsync.server.storage import (
    EnvironmentSummary,
    ObjectChange,
    ObjectQuery,
    ObjectRow,
    VersionInfo,
    utc_day,
)
from snapsync.server.store.registry import Registry
from snapsync.server.store.sql import AS_OF, OBJECT_COLUMNS, Database


class Queries:
    def __init__(self, db: Database, registry: Registry) -> None:
        self.db = db
        self.registry = registry

    def environments(self, now: float, only: str | None = None) -> Sequence[EnvironmentSummary]:
        """Every environment known (registered, or heard from), or just `only`."""
        where, params = ("WHERE env = ?", [only]) if only is not None else ("", [])
        registered = {
            r.edge_id: r
            for r in (
                self.registry.registrations()
                if only is None
                else [self.registry.registration(only)]
            )
            if r is not None
        }
        agents = self.db.read(f"SELECT env, last_seen, waiting FROM agents {where}", params)
        seen = {env: (t, w) for env, t, w in agents}
        newest = {
            env: (seq, bytes(digest), objects, received_at)
            for env, seq, digest, objects, received_at in self.db.read(
                "SELECT v.env, v.seq, v.digest, v.objects, v.received_at FROM versions v "
                f"JOIN (SELECT env, MAX(seq) AS m FROM versions {where} GROUP BY env) x "
                "ON v.env = x.env AND v.seq = x.m",
                params,
            )
        }
        collections = {
            env: (collected_at, _kind_errors(errors))
            for env, collected_at, errors in self.db.read(
                f"SELECT env, collected_at, errors FROM collections {where}", params
            )
        }
        budgets = {
            env: (at, BudgetReport(used, limit, rate, interval, reason))
            for env, at, used, limit, rate, interval, reason in self.db.read(
                "SELECT env, reported_at, used, budget, rate, pace_interval, reason "
                f"FROM agent_budgets {where}",
                params,
            )
        }
        today = utc_day(now)
        month = today[:8] + "01"
        usage = {
            env: (int(t or 0), int(m or 0), int(a or 0))
            for env, t, m, a in self.db.read(
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
            seq, digest, objects, received_at = newest.get(env, (None, None, 0, None))
            budget_at, budget = budgets.get(env, (None, None))
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
                    received_at=received_at,
                    budget=budget,
                    budget_at=budget_at,
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
        rows = self.db.read(
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
            sql = f"SELECT {OBJECT_COLUMNS} FROM objects h WHERE h.env = ?"
            params: list[Any] = [env]
        else:
            sql, params = AS_OF, [env, seq]
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
            return [_object_row(row) for row in self.db.read(sql, params)]
        rows = (_object_row(row) for row in self.db.read(sql, params))
        matching = [row for row in rows if query.matches_labels(row.labels)]
        return matching[query.offset : query.offset + query.limit]

    def object_at(self, env: str, key: ObjectKey, seq: int | None = None) -> ObjectRow | None:
        if seq is None:
            rows = self.db.read(
                f"SELECT {OBJECT_COLUMNS} FROM objects WHERE env = ? AND key = ?", (env, str(key))
            )
        else:
            rows = self.db.read(AS_OF + " AND h.key = ?", (env, seq, str(key)))
        return _object_row(rows[0]) if rows else None

    def object_history(self, env: str, key: ObjectKey, limit: int = 100) -> list[ObjectChange]:
        rows = self.db.read(
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
        rows = self.db.read(
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
            rows = self.db.read(AS_OF + touched, (env, seq, env, lo, hi))
            states.append({row.key: row for row in map(_object_row, rows)})
        before, after = states
        out = []
        for key in sorted({*before, *after}):
            old, new = before.get(key), after.get(key)
            if (old and old.digest) != (new and new.digest):
                out.append((key, old.data if old else None, new.data if new else None))
        return out

    def oldest_version(self, env: str) -> int | None:
        (oldest,) = self.db.read("SELECT MIN(seq) FROM versions WHERE env = ?", (env,))[0]
        return int(oldest) if oldest is not None else None


def _kind_errors(text: str) -> tuple[KindFailure, ...]:
    return tuple(KindFailure(e["kind"], e["reason"], e["message"]) for e in json.loads(text))


def _object_row(row: Sequence[Any]) -> ObjectRow:
    group, kind, namespace, name, digest, seq, data = row
    return ObjectRow(ObjectKey(group, kind, namespace, name), bytes(digest), seq, json.loads(data))
