"""#18's real-process check: `snapsync serve` and `snapsync agent --from-file`, fixed vs paced.

Two real processes on loopback: `snapsync serve` (SQLite file) and `snapsync agent --from-file`
(the CLI, its budget policy set by --budget-policy), collecting a kubectl dump rewritten every
second (a minute of steady churn each time: more than the budget carries), every 2 s, through
tools.fault_proxy (in this process), which counts what crosses the link (TCP payload + 52 B of
TCP/IP headers per segment). The budget: BUDGET per PERIOD seconds; paced: interval floor 2 s,
ceiling 20 s; pings every 20 s.

Figures come from outside the agent: versions and their arrival times from the server's browse
API, wire bytes per budget period from the proxy (sampled at each period boundary), the pace
from the agent's own log lines (what an operator sees).

    python bench/check_budget_real.py [--minutes 6] [--period 120] [--budget 20kB]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx

from snapsync.agent.wire import HEADER_IPV4
from snapsync.protocol.budget import period_start
from snapsync.sim.sample_cluster import SampleCluster
from snapsync.units import parse_size
from tools.fault_proxy import FaultProxy, ProxyThread
from tools.serving import HOST, ServeProcess

EDGE = "site-18"
SECRET = "pacing check secret"
TOKEN = "pacing check token"
PACE = re.compile(r"pace='interval \S+ \(([^:)]+)")  # the reason, from the agent's log line


def rewrite_every_second(dump: Path, stop: threading.Event) -> None:
    cluster = SampleCluster(objects=40, seed=5)
    while not stop.is_set():
        cluster.step("steady", 1.0)
        fresh = dump.with_suffix(".tmp")
        fresh.write_text(json.dumps(cluster.list_document()))
        os.replace(fresh, dump)
        stop.wait(1.0)


def wire(proxy: FaultProxy) -> int:
    return proxy.settled() + proxy.segments() * HEADER_IPV4


def agent(policy: str, url: str, dump: Path, tmp: Path, limit: int, period: int) -> list[str]:
    """The `snapsync agent` command line: the CLI process, as an operator runs it."""
    command = [sys.executable, "-m", "snapsync", "agent", "--from-file", str(dump)]
    command += ["--server-url", url, "--edge-id", EDGE, "--state-dir", str(tmp / "state")]
    command += ["--snapshot-interval", "2", "--ping-interval", "20"]
    command += ["--budget", str(limit), "--budget-period", str(period)]
    command += ["--budget-policy", policy]
    command += ["--upload-interval-floor", "2", "--upload-interval-ceiling", "20"]
    return command


def run(policy: str, limit: int, period: int, minutes: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        options = ("--api-token", TOKEN)
        server = ServeProcess(str(tmp / "server.db"), tmp / "serve.log", options, secret=SECRET)
        server.start()
        stop = threading.Event()
        dump = tmp / "dump.json"
        writer = threading.Thread(target=rewrite_every_second, args=(dump, stop), daemon=True)
        log = tmp / "agent.log"
        try:
            with ProxyThread(target=(HOST, server.port)) as proxy, log.open("wb") as out:
                host, proxy_port = proxy.address
                writer.start()
                while not dump.exists():
                    time.sleep(0.1)
                url = f"http://{host}:{proxy_port}"
                env = {**os.environ, "SNAPSYNC_AGENT_SECRET": SECRET}
                process = subprocess.Popen(
                    agent(policy, url, dump, tmp, limit, period), stderr=out, env=env
                )
                per_period: list[int] = []
                counted, current = 0, period_start(str(period), time.time())
                end = time.time() + minutes * 60
                try:
                    while time.time() < end and process.poll() is None:
                        time.sleep(0.1)
                        now = time.time()
                        if period_start(str(period), now) != current:
                            total = wire(proxy)
                            per_period.append(total - counted)
                            counted, current = total, period_start(str(period), now)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                answer = httpx.get(
                    f"{server.url}/api/v1/environments/{EDGE}/versions?limit=1000",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=10,
                )
                answer.raise_for_status()
            paces = [line for line in log.read_text().splitlines() if PACE.search(line)]
        finally:
            stop.set()
            server.stop()
    arrivals = sorted(
        datetime.fromisoformat(v["received_at"].replace("Z", "+00:00")).timestamp()
        for v in answer.json()["versions"]
    )
    first_full = arrivals[0] + period  # after the first snapshot's period
    later = [t for t in arrivals if t >= first_full]
    gaps = [b - a for a, b in itertools.pairwise(later)]
    return {
        "policy": policy,
        "versions": len(arrivals),
        "longest_gap_s": round(max(gaps), 1) if gaps else None,
        "wire_per_period": per_period[1:],  # whole periods only
        "budget": limit,
        "paces": dict(Counter(PACE.search(line)[1] for line in paces)),  # type: ignore[index]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--period", type=int, default=120)
    parser.add_argument("--budget", default="20kB")
    args = parser.parse_args()
    limit = parse_size(args.budget)
    for policy in ("fixed", "paced"):
        print(json.dumps(run(policy, limit, args.period, args.minutes)), flush=True)


if __name__ == "__main__":
    main()
