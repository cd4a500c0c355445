"""The read-only web page: server-rendered HTML (Jinja2 templates in templates/), no script,
no inline style (static/snapsync.css: the Content-Security-Policy of websecurity.py allows
neither). A person signs in once with the API token (session.py).

It is what a person opens first: the fleet with freshness (heard from; the newest snapshot's
age), health, collection errors, data use and budget, one environment's objects by kind and
namespace, its health view (server/health.py), one object (as YAML, `kubectl get -o yaml`'s
layout; `?format=json` for JSON) with its history and the diff of each change. Every page is
one or two indexed queries; it shares the API token check and the queries with the JSON API
(browse.py), so the two never disagree.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from html import escape
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from snapsync.errors import ApiError, InputError
from snapsync.kubeview import to_yaml
from snapsync.server.browse import (
    ApiAccess,
    Browser,
    int_param,
    object_query,
    optional_rfc3339,
    parse_key,
)
from snapsync.server.freshness import age_class
from snapsync.server.session import sign_in_routes, sign_in_url
from snapsync.units import format_size

PAGE_OBJECTS = 300
NO_TOKEN = "snapsync: browsing is off (start the server with --api-token)"
# Styles live in one file, not in the HTML: the Content-Security-Policy allows no inline style.
STYLESHEET = "/static/snapsync.css"


def _span(seconds: float) -> str:
    age = max(0.0, seconds)
    if age < 60:
        return f"{age:.0f} s"
    if age < 3600:
        return f"{age / 60:.0f} min"
    if age < 86400:
        return f"{age / 3600:.0f} h"
    return f"{age / 86400:.0f} d"


def _ago(t: float | None, now: float) -> str:
    return f"{_span(now - t)} ago" if t else "never"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "…"


def templates() -> Environment:
    env = Environment(
        loader=PackageLoader("snapsync.server", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["size"] = lambda n: format_size(n or 0)  # None: not reported
    env.filters["ago"] = _ago
    env.filters["span"] = _span
    env.filters["when"] = lambda t: optional_rfc3339(t) or "never"
    env.filters["pretty"] = lambda d: json.dumps(d, indent=2, ensure_ascii=False)
    env.filters["short"] = _short
    env.filters["yaml"] = to_yaml
    env.filters["age_class"] = age_class
    return env


def page_routes(browser: Browser, access: ApiAccess) -> list[BaseRoute]:
    jinja = templates()
    queries, clock = browser.queries, browser.clock

    def render(template: str, **context: Any) -> str:
        return jinja.get_template(template).render(now=clock(), **context)

    def page(view: Callable[[Request], str]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if not access.allows(request):
                if not access.token:
                    return HTMLResponse(f"<p>{escape(NO_TOKEN)}</p>", 403)
                return RedirectResponse(sign_in_url(request), 303)
            try:
                html = await run_in_threadpool(view, request)
            except ApiError as exc:
                return HTMLResponse(f"<p>{escape(str(exc))}</p>", exc.status)
            except InputError as exc:
                return HTMLResponse(f"<p>{escape(str(exc))}</p>", 400)
            return HTMLResponse(html)

        return endpoint

    css = (files("snapsync.server") / "static" / "snapsync.css").read_bytes()

    async def stylesheet(request: Request) -> Response:
        return Response(css, media_type="text/css")

    def fleet(request: Request) -> str:
        q = request.query_params
        now = clock()
        every = browser.environments()
        shown = browser.environments(q.get("group", ""), q.get("tag", ""), q.get("status", ""))
        return render(
            "environments.html",
            environments=shown,
            health={e.edge_id: browser.health(e) for e in shown},
            with_errors=sum(1 for e in every if e.errors),
            counts=Counter(e.status(now) for e in every),
            groups=sorted({e.group for e in every if e.group}),
            group=q.get("group", ""),
            tag=q.get("tag", ""),
            status=q.get("status", ""),
            today=sum(e.bytes_today for e in every),
            month=sum(e.bytes_month for e in every),
        )

    def environment(request: Request) -> str:
        edge = request.path_params["env"]
        env = browser.environment(edge)
        query = object_query(request)
        query = replace(query, limit=PAGE_OBJECTS + 1)
        rows = queries.objects(edge, query)
        spaces: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for kind, namespace, count in queries.kinds(edge):
            spaces[kind].append((namespace, count))
        kinds = [(k, sum(n for _, n in s), s) for k, s in sorted(spaces.items())]
        return render(
            "environment.html",
            env=env,
            health=browser.health(env),
            kinds=kinds,
            kind=query.kind,
            namespace=query.namespace,
            name=query.name,
            label=request.query_params.get("label", ""),
            objects=rows[:PAGE_OBJECTS],
            more=len(rows) > PAGE_OBJECTS,
            versions=queries.versions(edge, 15),
        )

    def one_object(request: Request) -> str:
        edge = request.path_params["env"]
        env = browser.environment(edge)
        key = parse_key(request.path_params["key"])
        history = browser.object_history(edge, key, int_param(request, "limit", 50, 1000))
        current = queries.object_at(edge, key)
        as_json = request.query_params.get("format", "yaml") == "json"
        return render(
            "object.html", env=env, key=key, current=current, history=history, as_json=as_json
        )

    def health(request: Request) -> str:
        env = browser.environment(request.path_params["env"])
        return render("health.html", env=env, health=browser.health(env))

    def diff(request: Request) -> str:
        edge = request.path_params["env"]
        env = browser.environment(edge)
        lo, hi = int_param(request, "from", 0), int_param(request, "to", 0)
        return render("diff.html", env=env, lo=lo, hi=hi, changes=browser.diff(edge, lo, hi))

    return [
        *sign_in_routes(access.sessions, render),
        Route(STYLESHEET, stylesheet, methods=["GET"]),
        Route("/", page(fleet), methods=["GET"]),
        Route("/env/{env}", page(environment), methods=["GET"]),
        Route("/env/{env}/health", page(health), methods=["GET"]),
        Route("/env/{env}/object/{key:path}", page(one_object), methods=["GET"]),
        Route("/env/{env}/diff", page(diff), methods=["GET"]),
    ]
