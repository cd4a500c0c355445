"""bench/bench_server_load.py end to end on a tiny fleet: a real `snapsync serve`, first versions
seeded through the store, the lean load client (tools/loadclient.py), closed-loop rounds and the
open loop. What is asserted is what was stored and counted, never a timing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from tools.loadclient import Connection
from tools.serving import serving

ROOT = Path(__file__).resolve().parent.parent
BENCH = [sys.executable, str(ROOT / "bench" / "bench_server_load.py")]
TINY = ["--agents", "6", "--objects", "60", "--stores", "sqlite", "--processes", "1"]
TINY += ["--seeds", "2", "--state-cache-mb", "64"]


def rows(report: Path) -> list[list[str]]:
    lines = [line for line in report.read_text().splitlines() if line.startswith("| sqlite")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_closed_loop_rounds_apply_every_delta(tmp_path: Path) -> None:
    out = tmp_path / "load.md"
    args = [*TINY, "--cycles", "3", "--round", "4", "--output", str(out)]
    subprocess.run([*BENCH, *args], check=True, cwd=ROOT, timeout=300, capture_output=True)
    (row,) = rows(out)
    assert row[4] == "12"  # 6 sites x cycles 2..3 measured (cycle 1 is the cold one)
    assert row[7].endswith("pairs)") and "3 pairs" in row[7]  # 12 deltas in rounds of 4
    assert row[-1] == "0"  # none failed


def test_open_loop_sends_each_site_one_delta_per_interval(tmp_path: Path) -> None:
    out = tmp_path / "open.md"
    for warm in ([], ["--warm"]):
        args = [*TINY, "--open-loop", "--interval", "2", "--cycles", "3", *warm]
        subprocess.run([*BENCH, *args, "--output", str(out)], check=True, cwd=ROOT, timeout=300)
        (row,) = rows(out)
        assert row[4] == "3.0"  # 6 sites every 2 s offered
        assert row[-1] == "0 (0)"  # none failed, no 503 resent


def test_the_lean_client_keeps_its_connection_and_reopens_a_closed_one(tmp_path: Path) -> None:
    with serving(str(tmp_path / "s.db"), tmp_path / "serve.log", secret="s" * 32) as server:

        async def exchange() -> list[int]:
            connection = Connection("127.0.0.1", server.port, timeout=30)
            statuses = [(await connection.request("GET", "/healthz"))[0] for _ in range(3)]
            # a refused upload closes the connection (Connection: close); the next request
            # opens a new one
            statuses.append((await connection.request("POST", "/v1/ping", {}, b"x"))[0])
            statuses.append((await connection.request("GET", "/healthz"))[0])
            connection.close()
            return statuses

        statuses = asyncio.run(exchange())
        assert statuses[:3] == [200, 200, 200] and statuses[4] == 200
        assert statuses[3] in (400, 401)
        assert httpx.get(server.url + "/healthz").status_code == 200
