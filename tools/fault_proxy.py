"""A fault-injecting TCP proxy for loopback tests: a bad mobile link between agent and server.

Kernel traffic shaping is not available on the test machines, so this is how traffic is shaped.
Every accepted connection gets one `Fault` (chosen when it opens: queued faults first, then the
time window it opens in, then the default) and the proxy relays bytes both ways applying it:

    pass          relay untouched
    refuse        accept and reset at once, never reaching the server ("connection refused")
    drop          relay `after` bytes of the request, then reset both sides (cut mid-request)
    drop-answer   relay the request, then `after` bytes of the answer, then reset (server acted)
    stall         hold the request for `seconds` before relaying (the client's timeout fires)
    throttle      relay at `rate` bytes per second each way
    corrupt       flip one bit of the request at byte `after` (the signature then fails)
    corrupt-answer  flip one bit of the answer at byte `after`
    truncate      relay `after` bytes of the request, then half-close towards the server
    flaky         per connection, one of the faults above at random (seeded), `probability`

Connections count from 0; counters (`stats`) say what happened, for assertions. Keep-alive HTTP
clients carry several requests per connection: byte offsets count from the connection's start.

A NAT: `idle_cut` seconds without a byte either way and the connection is reset on both sides
(a carrier's NAT drops the mapping silently; the reset spares a test the client's timeout), and
`cut()` resets every open connection at once (a NAT timeout, or a server restart, on demand).

Counting (what a carrier would bill, measured outside the agent): bytes relayed each way, and,
on Linux, the TCP segments of the client-facing sockets (`TCP_INFO`; `segments()`), so that
payload + segments x header size can be set against the agent's own count. The first answer
bytes of a connection are read as a TLS ServerHello: a `pre_shared_key` extension in it means
the server resumed a session (`stats.resumed`), otherwise it is a full handshake (`stats.full`).

From a test (the proxy runs its own event loop in a thread):

    with ProxyThread(target=("127.0.0.1", server_port)) as proxy:
        proxy.queue(Fault("refuse"), Fault("drop", after=300))   # the next two connections
        proxy.default = Fault("throttle", rate=4000)              # then every connection
        proxy.windows.append(Window(5.0, 20.0, Fault("refuse")))  # seconds after start
        url = proxy.url                                           # http://127.0.0.1:<port>
        ... proxy.stats.connections, proxy.stats.bytes_up ...

By hand:

    python -m tools.fault_proxy --listen 127.0.0.1:9480 --target 127.0.0.1:8480 \\
        --mode flaky --probability 0.3 --seed 1
    python -m tools.fault_proxy --listen 127.0.0.1:9480 --target 127.0.0.1:8480 \\
        --mode throttle --rate 2000
    python -m tools.fault_proxy --listen 127.0.0.1:9480 --target 127.0.0.1:8480 --idle-cut 30

Invariants: every connection ends (a fault never leaves a socket open past its peers), the
proxy never alters bytes except as its fault says, and one seed gives one sequence of faults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

MODES = (
    "pass",
    "refuse",
    "drop",
    "drop-answer",
    "stall",
    "throttle",
    "corrupt",
    "corrupt-answer",
    "truncate",
)
PIECE = 4096


@dataclass(frozen=True)
class Fault:
    """What to do to one connection."""

    mode: str = "pass"
    after: int = 0  # byte offset for drop, drop-answer, corrupt, corrupt-answer, truncate
    seconds: float = 0.0  # stall
    rate: float = 0.0  # throttle: bytes per second each way

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown fault mode {self.mode!r}; expected one of {MODES}")


@dataclass(frozen=True)
class Window:
    """`fault` for connections opened between `start` and `end` seconds after the proxy started."""

    start: float
    end: float
    fault: Fault


@dataclass
class Stats:
    connections: int = 0
    bytes_up: int = 0  # client -> server, as relayed
    bytes_down: int = 0  # server -> client, as relayed
    faults: Counter[str] = field(default_factory=Counter)  # mode -> connections it was applied to
    upstream_errors: int = 0  # the server could not be reached
    cuts: int = 0  # connections reset as a NAT would (idle_cut, cut())
    full: int = 0  # TLS handshakes without resumption, as read from the ServerHello
    resumed: int = 0  # TLS handshakes that resumed a session (pre_shared_key accepted)
    closed_segments: int = 0  # TCP segments of client connections that ended


@dataclass
class FaultProxy:
    """The proxy itself, on the caller's event loop (see ProxyThread for synchronous tests)."""

    target: tuple[str, int]
    listen: tuple[str, int] = ("127.0.0.1", 0)
    default: Fault = field(default_factory=Fault)
    windows: list[Window] = field(default_factory=list)
    flaky: float = 0.0  # with this probability a connection gets a random fault instead
    seed: int = 0
    idle_cut: float = 0.0  # reset a connection idle this many seconds (0: never), as a NAT
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self._queued: list[Fault] = []
        self._lock = threading.Lock()  # tests set faults from another thread
        self._rng = random.Random(self.seed)
        self._server: asyncio.Server | None = None
        self._started = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.address: tuple[str, int] = self.listen

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"

    def queue(self, *faults: Fault) -> None:
        """The next connections get these faults, in order."""
        with self._lock:
            self._queued.extend(faults)

    @property
    def waiting(self) -> int:
        """Queued faults that no connection has taken yet."""
        with self._lock:
            return len(self._queued)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = time.monotonic()
        self._server = await asyncio.start_server(self._handle, *self.listen)
        sock = self._server.sockets[0]
        self.address = sock.getsockname()[:2]

    def cut(self) -> int:
        """Reset every open connection; returns how many. Callable from any thread."""
        return self._on_loop(self._cut)

    def segments(self) -> int:
        """TCP segments the clients' connections carried both ways so far (Linux; else 0)."""
        return self._on_loop(self._segments)

    def settled(self) -> int:
        """Bytes relayed both ways, once the relay has stopped moving: it counts after it
        forwards, so a client can have read an answer the count does not hold yet."""
        last = -1
        for _ in range(50):
            relayed = self.stats.bytes_up + self.stats.bytes_down
            if relayed == last:
                break
            last = relayed
            time.sleep(0.02)
        return last

    def _on_loop(self, work: Callable[[], int]) -> int:
        """Run `work` on the proxy's event loop, waiting for it from another thread."""
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._loop:
                return work()

        async def run() -> int:
            return work()

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def _cut(self) -> int:
        links = [link for link in self._links if not link.closed]
        for link in links:
            self._end(link)
            link.abort()
        self.stats.cuts += len(links)
        return len(links)

    def _segments(self) -> int:
        return self.stats.closed_segments + sum(_segments(link.client) for link in self._links)

    def _end(self, link: _Link) -> None:
        """Count a client connection's segments once, before its socket goes."""
        if link in self._links:
            self._links.discard(link)
            self.stats.closed_segments += _segments(link.client)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _choose(self) -> Fault:
        with self._lock:
            if self._queued:
                return self._queued.pop(0)
            elapsed = time.monotonic() - self._started
            for window in self.windows:
                if window.start <= elapsed < window.end:
                    return window.fault
            if self.flaky and self._rng.random() < self.flaky:
                return _random_fault(self._rng)
            return self.default

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        fault = self._choose()
        self.stats.connections += 1
        self.stats.faults[fault.mode] += 1
        try:
            if fault.mode == "refuse":
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), timeout=10
                )
            except (OSError, TimeoutError):
                self.stats.upstream_errors += 1
                return
            link = _Link(writer, up_writer)
            self._links.add(link)
            relays = asyncio.gather(
                self._relay(reader, up_writer, fault, link, upstream=True),
                self._relay(up_reader, writer, fault, link, upstream=False),
            )
            try:
                if self.idle_cut > 0:
                    await self._watch_idle(link, relays)
                else:
                    await relays
            finally:
                self._end(link)
                link.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a reset peer, or the proxy stopping: the connection just ends
        finally:
            _abort(writer)
            if task is not None:
                self._tasks.discard(task)

    async def _watch_idle(self, link: _Link, relays: asyncio.Future[Any]) -> None:
        """Reset the link once it has been idle for `idle_cut` seconds, as a NAT forgets it."""
        while not relays.done():
            idle = time.monotonic() - link.active
            if idle >= self.idle_cut:
                self.stats.cuts += 1
                self._end(link)
                link.abort()
                break
            await asyncio.wait([relays], timeout=self.idle_cut - idle)
        with contextlib.suppress(Exception):
            await relays

    async def _relay(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        fault: Fault,
        link: _Link,
        *,
        upstream: bool,
    ) -> None:
        mode, sent = fault.mode, 0
        if upstream and mode == "stall":
            await asyncio.sleep(fault.seconds)
        piece = max(1, min(PIECE, int(fault.rate / 10))) if mode == "throttle" else PIECE
        cut = {"drop": upstream, "truncate": upstream, "drop-answer": not upstream}.get(mode)
        flip = {"corrupt": upstream, "corrupt-answer": not upstream}.get(mode)
        while not link.closed:
            try:
                data = await source.read(piece)
            except (OSError, asyncio.CancelledError):
                break
            if not data:
                break
            if flip and sent <= fault.after < sent + len(data):
                at = fault.after - sent
                data = data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]
            if cut and sent + len(data) > fault.after:
                data = data[: fault.after - sent]
                await self._write(sink, data, upstream, link)
                if mode == "truncate":
                    with contextlib.suppress(OSError):
                        sink.write_eof()
                    return  # the rest of the request is swallowed; the answer still flows
                link.abort()
                return
            sent += len(data)
            await self._write(sink, data, upstream, link)
            if mode == "throttle" and fault.rate > 0:
                await asyncio.sleep(len(data) / fault.rate)
        if not link.closed:
            with contextlib.suppress(OSError):
                if sink.can_write_eof():
                    sink.write_eof()

    async def _write(
        self, sink: asyncio.StreamWriter, data: bytes, upstream: bool, link: _Link | None = None
    ) -> None:
        if not data:
            return
        sink.write(data)
        await sink.drain()
        if upstream:
            self.stats.bytes_up += len(data)
        else:
            self.stats.bytes_down += len(data)
        if link is not None:
            link.active = time.monotonic()
            if not upstream and link.hello is not None:
                self._read_hello(link, data)

    def _read_hello(self, link: _Link, data: bytes) -> None:
        """Classify the connection's TLS handshake from the ServerHello (first answer bytes)."""
        hello = link.hello = (link.hello or b"") + data
        resumed = _resumed(hello)
        if resumed is None and len(hello) < 4096:
            return  # not all of it yet
        link.hello = None
        if resumed is not None:
            self.stats.resumed += resumed
            self.stats.full += not resumed


