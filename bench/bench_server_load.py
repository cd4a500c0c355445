"""Many simulated sites against `snapsync serve` on loopback: deltas applied per second and
upload latency (p50/p99), as a ratio to no-op requests per second, with SQLite and PostgreSQL,
environments of several sizes, one or more server processes.

    python bench/bench_server_load.py                       # the whole matrix (long)
    python bench/bench_server_load.py --quick               # 50 sites of 300 objects, SQLite
    python bench/bench_server_load.py --objects 1500 --agents 2000 --stores sqlite --processes 1

Each site is an environment of its own (an edge id, signed requests with the shared agent
secret) that ships what a real agent ships: first its whole snapshot, then, cycle after cycle,
the codec's smallest frame (snapsync.codec.encode.encode_delta) from one state of a churning
sample cluster (snapsync.sim.sample_cluster, "steady" churn, one minute per cycle) to the next.
Clusters are precomputed for a few seeds and shared between sites (each environment still
stores and verifies its own copy), so the generator spends its CPU on HTTP, not on diffing.
A cycle is 300/objects minutes of churn (one minute at 300 objects): every delta carries about
the change of a 300-object cluster's minute whatever the size (the "mean delta bytes" column
shows it), so the rows compare environment sizes, not delta sizes (`--churn-minutes 1`: a
whole minute of the bigger cluster).
Sites times objects is capped by `--max-rows` (the first phase stores every site's whole
snapshot): the report says how many sites a row really ran.

The no-op figure: the same client, against the same server in the same run, right before the
deltas, sends as many GET /healthz (a request that touches no store) as it will send deltas,
with the same concurrency: deltas/s divided by that is the "ratio" column, which is what to
compare between runs on a shared machine.

The server is a real `snapsync serve` child process (`--workers N` for N processes behind one
address); the sites are asyncio tasks in this process with at most `--concurrency` requests in
flight, like a fleet whose agents happen to call at the same moment. Each site keeps its own
keep-alive connection, as an agent does (it outlives the agent's minute between calls), so with
several processes a site's uploads stay with the process that accepted its connection, whose
kept state is hot; `--shared-connections` sends every site's requests over one pool of
`--concurrency` connections instead (as the runs before 2026-12-03 16:30 did), so a site's
consecutive uploads land on any process, which must first read or catch up its state.
PostgreSQL is started by the benchmark in a temporary directory (tests/support_postgres.py) with
durable settings (fsync on), as SQLite runs with synchronous=FULL. Both share the machine's cores
with the load generator, so read the figures as relative. `--state-cache-mb` sizes each
process's cache of newest versions: with fewer megabytes than the sites' snapshots need (~6x
their msgpack size), sites called in turn are each cold at every delta. Results go to
bench/results/server_load.md. A benchmark reports; tests assert.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import platform
import ssl
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snapsync.agent.transport import PATHS  # noqa: E402
from snapsync.canonical.profile import load_profile  # noqa: E402
from snapsync.canonical.snapshot import Snapshot, build_snapshot  # noqa: E402
from snapsync.codec.encode import encode_delta, encode_snapshot  # noqa: E402
from snapsync.protocol.auth import sign  # noqa: E402
from snapsync.protocol.messages import Chunk, UploadReply, decode  # noqa: E402
from snapsync.sim.sample_cluster import SampleCluster  # noqa: E402
from tools.serving import serving  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "server_load.md"
SECRET = "bench shared secret"


@dataclass(frozen=True)
class Upload:
    frame: bytes
    base: bytes
    target: bytes

    def body(self) -> bytes:
        upload = hashlib.blake2b(self.frame, digest_size=8).digest()
        chunk = Chunk(upload, self.base, self.target, len(self.frame), 0, self.frame)
        return chunk.encode()


@dataclass
class Result:
    store: str
    objects: int
    processes: int
    agents: int
    noop_per_second: float
    frames: int
    deltas: int
    seconds: float
    p50_ms: float
    p99_ms: float
    full_seconds: float
    delta_bytes: float
    failed: int


def cluster_frames(seed: int, objects: int, cycles: int, minutes: float) -> list[Upload]:
    """A full snapshot, then `cycles` deltas of a churning cluster, `minutes` apart."""
    profile = load_profile()
    cluster = SampleCluster(objects=objects, shape="application", seed=seed)
    states: list[Snapshot] = [build_snapshot(cluster.objects(), profile)]
    for _ in range(cycles):
        cluster.step(churn="steady", minutes=minutes)
        states.append(build_snapshot(cluster.objects(), profile))
    uploads = [Upload(encode_snapshot(states[0]), b"", states[0].digest)]
    for base, new in itertools.pairwise(states):
        uploads.append(Upload(encode_delta(base, new).frame, base.digest, new.digest))
    return uploads


@contextmanager
def serve(database: str, log: Path, processes: int = 1, cache_mb: int = 0) -> Iterator[str]:
    options: tuple[str, ...] = ("--workers", str(processes)) if processes > 1 else ()
    if cache_mb:
        options += ("--state-cache-mb", str(cache_mb))
    with serving(database, log, *options, secret=SECRET, cwd=ROOT) as server:
        yield server.url


async def post(
    client: httpx.AsyncClient, edge: str, upload: Upload, latencies: list[float] | None
) -> str:
    """'' when the frame was acknowledged, else why not."""
    body = upload.body()
    headers = {
        "Authorization": sign(SECRET.encode(), "POST", PATHS[Chunk.TYPE], edge, body, time.time()),
        "Content-Type": "application/msgpack",
    }
    started = time.perf_counter()
    for attempt in range(3):  # a keep-alive connection the server just closed: resend, as an
        try:  # agent would (an upload is idempotent)
            answer = await client.post(PATHS[Chunk.TYPE], content=body, headers=headers)
            break
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            if attempt == 2:
                return type(exc).__name__
            headers["Authorization"] = sign(
                SECRET.encode(), "POST", PATHS[Chunk.TYPE], edge, body, time.time()
            )
        except httpx.HTTPError as exc:
            return type(exc).__name__
    if latencies is not None:
        latencies.append(time.perf_counter() - started)
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}"
    reply = decode(answer.content, UploadReply)
    assert isinstance(reply, UploadReply)
    return "" if reply.status == "ack" else f"{reply.status} {reply.reason}".strip()


async def noop_rate(client: httpx.AsyncClient, requests: int, concurrency: int) -> float:
    """GET /healthz per second with `concurrency` in flight: the server's floor per request."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            (await client.get("/healthz")).raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    return requests / (time.perf_counter() - started)


