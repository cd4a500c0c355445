# The emulator's HTTP face: a ThreadingHTTPServer on loopback that answers the paths the official
# `kubernetes` client uses, with the documents a real v1.30 API server sends: discovery (/version,
# /api, /api/v1, /apis, /apis/<g>, /apis/<g>/<v>), GET/LIST (limit/continue, fieldSelector on
# metadata.namespace/name), WATCH (chunked JSON lines, bookmarks, 410 ERROR events; or, with
# `close_watches`, ended at once as a watch-breaking proxy does), PATCH (merge
# and strategic merge patches, on objects and on the `scale` subresource of workloads), DELETE, and
# Status bodies for every error. Faults scripted on the `ClusterState` are applied per request.
#
# Invariants: every response is HTTP/1.1 with Content-Length or chunked encoding (the client keeps
# connections alive); `kill()` closes every open connection, so a test sees a server that died,
# not one that lingers on kept-alive sockets.
from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tools.kube_emulator.resources import SUBRESOURCES, Resource
from tools.kube_emulator.state import (
    ClusterState,
    Expired,
    Fault,
    Rejected,
    RequestInfo,
    scale_of,
)

VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0",
    "gitCommit": "7c48c2bd72b9bf5c44d21d7338cc7bea77d0ad2a",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T17:27:03Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}

AGGREGATED_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

# Patch types the emulator applies: for the fields clients patch here (replicas, annotations,
# labels) a strategic merge patch means the same as a JSON merge patch.
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")

# Kinds whose DELETE answers with the object (the pod registry's ReturnDeletedObject); every other
# kind answers with a Success Status naming what was deleted.
RETURNS_DELETED_OBJECT = frozenset({("", "pods")})

EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)

_REASONS = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("NotFound", "the server could not find the requested resource"),
    405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
    409: ("Conflict", "the object has been modified"),
    410: ("Expired", EXPIRED_MESSAGE),
    415: ("UnsupportedMediaType", "the body of the request was in an unknown format"),
    422: ("Invalid", "the object is invalid"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", 'an error on the server ("") has prevented the request from succeeding'),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted"),
}


def status_body(code: int, message: str | None = None, **extra: Any) -> dict[str, Any]:
    """A metav1.Status as the API server writes it for a failure."""
    reason, default = _REASONS.get(code, ("InternalError", "error"))
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": extra.pop("metadata", {}),
        "status": "Failure",
        "message": message or default,
        "reason": reason,
    }
    if "details" in extra:
        body["details"] = extra.pop("details")
    body["code"] = code
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: KubeEmulator) -> None:
        self.emulator = emulator
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (closed watches, killed tests) are normal here, not errors."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | OSError):
            super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)


