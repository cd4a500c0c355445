"""Every error snapsync raises on purpose, in one tree (the httpx habit).

    SnapsyncError
    ├── InputError            a user-supplied file, flag or profile is wrong
    │   └── ProfileError      a profile does not validate or cannot be read
    ├── CollectionError       the cluster (or a dump) could not be collected at all
    ├── CanonicalError        an object cannot be canonicalized (no kind, no name, ...)
    ├── FrameError            bytes are not a valid snapshot/delta frame
    │   ├── FrameTruncated
    │   ├── FrameCorrupt      checksum or structure mismatch
    │   ├── FrameUnsupported  unknown version, kind, codec or dictionary
    │   └── FrameTooLarge     a declared size exceeds the decoder's limit
    └── DeltaError            a delta does not apply to its base or misses its target digest

Errors a user can fix carry a one-line message fit for a terminal; the CLI prints it and exits 2.
Anything else escaping is a bug in snapsync.
"""

from __future__ import annotations


class SnapsyncError(Exception):
    """Base of every error snapsync raises on purpose."""


class InputError(SnapsyncError):
    """Something the user supplied (a file, a flag, a profile) is wrong."""


class ProfileError(InputError):
    """A canonical profile cannot be read or does not validate."""


class CollectionError(SnapsyncError):
    """Collection failed as a whole (not one kind: those are recorded in the snapshot)."""


class CanonicalError(InputError):
    """An object lacks what canonicalization needs (apiVersion, kind, metadata.name)."""


class FrameError(SnapsyncError):
    """Bytes are not a valid frame."""


class FrameTruncated(FrameError):
    """The frame ends before its declared length."""


class FrameCorrupt(FrameError):
    """Checksum, digest or payload structure does not match."""


class FrameUnsupported(FrameError):
    """Unknown format version, frame kind, codec or dictionary id."""


class FrameTooLarge(FrameError):
    """A declared size exceeds the decoder's limit; refused before allocating."""


class DeltaError(SnapsyncError):
    """A delta does not apply to the given base, or does not reproduce its target digest."""
