"""Fuzz the server's decoding path: random and mutated frames, deltas and protocol messages.

    python -m tools.fuzz_decode --inputs 1000000 --seed 1 --out bench/results/fuzz_decode.json

Every input goes through the functions the server itself calls (snapsync.protocol.server):
- frames through `codec.apply_frame` against a held base, as `ServerProtocol._complete` does
  (full, patch-from, delta and repair frames; mutated as bytes, as msgpack payloads re-framed
  with a valid checksum so they reach the decoder, as random JSON-Patch operations, and as
  bombs: copy doubling, millions of empty maps, deep nesting, huge declared lengths);
- protocol messages through `messages.decode` and then `ServerProtocol.handle` over a
  MemoryStore holding the base (pings, chunks carrying frames, summaries, bucket queries).

It counts outcomes by type (`ok`, or the error class raised), and fails (exit 1) if anything
escapes that is not a snapsync error, or `handle` raises at all; each escape is saved under
--crashes. Memory: the peak of tracemalloc per input, for every bomb and a sample of the rest
(`--trace-every`), and the process's own VmHWM from /proc (which also holds the seeds, ~100 MB
of 16 MiB bombs, and tracemalloc's own records of every block it traces: not the decoders').
The documented bound, checked at the end: no input's traced peak exceeds MEMORY_BOUND.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zstandard

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.decode import apply_frame
from snapsync.codec.encode import EncodeOptions, encode_delta, encode_snapshot
from snapsync.codec.frame import NO_DIGEST, Codec, Frame, FrameKind, unpack_frame
from snapsync.codec.payload import decompress
from snapsync.delta.diff import diff
from snapsync.errors import SnapsyncError
from snapsync.protocol.memory import MemoryStore
from snapsync.protocol.messages import (
    BucketQuery,
    Chunk,
    Ping,
    Summary,
    Version,
    decode,
)
from snapsync.protocol.reconcile import BucketSet, bucket_count, kind_digests
from snapsync.protocol.server import ServerProtocol
from tools.traces import TraceSpec, replay

# What decoding one input may allocate at its peak (tracemalloc). The largest inputs here are
# 16 MiB bombs; their budget is 2 Mi items (snapsync.bounds: 1 per 8 bytes), at most 64 bytes
# each when they are empty containers (134 MB), next to up to three copies of the input (the
# frame, its payload, the raw payload: 48 MiB). Every other input stays under a few MiB.
MEMORY_BOUND = 256 * 2**20
ENV = "fuzz"


@dataclass
class Seeds:
    """Valid inputs to mutate: frames against `base`, their raw payloads, and messages."""

    base: Snapshot
    frames: list[tuple[Frame, bytes]]  # (frame, its raw payload)
    messages: list[tuple[str, bytes]]  # (request kind, body)
    paths: list[str]  # JSON pointers into the base's objects
    bombs: list[bytes]  # small payloads that decode to far more than they weigh (mutated)
    big_bombs: list[bytes]  # 16 MiB ones, framed once (never mutated: copying costs too much)


@dataclass
class Tally:
    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    escapes: int = 0
    traced_peak: int = 0


def make_seeds(objects: int, seed: int) -> Seeds:
    snaps = [c.snapshot for c in replay(TraceSpec("busy", objects=objects, cycles=4, seed=seed))]
    base = snaps[0]
    frames: list[bytes] = [encode_snapshot(base, 3)]
    for new in snaps[1:]:
        for opts in (
            EncodeOptions(patch_from=False, full=False),
            EncodeOptions(delta=False, full=False, patch_from_min_share=0.0),
            EncodeOptions(delta=False, patch_from=False),
        ):
            frames.append(encode_delta(base, new, opts).frame)
    from snapsync.codec.encode import encode_repair

    frames.append(encode_repair(diff(base, snaps[-1])))
    pairs = []
    for data in frames:
        frame = unpack_frame(data)
        pairs.append((frame, decompress(frame, base)))
    version = Version(1, base.digest)
    counts = Counter(k.kind_ref for k in base.keys)
    bucketed = {ref: BucketSet.of(bucket_count(n), {0, 1}) for ref, n in counts.items() if n >= 8}
    messages = [
        (Ping.TYPE, Ping(have=(base.digest,), cursor=3).encode()),
        (Summary.TYPE, Summary(snaps[-1].digest, kind_digests(snaps[-1])).encode()),
        (BucketQuery.TYPE, BucketQuery(version, bucketed).encode()),
    ]
    for data in frames[1:4]:
        frame = unpack_frame(data)
        chunk = Chunk(
            data[:8],
            frame.base_digest if frame.needs_base else b"",
            frame.target_digest,
            len(data),
            0,
            data,
        )
        messages.append((Chunk.TYPE, chunk.encode()))
    paths = sorted({p for _, obj in list(base)[:50] for p in _pointers(obj.data, "", 4)})
    bombs = [
        b"\x91" * 5000 + b"\xc0",  # nesting past msgpack's stack
        b"\xdd\xff\xff\xff\xff",  # a 4 Gi-entry array header, nothing after
        b"\xde\x10\x00" + b"\xa1a\x80" * 2**12,  # a map of 4,096 equal keys
        b"\x96" + b"\xdc\xff\xff" + b"\x80" * 2**12,  # a delta payload of empty maps
    ]
    big = [
        b"\xdd" + (2**24).to_bytes(4, "big") + b"\x80" * 2**24,  # 16 Mi empty maps
        msgpack.packb([[[]] * 4096] * 4096),  # 16 Mi empty lists
    ]
    big_frames = []
    for raw in big:
        for frame, _ in pairs[:2]:
            for codec in (Codec.ZSTD, Codec.NONE):
                stored = zstandard.ZstdCompressor(level=1).compress(raw) if codec else raw
                base_digest = (
                    frame.base_digest if frame.kind is not FrameKind.SNAPSHOT else NO_DIGEST
                )
                big_frames.append(
                    Frame(
                        frame.kind, codec, 0, base_digest, frame.target_digest, len(raw), stored
                    ).pack()
                )
    return Seeds(base, pairs, messages, paths, bombs, big_frames + big)


def _pointers(value: Any, prefix: str, depth: int) -> Iterator[str]:
    yield prefix
    if depth == 0:
        return
    if type(value) is dict:
        for k, v in value.items():
            yield from _pointers(
                v, f"{prefix}/{k.replace('~', '~0').replace('/', '~1')}", depth - 1
            )
    elif type(value) is list:
        for i, v in enumerate(value[:3]):
            yield from _pointers(v, f"{prefix}/{i}", depth - 1)


# -- mutations -----------------------------------------------------------------------------------

INTERESTING = [
    0,
    1,
    0x7F,
    0x80,
    0x8F,
    0x90,
    0x9F,
    0xC0,
    0xC1,
    0xC4,
    0xC7,
    0xD4,
    0xD9,
    0xDC,
    0xDD,
    0xDE,
    0xDF,
    0xFF,
]


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        n = len(out)
        choice = rng.randrange(8)
        if n == 0 or choice == 0:
            out[rng.randrange(n + 1) if n else 0 : 0] = rng.randbytes(rng.randrange(1, 16))
        elif choice == 1:
            i = rng.randrange(n)
            out[i] ^= 1 << rng.randrange(8)
        elif choice == 2:
            out[rng.randrange(n)] = rng.choice(INTERESTING)
        elif choice == 3:
            i = rng.randrange(n)
            del out[i : i + rng.randrange(1, 64)]
        elif choice == 4:
            del out[rng.randrange(n) :]
        elif choice == 5:
            i, j = sorted(rng.randrange(n) for _ in range(2))
            out[i:i] = out[i:j][:4096] * rng.randrange(1, 4)
        elif choice == 6:
            other = rng.choice(others)
            i = rng.randrange(n)
            j = rng.randrange(len(other) + 1)
            out[i:] = other[j : j + rng.randrange(1, 2048)]
        else:
            i = rng.randrange(n)
            k = rng.choice((1, 2, 4))
            out[i : i + k] = rng.randbytes(k)
    return bytes(out)


def json_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.randrange(10 if depth < 5 else 6)
    if r == 0:
        return None
    if r == 1:
        return rng.random() < 0.5
    if r == 2:
        return rng.randrange(-(2**40), 2**40)
    if r == 3:
        return rng.random() * 1e6
    if r in (4, 5):
        return "".join(rng.choice("abc/~01-.:Z ") for _ in range(rng.randrange(12)))
    if r in (6, 7):
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(rng.randrange(6)): json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_ops(rng: random.Random, paths: list[str]) -> list[list[Any]]:
    """Wire-form operations ([code, path, value-or-from]) on a base object."""

    def path() -> str:
        p = rng.choice(paths)
        if rng.random() < 0.3:
            p += "/" + rng.choice(("-", "0", "x", "~2", "99", "metadata", "c"))
        return p

    if rng.random() < 0.1:  # copy doubling (issue 16 item 1)
        n = rng.randrange(8, 40)
        return [[4, f"/metadata/c{i}", "/metadata"] for i in range(n)]
    ops: list[list[Any]] = []
    for _ in range(rng.randrange(1, 8)):
        code = rng.randrange(7)  # 6: an unknown code
        if code in (0, 2, 5):
            ops.append([code, path(), json_value(rng)])
        elif code in (3, 4):
            ops.append([code, path(), path()])
        else:
            ops.append([code, path()])
    return ops


def delta_payload(rng: random.Random, seeds: Seeds) -> bytes:
    """A structurally plausible delta payload: random gaps, operations and added objects."""
    size = len(seeds.base)
    changed: list[Any] = []
    for _ in range(rng.randrange(4)):
        changed += [rng.randrange(size // 4 + 1), random_ops(rng, seeds.paths)]
    added: list[Any] = []
    for _ in range(rng.randrange(3)):
        ref = rng.choice((None, rng.randrange(-2, size + 2)))
        body = random_ops(rng, seeds.paths) if rng.random() < 0.5 else json_value(rng)
        added += [ref, body]
    removed = [rng.randrange(5) for _ in range(rng.randrange(3))]
    doc = [rng.randrange(2**31), json_value(rng), {}, removed, changed, added]
    return msgpack.packb(doc, use_bin_type=True)


_COMPRESSOR = zstandard.ZstdCompressor(level=1)  # one context: making one per input costs ms


def reframe(rng: random.Random, frame: Frame, raw: bytes) -> bytes:
    """`raw` in a frame like `frame`, with a valid checksum (plain or plain-zstd payload)."""
    codec = Codec.ZSTD if rng.random() < 0.5 else Codec.NONE
    stored = _COMPRESSOR.compress(raw) if codec is Codec.ZSTD else raw
    kind = frame.kind
    base = frame.base_digest if kind is not FrameKind.SNAPSHOT else NO_DIGEST
    return Frame(kind, codec, 0, base, frame.target_digest, len(raw), stored).pack()


def next_frame(rng: random.Random, seeds: Seeds, raws: list[bytes]) -> tuple[str, bytes]:
    frame, raw = rng.choice(seeds.frames)
    packed = frame.pack()
    r = rng.random()
    if r < 0.03:
        return "frame/random", rng.randbytes(rng.randrange(80))
    if r < 0.25:
        return "frame/mutated-bytes", mutate(rng, packed, raws)
    if r < 0.6:
        return "frame/mutated-payload", reframe(rng, frame, mutate(rng, raw, raws))
    if r < 0.98:
        delta = next(f for f, _ in seeds.frames if f.kind is FrameKind.DELTA)
        return "delta/random-ops", reframe(rng, delta, delta_payload(rng, seeds))
    if r < 0.9999:
        bomb = rng.choice(seeds.bombs)
        return "frame/bomb", reframe(rng, frame, mutate(rng, bomb, raws) if r < 0.99 else bomb)
    return "frame/big-bomb", rng.choice(seeds.big_bombs[:-2])


def next_message(rng: random.Random, seeds: Seeds, raws: list[bytes]) -> tuple[str, str, bytes]:
    kind, body = rng.choice(seeds.messages)
    r = rng.random()
    if r < 0.5:
        return "message/mutated-bytes", kind, mutate(rng, body, raws)
    if r < 0.98:
        doc = msgpack.unpackb(body, raw=False)
        for _ in range(rng.randrange(1, 4)):
            key = rng.choice([*doc, "m", "k", "z", "h"])
            doc[key] = json_value(rng) if rng.random() < 0.6 else _near(rng, doc.get(key))
        return "message/mutated-fields", kind, msgpack.packb(doc, use_bin_type=True)
    if r < 0.9999:
        bomb = rng.choice(seeds.bombs)
        return "message/bomb", kind, bomb if r < 0.99 else mutate(rng, bomb, raws)
    return "message/big-bomb", kind, rng.choice(seeds.big_bombs[-2:])


def _near(rng: random.Random, value: Any) -> Any:
    """A value like `value` but wrong: huge counts, full bitmaps, long digests."""
    if type(value) is list and value:
        out = list(value)
        i = rng.randrange(len(out))
        out[i] = _near(rng, out[i])
        return out
    if type(value) is int:
        return rng.choice((0, -1, 2**20, 2**20 + 1, 2**63, (value + 1) % 2**64))
    if type(value) is bytes:
        return rng.choice((b"", b"\xff" * 2**17, value + b"\x00", value[:-1]))
    return rng.choice((None, [], {}, "", 2**64 - 1))


# -- the run ------------------------------------------------------------------------------------


def vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fresh_server(base: Snapshot) -> ServerProtocol:
    """A server holding `base` only (renewed every 1000 inputs: accepted frames add versions)."""
    store = MemoryStore()
    store.commit(ENV, base, b"", None, 0.0)
    return ServerProtocol(store)


def run(
    inputs: int,
    seed: int,
    objects: int,
    trace_every: int,
    crashes: Path,
    log: Callable[[str], None],
) -> tuple[Tally, float]:
    rng = random.Random(seed)
    seeds = make_seeds(objects, seed)
    raws = [raw for _, raw in seeds.frames] + [body for _, body in seeds.messages]
    server = fresh_server(seeds.base)
    tally = Tally()
    started = time.monotonic()
    for n in range(inputs):
        if n % 1000 == 0:
            server = fresh_server(seeds.base)
        kind = ""
        if rng.random() < 0.7:
            label, data = next_frame(rng, seeds, raws)
        else:
            label, kind, data = next_message(rng, seeds, raws)
        # every bomb is traced (they are what the bounds are for), other inputs on a sample
        traced = "bomb" in label or (trace_every > 0 and n % trace_every == 0)
        if traced:
            tracemalloc.start()
        if not kind:
            outcome = _outcome(apply_frame, seeds.base, data)
        else:
            outcome = _outcome(decode, data, (server.KINDS[kind],))
            try:
                reply = server.handle(ENV, kind, data, float(n))
                tally.statuses[f"{kind} {reply.outcome.value}"] += 1
            except BaseException as exc:  # the point is to catch anything
                outcome = f"ESCAPED {type(exc).__name__} from handle"
        if traced:
            tally.traced_peak = max(tally.traced_peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        tally.inputs += 1
        tally.outcomes[f"{label}: {outcome}"] += 1
        if outcome.startswith("ESCAPED"):
            tally.escapes += 1
            crashes.mkdir(parents=True, exist_ok=True)
            (crashes / f"{n}-{label.replace('/', '_')}.bin").write_bytes(data)
            log(f"input {n} ({label}): {outcome}")
        if (n + 1) % 50_000 == 0:
            wall = time.monotonic() - started
            log(f"{n + 1:,} inputs, {wall:,.0f} s, VmHWM {vm_hwm() / 2**20:.0f} MiB")
    return tally, time.monotonic() - started


def _outcome(call: Callable[..., object], *args: Any) -> str:
    try:
        call(*args)
    except SnapsyncError as exc:
        return type(exc).__name__
    except BaseException as exc:  # anything else is a bug: recorded
        return f"ESCAPED {type(exc).__name__}: {exc!s:.80}"
    return "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--objects", type=int, default=60, help="objects in the held base")
    parser.add_argument("--trace-every", type=int, default=200, help="tracemalloc every Nth input")
    parser.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    tally, wall = run(
        args.inputs,
        args.seed,
        args.objects,
        args.trace_every,
        args.crashes,
        lambda line: print(line, file=sys.stderr, flush=True),
    )
    errors: Counter[str] = Counter()
    for key, count in tally.outcomes.items():
        errors[key.split(": ", 1)[1]] += count
    figures = {
        "inputs": tally.inputs,
        "seed": args.seed,
        "base_objects": args.objects,
        "wall_seconds": round(wall, 1),
        "outcomes": dict(sorted(errors.items())),
        "outcomes_by_input_kind": dict(sorted(tally.outcomes.items())),
        "server_statuses": dict(sorted(tally.statuses.items())),
        "escapes": tally.escapes,
        "peak_traced_bytes_per_input": tally.traced_peak,
        "process_vmhwm_bytes": vm_hwm(),
        "memory_bound_bytes": MEMORY_BOUND,
    }
    text = json.dumps(figures, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 1 if tally.escapes or tally.traced_peak > MEMORY_BOUND else 0


if __name__ == "__main__":
    sys.exit(main())