class KubeEmulator:
    """A Kubernetes API server emulator on 127.0.0.1; `with KubeEmulator(state) as emu: emu.url`."""

    def __init__(
        self,
        state: ClusterState,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        bookmark_interval: float = 60.0,
        max_watch_seconds: float = 1800.0,
        aggregated_discovery: bool = True,
        close_watches: bool = False,
    ) -> None:
        self.state = state
        # True: every WATCH is answered 200 and ended at once, with no event, as by a proxy
        # that cuts long-lived responses; clients see a stream of empty watches
        self.close_watches = close_watches
        self.aggregated_discovery = aggregated_discovery  # False: a pre-1.26 server
        self.token = token
        # kube-apiserver's watch cache sends a bookmark about once a minute per watch
        # (kubernetes/kubernetes#90249); tests pass a short interval to see them at once
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None
        self.watch_generation = 0

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> KubeEmulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (watch streams end, pooled sockets break)."""
        with self.state.lock:
            self.state.closing = True
            self.state.changed.notify_all()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._close_connections()
        self._server.server_close()

    kill = stop

    def drop_watches(self) -> None:
        """End every open watch stream (clients reconnect with their last resourceVersion)."""
        with self.state.lock:
            self.watch_generation += 1
            self.state.changed.notify_all()

    def _close_connections(self) -> None:
        with self._server.sockets_lock:
            sockets = list(self._server.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: str | Path, *, token: str | None = None) -> Path:
        """A kubeconfig file (context `emulator`) that points a client at this server."""
        user: dict[str, Any] = {"token": token or self.token or "emulator-token"}
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": user}],
            "contexts": [
                {"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}
            ],
            "current-context": "emulator",
        }
        path = Path(path)
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        return path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and benchmarks produce thousands of requests

    # ----- plumbing --------------------------------------------------------------------------

    @property
    def emu(self) -> KubeEmulator:
        return self.server.emulator

    def _send_json(
        self,
        code: int,
        doc: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = json.dumps(doc, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", "00000000-0000-0000-0000-000000000000")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        with self.emu.state.lock:
            self.emu.state.stats.bytes_out += len(data)

    def _send_status(self, code: int, message: str | None = None, **extra: Any) -> None:
        headers = extra.pop("headers", None)
        self._send_json(code, status_body(code, message, **extra), headers)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        self.body = b""
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_PATCH(self) -> None:
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_DELETE = do_PATCH

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._send_status(405)

    do_PUT = do_POST

    # ----- routing ---------------------------------------------------------------------------

    def _route(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        state = self.emu.state
        if parts == ["emulator", "stats"]:
            with state.lock:
                doc = {"requests": dict(state.stats.requests), "bytes_out": state.stats.bytes_out}
            self._send_json(200, doc)
            return
        if self.emu.token is not None:
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {self.emu.token}":
                state.match_faults(RequestInfo("unauthorized", url.path))
                self._send_status(401)
                return
        resource_path = len(parts) > (2 if parts[:1] == ["api"] else 3)
        if self.command != "GET" and not resource_path:
            self._send_status(405)  # discovery documents are read-only
            return
        if parts == ["version"]:
            state.match_faults(RequestInfo("version", url.path))
            self._send_json(200, VERSION)
            return
        if parts in (["api"], ["apis"]):
            aggregated = "as=APIGroupDiscoveryList" in self.headers.get("Accept", "")
            if aggregated and self.emu.aggregated_discovery:
                core = parts == ["api"]
                self._discovery(url.path, "", lambda: self._aggregated(core), AGGREGATED_TYPE)
            elif parts == ["api"]:
                self._discovery(url.path, "", self._api_versions)
            else:
                self._discovery(url.path, "", self._group_list)
            return
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) == 2 and parts[0] == "apis":
            self._discovery(url.path, parts[1], lambda: self._group(parts[1]))
            return
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            self._send_status(404)
            return
        gv = f"{group}/{version}" if group else version
        if not rest:
            self._discovery(url.path, gv, lambda: self._resource_list(group, version))
            return
        self._resource_request(url.path, group, version, rest, query)

    def _discovery(
        self, path: str, gv: str, build: Any, content_type: str = "application/json"
    ) -> None:
        faults = self.emu.state.match_faults(RequestInfo("discovery", path, group_version=gv))
        if self._apply_faults(faults, None):
            return
        if gv in self.emu.state.unavailable:
            self._send_status(503, "service unavailable")  # the aggregator, backend down
            return
        doc = build()
        if doc is None:
            self._send_status(404)
        else:
            self._send_json(200, doc, content_type=content_type)

    def _aggregated(self, core: bool) -> dict[str, Any]:
        """An APIGroupDiscoveryList (apidiscovery.k8s.io/v2) for /api or /apis."""
        state = self.emu.state
        items = []
        for group, versions in state.groups().items():
            if (group == "") != core:
                continue
            entries = []
            for version in versions:
                gv = f"{group}/{version}" if group else version
                if gv in state.unavailable:
                    entries.append({"version": version, "resources": [], "freshness": "Stale"})
                    continue
                served = [r for r in state.resources if r.group == group and r.version == version]
                entries.append(
                    {
                        "version": version,
                        "resources": [_aggregated_resource(r) for r in served],
                        "freshness": "Current",
                    }
                )
            items.append({"metadata": {"name": group} if group else {}, "versions": entries})
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        }

    def _api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.emu.port}"}
            ],
        }

    def _group(self, name: str) -> dict[str, Any] | None:
        versions = self.emu.state.groups().get(name)
        if not versions or not name:
            return None
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": name,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def _group_list(self) -> dict[str, Any]:
        groups = [self._group(name) for name in self.emu.state.groups() if name]
        body = [
            {k: v for k, v in g.items() if k not in ("kind", "apiVersion")} for g in groups if g
        ]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": body}

    def _resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        served = [r for r in self.emu.state.resources if r.group == group and r.version == version]
        if not served:
            return None
        entries = []
        for res in served:
            entries.append(res.discovery())
            for sub in SUBRESOURCES.get((res.group, res.plural), ()):
                entries.append(
                    {
                        "name": f"{res.plural}/{sub}",
                        "singularName": "",
                        "namespaced": res.namespaced,
                        "kind": res.kind if sub in ("status", "finalize") else "Scale",
                        "verbs": ["get", "patch", "update"] if sub != "log" else ["get"],
                    }
                )
        gv = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": entries,
        }

    # ----- objects ---------------------------------------------------------------------------

    def _resource_request(
        self, path: str, group: str, version: str, rest: list[str], query: dict[str, str]
    ) -> None:
        state = self.emu.state
        namespace, name, subresource = "", "", ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            self._send_status(404)
            return
        plural = rest[0]
        if len(rest) >= 2:
            name = rest[1]
        if len(rest) == 3:
            subresource = rest[2]
        res = state.resource(group, version, plural)
        watch = query.get("watch") in ("1", "true")
        verb = {"PATCH": "patch", "DELETE": "delete"}.get(self.command, "")
        verb = verb or ("get" if name else ("watch" if watch else "list"))
        info = RequestInfo(
            verb,
            path,
            res,
            res.group_version if res else "",
            namespace,
            bool(query.get("continue")),
            query,
            name,
            subresource,
        )
        faults = state.match_faults(info)
        if res is None:
            if not self._apply_faults(faults, None, info):
                self._send_status(404)
            return
        if self._apply_faults(faults, res, info):
            return
        if subresource and subresource not in SUBRESOURCES.get((res.group, res.plural), ()):
            self._send_status(404)
            return
        if verb in ("patch", "delete"):
            self._write(res, info)
            return
        if subresource == "scale" and verb == "get":
            self._answer(lambda: scale_of(state.get(res, namespace, name)))
            return
        if subresource == "status" and verb == "get":
            subresource = ""  # the object itself, as the real server answers
        if "list" not in res.verbs or subresource:
            self._send_status(405)
            return
        try:
            selector = _field_selector(query.get("fieldSelector", ""))
        except ValueError as exc:
            self._send_status(400, str(exc))
            return
        if name:
            self._get(res, namespace, name)
        elif watch:
            self._watch(res, namespace, selector, query)
        else:
            self._list(res, namespace, selector, query)

    def _write(self, res: Resource, info: RequestInfo) -> None:
        """PATCH or DELETE one object (or PATCH its scale), as the API server answers them."""
        state = self.emu.state
        if info.verb not in res.verbs or not info.name or info.subresource not in ("", "scale"):
            self._send_status(405)
            return
        if info.subresource and info.verb == "delete":
            self._send_status(405)
            return
        if info.verb == "delete":
            self._answer(lambda: self._deleted(res, state.remove(res, info.namespace, info.name)))
            return
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in MERGE_PATCH_TYPES:
            self._send_status(415, f"the emulator does not apply {content_type or 'this'} patches")
            return
        try:
            patch = json.loads(self.body or b"null")
        except ValueError as exc:
            self._send_status(400, f"the patch is not JSON: {exc}")
            return

        def apply() -> dict[str, Any]:
            new = state.patch(res, info.namespace, info.name, patch, info.subresource)
            return scale_of(new) if info.subresource else self._typed(res, new, in_list=False)

        self._answer(apply)

    def _deleted(self, res: Resource, gone: dict[str, Any]) -> dict[str, Any]:
        if (res.group, res.plural) in RETURNS_DELETED_OBJECT:
            return self._typed(res, gone, in_list=False)
        meta = gone["metadata"]
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": meta["name"],
                "group": res.group,
                "kind": res.plural,
                "uid": meta.get("uid", ""),
            },
        }

    def _answer(self, build: Any) -> None:
        """200 with the document `build()` returns, or the Status of the Rejected it raises."""
        try:
            doc = build()
        except Rejected as exc:
            self._send_status(exc.code, exc.message, details=exc.details)
            return
        self._send_json(200, doc)

    def _apply_faults(
        self, faults: list[Fault], res: Resource | None, info: RequestInfo | None = None
    ) -> bool:
        """Apply fired faults; True when the request has been answered (or dropped)."""
        for fault in faults:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.callback is not None:
                fault.callback(RequestInfo("fault", self.path, res))
            if fault.action == "drop":
                self._drop()
                return True
            if fault.action == "die":
                threading.Thread(target=self.emu.kill, daemon=True).start()
                self._drop()
                return True
            if fault.action == "expire":
                self._send_status(410, metadata={})
                return True
            if fault.action == "status" and fault.status is not None:
                self._send_fault_status(fault, res, info)
                return True
        return False

    def _send_fault_status(
        self, fault: Fault, res: Resource | None, info: RequestInfo | None = None
    ) -> None:
        code = fault.status or 500
        headers: dict[str, str] = {}
        extra: dict[str, Any] = {}
        message = None
        if code == 403 and res is not None:
            verb, name, sub, ns = "list", "", "", ""
            if info is not None:
                verb, name, sub, ns = info.verb, info.name, info.subresource, info.namespace
            qualified = f"{res.plural}.{res.group}" if res.group else res.plural
            subject = f'{qualified} "{name}"' if name else res.plural
            resource = f"{res.plural}/{sub}" if sub else res.plural
            scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
            message = (
                f'{subject} is forbidden: User "system:serviceaccount:snapsync:agent" cannot '
                f'{verb} resource "{resource}" in API group "{res.group}" {scope}'
            )
            extra["details"] = {"group": res.group, "kind": res.plural}
            if name:
                extra["details"]["name"] = name
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
            extra["details"] = {"retryAfterSeconds": fault.retry_after}
        self._send_status(code, message, headers=headers, **extra)

    def _typed(self, res: Resource, obj: dict[str, Any], *, in_list: bool) -> dict[str, Any]:
        if in_list and res.builtin:
            return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        return {
            "apiVersion": res.group_version,
            "kind": res.kind,
            **{k: v for k, v in obj.items() if k not in ("apiVersion", "kind")},
        }

    def _get(self, res: Resource, namespace: str, name: str) -> None:
        with self.emu.state.lock:
            obj = self.emu.state.store.get((res.group, res.plural), {}).get((namespace, name))
        if obj is None:
            self._send_status(404, f'{res.plural} "{name}" not found')
        else:
            self._send_json(200, self._typed(res, obj, in_list=False))

    def _list(self, res: Resource, namespace: str, selector: Any, query: dict[str, str]) -> None:
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            self._send_status(400, "limit must be an integer")
            return
        try:
            page, rv, token, remaining = self.emu.state.list_page(
                res, namespace, selector, limit, query.get("continue")
            )
        except Expired as exc:
            self._send_status(
                410, metadata={"continue": exc.inconsistent} if exc.inconsistent else {}
            )
            return
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if token:
            meta["continue"] = token
            meta["remainingItemCount"] = remaining
        self._send_json(
            200,
            {
                "kind": f"{res.kind}List",
                "apiVersion": res.group_version,
                "metadata": meta,
                "items": [self._typed(res, o, in_list=True) for o in page],
            },
        )

    def _watch(self, res: Resource, namespace: str, selector: Any, query: dict[str, str]) -> None:
        state = self.emu.state
        rkey = (res.group, res.plural)
        try:
            rv = int(query.get("resourceVersion") or 0)
            timeout = float(query.get("timeoutSeconds") or self.emu.max_watch_seconds)
        except ValueError:
            self._send_status(400, "bad resourceVersion or timeoutSeconds")
            return
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.emu.close_watches:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return

        def send(event_type: str, obj: dict[str, Any]) -> None:
            line = json.dumps({"type": event_type, "object": obj}, separators=(",", ":"))
            data = line.encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def visible(obj: dict[str, Any]) -> bool:
            ns = (obj.get("metadata") or {}).get("namespace") or ""
            return (not namespace or ns == namespace) and selector(obj)

        with state.lock:
            generation = self.emu.watch_generation
            if rv == 0:
                current = [o for o in state.store.get(rkey, {}).values() if visible(o)]
                rv = state.rv
            else:
                current = []
        for obj in current:
            send("ADDED", self._typed(res, obj, in_list=False))
        deadline = time.monotonic() + min(timeout, self.emu.max_watch_seconds)
        next_bookmark = time.monotonic() + self.emu.bookmark_interval
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            with state.lock:
                if state.closing or generation != self.emu.watch_generation:
                    break
                events = state.events_since(rv, rkey)
                latest = state.rv
                if events == []:
                    state.changed.wait(timeout=max(0.0, min(next_bookmark, deadline) - now))
                    events = state.events_since(rv, rkey)
                    latest = state.rv
            if events is None:
                send(
                    "ERROR",
                    status_body(410, f"too old resource version: {rv} ({state.compacted_rv})"),
                )
                break
            for erv, event_type, obj in events:
                if visible(obj):
                    send(event_type, self._typed(res, obj, in_list=False))
                rv = erv
            rv = max(rv, latest)
            if bookmarks and time.monotonic() >= next_bookmark:
                send(
                    "BOOKMARK",
                    {
                        "kind": res.kind,
                        "apiVersion": res.group_version,
                        "metadata": {"resourceVersion": str(rv)},
                    },
                )
                next_bookmark = time.monotonic() + self.emu.bookmark_interval
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _aggregated_resource(res: Resource) -> dict[str, Any]:
    """One resource of an aggregated discovery document, with its subresources."""
    kind = {"group": res.group, "version": res.version, "kind": res.kind}
    doc: dict[str, Any] = {
        "resource": res.plural,
        "responseKind": kind,
        "scope": "Namespaced" if res.namespaced else "Cluster",
        "singularResource": res.kind.lower(),
        "verbs": list(res.verbs),
    }
    if res.short_names:
        doc["shortNames"] = list(res.short_names)
    subresources = SUBRESOURCES.get((res.group, res.plural), ())
    if subresources:
        doc["subresources"] = [
            {
                "subresource": sub,
                "responseKind": kind if sub in ("status", "finalize") else _SCALE,
                "verbs": ["get", "patch", "update"] if sub != "log" else ["get"],
            }
            for sub in subresources
        ]
    return doc


_SCALE = {"group": "autoscaling", "version": "v1", "kind": "Scale"}


def _field_selector(text: str) -> Any:
    """A predicate for `metadata.namespace`/`metadata.name` terms (=, ==, !=): all the API
    server supports for every resource."""
    terms = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in term:
            field, value = term.split("!=", 1)
            negate = True
        elif "=" in term:
            field, value = term.replace("==", "=").split("=", 1)
            negate = False
        else:
            raise ValueError(f"invalid selector: {term!r}")
        if field not in ("metadata.namespace", "metadata.name"):
            raise ValueError(f'field label not supported: "{field}"')
        terms.append((field.split(".")[1], value, negate))

    def matches(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return all(((meta.get(f) or "") == v) != neg for f, v, neg in terms)

    return matches
