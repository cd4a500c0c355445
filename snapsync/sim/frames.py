"""A memo of encoded frames, shared by simulated agents that replay one trace in lockstep.

Two agents fed the same snapshots (the month benchmark runs the fixed-window and the paced
policy side by side) often upload the same pair: the newest version the server acknowledged and
the latest collection. The frame is a function of (base, latest, options) alone, so the second
agent may take the first one's frame instead of encoding it again. The memo is what
`AgentConfig.encoder` calls (snapsync.protocol.upload.DeltaEncoder): keyed by the two
snapshots' digests and the options, it holds the last `size` frames (a lockstep run only asks
for the pairs of the current minute).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.encode import Encoded, EncodeOptions, encode_delta
from snapsync.protocol.upload import DeltaEncoder


@dataclass
class FrameMemo:
    """`encode_delta`, remembering its last `size` results; `hits`/`misses` count the calls."""

    size: int = 8
    encode: DeltaEncoder = encode_delta
    hits: int = 0
    misses: int = 0
    _frames: OrderedDict[tuple[bytes, bytes, EncodeOptions], Encoded] = field(
        default_factory=OrderedDict
    )

    def __call__(self, base: Snapshot, latest: Snapshot, options: EncodeOptions) -> Encoded:
        key = (base.digest, latest.digest, options)
        encoded = self._frames.get(key)
        if encoded is not None:
            self.hits += 1
            self._frames.move_to_end(key)
            return encoded
        self.misses += 1
        encoded = self.encode(base, latest, options)
        self._frames[key] = encoded
        if len(self._frames) > self.size:
            self._frames.popitem(last=False)
        return encoded
