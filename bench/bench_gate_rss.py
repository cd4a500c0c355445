"""Unauthenticated and abandoned load against a real `snapsync serve`: its memory (VmRSS and
VmHWM from /proc/PID/status of the server process, read from outside it), the answers, and the
stored state before and after.

    python bench/bench_gate_rss.py                 # 48 garbage connections, 60 abandoned uploads
    python bench/bench_gate_rss.py --connections 80 --uploads 120

Phases, one server process (SQLite, default limits, the shared agent secret):
1. A real snapshot (300 objects) is uploaded and acknowledged: the state that must not change.
2. Garbage bodies: `--connections` clients at once, each declaring and sending 8 MiB of zeros
   under a well-formed header (fresh timestamp, unused nonce, made-up signature): what anyone
   can send, since with a shared secret every edge id is known.
3. Slow holders: as many clients declare 8 MiB and send 64 KiB, then stall for 10 s; a ping
   meanwhile must still be answered; then they hang up mid-body.
4. Abandoned uploads: one signed environment starts `--uploads` uploads of 8 MiB frames, each
   with one 2 MiB chunk, and never finishes any.
Then: a ping is still answered, the acknowledged version is unchanged, the database holds at
most the per-environment cap of unfinished uploads, and the log holds no traceback. Results go
to bench/results/gate_rss.md. A benchmark reports; tests assert.
"""

from __future__ import annotations

import argparse
import platform
import secrets
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_server_load import SECRET  # noqa: E402
from snapsync.agent.transport import PATHS  # noqa: E402
from snapsync.canonical.profile import load_profile  # noqa: E402
from snapsync.canonical.snapshot import build_snapshot  # noqa: E402
from snapsync.codec.encode import encode_snapshot  # noqa: E402
from snapsync.protocol.auth import sign  # noqa: E402
from snapsync.protocol.messages import Chunk, Ping, UploadReply, decode  # noqa: E402
from tools.serving import serving  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gate_rss.md"
MiB = 2**20
BODY = bytes(8 * MiB)  # one buffer shared by every garbage client


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of `pid` in kB, from the kernel."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def forged_header(path: str) -> str:
    edge = "g" + secrets.token_hex(4)
    signature = secrets.token_urlsafe(32)[:43]
    return f"Snapsync e={edge},t={int(time.time())},n={secrets.token_urlsafe(12)},s={signature}"


def head(path: str, length: int, auth: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
        f"Authorization: {auth}\r\n\r\n"
    ).encode()


def status_of(sock: socket.socket) -> str:
    """The status code the server answered, or how the connection ended."""
    answer = b""
    try:
        while piece := sock.recv(65536):
            answer += piece
    except OSError as exc:
        if not answer:
            return type(exc).__name__
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"


