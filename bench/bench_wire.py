"""The real wire: what an agent costs on a TLS link, counted by a proxy between it and the server.

    python bench/bench_wire.py             # RSA-2048 and ECDSA P-256, before and after, 10k/month
    python bench/bench_wire.py --quick     # fewer cycles, no 10,000-object run, no real idle gap
    python bench/bench_wire.py --before -  # only the current code

A real `snapsync serve` child process with TLS on loopback (a self-signed certificate of each
kind, tools/certs.py), tools/fault_proxy.py in front of it counting every byte and, on Linux,
every TCP segment of the agent's connection (TCP_INFO on the proxy's socket), and reading each
ServerHello to tell full from resumed handshakes. The agent is the real Agent over the real
HttpTransport; its protocol clock jumps a minute per cycle (the link's real time is
milliseconds), so:

- "kept" runs let the connection live across cycles, as it does in real time when the server's
  keep-alive (`--keep-alive`, 150 s) and the agent's (its longest interval + 60 s) outlive the
  interval; the full run also sleeps one real 65-second idle gap to check that it does;
- "NAT" runs reset the connection before every cycle (`FaultProxy.cut()`), as a carrier NAT that
  forgets idle mappings within a minute does, or as a server with a shorter keep-alive would.

Idle cycles are a ping; upload cycles ship a minute of steady churn of a sample cluster
(snapsync.sim.sample_cluster through snapsync.demo.feed, as tools/traces.py replays it). "Wire" is
the proxy's payload (TLS records) plus 52 bytes of TCP/IP headers (IPv4, TCP timestamps) per
segment counted; the agent's own count (what it charges its budget) is shown against it.

"Before" runs the same driver against the code as it was before issue 15 (`--before REV`,
extracted with `git archive`): a new connection and a full handshake for every exchange (its
pool and uvicorn both dropped connections idle for 5 s, so at 60 s intervals none was reused;
here the proxy cuts them), default httpx headers, and its own estimate of the bytes.

MB/month = 30 days: 43,200 cycles at one a minute, 8,640 at one per 5 minutes (where the
connection does not outlive the interval: the NAT figures). Results: bench/results/wire.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import json
import os
import platform
import shlex
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "73570cc"  # the last commit before issue 15 (the real wire) changed the transport
HEADER = 52  # TCP/IP bytes per segment: 20 IPv4 + 20 TCP + 12 timestamp option
MSS = 1448
MONTH_1MIN, MONTH_5MIN = 43_200, 8_640
SECRET = "bench-wire-secret-0123456789abcdef"
EDGE = "wire-bench"
MINUTE = 60.0


def _load(name: str, path: Path) -> ModuleType:
    """A tool from this tree, whatever tree `snapsync` is imported from."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- the driver: one run, in a process whose `snapsync` is the code under test -------------------


@dataclass(frozen=True)
class RunSpec:
    label: str  # "before" or "after"
    key: str  # rsa, ecdsa
    nat: bool  # cut the connection before every cycle
    objects: int
    idle: int  # idle cycles measured
    uploads: int  # upload cycles measured
    real_gap: float = 0.0  # seconds of real idle time before one more idle cycle (0: none)


class NoCollector:
    """Snapshots are handed to the protocol by the driver (a 10,000-object cluster is kept
    canonical incrementally by snapsync.demo.feed instead of being recanonicalized)."""

    def collect(self, sink: Any) -> None:
        raise RuntimeError("the driver collects")


