"""The newest version's snapshot per environment, in memory, within a byte bound.

A hot environment's delta is decoded against, applied to and verified on this snapshot, with no
read (snapsync.delta.incremental keeps its digest state); a cold one costs one read of its object
rows, verified against the stored digest, and then stays hot until evicted, least recently used
first. Only the newest version of an environment is kept: an upload against an older held
version reads it from storage (the agent's base is the newest but for a lost acknowledgement).
When another process stored newer versions, the kept one is brought up to date from the object
rows those versions changed (store/versions.py), so a site whose uploads alternate between server
processes costs each a read of what changed, not of the environment.

The bound is on an estimate, not a measurement: a kept version is a CompactSnapshot
(snapsync.delta.incremental: each object's canonical msgpack bytes, its pair encoding and key in
flat lists) and takes about its objects' canonical bytes plus ~500 bytes per object (measured
with tracemalloc on sample clusters: 1.32-1.41 times the canonical bytes, ~1.4 KB per object).
So 300 objects take ~0.55 MB, 1,500 ~3.1 MB, 10,000 ~20 MB; the default 512 MB holds ~900
environments of 300 objects. A snapshot larger than the whole bound is never kept (each of its
deltas costs a read). While a delta is decoded against a kept version its ObjectKey list exists
too (~100 bytes per object, until the derived version replaces it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from snapsync.canonical.snapshot import Snapshot

DEFAULT_CACHE_BYTES = 512 * 2**20
PER_ENCODED_BYTE = 1
PER_OBJECT = 512


def estimated_bytes(snapshot: Snapshot) -> int:
    """What holding `snapshot` costs in memory, as the module docstring says."""
    return PER_ENCODED_BYTE * snapshot.encoded_size + PER_OBJECT * len(snapshot)


@dataclass(frozen=True)
class _Entry:
    seq: int
    snapshot: Snapshot
    cost: int


class StateCache:
    """env -> (seq, snapshot) of its newest version; thread-safe."""

    def __init__(self, limit_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, env: str, digest: bytes) -> tuple[int, Snapshot] | None:
        """The newest version's (seq, snapshot) if it is the one with `digest`."""
        with self._lock:
            entry = self._entries.get(env)
            if entry is None or entry.snapshot.digest != digest:
                return None
            self._entries.move_to_end(env)
            return entry.seq, entry.snapshot

    def newest(self, env: str) -> tuple[int, Snapshot] | None:
        """Whatever version of `env` is kept (another process may have stored newer ones)."""
        with self._lock:
            entry = self._entries.get(env)
            return (entry.seq, entry.snapshot) if entry is not None else None

    def put(self, env: str, seq: int, snapshot: Snapshot) -> None:
        """Keep `snapshot` as version `seq` of `env`, unless a newer one is kept already."""
        cost = estimated_bytes(snapshot)
        with self._lock:
            old = self._entries.get(env)
            if old is not None and old.seq > seq:
                return
            self._drop(env)
            if cost > self.limit_bytes:
                return
            self._entries[env] = _Entry(seq, snapshot, cost)
            self._bytes += cost
            while self._bytes > self.limit_bytes:
                self._drop(next(iter(self._entries)))

    def drop(self, env: str) -> None:
        with self._lock:
            self._drop(env)

    def _drop(self, env: str) -> None:
        entry = self._entries.pop(env, None)
        if entry is not None:
            self._bytes -= entry.cost
