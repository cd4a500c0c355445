"""What anti-entropy costs against a full resend, when agent and server share no version.

The server holds a cluster's state; the agent loses its state directory while the cluster keeps
changing for N minutes of steady churn; the agent then reconciles (summary, bucket digests of the
kinds that differ, objects of the buckets that differ, repair frame). Bodies of every exchange are
counted, and again with the agent's HTTP overhead estimate per exchange, and compared with the
full snapshot frame the agent would otherwise send. Results: bench/results/anti_entropy.md.

    python bench/bench_anti_entropy.py [--objects 10000] [--minutes 1 5 60]
"""

from __future__ import annotations

import argparse

from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import build_snapshot
from snapsync.codec.encode import encode_snapshot
from snapsync.protocol import AgentConfig, Intervals
from snapsync.sim.link import ENV, Sim
from snapsync.sim.sample_cluster import SampleCluster


def measure(objects: int, minutes: int) -> dict[str, int]:
    profile = load_profile()
    cluster = SampleCluster(objects=objects, shape="application", seed=1)
    config = AgentConfig(intervals=Intervals(jitter=0.0))
    sim = Sim(config)
    sim.collect(build_snapshot(cluster.objects(), profile))
    sim.run_exchanges()
    for _ in range(minutes):
        cluster.step(churn="steady")
    latest = build_snapshot(cluster.objects(), profile)
    sim.wipe_agent_state(seed=3)  # state directory lost
    sim.now += 61
    sim.collect(latest)
    sizes: dict[str, int] = {"exchanges": 0}
    while (request := sim.agent.next_request(sim.now)) is not None:
        reply = sim.server.handle(ENV, request.kind, request.body, sim.now)
        name = request.message.TYPE
        sizes[name] = sizes.get(name, 0) + len(request.body) + len(reply.body)
        sizes["exchanges"] += 1
        sim.agent.receive(request, reply.outcome, reply.body, sim.now)
    current = sim.store.current(ENV)
    assert current is not None and current.digest == latest.digest
    sizes["overhead"] = sizes["exchanges"] * config.overhead
    sizes["full_snapshot_frame"] = len(encode_snapshot(latest, 9))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, nargs="+", default=[1, 5, 60])
    args = parser.parse_args()
    print(
        "| minutes apart | exchanges | digests: summary, buckets (bodies) | repair chunks "
        "| total bodies | + HTTP overhead | full frame | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for minutes in args.minutes:
        s = measure(args.objects, minutes)
        digests = s.get("summary", 0) + s.get("buckets", 0)
        total = digests + s.get("chunk", 0) + s.get("ping", 0)
        ratio = total / s["full_snapshot_frame"]
        print(
            f"| {minutes} | {s['exchanges']} | {s.get('summary', 0):,} + "
            f"{s.get('buckets', 0):,} = {digests:,} | {s.get('chunk', 0):,} | {total:,} "
            f"| {total + s['overhead']:,} | {s['full_snapshot_frame']:,} | {ratio:.2f}x |"
        )


if __name__ == "__main__":
    main()
