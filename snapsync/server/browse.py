"""The JSON browse and command API (`/api/v1/...`), documented in schemas/server-api.md.

Read-only views of what the store keeps (environments, objects, versions, history, diffs, the
environment as of a past time) plus the command queue. Every route needs the API token
(`Authorization: Bearer <token>`; the page's session cookie also reads, never writes: see
session.py and websecurity.py); without a configured token the API and the page are off.
Answers are JSON; errors are `{"error": "..."}` with a 4xx status and one line a person can act
on: bad input (an InputError from any layer below) is a 400, never a 500.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from snapsync.canonical.keys import ObjectKey, split_kind_ref
from snapsync.canonical.snapshot import rfc3339
from snapsync.delta.diff import diff_objects
from snapsync.errors import ApiError, InputError
from snapsync.kubeview import parse_time as parse_rfc3339
from snapsync.protocol.commands import validate_command
from snapsync.protocol.messages import Command
from snapsync.server.environments import enroll
from snapsync.server.freshness import budget_json, freshness_json
from snapsync.server.health import HEALTH_KINDS, UNKNOWN, Health, assess
from snapsync.server.session import COOKIE, Sessions
from snapsync.server.storage import (
    CommandRecord,
    EnvironmentSummary,
    ObjectChange,
    ObjectQuery,
    ObjectRow,
    VersionInfo,
)
from snapsync.server.store import Stores
from snapsync.server.websecurity import read_capped

MAX_LIMIT = 5000
MAX_BODY = 64 * 1024  # a registration or a command: a few hundred bytes
HEALTH_OBJECTS = 100_000  # per kind the health view reads: bounded like any query
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class ApiAccess:
    """Who may browse, shared by the JSON API and the page: the API token as a bearer token
    (scripts, the CLI), or the page's session cookie (session.py) for reads only."""

    token: str | None
    clock: Callable[[], float] = time.time

    @property
    def sessions(self) -> Sessions | None:
        return Sessions(self.token, self.clock) if self.token else None

    def allows(self, request: Request) -> bool:
        if not self.token:
            return False
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(value.strip().encode(), self.token.encode())
        sessions = self.sessions
        cookie = request.cookies.get(COOKIE, "")
        reading = request.method in ("GET", "HEAD")
        return reading and bool(cookie) and sessions is not None and sessions.valid(cookie)

    def refusal(self) -> Response:
        if not self.token:
            return JSONResponse(
                {"error": "browsing is off: start the server with --api-token"}, 403
            )
        return JSONResponse(
            {"error": "API token required (Authorization: Bearer TOKEN)"},
            401,
            headers={"WWW-Authenticate": 'Bearer realm="snapsync"'},
        )


def optional_rfc3339(t: float | None) -> str | None:
    return None if t is None else rfc3339(t)


