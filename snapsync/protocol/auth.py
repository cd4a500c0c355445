"""Request signatures: every agent request proves it holds the agent secret, which never travels.

One header, `Authorization: S1 <edge id>:<unix seconds>:<nonce>:<signature>`, where the
signature is base64url (unpadded) HMAC-SHA256 with the agent secret over

    SNAPSYNC-HMAC-SHA256, METHOD, path, edge id, timestamp, nonce, hex SHA-256 of the body

joined by newlines. The earlier, longer form `Snapsync e=<edge id>,t=<unix seconds>,n=<nonce>,
s=<signature>` carries the same four values under the same signature and is still accepted; the
compact one saves 14 bytes on every request.

The receiver checks in two steps. Before the body arrives (`check_header`): the header is
well-formed, the edge id has a secret, the timestamp is within the window, the nonce is not
already used. After it (`check_body`): the signature over the body, in constant time, and then
the nonce is remembered. Each refusal is an AuthError whose message names the failed check for
the server's log (never a secret); the peer's answer must not. Pure functions and a bounded
nonce memory: the clock is always passed in. Specified in schemas/wire.md.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from snapsync.errors import AuthError, InputError, ReplayMemoryFull

SCHEME = "SNAPSYNC-HMAC-SHA256"
HEADER = "Authorization"
WINDOW = 300.0  # seconds a signed request stays valid either side of the server's clock
# Nonces one edge may have inside the window: ~17 requests a second for five minutes, far above
# an agent (a ping a minute, a command poll every 10 s, chunks of 256 KiB as the link allows).
PER_EDGE = 5_000
# Nonces held in all: ~200 bytes each with the longest nonces, so ~40 MiB however many edges.
CAPACITY = 200_000
MIN_SECRET = 16  # characters: an agent secret or API token shorter than this is guessable
_EDGE, _TS = r"(?P<edge>[A-Za-z0-9._-]{1,128})", r"(?P<ts>[0-9]{1,12})"
_NONCE, _SIG = r"(?P<nonce>[A-Za-z0-9_-]{8,64})", r"(?P<sig>[A-Za-z0-9_-]{43})"
_FORMATS = (
    re.compile(rf"S1 {_EDGE}:{_TS}:{_NONCE}:{_SIG}"),
    re.compile(rf"Snapsync e={_EDGE},t={_TS},n={_NONCE},s={_SIG}"),  # the earlier form
)


@dataclass(frozen=True)
class SignedRequest:
    edge_id: str
    timestamp: int
    nonce: str
    signature: str

    def header(self) -> str:
        return f"S1 {self.edge_id}:{self.timestamp}:{self.nonce}:{self.signature}"


def signature(
    secret: bytes, method: str, path: str, edge_id: str, timestamp: int, nonce: str, body: bytes
) -> str:
    text = "\n".join(
        [
            SCHEME,
            method.upper(),
            path,
            edge_id,
            str(timestamp),
            nonce,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    mac = hmac.new(secret, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign(secret: bytes, method: str, path: str, edge_id: str, body: bytes, now: float) -> str:
    """The Authorization header value for one request."""
    timestamp = int(now)
    nonce = secrets.token_urlsafe(12)
    sig = signature(secret, method, path, edge_id, timestamp, nonce, body)
    return SignedRequest(edge_id, timestamp, nonce, sig).header()


def parse(header: str) -> SignedRequest:
    text = header.strip()
    match = next((m for f in _FORMATS if (m := f.fullmatch(text)) is not None), None)
    if match is None:
        raise AuthError("malformed or missing Authorization header")
    return SignedRequest(match["edge"], int(match["ts"]), match["nonce"], match["sig"])


def check_secret(value: str, setting: str) -> bytes:
    """`value` as a key, or InputError naming `setting` when it is too short to be secret."""
    if len(value.strip()) < MIN_SECRET:
        raise InputError(f"{setting} is too short to be secret: at least {MIN_SECRET} characters")
    return value.encode()


Remembered = Literal["new", "replayed", "edge-full", "full"]


class NonceMemory:
    """Every nonce whose request is still inside the window, forgotten only when it leaves it.

    A nonce is never evicted early (evicting by count would make an old request replayable):
    when one edge holds `per_edge` live nonces, or all edges `capacity`, new requests are refused
    (fail closed) until the oldest leave the window; the bound per edge keeps one busy or
    hostile agent from locking out the others. Not thread-safe; the clock is passed in.
    """

    def __init__(
        self, window: float = WINDOW, per_edge: int = PER_EDGE, capacity: int = CAPACITY
    ) -> None:
        self.window = window
        self.per_edge = per_edge
        self.capacity = capacity
        self._edges: dict[str, dict[str, float]] = {}  # edge -> nonce -> timestamp
        self._expiry: list[tuple[float, str, str]] = []  # (timestamp, edge, nonce), a heap

    def __len__(self) -> int:
        return len(self._expiry)

    def _forget_expired(self, now: float) -> None:
        """Drop nonces whose timestamp the window already refuses: they cannot be replayed."""
        while self._expiry and self._expiry[0][0] < now - self.window:
            _, edge, nonce = heapq.heappop(self._expiry)
            held = self._edges[edge]
            del held[nonce]
            if not held:
                del self._edges[edge]

    def seen(self, edge_id: str, nonce: str, now: float) -> bool:
        self._forget_expired(now)
        return nonce in self._edges.get(edge_id, {})

    def remember(self, edge_id: str, nonce: str, timestamp: float, now: float) -> Remembered:
        """ "new" when remembered; otherwise why not, and nothing changes."""
        self._forget_expired(now)
        held = self._edges.get(edge_id, {})
        if nonce in held:
            return "replayed"
        if len(held) >= self.per_edge:
            return "edge-full"
        if len(self._expiry) >= self.capacity:
            return "full"
        edge_id = sys.intern(edge_id)  # one string per edge, however many nonces
        self._edges.setdefault(edge_id, {})[nonce] = timestamp
        heapq.heappush(self._expiry, (timestamp, edge_id, nonce))
        return "new"


@dataclass(frozen=True)
class Claim:
    """A request whose header checked out; only its signature over the body is left."""

    signed: SignedRequest
    secret: bytes = field(repr=False)


def check_header(
    header: str,
    secret_for: Mapping[str, bytes],
    now: float,
    nonces: NonceMemory,
    window: float = WINDOW,
) -> Claim:
    """What can be checked before the body arrives, or AuthError naming the failed check."""
    signed = parse(header)
    secret = secret_for.get(signed.edge_id)
    if secret is None:
        raise AuthError(f"unknown edge id {signed.edge_id!r}")
    skew = signed.timestamp - now
    if abs(skew) > window:
        raise AuthError(
            f"stale timestamp: {skew:+.0f} s from the server's clock (edge {signed.edge_id!r})"
        )
    if nonces.seen(signed.edge_id, signed.nonce, now):
        raise AuthError(f"replayed nonce (edge {signed.edge_id!r})")
    return Claim(signed, secret)


def check_body(
    claim: Claim, method: str, path: str, body: bytes, now: float, nonces: NonceMemory
) -> str:
    """The authenticated edge id once the signature over `body` checks out; the nonce is then
    remembered. AuthError names the failed check; ReplayMemoryFull when the edge (or the
    server) holds too many live nonces, which is no proof of a bad peer."""
    signed = claim.signed
    expected = signature(
        claim.secret, method, path, signed.edge_id, signed.timestamp, signed.nonce, body
    )
    if not hmac.compare_digest(expected, signed.signature):
        raise AuthError(f"bad signature (edge {signed.edge_id!r})")
    remembered = nonces.remember(signed.edge_id, signed.nonce, signed.timestamp, now)
    if remembered == "replayed":
        raise AuthError(f"replayed nonce (edge {signed.edge_id!r})")
    if remembered == "edge-full":
        raise ReplayMemoryFull(
            f"edge {signed.edge_id!r} holds {nonces.per_edge} nonces in the window"
        )
    if remembered == "full":
        raise ReplayMemoryFull(f"the replay memory holds {nonces.capacity} nonces")
    return signed.edge_id


def verify(
    header: str,
    secret_for: Mapping[str, bytes],
    method: str,
    path: str,
    body: bytes,
    now: float,
    nonces: NonceMemory,
    window: float = WINDOW,
) -> str:
    """The authenticated edge id, or AuthError: both steps at once, for a body already read."""
    claim = check_header(header, secret_for, now, nonces, window)
    return check_body(claim, method, path, body, now, nonces)
