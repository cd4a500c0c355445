"""The state directory's snapshot files (snapsync.agent.snapfiles): written as changes on top of
the last one and whole now and then, they read back as exactly what was saved, across restarts,
crashes between two writes and damaged files."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from support_hypothesis import expensive

from snapsync.agent.snapfiles import CHANGES, WHOLE, SnapshotFiles, changed_keys
from snapsync.agent.state import SNAPSHOT_DIR, StateDir
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import CanonicalObject, Snapshot, SnapshotHeader
from snapsync.delta.incremental import following as derive_from
from snapsync.protocol.agent_state import AgentState

NAMES = [f"c{i}" for i in range(10)]
# A cluster state: object name -> its value (absent: not in the snapshot).
states = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(["a", "b", "c", "d" * 300]))
# What happens after a save: the next cycle, a restart, or a crash right after the next
# snapshot's file was written (before the state naming it).
# Each snapshot is derived from the last (delta.incremental.following: it knows what it
# touched) or built plainly.
steps = st.lists(
    st.tuples(states, st.sampled_from(["cycle", "cycle", "restart", "crash"]), st.booleans()),
    max_size=8,
)


def key(name: str) -> ObjectKey:
    return ObjectKey("", "ConfigMap", "ns" if int(name[1:]) % 2 else "", name)


def obj(name: str, value: str) -> CanonicalObject:
    meta = {"name": name, "uid": f"uid-{name}", **({"namespace": "ns"} if key(name)[2] else {})}
    return CanonicalObject.from_data(
        {"apiVersion": "v1", "data": {"v": value}, "kind": "ConfigMap", "metadata": meta}
    )


def evolve(previous: Snapshot | None, state: dict[str, str], at: int) -> Snapshot:
    """The next snapshot as a watch builds it: unchanged objects shared with `previous`."""
    before = previous.objects if previous is not None else {}
    objects = {}
    for name, value in state.items():
        old = before.get(key(name))
        objects[key(name)] = (
            old if old is not None and old.data["data"]["v"] == value else obj(name, value)
        )
    header = SnapshotHeader(
        environment_id="e", collected_at=f"2026-01-01T00:{at // 60:02d}:{at % 60:02d}Z"
    )
    return Snapshot(header, objects)


def same(a: Snapshot, b: Snapshot) -> bool:
    """The same snapshot, objects byte for byte (a header is written with the first snapshot of
    a digest: an unchanged cluster is not written again for a new collection time)."""
    return (
        a.digest == b.digest
        and a.header.environment_id == b.header.environment_id
        and {k: (o.encoded, o.digest, o.uid) for k, o in a.objects.items()}
        == {k: (o.encoded, o.digest, o.uid) for k, o in b.objects.items()}
    )


def saved(snapshot: Snapshot) -> AgentState:
    return AgentState(latest=snapshot.digest)


@expensive(0.5)  # every save fsyncs a few files
@given(first=states, steps=steps, max_chain=st.integers(1, 4))
def test_snapshots_saved_as_changes_load_as_what_was_saved(
    first: dict[str, str], steps: list[tuple[dict[str, str], str, bool]], max_chain: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = StateDir(tmp)
        store.files.max_chain = max_chain
        latest = evolve(None, first, 0)
        store.save(saved(latest), [latest])
        for at, (state, then, derived) in enumerate(steps, 1):
            if then == "restart":
                store = StateDir(tmp)
                store.files.max_chain = max_chain
                loaded = store.load()
                assert loaded is not None and same(loaded[1][latest.digest], latest)
                latest = loaded[1][latest.digest]
            following = evolve(latest, state, at)
            if derived:
                following = derive_from(latest, following)
            if then == "crash" and following.digest not in store.files.written:
                store.files.write(following)  # its file, but not yet the state naming it
                store = StateDir(tmp)
                store.files.max_chain = max_chain
                loaded = store.load()
                assert loaded is not None and same(loaded[1][latest.digest], latest)
                continue
            # the previous one stays a base: both are kept, as with an unacknowledged upload
            store.save(saved(following), [latest, following])
            latest = following
            loaded = StateDir(tmp).load()
            assert loaded is not None and same(loaded[1][latest.digest], latest)
        chains = [record.depth for record in store.files.written.values()]
        assert max(chains) <= max_chain
        on_disk = {file.name for file in (Path(tmp) / SNAPSHOT_DIR).iterdir()}
        assert len(on_disk) == len(store.files.written)


def test_a_cycle_writes_only_its_changes_and_a_long_chain_starts_again_whole(
    tmp_path: Path,
) -> None:
    store = StateDir(tmp_path)
    store.files.max_chain = 3
    values = {name: random.Random(name).randbytes(1000).hex() for name in NAMES}
    latest = evolve(None, values, 0)
    store.save(saved(latest), [latest])
    whole = next((tmp_path / SNAPSHOT_DIR).glob(f"*{WHOLE}")).stat().st_size
    kinds = []
    for at in range(1, 6):
        values[f"c{at}"] = "b" * at
        following = evolve(latest, values, at)
        assert changed_keys(following, latest) == ([key(f"c{at}")], [])
        following = derive_from(latest, following)
        assert changed_keys(following, latest) == ([key(f"c{at}")], [])
        store.save(saved(following), [following])
        path = next((tmp_path / SNAPSHOT_DIR).glob(f"{following.digest.hex()}.*"))
        kinds.append(path.suffix)
        if path.suffix == CHANGES:
            assert path.stat().st_size < whole / 3
        latest = following
    assert kinds == [CHANGES, CHANGES, CHANGES, WHOLE, CHANGES]
    # kept: the latest and the whole file its chain starts from; the older chain is gone
    assert len(list((tmp_path / SNAPSHOT_DIR).iterdir())) == 2


def test_a_damaged_change_file_costs_only_the_snapshots_built_on_it(tmp_path: Path) -> None:
    store = StateDir(tmp_path)
    first = evolve(None, {"c1": "a", "c2": "b"}, 0)
    second = evolve(first, {"c1": "a", "c2": "c"}, 1)
    store.save(saved(first), [first])
    store.save(AgentState(latest=second.digest), [first, second])
    damaged = tmp_path / SNAPSHOT_DIR / f"{second.digest.hex()}{CHANGES}"
    damaged.write_bytes(damaged.read_bytes()[:-3] + b"xyz")
    state = AgentState(latest=second.digest)
    loaded = StateDir(tmp_path).load()
    assert loaded is not None and loaded[0] == state
    assert set(loaded[1]) == set()  # latest unreadable: it is collected and sent again
    files = SnapshotFiles(tmp_path / SNAPSHOT_DIR)
    files.scan()
    assert same(files.read([first.digest])[first.digest], first)