def garbage(port: int, sent: int, stall: float, out: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(head(PATHS[Chunk.TYPE], len(BODY), forged_header(PATHS[Chunk.TYPE])))
            sock.sendall(memoryview(BODY)[:sent])
        except OSError:
            pass  # refused before the body: the answer says why
        if stall:
            time.sleep(stall)
            out.append("hung up")
            return
        out.append(status_of(sock))


def crowd(port: int, clients: int, sent: int, stall: float) -> Counter[str]:
    out: list[str] = []
    threads = [
        threading.Thread(target=garbage, args=(port, sent, stall, out)) for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return Counter(out)


def post(url: str, path: str, body: bytes, edge: str) -> httpx.Response:
    auth = sign(SECRET.encode(), "POST", path, edge, body, time.time())
    return httpx.post(url + path, content=body, headers={"Authorization": auth}, timeout=60)


def stored(database: Path) -> tuple[object, ...]:
    with sqlite3.connect(database) as db:
        versions = db.execute("SELECT env, seq, hex(digest) FROM versions ORDER BY 1, 2").fetchall()
        objects = db.execute("SELECT COUNT(*), hex(SUM(LENGTH(data))) FROM objects").fetchone()
    return tuple(versions), objects


def uploads_held(database: Path) -> tuple[int, int]:
    with sqlite3.connect(database) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM uploads").fetchone()
        (size,) = db.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM upload_chunks").fetchone()
    return int(count), int(size)


def run(args: argparse.Namespace) -> str:
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="snapsync-gate-") as tmp:
        database, log = Path(tmp) / "gate.db", Path(tmp) / "serve.log"
        with serving(str(database), log, secret=SECRET, cwd=ROOT) as server:
            url, process = server.url, server.process
            assert process is not None
            port = int(url.rsplit(":", 1)[1])
            snap = build_snapshot(
                [
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}}
                    for i in range(300)
                ],
                load_profile(),
            )
            frame = encode_snapshot(snap)
            chunk = Chunk(b"baseline", b"", snap.digest, len(frame), 0, frame)
            reply = decode(
                post(url, PATHS[Chunk.TYPE], chunk.encode(), "victim").content, (UploadReply,)
            )
            assert isinstance(reply, UploadReply) and reply.status == "ack", reply
            before = stored(database)
            size_before = _on_disk(database)
            rss, hwm = memory(process.pid)
            lines.append(
                f"| start (one version stored) | {rss / 1024:.0f} | {hwm / 1024:.0f} | - |"
            )

            answers = crowd(port, args.connections, len(BODY), 0.0)
            rss, hwm = memory(process.pid)
            lines.append(
                f"| {args.connections} garbage connections, 8 MiB bodies sent whole "
                f"| {rss / 1024:.0f} | {hwm / 1024:.0f} | {_counts(answers)} |"
            )

            holders: list[str] = []
            stall = threading.Thread(
                target=lambda: holders.extend(crowd(port, args.connections, 64 * 1024, 10.0))
            )
            stall.start()
            time.sleep(3)
            ping = post(url, PATHS[Ping.TYPE], Ping().encode(), "victim").status_code
            stall.join()
            rss, hwm = memory(process.pid)
            lines.append(
                f"| {args.connections} slow holders (8 MiB declared, 64 KiB sent, 10 s, hang up) "
                f"| {rss / 1024:.0f} | {hwm / 1024:.0f} | ping during: {ping} |"
            )

            statuses: Counter[str] = Counter()
            for _ in range(args.uploads):
                target = secrets.token_bytes(16)
                piece = Chunk(secrets.token_bytes(8), b"", target, 8 * MiB, 0, BODY[: 2 * MiB])
                answer = post(url, PATHS[Chunk.TYPE], piece.encode(), "victim")
                statuses[str(answer.status_code)] += 1
            rss, hwm = memory(process.pid)
            count, held = uploads_held(database)
            lines.append(
                f"| {args.uploads} abandoned uploads of 2 MiB (8 MiB frames) | {rss / 1024:.0f} "
                f"| {hwm / 1024:.0f} | {_counts(statuses)}; held: {count} uploads, "
                f"{held / MiB:.0f} MiB |"
            )
            after_ping = post(url, PATHS[Ping.TYPE], Ping().encode(), "victim").status_code
            after = stored(database)
            size_after = _on_disk(database)
        logged = log.read_text(errors="replace")
    report = [
        "# The agent endpoint's gate under unauthenticated and abandoned load",
        "",
        f"Command: `python bench/bench_gate_rss.py --connections {args.connections} "
        f"--uploads {args.uploads}`  ",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        "Memory: VmRSS and VmHWM (peak) of the `snapsync serve` process, /proc/PID/status, MB.",
        "",
        "| phase | VmRSS | VmHWM | answers |",
        "|---|---:|---:|---|",
        *lines,
        "",
        f"- Ping after all phases: {after_ping}. Acknowledged versions and objects unchanged: "
        f"{before == after}.",
        f"- Database on disk (file and WAL): {size_before / MiB:.1f} MiB before the phases, "
        f"{size_after / MiB:.1f} MiB after (unfinished uploads are capped per environment: "
        "4 uploads, 32 MiB).",
        f"- Log: {logged.count('Traceback')} tracebacks, "
        f"{logged.count('went away mid-body')} one-line mid-body disconnects, "
        f"{logged.count('busy: no room')} busy refusals, {logged.count('refused /v1')} "
        "authentication refusals.",
    ]
    return "\n".join(report) + "\n"


def _on_disk(database: Path) -> int:
    """The database's bytes on disk: the file and its write-ahead log."""
    wal = database.with_name(database.name + "-wal")
    return database.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{n}x {what}" for what, n in sorted(counter.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=48)
    parser.add_argument("--uploads", type=int, default=60)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    text = run(args)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
