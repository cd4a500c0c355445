"""The request gate without a web server: plain headers, bytes and a clock in, an edge id or a
refusal out, as the simulation calls it (the HTTP bytes are pinned by test_server_gate.py)."""

from __future__ import annotations

from snapsync.protocol.auth import WINDOW, NonceMemory, sign
from snapsync.server.gate import MAX_BODY, BodyGate, Refused, RequestGate, SharedSecret

SECRET = b"unit gate shared secret"
PATH = "/v1/ping"
NOW = 1_800_000_000.0


def _headers(body: bytes, now: float = NOW, secret: bytes = SECRET) -> dict[str, str]:
    header = sign(secret, "POST", PATH, "edge-1", body, now)
    return {"Content-Length": str(len(body)), "Authorization": header}


def _gate(max_body: int = MAX_BODY, bodies: BodyGate | None = None) -> RequestGate:
    return RequestGate(SharedSecret(SECRET), NonceMemory(), max_body, bodies)


def test_a_signed_request_passes_once_and_its_replay_is_refused() -> None:
    gate = _gate()
    body = b"\x81\xa1t\x01"
    headers = _headers(body)
    assert gate.check(headers, PATH, body, NOW) == "edge-1"
    replayed = gate.check(headers, PATH, body, NOW + 1)
    assert isinstance(replayed, Refused)
    assert (replayed.status, replayed.close) == (401, True)
    assert replayed.reason == "authentication failed"
    assert "replayed nonce" in replayed.detail


def test_each_failed_check_is_a_refusal_value() -> None:
    gate = _gate(max_body=8)
    body = b"12345"
    cases: list[tuple[dict[str, str], bytes, float, int, str]] = [
        ({"Authorization": _headers(body)["Authorization"]}, body, NOW, 411, ""),
        ({**_headers(b"123456789")}, b"123456789", NOW, 413, ""),
        (_headers(body), body, NOW + WINDOW + 5, 401, "stale timestamp"),
        (_headers(body, secret=b"another secret, not ours"), body, NOW, 401, "bad signature"),
        (_headers(body), b"1234", NOW, 400, ""),
        ({"content-length": "5", "authorization": "S1 nope"}, body, NOW, 401, "malformed"),
    ]
    for headers, sent, now, status, detail in cases:
        refused = gate.check(headers, PATH, sent, now)
        assert isinstance(refused, Refused), (headers, status)
        assert refused.status == status
        assert detail in refused.detail


def test_the_body_allowance_is_held_until_released() -> None:
    gate = _gate(bodies=BodyGate(small_slots=1))
    assert gate.admit(10) is None
    busy = gate.admit(10)
    assert isinstance(busy, Refused)
    assert (busy.status, busy.reason, busy.retry_after) == (503, "busy", 10.0)
    gate.release(10)
    assert gate.admit(10) is None
    assert gate.deadline(16 * 2**10) == 31.0
