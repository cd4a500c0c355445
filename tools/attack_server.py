"""The decoding attacks of issue 16 (items 1, 2, 3, 14) against a real `snapsync serve` process.

    python -m tools.attack_server [--objects 300] [--out bench/results/attack_server.json]

For each attack it starts a fresh `snapsync serve` (SQLite in a temporary directory, a shared
agent secret), uploads a real base snapshot from the sample-cluster generator, reads the process's
VmRSS/VmHWM from /proc/PID/status, sends the attack as a signed agent request, and records what
the server answered, its VmHWM afterwards, whether it still answers /readyz, and whether what it
stores is unchanged (a signed ping: the newest version is still the base). The issue's target:
every attack answered with a 4xx or a refusal, state unchanged, VmHWM under 400 MB.

The builders (`copy_doubling`, `zstd_bomb`, `bucket_query`, `renamed`) are what the regression
tests send too (tests/test_hostile_decode.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import zstandard

from snapsync.agent.transport import PATHS
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import CanonicalObject, Snapshot, build_snapshot
from snapsync.codec.encode import encode_snapshot
from snapsync.codec.frame import NO_DIGEST, Codec, Frame, FrameKind, unpack_frame
from snapsync.codec.wire_pack import pack_delta
from snapsync.delta.diff import Delta
from snapsync.protocol.auth import sign
from snapsync.protocol.messages import (
    BucketQuery,
    Chunk,
    Differences,
    Ping,
    Pong,
    Refusal,
    UploadReply,
    Version,
    decode,
)
from snapsync.protocol.reconcile import MAX_BUCKETS, BucketSet
from snapsync.sim.sample_cluster import SampleCluster
from tools.serving import ServeProcess

SECRET = "attack-server shared secret"
EDGE = "shop-1"
RSS_TARGET = 400 * 2**20


# -- the attacks -------------------------------------------------------------------------------


def base_snapshot(objects: int, seed: int = 7) -> Snapshot:
    raws = SampleCluster(objects=objects, shape="application", seed=seed).objects()
    return build_snapshot(raws, load_profile(), environment_id=EDGE, collected_at=_stamp())


def _stamp() -> str:
    return "2026-01-01T00:00:00Z"


def copy_doubling(base: Snapshot, copies: int = 30) -> bytes:
    """Item 1: a delta of `copies` ops `copy /metadata -> /metadata/cN` on one object (each
    doubles the object: 30 would need terabytes), zstd-compressed as an agent ships it."""
    key = base.keys[0]
    ops = tuple(
        {"op": "copy", "from": "/metadata", "path": f"/metadata/c{i}"} for i in range(copies)
    )
    delta = Delta(base.digest, secrets.token_bytes(16), base.header, changed={key: ops})
    raw = pack_delta(base, delta).payload
    stored = zstandard.ZstdCompressor(level=19).compress(raw)
    return Frame(
        FrameKind.DELTA, Codec.ZSTD, 0, base.digest, delta.target_digest, len(raw), stored
    ).pack()


def zstd_bomb(maps: int = 2**24, compress: bool = True) -> bytes:
    """Item 2: a snapshot frame whose payload is `maps` empty msgpack maps (16 Mi: ~600 bytes
    zstd-compressed, 1.2 GB of Python objects once built). `compress=False` ships it plain, as
    arrays of 4,096 maps (no one container is too long: only the item budget can stop it)."""
    if compress:
        raw = b"\xdd" + maps.to_bytes(4, "big") + b"\x80" * maps
    else:
        rows = maps // 4096
        raw = (
            b"\xdd"
            + rows.to_bytes(4, "big")
            + (b"\xdd" + (4096).to_bytes(4, "big") + b"\x80" * 4096) * rows
        )
    stored = zstandard.ZstdCompressor(level=19).compress(raw) if compress else raw
    codec = Codec.ZSTD if compress else Codec.NONE
    target = secrets.token_bytes(16)
    return Frame(FrameKind.SNAPSHOT, codec, 0, NO_DIGEST, target, len(raw), stored).pack()


def bucket_query(version: Version, refs: list[str], kinds: int = 8) -> bytes:
    """Item 3: full 128 KiB bitmaps (2^20 buckets each) for `kinds` kinds (the server's own kind
    refs first, made-up ones after)."""
    names = [*refs, *(f"Kind{i}.example.com" for i in range(kinds))][:kinds]
    full = BucketSet(MAX_BUCKETS, b"\xff" * (MAX_BUCKETS // 8))
    return BucketQuery(version, dict.fromkeys(names, full)).encode()


def renamed(base: Snapshot) -> bytes:
    """Item 14: a delta renaming an object in place (its key no longer names it), with the
    target digest of exactly that result, so only the key check can refuse it."""
    key = base.keys[0]
    ops = ({"op": "replace", "path": "/metadata/name", "value": key.name + "-renamed"},)
    data = dict(base.objects[key].data)
    data["metadata"] = {**data["metadata"], "name": key.name + "-renamed"}
    objects = {**base.objects, key: CanonicalObject.from_data(data)}
    target = Snapshot(base.header, objects).digest
    delta = Delta(base.digest, target, base.header, changed={key: ops})
    raw = pack_delta(base, delta).payload
    return Frame(FrameKind.DELTA, Codec.NONE, 0, base.digest, target, len(raw), raw).pack()


def chunks(frame: bytes, base: bytes, target: bytes, size: int = 2**20) -> list[bytes]:
    """The chunk messages carrying `frame` (`size` bytes each), as an agent uploads it."""
    upload = hashlib.blake2b(frame, digest_size=8).digest()
    return [
        Chunk(upload, base, target, len(frame), at, frame[at : at + size]).encode()
        for at in range(0, len(frame), size)
    ]


# -- a real server -----------------------------------------------------------------------------


class Serve(ServeProcess):
    """`snapsync serve` as a child process on a loopback port, with its /proc figures."""

    def __init__(self, directory: Path) -> None:
        super().__init__(str(directory / "server.db"), directory / "serve.log", secret=SECRET)

    def status(self, field: str) -> int:
        """A /proc/PID/status figure in bytes (VmRSS, VmHWM)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/{self.process.pid}/status")

    def post(self, path: str, body: bytes) -> httpx.Response:
        auth = sign(SECRET.encode(), "POST", path, EDGE, body, time.time())
        return httpx.post(
            self.url + path, content=body, headers={"Authorization": auth}, timeout=300
        )


