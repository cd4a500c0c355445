"""The canonical snapshot: a set of canonical objects by key, plus a header outside the digest.

Invariants:
- The snapshot digest depends only on the sorted (key, object digest) pairs: the same objects in
  any order, collected at any time, give the same digest, and one changed object changes it.
- The header (time, environment, profile, counts, per-kind errors) describes a collection and is
  never part of the digest, so two collections of an unchanged cluster agree on a version.
- A kind that could not be collected is recorded in `header.errors`, never silently missing.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import operator
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack

from snapsync.canonical.canonicalize import canonicalize, object_digest, pack, unpack
from snapsync.canonical.keys import ObjectKey, kind_ref
from snapsync.canonical.profile import Profile
from snapsync.errors import InputError

FORMAT_VERSION = 1
_GROUP_KIND = operator.itemgetter(0, 1)  # an ObjectKey's (group, kind)
DIGEST_SIZE = 16


@dataclass(frozen=True, slots=True)
class CanonicalObject:
    """An object's canonical msgpack bytes, their digest and the object's metadata.uid.

    The bytes are all a snapshot holds of an object (nested dicts took 5-10x the memory); `data`
    unpacks them anew on each call, for the few objects a diff or an exemplar looks into, so
    callers bind it once and may change their copy.
    """

    encoded: bytes
    digest: bytes
    uid: str | None = None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> CanonicalObject:
        encoded = pack(data)
        return cls(encoded, object_digest(encoded), object_uid(data))

    @property
    def data(self) -> dict[str, Any]:
        unpacked: dict[str, Any] = unpack(self.encoded)
        return unpacked


@dataclass(frozen=True, slots=True)
class KeyedObject:
    """A canonical object and its key, as SnapshotBuilder.canonical makes them."""

    key: ObjectKey
    obj: CanonicalObject


@dataclass(frozen=True, slots=True)
class KindFailure:
    """Why one kind is missing or incomplete: a record in the snapshot header, never raised.

    Collectors make these (snapsync.collect); the header carries them to the server, so a
    snapshot never passes a kind it could not read off as empty.
    """

    kind: str  # kind ref: Kind or Kind.group
    reason: str  # forbidden, not-found, timeout, unavailable, stale, invalid, error, ...
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "reason": self.reason, "message": self.message}


@dataclass(frozen=True)
class SnapshotHeader:
    environment_id: str = ""
    collected_at: str = ""  # RFC 3339, UTC
    profile_name: str = ""
    profile_version: int = 0
    counts: Mapping[str, int] = field(default_factory=dict)  # kind ref -> objects
    errors: tuple[KindFailure, ...] = ()
    source_bytes: int = 0  # compact JSON bytes of the raw objects as collected; 0 = not measured
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "environment_id": self.environment_id,
            "collected_at": self.collected_at,
            "profile": {"name": self.profile_name, "version": self.profile_version},
            "counts": dict(sorted(self.counts.items())),
            "errors": [e.to_dict() for e in self.errors],
            "source_bytes": self.source_bytes,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SnapshotHeader:
        profile = doc.get("profile") or {}
        return cls(
            format_version=int(doc.get("format_version", FORMAT_VERSION)),
            environment_id=str(doc.get("environment_id", "")),
            collected_at=str(doc.get("collected_at", "")),
            profile_name=str(profile.get("name", "")),
            profile_version=int(profile.get("version", 0)),
            counts={str(k): int(v) for k, v in (doc.get("counts") or {}).items()},
            errors=tuple(
                KindFailure(str(e["kind"]), str(e["reason"]), str(e["message"]))
                for e in doc.get("errors") or ()
            ),
            source_bytes=int(doc.get("source_bytes", 0)),
        )


class Snapshot:
    """A canonical snapshot. Immutable by convention: build a new one to change it."""

    __slots__ = ("_digest", "_encoded_size", "_keys", "_uid_index", "header", "objects")

    def __init__(self, header: SnapshotHeader, objects: Mapping[ObjectKey, CanonicalObject]):
        self.header = header
        self.objects: Mapping[ObjectKey, CanonicalObject] = objects
        self._keys: list[ObjectKey] | None = None
        self._digest: bytes | None = None
        self._encoded_size: int | None = None
        self._uid_index: dict[str, ObjectKey] | None = None

    @property
    def keys(self) -> list[ObjectKey]:
        """Object keys in canonical (sorted) order."""
        if self._keys is None:
            self._keys = sorted(self.objects)
        return self._keys

    @property
    def digest(self) -> bytes:
        if self._digest is None:
            self._digest = snapshot_digest((k, self.objects[k].digest) for k in self.keys)
        return self._digest

    @property
    def encoded_size(self) -> int:
        """Bytes of the objects' canonical msgpack: what a full frame compresses. Cached, as the
        new snapshot of one cycle is the base of the next and both sizes are asked for."""
        if self._encoded_size is None:
            self._encoded_size = sum(len(obj.encoded) for obj in self.objects.values())
        return self._encoded_size

    @property
    def uid_index(self) -> dict[str, ObjectKey]:
        """metadata.uid -> key (read-only). Built once per snapshot, or adopted from one derived
        from the previous snapshot and the delta (delta.uid_index_after): walking every object
        each cycle cost ~55 ms at 50k objects."""
        if self._uid_index is None:
            index: dict[str, ObjectKey] = {}
            for key, obj in self.objects.items():
                if obj.uid is not None:
                    index.setdefault(obj.uid, key)
            self._uid_index = index
        return self._uid_index

    def adopt_keys(self, previous: Snapshot) -> None:
        """Derive `keys` from a previous snapshot's: between two cycles few keys come and go, so
        filtering its sorted list and merging the new keys in costs O(n) steps in C, where
        sorting every key again cost ~6 ms at 10k objects (~40 ms at 50k) each cycle."""
        if self._keys is not None:
            return
        objects, old = self.objects, previous.objects
        kept = [key for key in previous.keys if key in objects]
        if len(kept) != len(objects):
            kept = list(heapq.merge(kept, sorted(key for key in objects if key not in old)))
        self._keys = kept

    def adopt_uid_index(self, index: dict[str, ObjectKey]) -> None:
        """Take `index` as this snapshot's uid_index (it must be what uid_index would build, up
        to which key a uid shared by several objects names)."""
        if self._uid_index is None:
            self._uid_index = index

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[tuple[ObjectKey, CanonicalObject]]:
        for key in self.keys:
            yield key, self.objects[key]

    def __repr__(self) -> str:
        return f"<Snapshot {self.digest.hex()[:12]} objects={len(self)}>"


def object_uid(data: Mapping[str, Any]) -> str | None:
    meta = data.get("metadata")
    uid = meta.get("uid") if type(meta) is dict else None
    return uid if type(uid) is str else None


def snapshot_digest(pairs: Iterable[tuple[ObjectKey, bytes]]) -> bytes:
    """Digest of sorted (key, object digest) pairs; callers pass them in key order."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    packer = msgpack.Packer(use_bin_type=True)  # as canonical.pack, without a Packer per pair
    for key, digest in pairs:
        h.update(packer.pack((*key, digest)))
    return h.digest()


