"""The agent's state directory: what a restart needs to resume without a full resend.

Layout: `state.msgpack` (the protocol's exported state, snapsync.protocol.agent_state: a versioned
document; one of an unknown format or shape is refused with a line naming the file, and left as
it is) and `snapshots/<digest>.snap` (the snapshots it refers to: acknowledged bases, the latest,
an upload's target). Every file is written atomically (write, fsync, rename); snapshots are
written before the state that names them and pruned after, so a crash at any point leaves a
state whose snapshots are all there.

`StateStore` is the port an Agent keeps its state through: `StateDir`, or `MemoryStateStore` (the
simulation, tests), which keeps the state in the same document form, so a new Agent over it
resumes exactly as from a directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import msgpack

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.decode import decode_snapshot
from snapsync.codec.encode import encode_snapshot_streamed
from snapsync.errors import FrameError, InputError
from snapsync.fileio import atomic_write
from snapsync.protocol.agent_state import AgentState

STATE_FILE = "state.msgpack"
SNAPSHOT_DIR = "snapshots"


class StateStore(Protocol):
    def load(self) -> tuple[AgentState, dict[bytes, Snapshot]] | None:
        """The saved state and its snapshots, or None for a fresh start."""

    def save(self, state: AgentState, snapshots: Iterable[Snapshot]) -> None:
        """Persist the state and the snapshots it refers to (and only those)."""


class MemoryStateStore:
    """A state store in memory: the state as its msgpack document, the snapshots by digest."""

    def __init__(self) -> None:
        self._document: bytes | None = None
        self.snapshots: dict[bytes, Snapshot] = {}

    def load(self) -> tuple[AgentState, dict[bytes, Snapshot]] | None:
        if self._document is None:
            return None
        document = msgpack.unpackb(self._document, raw=False, strict_map_key=False)
        return AgentState.from_document(document), dict(self.snapshots)

    def save(self, state: AgentState, snapshots: Iterable[Snapshot]) -> None:
        self._document = msgpack.packb(state.document(), use_bin_type=True)
        self.snapshots = {snapshot.digest: snapshot for snapshot in snapshots}


class StateDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            (self.path / SNAPSHOT_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"state directory {self.path}: {exc.strerror}") from None
        self._written: set[bytes] = set()
        self._saved = b""  # the state file's bytes as last written or read

    def load(self) -> tuple[AgentState, dict[bytes, Snapshot]] | None:
        """The saved state and its snapshots, or None for a fresh start.

        A damaged state file is an InputError naming it (delete the directory to start over); a
        damaged snapshot is skipped, costing at most one full upload.
        """
        state_file = self.path / STATE_FILE
        if not state_file.exists():
            return None
        try:
            self._saved = state_file.read_bytes()
            document = msgpack.unpackb(self._saved, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise InputError(f"{state_file}: unreadable agent state ({exc})") from None
        try:
            state = AgentState.from_document(document)
        except InputError as exc:
            raise InputError(f"{state_file}: {exc}") from None
        snapshots: dict[bytes, Snapshot] = {}
        for file in (self.path / SNAPSHOT_DIR).glob("*.snap"):
            try:
                snapshot = decode_snapshot(file.read_bytes())
            except (FrameError, OSError):
                continue
            snapshots[snapshot.digest] = snapshot
            self._written.add(snapshot.digest)
        return state, snapshots

    def save(self, state: AgentState, snapshots: Iterable[Snapshot]) -> None:
        """Persist; a state identical to the one on disk costs no write (idle wake-ups)."""
        keep = {}
        for snapshot in snapshots:
            keep[snapshot.digest] = snapshot
            if snapshot.digest not in self._written:
                # The newest snapshot is written every cycle: streamed (the raw payload is never
                # whole in memory) at zstd-1, as small as 3 on canonical msgpack, 1/3 less CPU
                frame = encode_snapshot_streamed(snapshot, 1)
                atomic_write(self._snapshot_path(snapshot.digest), frame)
                self._written.add(snapshot.digest)
        packed: bytes = msgpack.packb(state.document(), use_bin_type=True)
        if packed != self._saved:
            atomic_write(self.path / STATE_FILE, packed)
            self._saved = packed
        for digest in self._written - set(keep):
            self._snapshot_path(digest).unlink(missing_ok=True)
        self._written &= set(keep)

    def _snapshot_path(self, digest: bytes) -> Path:
        return self.path / SNAPSHOT_DIR / f"{digest.hex()}.snap"
