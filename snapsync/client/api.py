"""A small client of the browse API (schemas/server-api.md): one httpx client, every answer read
with a cap, every failure one line a person can act on.

Failures: the server cannot be reached or answers 5xx -> TransportError; it refuses the token,
knows no such environment or object, or says the request is wrong -> InputError with the
server's own message. Both are SnapsyncErrors, so the CLI prints one line and exits 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from snapsync.errors import InputError, TransportError

MAX_ANSWER = 64 * 2**20  # one page of whole objects; a larger answer is refused, never buffered
PAGE = 500  # objects per request when listing
MAX_OBJECTS = 100_000  # a listing stops here and says so
DEFAULT_SERVER = "http://127.0.0.1:8480"


class BrowseClient:
    def __init__(
        self, server: str, token: str | None, *, timeout: float = 30.0, verify: bool = True
    ) -> None:
        if not server.startswith(("http://", "https://")):
            raise InputError(f"server URL {server!r} must start with http:// or https://")
        if not token:
            raise InputError("the browse API needs a token: set SNAPSYNC_API_TOKEN or --api-token")
        self.server = server.rstrip("/")
        self.client = httpx.Client(
            base_url=self.server + "/api/v1",
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            verify=verify,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    def __enter__(self) -> BrowseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET a JSON object; the answer is read up to MAX_ANSWER bytes."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self.client.stream("GET", path, params=query) as response:
                body = _read_capped(response.iter_bytes(), path)
                status = response.status_code
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach the server at {self.server}: {exc}") from None
        doc = _json(body, status, path)
        if status == 401:
            raise InputError(f"the server at {self.server} refused the API token (401)")
        if status >= 500:
            raise TransportError(f"the server answered {status}: {_message(doc, body)}")
        if status >= 400:
            raise InputError(f"{_message(doc, body)} ({status})")
        if not isinstance(doc, dict):
            raise TransportError(f"the server's answer to {path} is not a JSON object")
        return doc

    def environment(self, env: str) -> dict[str, Any]:
        return self.get(f"/environments/{quote(env, safe='')}")

    def environments(self) -> list[dict[str, Any]]:
        return list(self.get("/environments").get("environments") or [])

    def health(self, env: str) -> dict[str, Any]:
        return self.get(f"/environments/{quote(env, safe='')}/health")

    def objects(
        self, env: str, kind: str, namespace: str | None, name: str = "", label: str = ""
    ) -> list[dict[str, Any]]:
        """Every matching object, whole, page by page (at most MAX_OBJECTS)."""
        out: list[dict[str, Any]] = []
        path = f"/environments/{quote(env, safe='')}/objects"
        while len(out) < MAX_OBJECTS:
            page = self.get(
                path,
                kind=kind,
                namespace=namespace,
                name=name or None,
                label=label or None,
                objects=1,
                limit=PAGE,
                offset=len(out),
            ).get("objects")
            rows = [row for row in page or () if isinstance(row, dict)]
            out += rows
            if len(rows) < PAGE:
                break
        return out


def _read_capped(chunks: Iterator[bytes], path: str) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > MAX_ANSWER:
            raise TransportError(
                f"the server's answer to {path} exceeds {MAX_ANSWER // 2**20} MiB; narrow it "
                "with -n, -l or a name"
            )
    return bytes(body)


def _json(body: bytes, status: int, path: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        if status < 400:
            raise TransportError(f"the server's answer to {path} is not JSON") from None
        return None


def _message(doc: Any, body: bytes) -> str:
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    return body[:200].decode("utf-8", "replace").strip() or "no message"
