"""A real `snapsync serve` as a child process on a free loopback port, started and waited for until
it answers /readyz: the one way the tests, benchmarks and tools run a real server.

    with serving(database, log, "--workers", "2", secret=SECRET) as server:
        httpx.get(server.url + "/metrics")  # server.port, server.process.pid for /proc figures

`ServeProcess` can also be started, killed and started again on the same port and database (a
crash and restart). The agent secret goes by environment (SNAPSYNC_AGENT_SECRET), never argv;
the server's output goes to `log`, whose tail a failed start reports. Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0  # seconds for a server to answer /readyz
STOP_TIMEOUT = 30.0  # seconds for it to stop after SIGTERM, before SIGKILL


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServeProcess:
    """`snapsync serve --database DATABASE [OPTIONS]` on `port`, its output appended to `log`.

    `env`: more environment variables (PYTHONPATH to run another checkout, from `cwd`). With
    `--tls-cert` among the options the URL is https (readiness does not verify the certificate).
    """

    database: str
    log: Path
    options: tuple[str, ...] = ()
    secret: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        scheme = "https" if "--tls-cert" in self.options else "http"
        return f"{scheme}://{HOST}:{self.port}"

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the process and return once /readyz answers 200; RuntimeError with the log's
        tail when it exits first or is not ready in time."""
        args = [sys.executable, "-m", "snapsync", "serve", "--host", HOST,
                "--port", str(self.port), "--database", self.database, *self.options]  # fmt: skip
        env = {**os.environ, **self.env}
        if self.secret is not None:
            env["SNAPSYNC_AGENT_SECRET"] = self.secret
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log, env=env, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"snapsync serve did not become ready: {tail}")
            time.sleep(0.1)

    def ready(self, timeout: float = 2.0) -> bool:
        try:
            answer = httpx.get(self.url + "/readyz", verify=False, timeout=timeout)
            return answer.status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed or closed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it does not end in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def serving(
    database: str,
    log: Path,
    *options: str,
    secret: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[ServeProcess]:
    """A started ServeProcess, stopped when the block ends."""
    server = ServeProcess(database, log, options, secret, env or {}, cwd)
    try:
        server.start()
        yield server
    finally:
        server.stop()
