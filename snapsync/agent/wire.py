"""What crosses the socket: an httpcore network backend that counts it and resumes TLS sessions.

The carrier bills packets, not HTTP messages. httpx hands every connection to this backend, so
every byte the agent writes to or reads from a TCP socket is counted here. TLS runs over memory
BIOs (`ssl.SSLObject`) rather than `SSLSocket`, so the bytes counted are the TLS records
themselves: handshakes, certificates, session tickets, record framing and alerts included.

TCP/IP headers are added per segment. On Linux the kernel's own segment counts are read
(`TCP_INFO`: `tcpi_segs_out`/`tcpi_segs_in`, which count SYN, ACK-only, FIN and retransmitted
segments too, at the path's real MSS), after every exchange and before a socket closes, plus the
two segments each way a graceful close still exchanges. Elsewhere they are estimated: one segment
per `ESTIMATED_MSS` bytes of each write and read, and an ACK for each. Each segment is charged
`HEADER_IPV4` bytes (20 IP + 20 TCP + 12 timestamp option, Linux's default) or `HEADER_IPV6`.
The kernel's count was chosen over a constant because the number of segments, not their size,
is what varies: a ping exchange on a kept-alive connection is 4-5 segments, a full handshake a
dozen, and a lossy link retransmits; a constant per exchange would be wrong in every direction.

Resumption: the newest session the server gave a ticket for (TLS 1.3 sends tickets after the
handshake, so it is picked up after reads) is offered when a connection has to be reopened, which
skips the certificate and the key exchange's signature. Whether the server took it is read from
`SSLObject.session_reused`; handshakes are counted as full or resumed.

Answers are read with a cap: while a cap is set (`WireMeter.limit`), application data read after
the handshake may not exceed it; the read that would go beyond fails instead, so a hostile server
cannot make the agent read (or pay for) more than the cap.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpcore

_SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)
HEADER_IPV4 = 52
HEADER_IPV6 = 72
ESTIMATED_MSS = 1448
CLOSE_SEGMENTS = 2  # each way: FIN and the ACK of the peer's FIN
_TCP_INFO_SEGS = struct.Struct("=II")  # tcpi_segs_out, tcpi_segs_in
_TCP_INFO_SEGS_AT = 136  # their offset in struct tcp_info (Linux >= 4.2)
_TCP_ESTABLISHED = 1
RECORD = 16 * 1024 + 256  # the most one TLS record can take on the wire
COALESCE = 64 * 1024  # writes held back at most, to be sent together


class AnswerTooLarge(OSError):
    """A read would take the answer past the cap (mapped to httpcore.ReadError like any OSError)."""


@dataclass
class WireMeter:
    """Running counts for one transport; `total` is what the carrier bills, as near as we know."""

    sent: int = 0  # TCP payload bytes written: TLS records (or plain HTTP)
    received: int = 0  # TCP payload bytes read
    segments: int = 0  # TCP segments both ways, counted or estimated
    header_bytes: int = 0  # TCP/IP headers of those segments
    connections: int = 0
    full_handshakes: int = 0
    resumed_handshakes: int = 0
    refused_resumptions: int = 0  # a session was offered and the server did a full handshake
    limit: int | None = None  # bytes of answer (after the handshake) still allowed, when capped
    over_limit: bool = False
    session: ssl.SSLSession | None = None
    live: set[_Tcp] = field(default_factory=set)

    @property
    def payload(self) -> int:
        return self.sent + self.received

    @property
    def total(self) -> int:
        return self.payload + self.header_bytes

    def cap(self, limit: int | None) -> None:
        """Allow `limit` more bytes of answer to be read (None: no cap)."""
        self.limit, self.over_limit = limit, False

    def settle(self) -> None:
        """Bring the segment counts of live connections up to date (after each exchange)."""
        for tcp in list(self.live):
            tcp.count_segments()

    def _segments(self, count: int, header: int) -> None:
        self.segments += count
        self.header_bytes += count * header


class _Tcp:
    """One TCP connection and its counts."""

    def __init__(self, sock: socket.socket, meter: WireMeter) -> None:
        self.sock = sock
        self.meter = meter
        self.header = HEADER_IPV6 if sock.family == socket.AF_INET6 else HEADER_IPV4
        self.kernel_counts = sys.platform == "linux" and hasattr(socket, "TCP_INFO")
        self.seen = (0, 0)
        meter.connections += 1
        meter.live.add(self)

    def _tcp_info(self) -> tuple[int, int] | None:
        if not self.kernel_counts:
            return None
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        except OSError:
            return None
        if len(info) < _TCP_INFO_SEGS_AT + _TCP_INFO_SEGS.size:
            return None
        out, into = _TCP_INFO_SEGS.unpack_from(info, _TCP_INFO_SEGS_AT)
        return out, into

    def count_segments(self) -> None:
        now = self._tcp_info()
        if now is None:
            return
        added = now[0] - self.seen[0] + now[1] - self.seen[1]
        self.seen = now
        self.meter._segments(max(added, 0), self.header)

    def send(self, data: bytes, timeout: float | None) -> None:
        self.sock.settimeout(timeout)
        view = memoryview(data)
        while view:
            sent = self.sock.send(view)
            self.meter.sent += sent
            if not self.kernel_counts:
                self.meter._segments(-(-sent // ESTIMATED_MSS) + 1, self.header)
            view = view[sent:]

    def recv(self, size: int, timeout: float | None, capped: bool) -> bytes:
        meter = self.meter
        if capped and meter.limit is not None:
            if meter.limit <= 0:
                meter.over_limit = True
                raise AnswerTooLarge("the answer exceeds the cap")
            size = min(size, meter.limit)
        self.sock.settimeout(timeout)
        data = self.sock.recv(size)
        meter.received += len(data)
        if capped and meter.limit is not None:
            meter.limit -= len(data)
        if data and not self.kernel_counts:
            meter._segments(-(-len(data) // ESTIMATED_MSS) + 1, self.header)
        return data

    def close(self) -> None:
        if self in self.meter.live:
            info = self._tcp_info_state()
            self.count_segments()
            if info == _TCP_ESTABLISHED or not self.kernel_counts:
                self.meter._segments(2 * CLOSE_SEGMENTS, self.header)
            self.meter.live.discard(self)
        self.sock.close()

    def _tcp_info_state(self) -> int | None:
        if not self.kernel_counts:
            return None
        try:
            return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        except (OSError, IndexError):
            return None


@contextlib.contextmanager
def _mapped(timeout: type[Exception], other: type[Exception]) -> Iterator[None]:
    """OSError -> httpcore's error types, as httpcore's own backend maps them."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout(str(exc)) from exc
    except (OSError, ssl.SSLError) as exc:
        raise other(str(exc) or type(exc).__name__) from exc