def answer(response: httpx.Response) -> str:
    """What the server said, in one line."""
    try:
        message = decode(response.content)
    except Exception:
        return f"{response.status_code} {response.content[:80]!r}"
    if isinstance(message, UploadReply):
        return f"{response.status_code} upload {message.status}: {message.reason}"
    if isinstance(message, Refusal):
        return f"{response.status_code} refusal: {message.reason}"
    if isinstance(message, Differences):
        return f"{response.status_code} differences (declined: {message.base is None})"
    return f"{response.status_code} {message.TYPE}"


def refused(response: httpx.Response) -> bool:
    """A 4xx, or an upload the server rejected."""
    if 400 <= response.status_code < 500:
        return True
    try:
        reply = decode(response.content, UploadReply)
    except Exception:
        return False
    return isinstance(reply, UploadReply) and reply.status == "rejected"


def newest(serve: Serve, base: Snapshot) -> Version | None:
    reply = decode(
        serve.post(PATHS[Ping.TYPE], Ping(have=(base.digest,)).encode()).content, (Pong,)
    )
    assert isinstance(reply, Pong)
    return reply.current


def run_attack(
    name: str, base: Snapshot, send: Callable[[Serve, Version], list[httpx.Response]]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="snapsync-attack-") as tmp:
        serve = Serve(Path(tmp))
        serve.start()
        try:
            frame = encode_snapshot(base)
            for body in chunks(frame, b"", base.digest):
                serve.post(PATHS[Chunk.TYPE], body)
            before = newest(serve, base)
            assert before is not None and before.digest == base.digest
            rss_before, hwm_before = serve.status("VmRSS"), serve.status("VmHWM")
            started = time.monotonic()
            responses = send(serve, before)
            seconds = time.monotonic() - started
            hwm = serve.status("VmHWM")
            alive = serve.ready(timeout=5.0)
            after = newest(serve, base)
            return {
                "attack": name,
                "answer": answer(responses[-1]),
                "rss_before_mb": round(rss_before / 2**20, 1),
                "hwm_before_mb": round(hwm_before / 2**20, 1),
                "hwm_after_mb": round(hwm / 2**20, 1),
                "seconds": round(seconds, 2),
                "still_ready": alive,
                "state_unchanged": after == before,
                "ok": alive and after == before and hwm < RSS_TARGET and refused(responses[-1]),
            }
        finally:
            serve.stop()


def attacks(base: Snapshot) -> dict[str, Callable[[Serve, Version], list[httpx.Response]]]:
    def upload(
        frame: bytes, base_digest: bytes
    ) -> Callable[[Serve, Version], list[httpx.Response]]:
        bodies = chunks(frame, base_digest, unpack_frame(frame).target_digest)
        return lambda serve, _: [serve.post(PATHS[Chunk.TYPE], body) for body in bodies]

    counts = Counter(k.kind_ref for k in base.keys)
    refs = sorted(counts, key=lambda ref: (-counts[ref], ref))  # bucketed kinds first
    return {
        "1 copy doubling (30 ops)": upload(copy_doubling(base, 30), base.digest),
        "2 zstd bomb (16 Mi empty maps, ~600 B)": upload(zstd_bomb(), b""),
        "2 plain bomb (16 Mi empty maps, 16 MiB in 1 MiB chunks)": upload(
            zstd_bomb(2**24, compress=False), b""
        ),
        "2 plain bomb (1 Mi empty maps, 1 MiB)": upload(zstd_bomb(2**20, compress=False), b""),
        "3 bucket query (8 kinds, full bitmaps)": lambda serve, version: [
            serve.post(PATHS[BucketQuery.TYPE], bucket_query(version, refs, 8))
        ],
        "3 bucket query (63 kinds, full bitmaps)": lambda serve, version: [
            serve.post(PATHS[BucketQuery.TYPE], bucket_query(version, refs, 63))
        ],
        "14 delta renaming an object": upload(renamed(base), base.digest),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=300, help="objects in the stored base")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    base = base_snapshot(args.objects)
    rows = []
    for name, send in attacks(base).items():
        row = run_attack(name, base, send)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