def parse_time(text: str) -> float:
    """Unix seconds or RFC 3339 (`2026-11-25T10:00:00Z`)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"bad time {text!r}: unix seconds or RFC 3339") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def int_param(request: Request, name: str, default: int, high: int = 2**62) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    if not 0 <= value <= high:
        raise ApiError(400, f"{name} must be between 0 and {high}")
    return value


def object_query(request: Request) -> ObjectQuery:
    params = request.query_params
    kind = params.get("kind", "").strip()
    if kind:
        try:
            split_kind_ref(kind)
        except InputError as exc:
            raise ApiError(400, str(exc)) from None
    return ObjectQuery(
        kind=kind,
        namespace=params.get("namespace"),
        name=params.get("name", "").strip(),
        labels=ObjectQuery.parse_labels(params.get("label", "")),
        limit=int_param(request, "limit", 500, MAX_LIMIT),
        offset=int_param(request, "offset", 0),
    )


def parse_key(text: str) -> ObjectKey:
    try:
        return ObjectKey.parse(text)
    except InputError as exc:
        raise ApiError(400, str(exc)) from None


class Browser:
    """What both the API and the page ask of the store, with the checks a URL needs."""

    def __init__(self, stores: Stores, clock: Callable[[], float]) -> None:
        self.stores = stores
        self.queries = stores.queries
        self.clock = clock
        # env -> (digest, its health): a version's health never changes, so one per environment
        # is computed once and the fleet list reads the badges from here.
        self._health: dict[str, tuple[bytes, Health]] = {}
        self._health_lock = threading.Lock()

    def environments(
        self, group: str = "", tag: str = "", status: str = ""
    ) -> list[EnvironmentSummary]:
        now = self.clock()
        return [
            e
            for e in self.queries.environments(now)
            if (not group or e.group == group)
            and (not tag or tag in e.tags)
            and (not status or e.status(now) == status)
        ]

    def environment(self, env: str) -> EnvironmentSummary:
        found = next(iter(self.queries.environments(self.clock(), only=env)), None)
        if found is None:
            raise ApiError(404, f"no environment {env!r}")
        return found

    def health(self, e: EnvironmentSummary) -> Health:
        """The health of `e`'s newest version (server/health.py), from the store alone."""
        if e.digest is None:
            return UNKNOWN
        with self._health_lock:
            cached = self._health.get(e.edge_id)
        if cached is not None and cached[0] == e.digest:
            return cached[1]
        objects: dict[str, list[tuple[ObjectKey, Any]]] = {}
        for ref in HEALTH_KINDS:
            group, _ = split_kind_ref(ref)
            query = ObjectQuery(kind=ref, limit=HEALTH_OBJECTS)
            rows = self.queries.objects(e.edge_id, query)  # the current table: no history scan
            objects[ref] = [(r.key, r.data) for r in rows if r.key.group == group]
        collected = parse_rfc3339(e.collected_at)
        if collected is None:  # stored before headers were kept: when it arrived
            newest = self.queries.versions(e.edge_id, 1)
            collected = newest[0].received_at if newest else self.clock()
        health = assess(objects, collected)
        with self._health_lock:
            self._health[e.edge_id] = (e.digest, health)
        return health

    def resolve_version(self, env: str, version: int | None, at: str | None) -> int | None:
        """The version a request means: `version=N`, `at=TIME`, or None for the current one."""
        if at:
            info = self.queries.version_at(env, parse_time(at))
            if info is None:
                raise ApiError(404, f"no retained version of {env!r} at or before {at}")
            version = info.seq
        if version is None:
            return None
        oldest = self.queries.oldest_version(env)
        newest = self.queries.versions(env, 1)
        if oldest is None or version < oldest or version > newest[0].seq:
            raise ApiError(404, f"version {version} of {env!r} is not retained")
        return version

    def object_history(self, env: str, key: ObjectKey, limit: int = 100) -> list[dict[str, Any]]:
        changes = self.queries.object_history(env, key, limit + 1)
        if not changes:
            raise ApiError(404, f"{env!r} has no history of {key}")
        out = []
        for change, older in zip(changes, [*changes[1:], None], strict=True):
            out.append(history_json(change, older))
        return out[:limit]

    def diff(self, env: str, from_seq: int, to_seq: int) -> list[dict[str, Any]]:
        for seq in (from_seq, to_seq):
            self.resolve_version(env, seq, None)
        return [
            change_json(key, before, after)
            for key, before, after in self.queries.changes(env, from_seq, to_seq)
        ]


def environment_json(
    e: EnvironmentSummary, now: float, health: Health | None = None
) -> dict[str, Any]:
    """One environment; `health` is left out (None) where the caller did not compute it."""
    return {
        "edge_id": e.edge_id,
        "name": e.name,
        "group": e.group,
        "tags": list(e.tags),
        "registered": e.registered,
        "status": e.status(now),
        "last_seen": optional_rfc3339(e.last_seen),
        "version": e.version,
        "digest": e.digest.hex() if e.digest else None,
        "objects": e.objects,
        "bytes_received": {"today": e.bytes_today, "month": e.bytes_month, "total": e.bytes_total},
        "bytes_waiting": e.waiting,
        "collected_at": e.collected_at or None,
        "freshness": freshness_json(e, now),
        "budget": budget_json(e),
        "errors": [error.to_dict() for error in e.errors],
        "health": health.badge if health else None,
        "health_counts": health.counts() if health else None,
    }


def version_json(v: VersionInfo) -> dict[str, Any]:
    return {
        "version": v.seq,
        "digest": v.digest.hex(),
        "base": v.base_seq,
        "frame_bytes": v.frame_bytes,
        "objects": v.objects,
        "changed": v.changed,
        "received_at": optional_rfc3339(v.received_at),
        "held": v.held,
    }