def drive(spec: RunSpec, tmp: Path) -> dict[str, Any]:
    from snapsync.agent import Agent, HttpTransport
    from snapsync.canonical.profile import load_profile
    from snapsync.demo.feed import ClusterFeed
    from snapsync.protocol import AgentConfig, Intervals
    from snapsync.sim.sample_cluster import SampleCluster

    proxy_tool = _load("wire_fault_proxy", ROOT / "tools" / "fault_proxy.py")
    certs = _load("wire_certs", ROOT / "tools" / "certs.py")
    cert, key = certs.self_signed(tmp, spec.key)
    code = Path(sys.modules["snapsync"].__file__ or "").resolve().parent.parent
    feed = ClusterFeed(SampleCluster(spec.objects, seed=3), load_profile())
    serving = _load("wire_serving", ROOT / "tools" / "serving.py").serving
    with ExitStack() as stack:
        server = stack.enter_context(
            serving(
                str(tmp / "wire.db"), tmp / "serve.log", "--tls-cert", str(cert), "--tls-key",
                str(key), secret=SECRET, env={"PYTHONPATH": str(code)}, cwd=code,
            )
        )  # fmt: skip
        port = server.port
        proxy = stack.enter_context(proxy_tool.ProxyThread(target=("127.0.0.1", port)))
        now = [1_767_225_600.0]
        intervals = Intervals(ping=MINUTE, snapshot=MINUTE, jitter=0.0)
        options: dict[str, Any] = {"insecure": True}
        if "keep_alive" in inspect.signature(HttpTransport).parameters:
            options["keep_alive"] = intervals.longest + 60.0  # as `snapsync agent` sets it
        transport = HttpTransport(
            f"https://127.0.0.1:{proxy.address[1]}", EDGE, SECRET.encode(), **options
        )
        agent = Agent(
            NoCollector(),
            transport,
            tmp / "state",
            AgentConfig(intervals=intervals),
            environment_id=EDGE,
            clock=lambda: now[0],
            seed=1,
        )
        stack.callback(agent.close)

        def cycle(churn: bool, cut: bool) -> dict[str, int]:
            if churn:
                feed.step("steady", 1.0)
            if cut:
                proxy.cut()
            now[0] += MINUTE
            agent.protocol.snapshot_collected(feed.snapshot(), now[0])
            before = _proxy_counts(proxy)
            report = agent.step()
            after = _proxy_counts(proxy)
            out = {k: after[k] - before[k] for k in after}
            out["agent"] = report.wire_bytes
            out["exchanges"] = report.exchanges
            out["in_sync"] = int(report.in_sync)
            return out

        first = cycle(churn=False, cut=False)
        cycles = {
            "idle": [cycle(churn=False, cut=spec.nat) for _ in range(spec.idle)],
            "upload": [cycle(churn=True, cut=spec.nat) for _ in range(spec.uploads)],
        }
        if spec.real_gap:
            time.sleep(spec.real_gap)
            cycles["real_gap"] = [cycle(churn=False, cut=False)]
        return {"spec": spec.__dict__, "first": first, "cycles": cycles}


def _proxy_counts(proxy: Any) -> dict[str, int]:
    last = proxy.settled()
    segments = proxy.segments()
    return {
        "up": proxy.stats.bytes_up,
        "down": proxy.stats.bytes_down,
        "payload": last,
        "segments": segments,
        "wire": last + HEADER * segments,
        "connections": proxy.stats.connections,
        "full": proxy.stats.full,
        "resumed": proxy.stats.resumed,
    }


# -- the parent: runs, tables ----------------------------------------------------------------------


