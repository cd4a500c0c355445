"""The agent's upload session: one frame, how much of it the server confirmed, and chunk sizing.

An upload is made against a version the server acknowledged (a delta, or a patch-from frame),
or of the whole snapshot, or (snapsync.protocol.antientropy) a repair against the server's
version. Its id is derived from the frame, so a retry after a restart names the same upload and
the server resumes it where it stopped. The session only moves forward: the confirmed offset is
what the server said it holds, checked against the frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.encode import Encoded, EncodeOptions, encode_delta, encode_snapshot
from snapsync.codec.frame import unpack_frame
from snapsync.errors import RemoteProtocolError
from snapsync.protocol.messages import UPLOAD_ID, Chunk, Version

# How the agent encodes the frame taking a base to its latest snapshot (AgentConfig.encoder):
# `encode_delta` in production. The frame must be a function of (base, latest, options) alone, so
# a simulation running several agents over one trace in lockstep may share one memo of frames
# (snapsync.sim.frames) instead of encoding the same pair once per agent.
DeltaEncoder = Callable[[Snapshot, Snapshot, EncodeOptions], Encoded]

UPLOAD_REPLY_ALLOWANCE = 512  # an upload reply (or refusal) is read up to this, and budgeted
MIN_CHUNK = 1024


@dataclass
class Upload:
    """The one frame being uploaded, and how much of it the server confirmed."""

    id: bytes
    base: Version | None
    target: Snapshot
    frame: bytes
    kind: str  # delta, patch-from, full, repair
    candidates: dict[str, int]
    confirmed: int = 0

    @classmethod
    def of(
        cls,
        frame: bytes,
        base: Version | None,
        target: Snapshot,
        kind: str,
        candidates: dict[str, int],
    ) -> Upload:
        upload_id = hashlib.blake2b(frame, digest_size=UPLOAD_ID).digest()
        return cls(upload_id, base, target, frame, kind, candidates)

    @property
    def remaining(self) -> int:
        return len(self.frame) - self.confirmed

    def untouched_by(self, snapshot: Snapshot) -> bool:
        """Nothing of it reached the server, and `snapshot` is another: it may give way."""
        return self.confirmed == 0 and self.target.digest != snapshot.digest

    def chunk(self, size: int, cursor: int, spent: int) -> Chunk:
        """The next piece, from the confirmed offset."""
        return Chunk(
            upload=self.id,
            base=self.base.digest if self.base is not None else b"",
            target=self.target.digest,
            total=len(self.frame),
            offset=self.confirmed,
            data=self.frame[self.confirmed : self.confirmed + size],
            cursor=cursor,
            spent=spent,
        )

    def confirm(self, offset: int) -> None:
        """The server holds the frame up to `offset` (a partial reply)."""
        if not 0 <= offset <= len(self.frame):
            raise RemoteProtocolError(f"server confirmed offset {offset} of {len(self.frame)}")
        self.confirmed = offset


def prepare(
    latest: Snapshot,
    base: tuple[Version, Snapshot] | None,
    options: EncodeOptions,
    full_level: int,
    encoder: DeltaEncoder = encode_delta,
) -> Upload:
    """The frame that brings the server from `base` (None: nothing shared) to `latest`."""
    if base is None:
        frame = encode_snapshot(latest, full_level)
        return Upload.of(frame, None, latest, "full", {"full": len(frame)})
    version, base_snapshot = base
    encoded = encoder(base_snapshot, latest, options)
    frame = encoded.frame
    needs = version if unpack_frame(frame).needs_base else None
    return Upload.of(frame, needs, latest, encoded.chosen, dict(encoded.candidates))


@dataclass
class ChunkSize:
    """How much of a frame one chunk carries.

    A failed chunk halves the size (down to MIN_CHUNK) for the rest of the upload: on a slow
    link a chunk that cannot cross within the transport's timeout would otherwise fail forever.
    A server that says a chunk is too large lowers the ceiling for good; each new upload starts
    at the ceiling again.
    """

    size: int
    ceiling: int

    def failed(self, sent: int) -> None:
        self.size = max(MIN_CHUNK, min(self.size, sent // 2))

    def too_large(self) -> bool:
        """Halve size and ceiling; False when already at the floor (then it is a refusal)."""
        if self.size <= MIN_CHUNK:
            return False
        self.size //= 2
        self.ceiling = self.size
        return True

    def restart(self) -> None:
        self.size = self.ceiling