class _Stream(httpcore.NetworkStream):
    """A counted connection as httpcore sees it. Writes are held until the answer is read (or
    enough piles up): a request's head and body then share TLS records and TCP segments
    instead of paying framing for each write."""

    def __init__(self, tcp: _Tcp) -> None:
        self.tcp = tcp
        self.pending = bytearray()

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.pending += buffer
        if len(self.pending) >= COALESCE:
            self._send_pending(timeout)

    def _send_pending(self, timeout: float | None) -> None:
        if self.pending:
            data = bytes(self.pending)
            self.pending.clear()
            with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
                self._send(data, timeout)

    def _send(self, data: bytes, timeout: float | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.tcp.close()

    def get_extra_info(self, info: str) -> Any:
        return _extra(self.tcp.sock, info)


class _PlainStream(_Stream):
    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._send_pending(timeout)
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            return self.tcp.recv(max_bytes, timeout, capped=True)

    def _send(self, data: bytes, timeout: float | None) -> None:
        self.tcp.send(data, timeout)

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            try:
                return _TLSStream(self.tcp, ssl_context, server_hostname, timeout)
            except BaseException:
                self.tcp.close()
                raise


class _TLSStream(_Stream):
    """TLS over memory BIOs on a counted TCP connection."""

    def __init__(
        self,
        tcp: _Tcp,
        context: ssl.SSLContext,
        server_hostname: str | None,
        timeout: float | None,
    ) -> None:
        super().__init__(tcp)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        meter = tcp.meter
        offered = meter.session
        self.tls = context.wrap_bio(
            self.incoming, self.outgoing, server_hostname=server_hostname, session=offered
        )
        self.handshaken = False
        self._io(self.tls.do_handshake, timeout)
        self.handshaken = True
        if self.tls.session_reused:
            meter.resumed_handshakes += 1
        else:
            meter.full_handshakes += 1
            meter.refused_resumptions += offered is not None
        self._keep_session()

    def _io(self, operation: Any, timeout: float | None) -> Any:
        """Run a TLS operation, moving records between the BIOs and the counted socket."""
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                self._flush(timeout)
                data = self.tcp.recv(RECORD, timeout, capped=self.handshaken)
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()
                continue
            self._flush(timeout)
            return result

    def _flush(self, timeout: float | None) -> None:
        pending = self.outgoing.read()
        if pending:
            self.tcp.send(pending, timeout)

    def _keep_session(self) -> None:
        session = self.tls.session
        if session is not None and session.has_ticket:
            self.tcp.meter.session = session

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._send_pending(timeout)
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            try:
                data: bytes = self._io(partial(self.tls.read, max_bytes), timeout)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""  # the peer closed (cleanly or not): h11 decides if that is an error
            self._keep_session()
            return data

    def _send(self, data: bytes, timeout: float | None) -> None:
        while data:
            written: int = self._io(partial(self.tls.write, data), timeout)
            data = data[written:]

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("TLS in TLS (an HTTPS proxy to an HTTPS server) is not counted")

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self.tls
        return super().get_extra_info(info)


def _extra(sock: socket.socket, info: str) -> Any:
    if info == "client_addr":
        return sock.getsockname()
    if info == "server_addr":
        return sock.getpeername()
    if info == "socket":
        return sock
    if info == "is_readable":
        return _readable(sock)
    return None


def _readable(sock: socket.socket) -> bool:
    """The peer sent something or closed: an idle HTTP/1.1 connection is then dead."""
    if sock.fileno() < 0:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class CountingBackend(httpcore.NetworkBackend):
    """httpcore's network backend, counting every byte into `meter`."""

    def __init__(self, meter: WireMeter) -> None:
        self.meter = meter

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        source = None if local_address is None else (local_address, 0)
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            sock = socket.create_connection((host, port), timeout, source_address=source)
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _PlainStream(_Tcp(sock, self.meter))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("the agent talks TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
