"""The agent's state directory: what a restart needs to resume without a full resend.

Layout: `state.msgpack` (the protocol's exported state, snapsync.protocol.agent_state: a versioned
document; one of an unknown format or shape is refused with a line naming the file, and left as
it is) and `snapshots/` (the snapshots it refers to: acknowledged bases, the latest, an upload's
target; each written whole as `<digest>.snap` or as its changes from the one written before it,
`<digest>.chg`: agent/snapfiles.py). Every file is written atomically (write, fsync, rename);
snapshots are written before the state that names them and pruned after, and a file stays while
a kept snapshot is built from it, so a crash at any point leaves a state whose snapshots are all
there.

`StateStore` is the port an Agent keeps its state through: `StateDir`, or `MemoryStateStore` (the
simulation, tests), which keeps the state in the same document form, so a new Agent over it
resumes exactly as from a directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import msgpack

from snapsync.agent.snapfiles import SnapshotFiles
from snapsync.canonical.snapshot import Snapshot
from snapsync.errors import InputError
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
        self.files = SnapshotFiles(self.path / SNAPSHOT_DIR)
        self.files.scan()
        self._saved = b""  # the state file's bytes as last written or read

    def load(self) -> tuple[AgentState, dict[bytes, Snapshot]] | None:
        """The saved state and its snapshots, or None for a fresh start.

        A damaged state file is an InputError naming it (delete the directory to start over); a
        damaged snapshot is skipped, costing at most one full upload. Only the snapshots the
        state names are read (the newest of them is the next write's parent).
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
        wanted = [v.digest for v in state.bases]
        wanted += [d for d in (state.latest, state.upload and state.upload.target) if d]
        snapshots = self.files.read(wanted)
        for digest in reversed(wanted):
            if digest in snapshots:
                self.files.adopt(snapshots[digest])
                break
        return state, snapshots

    def save(self, state: AgentState, snapshots: Iterable[Snapshot]) -> None:
        """Persist; a state identical to the one on disk costs no write (idle wake-ups)."""
        keep = []
        for snapshot in snapshots:
            keep.append(snapshot.digest)
            if snapshot.digest not in self.files.written:
                self.files.write(snapshot)  # the newest, each cycle: mostly as its changes
        packed: bytes = msgpack.packb(state.document(), use_bin_type=True)
        if packed != self._saved:
            atomic_write(self.path / STATE_FILE, packed)
            self._saved = packed
        self.files.keep_only(keep)
