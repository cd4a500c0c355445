"""Run the Kubernetes API emulator by hand.

    python -m tools.kube_emulator --fixture dump.json --port 8001
    python -m tools.kube_emulator --generate 10000 --churn 5 --kubeconfig /tmp/emu.kubeconfig
    KUBECONFIG=/tmp/emu.kubeconfig snapsync dump -o snap.snap

--fixture FILE (repeatable) loads kubectl `get -o json|yaml` dumps; --generate N builds N objects
with snapsync.sim.sample_cluster. --churn SECONDS applies a sample-cluster churn step that often (to
generated objects only); --churn-minutes M makes each step M simulated minutes of churn, so a
benchmark can replay a minute of churn every few seconds. It listens on 127.0.0.1 only; --port 0
picks a free port.
The first line printed is `serving N objects at URL`; GET /emulator/stats counts requests.
"""

from __future__ import annotations

import argparse
import sys
import time

from snapsync.errors import InputError
from tools.kube_emulator.server import KubeEmulator
from tools.kube_emulator.sources import load_fixture, sample_objects
from tools.kube_emulator.state import ClusterState


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.kube_emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fixture", action="append", metavar="FILE", help="kubectl List dump")
    source.add_argument("--generate", type=int, metavar="N", help="generate N objects")
    parser.add_argument("--shape", default="application", choices=["application", "platform"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--token", help="require this bearer token (401 otherwise)")
    parser.add_argument("--kubeconfig", metavar="PATH", help="write a kubeconfig for the emulator")
    parser.add_argument("--churn", type=float, metavar="SECONDS", help="churn step interval")
    parser.add_argument(
        "--churn-minutes",
        type=float,
        metavar="MINUTES",
        help="simulated minutes of churn per step [default: the step interval]",
    )
    parser.add_argument(
        "--bookmark-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between bookmarks per watch [default: 60, as kube-apiserver's watch cache]",
    )
    parser.add_argument(
        "--close-watches",
        action="store_true",
        help="end every WATCH at once, with no event (a proxy that breaks watches)",
    )
    args = parser.parse_args(argv)

    cluster = None
    if args.fixture:
        try:
            objects, resources = load_fixture(args.fixture), None
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        objects, resources, cluster = sample_objects(
            args.generate, shape=args.shape, seed=args.seed
        )
    state = ClusterState(objects, resources=resources)
    emulator = KubeEmulator(
        state,
        port=args.port,
        token=args.token,
        bookmark_interval=args.bookmark_interval,
        close_watches=args.close_watches,
    )
    emulator.start()
    if args.kubeconfig:
        emulator.write_kubeconfig(args.kubeconfig)
    print(f"serving {len(objects)} objects at {emulator.url}", flush=True)
    try:
        while True:
            time.sleep(args.churn or 3600)
            if args.churn and cluster is not None:
                minutes = args.churn_minutes or args.churn / 60
                state.apply_changes(cluster, cluster.step(churn="steady", minutes=minutes))
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