async def run_fleet(
    url: str, agents: int, sequences: list[list[Upload]], concurrency: int, shared: bool
) -> tuple[float, float, float, list[float], int]:
    """Phase 1: every site's full snapshot. Phase 2: as many no-op requests as deltas follow.
    Phase 3 (measured): every site's deltas, in order. `shared`: one connection pool for every
    site, else a connection per site."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    failures: Counter[str] = Counter()
    latencies: list[float] = []
    plain = ssl.create_default_context()  # one for every client: http:// never uses it
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        own: dict[int, httpx.AsyncClient] = {}

        def connection(i: int) -> httpx.AsyncClient:
            if shared:
                return client
            if i not in own:
                one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
                own[i] = httpx.AsyncClient(base_url=url, limits=one, timeout=120, verify=plain)
            return own[i]

        async def agent(i: int, uploads: list[Upload], timed: bool) -> None:
            for upload in uploads:
                async with gate:
                    why = await post(
                        connection(i), f"edge-{i:05d}", upload, latencies if timed else None
                    )
                if why:
                    failures[why] += 1

        started = time.perf_counter()
        await asyncio.gather(
            *(agent(i, sequences[i % len(sequences)][:1], False) for i in range(agents))
        )
        full_seconds = time.perf_counter() - started
        deltas = sum(len(sequences[i % len(sequences)]) - 1 for i in range(agents))
        noop = await noop_rate(client, deltas, concurrency)
        started = time.perf_counter()
        await asyncio.gather(
            *(agent(i, sequences[i % len(sequences)][1:], True) for i in range(agents))
        )
        seconds = time.perf_counter() - started
        await asyncio.gather(*(one.aclose() for one in own.values()))
    if failures:
        print(f"  not acknowledged: {dict(failures)}", flush=True)
    return full_seconds, noop, seconds, latencies, sum(failures.values())


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def measure(
    store: str, database: str, objects: int, processes: int, agents: int,
    sequences: list[list[Upload]], concurrency: int, log: Path, cache_mb: int = 0,
    shared: bool = False,
) -> Result:  # fmt: skip
    with serve(database, log, processes, cache_mb) as url:
        full_seconds, noop, seconds, latencies, failed = asyncio.run(
            run_fleet(url, agents, sequences, concurrency, shared)
        )
    deltas = agents * (len(sequences[0]) - 1)
    delta_bytes = sum(len(u.frame) for s in sequences for u in s[1:]) / sum(
        len(s) - 1 for s in sequences
    )
    return Result(
        store, objects, processes, agents, noop, agents + deltas, deltas, seconds,
        percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000,
        full_seconds, delta_bytes, failed,
    )  # fmt: skip


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        "# Server load: simulated sites against `snapsync serve` on loopback",
        "",
        f"`python bench/bench_server_load.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        f"; load generator in the same machine; {args.concurrency} requests in flight at most"
        f" ({'one pool' if args.shared_connections else 'one connection per site'});"
        f" {args.cycles} delta cycles per site (steady churn,"
        f" {args.churn_minutes or '300/objects'} minutes per cycle). Load average when done"
        " (other work shares this machine):"
        f" {' '.join(f'{x:.1f}' for x in os.getloadavg())}.",
        "",
        "| store | processes | objects | sites | deltas applied | deltas/s | no-op req/s | ratio "
        "| p50 ms | p99 ms | mean delta bytes | full snapshots (s) | failed |",
        "| --- " + "| ---: " * 12 + "|",
    ]
    for r in results:
        rate = r.deltas / r.seconds
        lines.append(
            f"| {r.store} | {r.processes} | {r.objects:,} | {r.agents:,} | {r.deltas:,} | "
            f"{rate:,.0f} | {r.noop_per_second:,.0f} | {rate / r.noop_per_second:.2f} | "
            f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.delta_bytes:,.0f} | {r.full_seconds:.1f} | "
            f"{r.failed} |"
        )
    lines += [
        "",
        "deltas/s: verified, applied and committed frames per second in the measured phase "
        "(every site ships its deltas one after another); no-op req/s: GET /healthz from the "
        "same client, same concurrency, right before; ratio: the two divided; latency: one "
        "upload request, "
        "signed, sent and answered (`ack`). Full snapshots: wall time of the first phase, in "
        "which every site ships its whole snapshot (not in the latency figures).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 sites of 300 objects, SQLite")
    parser.add_argument("--agents", type=int, action="append", help="sites; repeatable")
    parser.add_argument("--objects", type=int, action="append", help="per site; repeatable")
    parser.add_argument("--processes", type=int, action="append", help="repeatable")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--max-rows", type=int, default=3_000_000, help="sites x objects cap")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument(
        "--churn-minutes", type=float, help="per cycle (default: 300/objects, at most 1)"
    )
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--state-cache-mb", type=int, default=0, help="per server process (0: serve's default)"
    )
    parser.add_argument(
        "--shared-connections", action="store_true", help="one pool for all sites (see above)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    fleet_sizes = args.agents or ([50] if args.quick else [2000, 20000])
    sizes = args.objects or ([300] if args.quick else [300, 1500, 10000])
    processes = args.processes or [1, 2]
    if args.quick:
        args.cycles, args.seeds, args.stores = min(args.cycles, 2), min(args.seeds, 3), "sqlite"
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="snapsync-bench-") as tmp, ExitStack() as stack:
        log = Path(tmp) / "serve.log"
        postgres = None
        for objects in sizes:
            print(f"preparing {args.seeds} clusters of {objects} objects ...", flush=True)
            minutes = args.churn_minutes or min(1.0, 300 / objects)
            sequences = [
                cluster_frames(seed, objects, args.cycles, minutes) for seed in range(args.seeds)
            ]
            for store, workers in itertools.product(args.stores.split(","), processes):
                for sites in sorted({min(n, max(args.concurrency, args.max_rows // objects))
                                     for n in fleet_sizes}):  # fmt: skip
                    if store == "sqlite":
                        database = str(Path(tmp) / f"load-{objects}-{sites}-{workers}.db")
                    else:
                        if postgres is None:
                            from tests.support_postgres import create_database, running_postgres

                            postgres = stack.enter_context(running_postgres(durable=True))
                        database = create_database(postgres)
                    print(f"{store} x{workers}: {sites} sites of {objects} objects", flush=True)
                    result = measure(
                        store, database, objects, workers, sites, sequences, args.concurrency,
                        log, args.state_cache_mb, args.shared_connections,
                    )  # fmt: skip
                    rate = result.deltas / result.seconds
                    print(
                        f"  {rate:,.0f} deltas/s ({rate / result.noop_per_second:.2f} x no-op), "
                        f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
                        f"failed {result.failed}",
                        flush=True,
                    )
                    results.append(result)
                    if store == "sqlite":
                        for path in Path(tmp).glob("load-*.db*"):
                            path.unlink()
    text = report(results, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