def rfc3339(t: float | None = None) -> str:
    """A Unix time (default: now) as Kubernetes writes timestamps, to the second."""
    moment = datetime.now(UTC) if t is None else datetime.fromtimestamp(t, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CanonicalForm:
    """A canonical form (profile, secret handling) and the canonicalizer for it: a collector
    keeps this between cycles (collect.base.Canonicalizer), never a builder and its objects."""

    profile: Profile
    reveal_secrets: bool = False

    @property
    def canonical_form(self) -> CanonicalForm:
        return self

    def canonical(self, raw: dict[str, Any]) -> KeyedObject | None:
        """The key and canonical object of `raw`; None when the profile excludes it."""
        result = canonicalize(raw, self.profile, reveal_secrets=self.reveal_secrets)
        if result is None:
            return None
        key, data = result
        return KeyedObject(key, CanonicalObject.from_data(data))


class SnapshotBuilder:
    """Canonicalizes objects as they arrive (page by page), so raw lists are never all held.

    An object seen twice with the same canonical content is kept once; seen twice with different
    content it is an InputError (two dumps of different moments mixed by mistake).
    It is a CanonicalSink: `canonical` and `add_canonical` split `add` in two, so a watch cache
    can keep canonical objects across cycles (one builder each) instead of raw objects.

    It is also a ResumableSink (collect.base): `successor()` is the next cycle's builder, and a
    collector that stamped this one (`stamp`) may `resume` it from this one's objects and give
    it only what changed since (`remove_canonical` takes back what went); a collector that
    does not resume it finds it empty, as a new builder.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        environment_id: str = "",
        reveal_secrets: bool = False,
        measure_source: bool = False,
    ) -> None:
        self.profile = profile
        self.measure_source = measure_source
        self.source_bytes = 0
        self.environment_id = environment_id
        self.reveal_secrets = reveal_secrets
        self._form = CanonicalForm(profile, reveal_secrets)
        self._objects: dict[ObjectKey, CanonicalObject] = {}
        self._errors: dict[str, KindFailure] = {}
        self.excluded = 0
        self.stamped: object = None  # the token of the collector that filled it
        self._predecessor: SnapshotBuilder | None = None

    @property
    def canonical_form(self) -> CanonicalForm:
        """What `canonical` depends on besides the object: its results hold for an equal form."""
        return self._form

    @property
    def canonicalizer(self) -> CanonicalForm:
        return self._form

    def canonical(self, raw: dict[str, Any]) -> KeyedObject | None:
        """The key and canonical object of `raw`, not added; None when the profile excludes it.

        A collector that keeps objects between cycles keeps this instead (see CanonicalSink),
        since canonicalizing is most of a cycle's CPU.
        """
        return self._form.canonical(raw)

    def add(self, raw: dict[str, Any]) -> ObjectKey | None:
        """Canonicalize and keep one raw object; None when the profile excludes its kind."""
        if self.measure_source:
            self.source_bytes += len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False))
        return self.add_canonical(self.canonical(raw))

    def add_canonical(self, canonical: object) -> ObjectKey | None:
        """Keep an object as `canonical(raw)` gave it, on this builder or one of an equal form."""
        if canonical is None:
            self.excluded += 1
            return None
        if not isinstance(canonical, KeyedObject):
            raise TypeError(f"not a SnapshotBuilder.canonical result: {type(canonical).__name__}")
        key, obj = canonical.key, canonical.obj
        seen = self._objects.get(key)
        if seen is not None and seen.digest != obj.digest:
            raise InputError(f"{key} appears twice with different contents")
        self._objects[key] = obj
        return key

    def successor(self) -> SnapshotBuilder:
        """An empty builder of the same class and form that a collector may resume from this
        one."""
        builder = type(self)(
            self.profile,
            environment_id=self.environment_id,
            reveal_secrets=self.reveal_secrets,
            measure_source=self.measure_source,
        )
        builder._predecessor = self
        return builder

    def resume(self, token: object) -> bool:
        """Take the objects of the builder this one succeeds, if `token` stamped it (the
        collector then gives only what changed since); else stay empty. Either way once."""
        predecessor, self._predecessor = self._predecessor, None
        if predecessor is None or token is None or predecessor.stamped is not token:
            return False
        self._objects = dict(predecessor._objects)
        return True

    def stamp(self, token: object) -> None:
        """Mark what a collector gave this builder (it may resume the next one from it)."""
        self.stamped = token

    def remove_canonical(self, canonical: object) -> None:
        """Take back an object added as `canonical` (by this builder or the one it resumed)."""
        if isinstance(canonical, KeyedObject) and self._objects.get(canonical.key) is canonical.obj:
            del self._objects[canonical.key]

    def add_all(self, raws: Iterable[dict[str, Any]]) -> None:
        for raw in raws:
            self.add(raw)

    def discard(self, key: ObjectKey) -> None:
        self._objects.pop(key, None)

    def record_error(self, error: KindFailure) -> None:
        self._errors[error.kind] = error

    def build(
        self, collected_at: str | None = None, *, previous: Snapshot | None = None
    ) -> Snapshot:
        """The snapshot of what was added; `previous` (the last cycle's) saves sorting its keys."""
        kinds = Counter(map(_GROUP_KIND, self._objects))  # in C; kind_ref per kind, not object
        counts: Counter[str] = Counter()
        for (group, kind), count in kinds.items():
            counts[kind_ref(group, kind)] += count
        header = SnapshotHeader(
            environment_id=self.environment_id,
            collected_at=collected_at if collected_at is not None else rfc3339(),
            profile_name=self.profile.name,
            profile_version=self.profile.version,
            counts=dict(sorted(counts.items())),
            errors=tuple(self._errors[k] for k in sorted(self._errors)),
            source_bytes=self.source_bytes,
        )
        snapshot = Snapshot(header, dict(self._objects))
        if previous is not None:
            snapshot.adopt_keys(previous)
        return snapshot


def build_snapshot(
    raws: Iterable[dict[str, Any]],
    profile: Profile,
    *,
    environment_id: str = "",
    collected_at: str | None = None,
    reveal_secrets: bool = False,
) -> Snapshot:
    builder = SnapshotBuilder(profile, environment_id=environment_id, reveal_secrets=reveal_secrets)
    builder.add_all(raws)
    return builder.build(collected_at)
