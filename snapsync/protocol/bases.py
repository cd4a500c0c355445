"""The versions the agent can diff against: acknowledged by the server, with their snapshots.

Only versions the server acknowledged and, as far as the agent knows, still holds: a version the
server no longer lists is forgotten at once, and the next ping then lists every base (not only
the newest) so a server restored from a backup is found out. The newest `keep` are kept.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

from snapsync.canonical.snapshot import Snapshot
from snapsync.protocol.messages import Version


class Bases:
    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._held: dict[bytes, tuple[Version, Snapshot]] = {}
        self.verify = True  # list every base in the next ping, not only the newest

    def __getitem__(self, digest: bytes) -> tuple[Version, Snapshot]:
        return self._held[digest]

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[tuple[Version, Snapshot]]:
        return iter(list(self._held.values()))

    @property
    def newest(self) -> Version | None:
        return max((version for version, _ in self._held.values()), default=None)

    def to_verify(self) -> list[Version]:
        """What the next ping lists: the newest, or every base while some were lost."""
        versions = sorted((v for v, _ in self._held.values()), reverse=True)
        return versions if self.verify else versions[:1]

    def remember(self, version: Version, snapshot: Snapshot) -> None:
        self._held[version.digest] = (version, snapshot)
        newest = sorted(self._held.values(), key=lambda item: item[0], reverse=True)
        self._held = {v.digest: (v, s) for v, s in newest[: self.keep]}

    def listed(self, asked: Iterable[bytes], holds: Collection[bytes]) -> None:
        """A pong: of the digests asked about, those not in `holds` are gone."""
        lost = [digest for digest in asked if digest not in holds]
        for digest in lost:
            self._held.pop(digest, None)
        self.verify = bool(lost)

    def only(self, holds: Collection[bytes]) -> None:
        """The server holds only these (its answer to an upload whose base it lacks)."""
        self._held = {d: pair for d, pair in self._held.items() if d in holds}
        self.verify = True

    def clear(self) -> None:
        self._held.clear()
