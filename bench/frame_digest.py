"""One SHA-256 over every frame the codec makes for a churn trace: run it on two checkouts to
show a change leaves the frames byte-for-byte as they were.

    python bench/frame_digest.py                                # this checkout
    PYTHONPATH=/tmp/old-checkout python bench/frame_digest.py   # another one

Per trace (tools/traces.py, seeded): the first snapshot's frame (codec.encode_snapshot), then
per cycle the frame codec.encode_delta ships with the default options and the sizes of every
candidate it computed, and every 10th cycle the frame it ships without the delta candidate (full
or patch-from, the snapshot payload's encodings). Prints `trace frames sha256` per trace.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH: the checkout measured comes first

from snapsync.codec import EncodeOptions, encode_delta, encode_snapshot  # noqa: E402
from tools.traces import TraceSpec, replay  # noqa: E402

TRACES = [
    TraceSpec("steady", objects=1000, cycles=120),
    TraceSpec("busy", objects=1000, cycles=30),
    TraceSpec("steady", objects=10000, cycles=8),
]
NO_DELTA = EncodeOptions(delta=False)


def trace_digest(spec: TraceSpec) -> tuple[int, str]:
    digest = hashlib.sha256()
    frames = 0
    previous = None
    for cycle in replay(spec):
        if previous is None:
            digest.update(encode_snapshot(cycle.snapshot))
        else:
            encoded = encode_delta(previous, cycle.snapshot)
            digest.update(encoded.frame)
            digest.update(repr(sorted(encoded.candidates.items())).encode())
            if cycle.index % 10 == 0:
                digest.update(encode_delta(previous, cycle.snapshot, NO_DELTA).frame)
                frames += 1
        frames += 1
        previous = cycle.snapshot
    return frames, digest.hexdigest()


def main() -> None:
    import snapsync

    print(f"snapsync from {Path(snapsync.__file__).parent.parent}")
    for spec in TRACES:
        frames, hexdigest = trace_digest(spec)
        print(f"{spec.scenario} {spec.objects} x{spec.cycles}: {frames} frames {hexdigest}")


if __name__ == "__main__":
    main()
