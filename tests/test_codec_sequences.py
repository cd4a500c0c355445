"""Sequences of generated cluster states: each cycle's frame takes the acked base to the target."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from support_codec import PROFILE, stamp
from support_hypothesis import expensive

from snapsync.canonical.snapshot import Snapshot, build_snapshot
from snapsync.codec.decode import apply_frame
from snapsync.codec.encode import EncodeOptions, encode_delta
from snapsync.sim.sample_cluster import SampleCluster


@expensive(0.1)  # ~0.5 s an example (150 objects, up to 4 cycles, 3 encodings each)
@given(
    seed=st.integers(0, 2**16),
    shape=st.sampled_from(["application", "platform"]),
    churns=st.lists(st.sampled_from(["quiet", "steady", "busy"]), min_size=1, max_size=4),
)
def test_generated_cycles_round_trip(seed: int, shape: str, churns: list[str]) -> None:
    cluster = SampleCluster(objects=150, shape=shape, seed=seed)
    base = build_snapshot(cluster.objects(), PROFILE, collected_at=stamp(0))
    for cycle, churn in enumerate(churns, start=1):
        cluster.step(churn=churn)
        new = build_snapshot(cluster.objects(), PROFILE, collected_at=stamp(60 * cycle))
        encoded = encode_delta(base, new)
        assert apply_frame(base, encoded.frame).digest == new.digest
        # the uid index the next cycle needs was derived from the base's and the delta
        assert new.uid_index == Snapshot(new.header, new.objects).uid_index
        for name, options in {
            "delta": EncodeOptions(patch_from=False, full=False),
            "patch-from": EncodeOptions(delta=False, full=False),
        }.items():
            only = encode_delta(base, new, options)
            assert only.chosen == name
            assert apply_frame(base, only.frame).digest == new.digest
        base = new


def test_a_steady_cycle_ships_far_less_than_the_snapshot() -> None:
    cluster = SampleCluster(objects=400, shape="application", seed=7)
    base = build_snapshot(cluster.objects(), PROFILE, collected_at=stamp(0))
    cluster.step(churn="steady")
    new = build_snapshot(cluster.objects(), PROFILE, collected_at=stamp(60))
    encoded = encode_delta(base, new, EncodeOptions(full_skip_ratio=0.0))
    assert len(encoded.frame) == min(encoded.candidates.values())
    assert encoded.candidates["delta"] * 10 < encoded.candidates["full"]
