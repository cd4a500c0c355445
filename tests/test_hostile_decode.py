"""Issue 16, items 1, 2, 3 and 14: what hostile frames and messages from an authenticated agent
can make the server build. Each attack goes over HTTP to a real server (uvicorn on loopback,
SQLite) and must be refused with stored state unchanged; memory bounds are checked by the
decoders' own accounting (snapsync.bounds.Budget), never by timing.

The attacks are built by tools/attack_server.py, which also measures a real `snapsync serve`
process's VmHWM under each of them (outside CI).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgpack
import pytest

from snapsync.agent.transport import PATHS
from snapsync.bounds import (
    DELTA_BYTES_PER_ITEM,
    MIN_ITEMS,
    SNAPSHOT_BYTES_PER_ITEM,
    Budget,
    items_for,
    unpackb,
)
from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.decode import decode_snapshot
from snapsync.codec.encode import EncodeOptions, encode_delta, encode_repair, encode_snapshot
from snapsync.codec.frame import DEFAULT_LIMITS, unpack_frame
from snapsync.codec.payload import decompress, snapshot_payload, unpack_payload
from snapsync.codec.wire_unpack import unpack_delta
from snapsync.delta.diff import Delta, apply, apply_ops
from snapsync.errors import DeltaError, FrameCorrupt, FrameTooLarge, RemoteProtocolError
from snapsync.protocol.auth import sign
from snapsync.protocol.messages import (
    BucketQuery,
    Chunk,
    Differences,
    Ping,
    Pong,
    Refusal,
    Summary,
    UploadReply,
    Version,
    decode,
)
from snapsync.protocol.reconcile import MAX_BUCKETS, BucketSet, bucket_count, kind_digests
from snapsync.server import ServerSettings, SharedSecret
from snapsync.server.store import Stores, open_store
from snapsync.sim.sample_cluster import SampleCluster
from tests.support_server import live_server
from tools.attack_server import (
    base_snapshot,
    bucket_query,
    chunks,
    copy_doubling,
    renamed,
    zstd_bomb,
)
from tools.fuzz_decode import MEMORY_BOUND as FUZZ_MEMORY_BOUND
from tools.fuzz_decode import run as fuzz_run
from tools.traces import TraceSpec, replay

SECRET = b"hostile decode shared secret"
EDGE = "shop-1"


@dataclass
class Live:
    url: str
    store: Stores
    base: Snapshot
    version: Version

    def post(self, path: str, body: bytes) -> httpx.Response:
        auth = sign(SECRET, "POST", path, EDGE, body, time.time())
        return httpx.post(self.url + path, content=body, headers={"Authorization": auth})

    def upload(self, frame: bytes, base: bytes = b"") -> UploadReply:
        """Upload `frame` whole, for its own base and target, as an agent would."""
        for body in chunks(frame, base, unpack_frame(frame).target_digest):
            response = self.post(PATHS[Chunk.TYPE], body)
            assert response.status_code == 200, response.content
        reply = decode(response.content, UploadReply)
        assert isinstance(reply, UploadReply)
        return reply

    def held(self) -> list[Version]:
        return list(self.store.held(EDGE))


@pytest.fixture(scope="module")
def base() -> Snapshot:
    return base_snapshot(120)


@pytest.fixture
def live(tmp_path: Path, base: Snapshot) -> Iterator[Live]:
    store = open_store(str(tmp_path / "server.db"))
    with live_server(ServerSettings(secrets=SharedSecret(SECRET), stores=store)) as url:
        server = Live(url, store, base, Version(0, b""))
        reply = server.upload(encode_snapshot(base))
        assert reply.status == "ack" and reply.version is not None
        server.version = reply.version
        yield server
    store.close()


# -- item 1: JSON-Patch copy doubling ------------------------------------------------------------


def test_copy_doubling_delta_is_refused_over_http(live: Live) -> None:
    reply = live.upload(copy_doubling(live.base, 30), live.base.digest)
    assert reply.status == "rejected" and "builds more than" in reply.reason
    assert live.held() == [live.version]


def test_every_op_output_is_charged_before_it_is_built(base: Snapshot) -> None:
    obj = base.objects[base.keys[0]].data
    copies = [{"op": "copy", "from": "/metadata", "path": f"/metadata/c{i}"} for i in range(30)]
    budget = Budget(10_000, "applying")
    with pytest.raises(FrameTooLarge):
        apply_ops(obj, copies, budget)
    # charged container by container: past the limit by at most one container's entries
    assert budget.limit < budget.used <= budget.limit + 64
    adds = [{"op": "add", "path": f"/x{i}", "value": list(range(100))} for i in range(200)]
    budget = Budget(10_000, "applying")
    with pytest.raises(FrameTooLarge):
        apply_ops(obj, adds, budget)
    assert budget.used <= budget.limit + 101
    small = Budget(10_000, "applying")
    apply_ops(obj, copies[:3], small)  # a few copies are fine, and counted
    assert 0 < small.used < small.limit


# -- item 2: zstd/msgpack bombs --------------------------------------------------------------


def test_zstd_bomb_is_refused_before_decompressing_over_http(live: Live) -> None:
    frame = zstd_bomb()  # 16 Mi empty maps in ~600 bytes
    assert len(frame) < 1000
    reply = live.upload(frame)
    assert reply.status == "rejected" and "more than 128x" in reply.reason
    assert live.held() == [live.version]


def test_plain_bomb_is_refused_by_the_item_budget_over_http(live: Live) -> None:
    frame = zstd_bomb(2**20, compress=False)  # 1 Mi empty maps in rows of 4,096: 1 MiB
    reply = live.upload(frame)
    assert reply.status == "rejected" and "builds more than" in reply.reason
    assert live.held() == [live.version]


def test_decoding_stops_at_its_item_budget() -> None:
    rows = [[{}] * 4096] * 256  # 1 Mi empty maps, 1 MiB of msgpack
    raw = msgpack.packb(rows)
    budget = Budget(items_for(len(raw), DEFAULT_LIMITS.max_items), "payload")
    assert budget.limit == max(MIN_ITEMS, len(raw) // 8)
    with pytest.raises(FrameTooLarge):
        unpackb(raw, budget, FrameCorrupt, "payload")
    assert budget.used <= budget.limit + 4097  # one row past the limit at most
    with pytest.raises(FrameCorrupt):  # one container declaring more than the budget
        unpack_payload(b"\xdd" + (2**24).to_bytes(4, "big") + b"\x80" * 2**20)
    with pytest.raises(FrameCorrupt):  # nesting past msgpack's stack
        unpack_payload(b"\x91" * 5000 + b"\xc0")


def test_messages_are_decoded_within_their_budget() -> None:
    bomb = msgpack.packb({"v": 1, "t": "ping", "h": [[{}] * 4096] * 64})
    with pytest.raises(RemoteProtocolError, match="builds more than"):
        decode(bomb)
    with pytest.raises(RemoteProtocolError):
        decode(msgpack.packb({"v": 1, "t": {"a": 1}}))  # a type that is not a string
    ping = Ping(have=(b"d" * 16,), latest=b"d" * 16, cursor=3)
    assert decode(ping.encode()) == ping


@pytest.mark.slow
def test_real_frames_decode_within_their_proportional_budget_without_the_floor() -> None:
    """Busy-churn deltas and their snapshots, budgeted by size alone (no MIN_ITEMS floor)."""
    spec = TraceSpec("busy", objects=2000, cycles=2, seed=4, shape="platform")
    base, new = (cycle.snapshot for cycle in replay(spec) if cycle.index > 0)
    frame = unpack_frame(encode_delta(base, new, EncodeOptions(patch_from=False, full=False)).frame)
    raw = decompress(frame, base)
    delta = unpack_delta(
        base,
        raw,
        frame.target_digest,
        max_expanded=2**30,
        max_items=len(raw) // DELTA_BYTES_PER_ITEM,
    )
    assert apply(base, delta, Budget(len(raw) // DELTA_BYTES_PER_ITEM, "applying")).digest == (
        new.digest
    )
    payload = snapshot_payload(new)
    unpackb(payload, Budget(len(payload) // SNAPSHOT_BYTES_PER_ITEM, "x"), FrameCorrupt, "x")


@pytest.mark.slow
def test_a_real_50000_object_snapshot_still_decodes() -> None:
    from snapsync.canonical.profile import load_profile
    from snapsync.canonical.snapshot import build_snapshot

    raws = SampleCluster(objects=50_000, shape="application", seed=0).objects()
    snapshot = build_snapshot(raws, load_profile(), collected_at="2026-01-01T00:00:00Z")
    del raws
    frame, digest = encode_snapshot(snapshot, 3), snapshot.digest
    del snapshot
    assert decode_snapshot(frame).digest == digest


def test_fuzz_smoke(tmp_path: Path) -> None:
    """A tiny run of tools/fuzz_decode.py (the campaign itself runs outside CI)."""
    tally, _ = fuzz_run(300, seed=3, objects=30, trace_every=10, crashes=tmp_path, log=print)
    assert tally.inputs == 300 and tally.escapes == 0
    assert tally.traced_peak < FUZZ_MEMORY_BOUND


# -- item 3: bucket queries ------------------------------------------------------------------


def test_full_bitmaps_for_kinds_the_server_did_not_bucket_are_refused(live: Live) -> None:
    refs = sorted({k.kind_ref for k in live.base.keys})
    body = bucket_query(live.version, refs, 8)  # 8 full 128 KiB bitmaps
    assert len(body) > 8 * MAX_BUCKETS // 8
    response = live.post(PATHS[BucketQuery.TYPE], body)
    assert response.status_code == 400
    assert isinstance(decode(response.content), Refusal)
    assert live.held() == [live.version]


def test_a_bucket_count_the_server_did_not_announce_is_refused(live: Live) -> None:
    counts: dict[str, int] = {}
    for key in live.base.keys:
        counts[key.kind_ref] = counts.get(key.kind_ref, 0) + 1
    ref, held = max(counts.items(), key=lambda item: item[1])
    right = bucket_count(held)
    wrong = BucketQuery(live.version, {ref: BucketSet(MAX_BUCKETS, b"\xff" * (MAX_BUCKETS // 8))})
    assert live.post(PATHS[BucketQuery.TYPE], wrong.encode()).status_code == 400
    honest = BucketQuery(live.version, {ref: BucketSet.of(right, range(right))})
    answer = decode(live.post(PATHS[BucketQuery.TYPE], honest.encode()).content, Differences)
    assert isinstance(answer, Differences) and len(answer.kinds[ref]) == held


def test_a_decoded_bucket_query_keeps_its_bitmap() -> None:
    full = b"\xff" * (MAX_BUCKETS // 8)
    query = decode(
        BucketQuery(Version(1, b"d" * 16), {"Pod": BucketSet(MAX_BUCKETS, full)}).encode()
    )
    assert isinstance(query, BucketQuery)
    assert query.kinds["Pod"].bitmap == full  # bytes as they came: no set of a million ints


# -- item 14: a delta must keep every object under its key ----------------------------------


def test_a_delta_renaming_an_object_is_refused_and_the_server_reads_back(
    live: Live, tmp_path: Path
) -> None:
    reply = live.upload(renamed(live.base), live.base.digest)
    assert reply.status == "rejected" and "names itself" in reply.reason
    assert live.held() == [live.version]
    # what is stored reads back: a fresh store on the same file, as after a restart
    again = open_store(str(tmp_path / "server.db"))
    try:
        stored = again.snapshot(EDGE, live.version.digest)
        assert stored is not None and stored.digest == live.base.digest
    finally:
        again.close()
    summary = Summary(live.base.digest, kind_digests(live.base))
    answer = decode(live.post(PATHS[Summary.TYPE], summary.encode()).content, Differences)
    assert isinstance(answer, Differences) and answer.base == live.version


def test_added_objects_must_be_filed_under_their_own_key(base: Snapshot) -> None:
    key, other = base.keys[0], base.keys[1]
    misfiled = Delta(
        base.digest, b"t" * 16, base.header, removed=(other,), added={other: base.objects[key].data}
    )
    with pytest.raises(DeltaError, match="names itself"):
        apply(base, misfiled)


def test_a_misfiled_repair_frame_is_refused_over_http(live: Live) -> None:
    key, other = live.base.keys[0], live.base.keys[1]
    data = live.base.objects[key].data
    delta = Delta(
        live.base.digest, b"t" * 16, live.base.header, removed=(other,), added={other: data}
    )
    reply = live.upload(encode_repair(delta), live.base.digest)
    assert reply.status == "rejected" and "names itself" in reply.reason
    assert live.held() == [live.version]
    pong = decode(
        live.post(PATHS[Ping.TYPE], Ping(have=(live.base.digest,)).encode()).content, (Pong,)
    )
    assert isinstance(pong, Pong) and pong.current == live.version
