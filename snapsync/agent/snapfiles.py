"""Snapshot files of the state directory: written whole now and then, else as what changed.

The agent keeps its newest snapshot on disk every cycle. Writing it whole (zstd-1) cost ~50 ms
a cycle at 10,000 objects when a cycle changes a few hundred: so a snapshot is written as its
changes from the one written before it (its parent), and whole only to start a chain, when the
chain has grown long (`MAX_CHAIN` files) or heavy (its changes outweigh the whole file).

- `<digest>.snap`: a snapshot frame (codec.encode_snapshot_streamed), as before this module.
- `<digest>.chg`: MAGIC, the parent's digest, then zstd-1 of the msgpack list
  [header, removed keys, [group, kind, namespace, name, canonical bytes] of what was added or
  changed]. It is read only on top of its parent, and the result is kept only when it has
  exactly the digest its name says (a damaged chain costs at most one full upload, as a
  damaged `.snap` does).

The writer keeps every file that a snapshot it must keep is built from (`chain`), so a crash at
any point leaves each saved snapshot readable: a file is written (atomically) only after its
parent, and removed only when nothing kept is built from it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgpack
import zstandard

from snapsync.canonical.canonicalize import object_digest, unpack
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.snapshot import (
    DIGEST_SIZE,
    CanonicalObject,
    Snapshot,
    SnapshotHeader,
    object_uid,
)
from snapsync.codec.decode import decode_snapshot
from snapsync.codec.encode import encode_snapshot_streamed
from snapsync.delta.incremental import IncrementalSnapshot, differences
from snapsync.errors import SnapsyncError
from snapsync.fileio import atomic_write

WHOLE, CHANGES = ".snap", ".chg"
MAGIC = b"SSYNCHG1"
LEVEL = 1  # zstd level of both kinds: as small as 3 on canonical msgpack, 1/3 less CPU
MAX_CHAIN = 32  # change files on top of a whole one: a load applies at most this many
MAX_UNPACKED = 2**31  # a change file's payload, decompressed (a 50k-object snapshot is ~70 MB)


@dataclass(frozen=True)
class Written:
    """One snapshot file: its parent (None: written whole), its size, and the change files
    between it and the whole file its chain starts from (0 for a whole file) with their bytes."""

    parent: bytes | None
    size: int
    depth: int = 0
    chain_bytes: int = 0


def changed_keys(snapshot: Snapshot, parent: Snapshot) -> tuple[list[ObjectKey], list[ObjectKey]]:
    """(keys added or changed, keys removed) from `parent` to `snapshot`: the keys it knows it
    touched when it was derived from `parent` (delta.incremental), else `differences`."""
    if isinstance(snapshot, IncrementalSnapshot) and snapshot.parent == parent.digest:
        touched, now = sorted(snapshot.touched), snapshot.objects
        return [k for k in touched if k in now], [k for k in touched if k not in now]
    removed, changed, added = differences(parent, snapshot)
    return sorted([*changed, *added]), removed


def encode_changes(snapshot: Snapshot, parent: Snapshot) -> bytes:
    """The change file of `snapshot` on top of `parent`."""
    put, removed = changed_keys(snapshot, parent)
    objects = snapshot.objects
    document = [
        snapshot.header.to_dict(),
        [list(key) for key in removed],
        [[*key, objects[key].encoded] for key in put],
    ]
    raw: bytes = msgpack.packb(document, use_bin_type=True)
    compressed: bytes = zstandard.ZstdCompressor(level=LEVEL, write_checksum=True).compress(raw)
    return MAGIC + parent.digest + compressed


def changes_parent(data: bytes) -> bytes | None:
    """The digest of the snapshot a change file is written on top of; None if it is not one."""
    if len(data) < len(MAGIC) + DIGEST_SIZE or not data.startswith(MAGIC):
        return None
    return data[len(MAGIC) : len(MAGIC) + DIGEST_SIZE]


def apply_changes_file(data: bytes, parent: Snapshot) -> Snapshot:
    """The snapshot a change file describes on top of `parent` (its digest unchecked here:
    the caller compares it with the file's name). ValueError when the file is damaged."""
    if changes_parent(data) != parent.digest:
        raise ValueError("not a change file on top of this snapshot")
    body = data[len(MAGIC) + DIGEST_SIZE :]
    try:
        size = zstandard.frame_content_size(body)
        if not 0 <= size <= MAX_UNPACKED:
            raise ValueError(f"declares {size} bytes")
        header_doc, removed, put = msgpack.unpackb(
            zstandard.ZstdDecompressor().decompress(body), raw=False, strict_map_key=False
        )
        header = SnapshotHeader.from_dict(header_doc)
        objects = dict(parent.objects)
        for group, kind, namespace, name in removed:
            del objects[ObjectKey(group, kind, namespace, name)]
        for group, kind, namespace, name, encoded in put:
            key = ObjectKey(group, kind, namespace, name)
            if not all(type(part) is str for part in key) or type(encoded) is not bytes:
                raise ValueError("a malformed entry")
            objects[key] = CanonicalObject(
                encoded, object_digest(encoded), object_uid(unpack(encoded))
            )
    except (
        zstandard.ZstdError,
        msgpack.UnpackException,
        TypeError,
        KeyError,
        AttributeError,
    ) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    return Snapshot(header, objects)


class SnapshotFiles:
    """The snapshot files of one directory: what is on disk, written, read and removed."""

    def __init__(self, folder: Path, max_chain: int = MAX_CHAIN) -> None:
        self.folder = folder
        self.max_chain = max_chain
        self.written: dict[bytes, Written] = {}
        self._last: Snapshot | None = None  # the newest written: the next one's parent

    def scan(self) -> None:
        """Learn what is on disk (files of another name are left alone)."""
        self.written.clear()
        parents: dict[bytes, bytes | None] = {}
        sizes: dict[bytes, int] = {}
        for file in self.folder.iterdir():
            digest = _digest_of(file.name)
            if digest is None:
                continue
            if parents.get(digest, b"") is None:
                continue  # written whole too (a `.chg` left by a crash): the whole one is read
            try:
                if file.suffix == WHOLE:
                    parents[digest], sizes[digest] = None, file.stat().st_size
                else:
                    with file.open("rb") as handle:
                        head = handle.read(len(MAGIC) + DIGEST_SIZE)
                    parents[digest], sizes[digest] = changes_parent(head), file.stat().st_size
            except OSError:
                continue
            if file.suffix == CHANGES and parents[digest] is None:
                del parents[digest]  # not a change file: damaged, never read
        for digest in parents:
            written = self._link(digest, parents, sizes, set())
            if written is not None:
                self.written[digest] = written

    def _link(
        self,
        digest: bytes,
        parents: Mapping[bytes, bytes | None],
        sizes: Mapping[bytes, int],
        seen: set[bytes],
    ) -> Written | None:
        """`digest`'s record, if its chain reaches a whole file (a loop or a gap: None)."""
        if digest in self.written:
            return self.written[digest]
        if digest in seen or digest not in parents:
            return None
        seen.add(digest)
        parent = parents[digest]
        if parent is None:
            written = Written(None, sizes[digest])
        else:
            below = self._link(parent, parents, sizes, seen)
            if below is None:
                return None
            written = Written(
                parent, sizes[digest], below.depth + 1, below.chain_bytes + sizes[digest]
            )
        self.written[digest] = written
        return written

    def read(self, wanted: Collection[bytes]) -> dict[bytes, Snapshot]:
        """The snapshots of `wanted` whose files are there and sound (others are left out)."""
        built: dict[bytes, Snapshot] = {}
        for digest in wanted:  # a later one may be built on top of an earlier one
            snapshot = self._build(digest, built)
            if snapshot is not None:
                built[digest] = snapshot
        return {digest: built[digest] for digest in wanted if digest in built}

    def _build(self, digest: bytes, built: dict[bytes, Snapshot]) -> Snapshot | None:
        """`digest`'s snapshot: the whole file its chain starts from (or a snapshot of the chain
        read already), then each change file on top, one snapshot alive at a time (a chain of
        32 at 50,000 objects would otherwise hold 32 copies of the key map)."""
        chain: list[bytes] = []
        at: bytes | None = digest
        while at is not None and at not in built:
            record = self.written.get(at)
            if record is None:
                return None
            chain.append(at)
            at = record.parent
        snapshot = built[at] if at is not None else None
        try:
            for step in reversed(chain):
                data = self._path(step).read_bytes()
                if snapshot is None:
                    snapshot = decode_snapshot(data)
                else:
                    snapshot = apply_changes_file(data, snapshot)
        except (SnapsyncError, OSError, ValueError):
            return None
        return snapshot if snapshot is not None and snapshot.digest == digest else None

    def write(self, snapshot: Snapshot) -> None:
        """Write `snapshot` (not yet on disk): as changes from the last one written, or whole."""
        digest, parent = snapshot.digest, self._last
        below = self.written.get(parent.digest) if parent is not None else None
        if (
            parent is None
            or below is None
            or below.depth + 1 > self.max_chain
            or below.chain_bytes > self._anchor_size(parent.digest)
        ):
            data = encode_snapshot_streamed(snapshot, LEVEL)
            record = Written(None, len(data))
        else:
            data = encode_changes(snapshot, parent)
            record = Written(
                parent.digest, len(data), below.depth + 1, below.chain_bytes + len(data)
            )
        atomic_write(self._path(digest, record.parent is None), data)
        self.written[digest] = record
        self._last = snapshot

    def adopt(self, snapshot: Snapshot) -> None:
        """`snapshot`, read from disk, is the parent of the next write (after a restart)."""
        if snapshot.digest in self.written:
            self._last = snapshot

    def keep_only(self, keep: Collection[bytes]) -> None:
        """Remove every file that no snapshot of `keep`, nor the next write, is built from."""
        needed: set[bytes] = set()
        heads = set(keep)
        if self._last is not None:
            heads.add(self._last.digest)
        for head in heads:
            digest: bytes | None = head
            while digest is not None and digest not in needed and digest in self.written:
                needed.add(digest)
                digest = self.written[digest].parent
        for digest in [d for d in self.written if d not in needed]:
            del self.written[digest]
            for whole in (True, False):
                self._path(digest, whole).unlink(missing_ok=True)
        if self._last is not None and self._last.digest not in self.written:
            self._last = None

    def _anchor_size(self, digest: bytes) -> int:
        """Bytes of the whole file `digest`'s chain starts from."""
        record = self.written[digest]
        while record.parent is not None:
            record = self.written[record.parent]
        return record.size

    def _path(self, digest: bytes, whole: bool | None = None) -> Path:
        if whole is None:
            whole = self.written[digest].parent is None
        return self.folder / f"{digest.hex()}{WHOLE if whole else CHANGES}"


def _digest_of(name: str) -> bytes | None:
    stem, dot, suffix = name.partition(".")
    if f"{dot}{suffix}" not in (WHOLE, CHANGES) or len(stem) != 2 * DIGEST_SIZE:
        return None
    try:
        return bytes.fromhex(stem)
    except ValueError:
        return None
