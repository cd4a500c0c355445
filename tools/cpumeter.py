"""CPU seconds of processes and of the whole machine, from /proc (Linux): what a load benchmark
spent where — the server processes, the database's, the load client, and everything else on a
shared machine — over one measured span.

    meter = CpuMeter(server_pid, postmaster(pg_port))
    ...
    meter.spent()  # {"server": s, "database": s, "client": s, "machine": s}
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def descendants(root: int) -> list[int]:
    """`root` and every process below it (from /proc's parent links)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def postmaster(port: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"postgres") and str(port).encode() in argv:
                return int(entry.name)
    return None


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far (every process, neighbours included)."""
    user, nice, system, _, _, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / TICK


class CpuMeter:
    """CPU seconds of the server, the database, this client and the machine between two reads
    (processes that ended meanwhile count up to their last read)."""

    def __init__(self, server: int, database: int | None) -> None:
        self.server, self.database = server, database
        self.start = self.read()

    def read(self) -> dict[str, float]:
        times = resource.getrusage(resource.RUSAGE_SELF)
        shares = {
            "server": sum(proc_cpu(pid) for pid in descendants(self.server)),
            "client": times.ru_utime + times.ru_stime,
            "machine": machine_cpu(),
        }
        if self.database is not None:
            shares["database"] = sum(proc_cpu(pid) for pid in descendants(self.database))
        return shares

    def spent(self) -> dict[str, float]:
        now = self.read()
        return {name: now[name] - self.start[name] for name in now}
