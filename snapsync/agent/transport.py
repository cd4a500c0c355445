"""How the agent reaches the server. Separate classes behind one interface (the httpx habit), so
tests and embedders swap the transport without monkeypatching.

`HttpTransport` posts each request with httpx: TLS verified unless insecure polling is asked for
(SNAPSYNC_INSECURE_POLL=1, for self-signed servers), a timeout on every request, proxy settings
from the environment (HTTPS_PROXY, NO_PROXY) honoured, every request signed
(snapsync.protocol.auth). What it reports is what crossed the socket (snapsync.agent.wire): one
connection kept across cycles, TLS sessions resumed when it must be reopened, answers read with
a cap, and no header that does not earn its bytes (no User-Agent, Accept, Accept-Encoding,
Connection or Content-Type: the path says what the body is).

This is the agent's HTTP binding: it knows the path each kind of request is posted to (`PATHS`)
and turns the status of each answer into the protocol's `Outcome` (`outcome_of`); nothing above
it sees a path or a status code.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from snapsync.agent.wire import CountingBackend, WireMeter
from snapsync.errors import InputError, TransportError
from snapsync.protocol.auth import HEADER, sign
from snapsync.protocol.messages import BucketQuery, Chunk, Ping, Summary
from snapsync.protocol.outcome import Outcome

log = logging.getLogger("snapsync.agent")
# Beyond the body's cap, what an answer may bring: its head (status line and a few headers),
# TLS record framing, and session tickets the server sends after a handshake.
HEAD_ALLOWANCE = 8 * 1024
TLS12_SUITES = "ECDHE+AESGCM:ECDHE+CHACHA20"
OP_TLSEXT_PADDING = 0x10  # OpenSSL's SSL_OP_TLSEXT_PADDING (part of SSL_OP_ALL), not in `ssl`
KEEP_ALIVE = 900.0  # idle seconds before the agent drops its connection (see keep_alive below)

# Where each kind of request is posted (schemas/wire.md); the server's routes are the same.
PATHS = {
    Ping.TYPE: "/v1/ping",
    Chunk.TYPE: "/v1/upload",
    Summary.TYPE: "/v1/reconcile",
    BucketQuery.TYPE: "/v1/reconcile/buckets",
}
# What each status the server (or a proxy in its name) answers means to the protocol; any other
# status is a refusal that does not say "later".
OUTCOMES = {
    200: Outcome.OK,
    400: Outcome.MALFORMED,
    401: Outcome.AUTH,
    403: Outcome.AUTH,
    404: Outcome.NOT_FOUND,
    408: Outcome.UNAVAILABLE,
    413: Outcome.TOO_LARGE,
    429: Outcome.BUSY,
    500: Outcome.UNAVAILABLE,
    502: Outcome.UNAVAILABLE,
    503: Outcome.BUSY,
    504: Outcome.UNAVAILABLE,
}


def outcome_of(status: int) -> Outcome:
    return OUTCOMES.get(status, Outcome.REFUSED)


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    body: bytes
    # what crossed the link for this exchange: TCP payload (TLS records, handshakes included)
    # plus TCP/IP headers, as counted by snapsync.agent.wire
    wire_bytes: int
    http_bytes: int = 0  # the HTTP messages alone (heads and bodies), for comparison


class Transport(Protocol):
    def post(self, kind: str, body: bytes, limit: int) -> Answer:
        """Send `body` as a request of `kind` (a message type); the answer's body may not
        exceed `limit` bytes (TransportError if so)."""
        ...

    def close(self) -> None: ...


class HttpTransport:
    """httpx over a counting network backend.

    `keep_alive` is how long an idle connection is kept: longer than the agent's longest
    interval, so one connection carries every cycle for as long as the server and the network
    keep it (the server's own limit is `snapsync serve --keep-alive`).
    """

    def __init__(
        self,
        server_url: str,
        edge_id: str,
        secret: bytes,
        *,
        insecure: bool = False,
        timeout: float = 30.0,
        keep_alive: float = KEEP_ALIVE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not server_url.startswith(("http://", "https://")):
            raise InputError(f"server URL {server_url!r} must start with http:// or https://")
        self.edge_id = edge_id
        self.secret = secret
        self.clock = clock
        self.meter = WireMeter()
        self._full_seen = 0
        url = httpx.URL(server_url)
        transport = httpx.HTTPTransport(
            verify=tls_context(insecure),
            limits=httpx.Limits(max_connections=1, keepalive_expiry=keep_alive),
            proxy=_environment_proxy(url),
        )
        # httpx takes no network backend; its connection pool does (httpcore's documented seam)
        transport._pool._network_backend = CountingBackend(self.meter)
        self.client = httpx.Client(
            base_url=server_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            trust_env=False,
        )
        self.client.headers.clear()
        self._prefix = url.path.rstrip("/")

    def post(self, kind: str, body: bytes, limit: int) -> Answer:
        path = PATHS[kind]
        headers = {
            HEADER: sign(self.secret, "POST", self._prefix + path, self.edge_id, body, self.clock())
        }
        meter = self.meter
        before = meter.total
        meter.cap(limit + HEAD_ALLOWANCE)
        error = ""
        try:
            with self.client.stream("POST", path, content=body, headers=headers) as response:
                declared = response.headers.get("content-length", "")
                content = None
                if not (declared.isdigit() and int(declared) > limit):
                    content = _read_capped(response, limit)
                if content is None:
                    error = f"the server's answer exceeds {limit} bytes"
                head = _head_size(response)
        except httpx.HTTPError as exc:
            if meter.over_limit:
                error = f"the server's answer exceeds {limit} bytes"
            else:
                error = f"{type(exc).__name__}: {exc}"
        finally:
            meter.cap(None)
        # counted once the connection is back in the pool, or closed (an answer cut short)
        spent = self._spent(before)
        if error or content is None:
            raise TransportError(error, wire_bytes=spent)
        http = _request_size(response.request) + head + len(content)
        return Answer(outcome_of(response.status_code), content, spent, http)

    def _spent(self, before: int) -> int:
        meter = self.meter
        meter.settle()
        if meter.full_handshakes > self._full_seen:
            if meter.connections > 1:
                log.info(
                    "reconnected with a full TLS handshake (%d so far, %d resumed)%s",
                    meter.full_handshakes - 1,
                    meter.resumed_handshakes,
                    ": the server refused our session" if meter.refused_resumptions else "",
                )
            self._full_seen = meter.full_handshakes
        return meter.total - before

    def close(self) -> None:
        self.client.close()
        self.meter.settle()


def tls_context(insecure: bool = False) -> ssl.SSLContext:
    """httpx's TLS context (certifi or SSL_CERT_FILE roots), offering fewer TLS 1.2 suites.

    Every suite offered costs 2 bytes of each ClientHello, resumed ones included; TLS 1.3's
    three suites are always offered, and for TLS 1.2 servers ECDHE with AES-GCM or ChaCha20
    (forward secrecy, AEAD) is what any current server accepts. OpenSSL's padding extension
    (which fills a ClientHello up to 512 bytes, ~250 bytes of zeros, to dodge a bug of F5
    load balancers from 2012) is turned off; TLS 1.3's middlebox compatibility mode stays on.
    """
    context = httpx.create_ssl_context(verify=not insecure)
    context.set_ciphers(TLS12_SUITES)
    context.options &= ~OP_TLSEXT_PADDING
    return context


def _read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` (the rest is never read)."""
    parts, size = [], 0
    for part in response.iter_raw():
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
    return b"".join(parts)


def _environment_proxy(url: httpx.URL) -> str | None:
    """The proxy HTTPS_PROXY/HTTP_PROXY names for `url`, unless NO_PROXY exempts its host."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy


def _head_size(response: httpx.Response) -> int:
    """Status line and headers as they were on the wire (h11 keeps their raw form)."""
    reason = response.reason_phrase
    line = len(f"HTTP/1.1 {response.status_code} {reason}\r\n")
    return line + sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + 2


def _request_size(request: httpx.Request) -> int:
    line = len(request.method) + len(request.url.raw_path) + 12
    headers = sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
    return line + headers + 2 + len(request.content)