class _Link:
    """Both sockets of one proxied connection, so a fault can reset them together."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client, self.server = client, server
        self.closed = False
        self.active = time.monotonic()  # when a byte last crossed
        self.hello: bytes | None = b""  # answer bytes until the ServerHello is read

    def abort(self) -> None:
        self.closed = True
        _abort(self.client)
        _abort(self.server)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.server.close()
            self.client.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Reset, not a graceful close: what a dropped mobile connection looks like to the peers."""
    with contextlib.suppress(Exception):
        writer.transport.abort()


_TCP_INFO_SEGS_AT = 136  # tcpi_segs_out, tcpi_segs_in in struct tcp_info (Linux >= 4.2)


def _segments(writer: asyncio.StreamWriter) -> int:
    """Segments sent and received on a writer's socket so far (TCP_INFO); 0 where unknown."""
    sock = writer.get_extra_info("socket")
    if sock is None or sys.platform != "linux" or not hasattr(socket, "TCP_INFO"):
        return 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except OSError:
        return 0
    if len(info) < _TCP_INFO_SEGS_AT + 8:
        return 0
    out, into = struct.unpack_from("=II", info, _TCP_INFO_SEGS_AT)
    return int(out + into)


def _resumed(data: bytes) -> bool | None:
    """From the first answer bytes: True if the ServerHello accepts a pre-shared key (a resumed
    TLS 1.3 session), False if it does not, None if this is not (all of) a ServerHello yet."""
    if len(data) < 9 or data[0] != 22 or data[5] != 2:
        return None if len(data) < 9 else False
    end = 9 + int.from_bytes(data[6:9], "big")
    if len(data) < end:
        return None
    at = 9 + 2 + 32  # version, random
    at += 1 + data[at]  # session id
    at += 2 + 1  # cipher suite, compression
    if at + 2 > end:
        return False  # no extensions
    stop = min(end, at + 2 + int.from_bytes(data[at : at + 2], "big"))
    at += 2
    while at + 4 <= stop:
        kind, size = struct.unpack_from(">HH", data, at)
        if kind == 41:  # pre_shared_key
            return True
        at += 4 + size
    return False