def object_json(row: ObjectRow, *, with_object: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": str(row.key),
        "kind": row.key.kind_ref,
        "namespace": row.key.namespace,
        "name": row.key.name,
        "digest": row.digest.hex(),
        "changed_in": row.seq,
    }
    if with_object:
        out["object"] = row.data
    return out


def history_json(change: ObjectChange, older: ObjectChange | None) -> dict[str, Any]:
    before = older.data if older is not None else None
    out: dict[str, Any] = {
        "version": change.seq,
        "received_at": optional_rfc3339(change.received_at),
        "digest": change.digest.hex() if change.digest else None,
        "change": _change_kind(before, change.data),
    }
    if before is not None and change.data is not None:
        out["ops"] = diff_objects(before, change.data)
    elif change.data is not None:
        out["object"] = change.data
    return out


def change_json(
    key: ObjectKey, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"key": str(key), "change": _change_kind(before, after)}
    if before is not None and after is not None:
        out["ops"] = diff_objects(before, after)
    elif after is not None:
        out["object"] = after
    return out


def _change_kind(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    return "removed" if after is None else "added" if before is None else "changed"


def command_json(record: CommandRecord) -> dict[str, Any]:
    result = record.result
    return {
        "id": record.command.id,
        "name": record.command.name,
        "args": dict(record.command.args),
        "queued_at": optional_rfc3339(record.queued_at),
        "state": "queued" if result is None else "succeeded" if result.ok else "failed",
        "result": None
        if result is None
        else {"ok": result.ok, "message": result.message, "at": optional_rfc3339(record.result_at)},
    }


def api_routes(browser: Browser, access: ApiAccess) -> list[BaseRoute]:
    queries, clock = browser.queries, browser.clock
    registry, queued = browser.stores.registry, browser.stores.commands

    def guarded(view: Callable[[_Call], Any], status: int = 200) -> Handler:
        async def endpoint(request: Request) -> Response:
            if not access.allows(request):
                return access.refusal()
            body = await read_capped(request, MAX_BODY) if request.method == "POST" else b""
            if body is None:
                return JSONResponse({"error": f"the body exceeds {MAX_BODY} bytes"}, 413)
            try:
                result = await run_in_threadpool(view, _Call(request, body, browser))
            except ApiError as exc:
                return JSONResponse({"error": str(exc)}, exc.status)
            except InputError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            return JSONResponse(result, status)

        return endpoint

    def environments(call: _Call) -> Any:
        q = call.request.query_params
        now = clock()
        found = browser.environments(q.get("group", ""), q.get("tag", ""), q.get("status", ""))
        return {"environments": [environment_json(e, now, browser.health(e)) for e in found]}

    def register(call: _Call) -> Any:
        doc = call.json()
        name, group, tags = doc.get("name"), doc.get("group", ""), doc.get("tags", [])
        edge_id = doc.get("edge_id")
        texts = [name, group, *tags] if isinstance(tags, list) else [None]
        if not all(isinstance(t, str) for t in texts) or not isinstance(edge_id, str | None):
            raise ApiError(400, 'expected {"name": str, "group": str, "tags": [str]}')
        try:
            made = enroll(
                registry, str(name), clock(), group=group, tags=tuple(tags), edge_id=edge_id
            )
        except InputError as exc:
            raise ApiError(409 if "already" in str(exc) else 400, str(exc)) from None
        reg = made.registration
        return {
            "edge_id": reg.edge_id,
            "name": reg.name,
            "group": reg.group,
            "tags": list(reg.tags),
            "agent_secret": made.token,
        }

    def environment(call: _Call) -> Any:
        env = call.env
        summary = browser.environment(env)
        doc = environment_json(summary, clock(), browser.health(summary))
        doc["versions"] = [version_json(v) for v in queries.versions(env, 20)]
        kinds = queries.kinds(env)
        doc["kinds"] = [{"kind": k, "namespace": ns, "objects": n} for k, ns, n in kinds]
        return doc

    def health(call: _Call) -> Any:
        summary = browser.environment(call.env)
        found = browser.health(summary)
        when = optional_rfc3339(found.collected_at)
        return {"edge_id": summary.edge_id, "version": summary.version, **found.to_json(when)}

    def versions(call: _Call) -> Any:
        browser.environment(call.env)
        limit = int_param(call.request, "limit", 100, MAX_LIMIT)
        return {"versions": [version_json(v) for v in queries.versions(call.env, limit)]}

    def objects(call: _Call) -> Any:
        env = call.env
        browser.environment(env)
        seq = call.version()
        rows = queries.objects(env, object_query(call.request), seq)
        full = call.request.query_params.get("objects", "") in ("1", "true")
        return {"version": seq, "objects": [object_json(r, with_object=full) for r in rows]}

    def one_object(call: _Call) -> Any:
        key = parse_key(call.request.path_params["key"])
        row = queries.object_at(call.env, key, call.version())
        if row is None:
            raise ApiError(404, f"no {key} in {call.env!r} at that version")
        return object_json(row)

    def history(call: _Call) -> Any:
        key = parse_key(call.request.path_params["key"])
        limit = int_param(call.request, "limit", 100, 1000)
        return {"key": str(key), "history": browser.object_history(call.env, key, limit)}

    def diff(call: _Call) -> Any:
        params = call.request.query_params
        if "from" not in params or "to" not in params:
            raise ApiError(400, "diff needs from=VERSION and to=VERSION")
        lo, hi = int_param(call.request, "from", 0), int_param(call.request, "to", 0)
        return {"from": lo, "to": hi, "changes": browser.diff(call.env, lo, hi)}

    def commands(call: _Call) -> Any:
        browser.environment(call.env)
        return {"commands": [command_json(c) for c in queued.command_records(call.env)]}

    def queue(call: _Call) -> Any:
        browser.environment(call.env)
        doc = call.json()
        args = doc.get("args", {})
        if not isinstance(doc.get("name"), str) or not isinstance(args, dict):
            raise ApiError(400, 'expected {"name": str, "args": {...}}')
        problem = validate_command(Command(0, doc["name"], args))
        if problem:
            raise ApiError(400, problem)
        command = queued.queue_command(call.env, doc["name"], args, clock())
        record = next(r for r in queued.command_records(call.env) if r.command.id == command.id)
        return command_json(record)

    def one_command(call: _Call) -> Any:
        text = str(call.request.path_params["id"])
        if not text.isdigit() or len(text) > 18:  # an int route would 500 on 5000 digits
            raise ApiError(400, f"bad command id {text[:20]!r}: a number")
        wanted = int(text)
        for record in queued.command_records(call.env, 10_000):
            if record.command.id == wanted:
                return command_json(record)
        raise ApiError(404, f"no command {wanted} for {call.env!r}")

    base = "/api/v1/environments"
    env = base + "/{env}"
    return [
        Route(base, guarded(environments), methods=["GET"]),
        Route(base, guarded(register, 201), methods=["POST"]),
        Route(env, guarded(environment), methods=["GET"]),
        Route(env + "/health", guarded(health), methods=["GET"]),
        Route(env + "/versions", guarded(versions), methods=["GET"]),
        Route(env + "/objects", guarded(objects), methods=["GET"]),
        Route(env + "/objects/{key:path}", guarded(one_object), methods=["GET"]),
        Route(env + "/history/{key:path}", guarded(history), methods=["GET"]),
        Route(env + "/diff", guarded(diff), methods=["GET"]),
        Route(env + "/commands", guarded(commands), methods=["GET"]),
        Route(env + "/commands", guarded(queue, 201), methods=["POST"]),
        Route(env + "/commands/{id}", guarded(one_command), methods=["GET"]),
    ]


@dataclass(frozen=True)
class _Call:
    request: Request
    body: bytes
    browser: Browser

    @property
    def env(self) -> str:
        return str(self.request.path_params["env"])

    def json(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.body or b"{}")
        except ValueError:
            raise ApiError(400, "the body is not JSON") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "the body must be a JSON object")
        return doc

    def version(self) -> int | None:
        params = self.request.query_params
        version = int_param(self.request, "version", 0) if params.get("version") else None
        return self.browser.resolve_version(self.env, version, params.get("at"))
