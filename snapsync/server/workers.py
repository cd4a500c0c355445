"""Several server processes behind one address: `snapsync serve --workers N`.

The parent binds the listening socket, then forks N children before it opens a database or
starts a thread; each child opens its own store and runs uvicorn on the inherited socket, and
the kernel hands each new connection to one of them. The parent only waits, passes SIGTERM and
SIGINT on, and exits with the first failure.

What makes it safe: every process keeps its state in the database. Commits for one environment
are serialized by the database (SQLite's writer lock, PostgreSQL's advisory lock per
environment), each numbering itself after the newest it sees; a process's cache of newest
versions is used only when it still is the newest at commit time (store/versions.py), else the
object rows decide; and nonces of signed requests go to the database, so a replay to another
process is refused.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable
from contextlib import suppress


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_workers(workers: int, sock: socket.socket, serve: Callable[[socket.socket], None]) -> int:
    """Fork `workers` children that each run `serve(sock)`; the exit status of the group."""
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                serve(sock)
            except BaseException as exc:
                print(f"snapsync serve worker {os.getpid()}: {exc}", file=sys.stderr)
                status = 1
            finally:
                os._exit(status)
        children.append(pid)
    sock.close()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for _ in children:
        _, code = os.wait()
        if code and not status:
            status = 1
            forward(signal.SIGTERM, None)
    return status