def _random_fault(rng: random.Random) -> Fault:
    mode = rng.choice(
        ["refuse", "drop", "drop-answer", "stall", "throttle", "corrupt", "corrupt-answer"]
    )
    return Fault(mode, after=rng.randrange(1, 2000), seconds=rng.uniform(0.5, 5), rate=2000)


class ProxyThread:
    """A FaultProxy on its own event loop in a daemon thread, for synchronous tests."""

    def __init__(self, target: tuple[str, int], **options: object) -> None:
        self.proxy = FaultProxy(target, **options)  # type: ignore[arg-type]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(timeout=10)
        return self.proxy

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fault_proxy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 9480))
    parser.add_argument("--target", type=_address, required=True)
    parser.add_argument("--mode", choices=[*MODES, "flaky"], default="pass")
    parser.add_argument("--after", type=int, default=200, help="byte offset for cuts and flips")
    parser.add_argument("--seconds", type=float, default=10.0, help="stall length")
    parser.add_argument("--rate", type=float, default=2000.0, help="throttle, bytes per second")
    parser.add_argument("--probability", type=float, default=0.3, help="flaky: share of faults")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--idle-cut", type=float, default=0.0, help="reset connections idle this long (a NAT)"
    )
    args = parser.parse_args(argv)
    flaky = args.probability if args.mode == "flaky" else 0.0
    mode = "pass" if args.mode == "flaky" else args.mode
    fault = Fault(mode, after=args.after, seconds=args.seconds, rate=args.rate)

    async def serve() -> None:
        proxy = FaultProxy(
            args.target,
            args.listen,
            default=fault,
            flaky=flaky,
            seed=args.seed,
            idle_cut=args.idle_cut,
        )
        await proxy.start()
        print(f"fault proxy {proxy.url} -> {args.target[0]}:{args.target[1]} ({args.mode})")
        try:
            await asyncio.Event().wait()
        finally:
            await proxy.stop()
            print(
                f"connections={proxy.stats.connections} up={proxy.stats.bytes_up} "
                f"down={proxy.stats.bytes_down} segments={proxy.segments()} "
                f"tls_full={proxy.stats.full} tls_resumed={proxy.stats.resumed} "
                f"cuts={proxy.stats.cuts} faults={dict(proxy.stats.faults)}"
            )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