def extract(rev: str, into: Path) -> Path:
    """The tree at `rev`, for the "before" runs."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev], check=True, capture_output=True
    ).stdout
    target = into / f"code-{rev}"
    target.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def run(spec: RunSpec, code: Path, tmp: Path) -> dict[str, Any]:
    """One run in a child process whose `snapsync` comes from `code`."""
    work = Path(tempfile.mkdtemp(dir=tmp))
    env = {**os.environ, "PYTHONPATH": str(code)}
    args = [sys.executable, str(Path(__file__).resolve()), "--driver", json.dumps(spec.__dict__)]
    done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"{spec}: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def averages(cycles: list[dict[str, int]]) -> dict[str, float]:
    keys = ("payload", "segments", "wire", "agent", "connections", "full", "resumed", "exchanges")
    if not cycles:
        return {}
    out = {k: float(mean(c[k] for c in cycles)) for k in keys}
    out["wire_mss"] = float(mean(c["payload"] + HEADER * mss_segments(c) for c in cycles))
    return out


def mss_segments(cycle: dict[str, int]) -> int:
    """Segments the cycle would take at a 1,448-byte MSS (a 1,500-byte MTU with timestamps):
    its data segments each way, an ACK for every two, and the segments loopback counted beyond
    its own data segments (handshake, FIN, ACK-only), whichever is more."""
    data = -(-cycle["up"] // MSS) + -(-cycle["down"] // MSS)
    return max(cycle["segments"], data + -(-data // 2))


def row(label: str, kind: str, nat: str, avg: dict[str, float], n: int) -> str:
    ratio = avg["agent"] / avg["wire"] if avg["wire"] else 0.0
    return (
        f"| {label} | {kind} | {nat} | {n} | {avg['payload']:,.0f} | {avg['segments']:.1f} | "
        f"{avg['wire']:,.0f} | {avg['agent']:,.0f} ({ratio:.2f}x) | {avg['connections']:.2f} | "
        f"{avg['full']:.2f} / {avg['resumed']:.2f} |"
    )


def month(avg: dict[str, float], cycles: int) -> str:
    return f"{avg['wire'] * cycles / 1e6:,.1f} MB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", default=BEFORE, help="git revision to compare ('-': none)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "wire.md")
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:
        spec = RunSpec(**json.loads(args.driver))
        print(json.dumps(drive(spec, Path.cwd())))
        return
    idle, uploads, big = (5, 5, 0) if args.quick else (20, 20, 30)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        codes = {"after": ROOT}
        if args.before != "-":
            codes["before"] = extract(args.before, tmp)
        results = []
        for label, code in codes.items():
            for key in ("rsa", "ecdsa"):
                # before: every exchange reconnected with a full handshake (cut by the proxy)
                for nat in (True,) if label == "before" else (False, True):
                    gap = 65.0 if not args.quick and label == "after" and key == "rsa" else 0.0
                    spec = RunSpec(label, key, nat, 1000, idle, uploads, gap if not nat else 0.0)
                    print(f"run {spec}", file=sys.stderr)
                    results.append(run(spec, code, tmp))
        big_runs = []
        if big:
            for label, code in codes.items():
                for nat in (True,) if label == "before" else (False, True):
                    spec = RunSpec(label, "rsa", nat, 10_000, 0, big)
                    print(f"run {spec}", file=sys.stderr)
                    big_runs.append(run(spec, code, tmp))
    text = render(results, big_runs, args, time.monotonic() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


def render(
    results: list[dict[str, Any]], big: list[dict[str, Any]], args: Any, seconds: float
) -> str:
    command = "python bench/bench_wire.py" + (" --quick" if args.quick else "")
    lines = [
        "# The real wire: bytes per cycle on a TLS link, counted by a proxy",
        "",
        f"`{command}` ({seconds:.0f} s; Python {platform.python_version()}, "
        f"{ssl.OPENSSL_VERSION}, {platform.machine()}). How it is measured: "
        "the docstring of bench/bench_wire.py. Loopback: segments are counted by the kernel at a "
        "64 KiB MSS, so upload cycles have fewer segments than on a 1,400-byte-MTU mobile link.",
        "",
        "Columns: **payload** = TCP payload both ways as the proxy relayed it (TLS records); "
        "**segs** = TCP segments of the agent's connection (proxy's TCP_INFO); **wire** = "
        f"payload + {HEADER} B x segs; **agent** = what the agent counted and charged its budget "
        "(ratio to wire); **conns** = connections opened per cycle; **full / resumed** = TLS "
        "handshakes per cycle, read from the ServerHello by the proxy. Averages per cycle.",
        "",
        "| code | cycle | connection | cycles | payload B | segs | wire B | agent B | conns |"
        " full / resumed |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        spec = result["spec"]
        nat = "NAT cut" if spec["nat"] else "kept"
        for kind in ("idle", "upload"):
            cycles = result["cycles"][kind]
            name = f"{kind}, {spec['key'].upper()}"
            lines.append(row(spec["label"], name, nat, averages(cycles), len(cycles)))
    gaps = [r for r in results if "real_gap" in r["cycles"]]
    if gaps:
        lines += ["", "Kept across a real idle gap of 65 s (one idle cycle after it):", ""]
        for r in gaps:
            c = r["cycles"]["real_gap"][0]
            lines.append(
                f"- {r['spec']['label']}, {r['spec']['key'].upper()}: wire {c['wire']:,} B, "
                f"payload {c['payload']:,} B, {c['connections']} new connection(s), "
                f"handshakes full {c['full']} / resumed {c['resumed']}."
            )
    lines += ["", "## MB per month (30 days), from the measured cycles", ""]
    lines += ["| code | certificate | idle, ping every minute | idle, ping every 5 minutes |"]
    lines += ["| --- | --- | ---: | ---: |"]
    by = {(r["spec"]["label"], r["spec"]["key"], r["spec"]["nat"]): r for r in results}
    for label in ("before", "after"):
        for key in ("rsa", "ecdsa"):
            kept = by.get((label, key, False)) or by.get((label, key, True))
            cut = by.get((label, key, True))
            if kept is None or cut is None:
                continue
            one = month(averages(kept["cycles"]["idle"]), MONTH_1MIN)
            five = month(averages(cut["cycles"]["idle"]), MONTH_5MIN)
            lines.append(f"| {label} | {key.upper()} | {one} | {five} |")
    lines += [
        "",
        "Every minute: on a kept connection (after), a new one each time (before). Every 5 "
        "minutes: the connection does not outlive the interval (the server keeps it 150 s), so "
        "every cycle reconnects: resumed (after) or full (before).",
    ]
    if big:
        lines += [
            "",
            "## 10,000 objects, steady churn, a snapshot every minute (RSA-2048)",
            "",
            "| code | connection | cycles | payload B | segs | wire B/cycle | agent B | MB/month |"
            " at a 1,448 B MSS (estimate) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for result in big:
            spec, cycles = result["spec"], result["cycles"]["upload"]
            avg = averages(cycles)
            nat = "NAT cut" if spec["nat"] else "kept"
            lines.append(
                f"| {spec['label']} | {nat} | {len(cycles)} | {avg['payload']:,.0f} | "
                f"{avg['segments']:.1f} | {avg['wire']:,.0f} | {avg['agent']:,.0f} | "
                f"{month(avg, MONTH_1MIN)} | {avg['wire_mss']:,.0f} B/cycle, "
                f"{avg['wire_mss'] * MONTH_1MIN / 1e6:,.1f} MB |"
            )
    lines += ["", f"Reproduce: `{shlex.join(command.split())}`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
