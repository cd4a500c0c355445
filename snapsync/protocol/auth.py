"""Request signatures: every agent request proves it holds the agent secret, which never travels.

One header, `Authorization: S1 <edge id>:<unix seconds>:<nonce>:<signature>`, where the
signature is base64url (unpadded) HMAC-SHA256 with the agent secret over

    SNAPSYNC-HMAC-SHA256, METHOD, path, edge id, timestamp, nonce, hex SHA-256 of the body

joined by newlines. The earlier, longer form `Snapsync e=<edge id>,t=<unix seconds>,n=<nonce>,
s=<signature>` carries the same four values under the same signature and is still accepted; the
compact one saves 14 bytes on every request.

The receiver checks the timestamp is within a window, refuses a nonce it has already seen in
that window (replay), and compares signatures in constant time. Pure functions and a bounded
nonce memory: the clock is always passed in. Specified in schemas/wire.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from snapsync.errors import AuthError

SCHEME = "SNAPSYNC-HMAC-SHA256"
HEADER = "Authorization"
WINDOW = 300.0  # seconds a signed request stays valid either side of the server's clock
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


class NonceMemory:
    """Nonces seen within the window, oldest first; bounded so a flood cannot grow it forever."""

    def __init__(self, capacity: int = 100_000, window: float = WINDOW) -> None:
        self.capacity = capacity
        self.window = window
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check_and_remember(self, key: str, timestamp: float, now: float) -> bool:
        """False when `key` was already used (a replay)."""
        while self._seen and (
            len(self._seen) >= self.capacity
            or next(iter(self._seen.values())) < now - 2 * self.window
        ):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = timestamp
        return True


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
    """The authenticated edge id, or AuthError.

    The error's message says what failed, for the server's log; the answer to the peer must not.
    """
    signed = parse(header)
    secret = secret_for.get(signed.edge_id)
    if secret is None:
        raise AuthError("authentication failed")
    expected = signature(secret, method, path, signed.edge_id, signed.timestamp, signed.nonce, body)
    if not hmac.compare_digest(expected, signed.signature):
        raise AuthError("authentication failed")
    if abs(now - signed.timestamp) > window:
        raise AuthError("authentication failed: request timestamp outside the window")
    if not nonces.check_and_remember(f"{signed.edge_id}:{signed.nonce}", signed.timestamp, now):
        raise AuthError("authentication failed: replayed request")
    return signed.edge_id
