"""Every error snapsync raises on purpose, in one tree (the httpx habit).

    SnapsyncError
    ├── InputError            a user-supplied file, flag or profile is wrong
    │   ├── ProfileError      a profile does not validate or cannot be read
    │   └── CanonicalError    an object cannot be canonicalized (no kind, no name, ...)
    ├── CollectionError       the cluster (or a dump) could not be collected at all
    ├── KubeApiError          one request to the Kubernetes API failed (collect.kubeapi has the
    │                         four kinds: ApiStatusError, ApiUnreachable, ApiConnectionLost,
    │                         ApiTimeout); collectors record it per kind, commands report it
    ├── FrameError            bytes are not a valid snapshot/delta frame
    │   ├── FrameTruncated
    │   ├── FrameCorrupt      checksum or structure mismatch
    │   ├── FrameUnsupported  unknown version, kind, codec or dictionary
    │   └── FrameTooLarge     a declared size exceeds the decoder's limit
    ├── DeltaError            a delta does not apply to its base or misses its target digest
    │   ├── BaseMismatch      a frame was made against another base than the one offered
    │   └── Unencodable       a delta cannot take the compact wire form against its base
    ├── AuthError             a request's signature, timestamp or nonce does not check out
    │   └── ReplayMemoryFull  too many live nonces to remember one more: retry later
    ├── TransportError        a request to the server did not complete (refused, cut, timeout)
    ├── StorageError          the server's database is away (locked, disk full, connection lost)
    ├── ApiError              a browse API request a person can fix (`status`: 400, 404, 409)
    └── ProtocolError         the sync conversation went wrong (the h11 split of blame)
        ├── LocalProtocolError   this side misused the state machine: a bug in the caller
        └── RemoteProtocolError  the peer sent what the protocol does not allow: bad peer or link

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


class KubeApiError(SnapsyncError):
    """One request to the Kubernetes API failed: an error status, no connection, a connection
    cut, or no answer in time (the subclasses in snapsync.collect.kubeapi say which). A
    collector records it for the kind (or retries); it is never the failure of a whole cycle."""


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


class BaseMismatch(DeltaError):
    """A frame needs another base than the one offered: the sender must resend against this one.

    Separate from a corrupt frame so that a receiver can answer "unknown base, send full" instead
    of "bad link".
    """

    def __init__(self, message: str, *, expected: bytes = b"", offered: bytes = b"") -> None:
        super().__init__(message)
        self.expected = expected
        self.offered = offered


class Unencodable(DeltaError):
    """A delta cannot take the compact wire form against this base (it names an object the base
    lacks, or holds an operation that is not plain RFC 6902): the codec ships another candidate.
    """


class AuthError(SnapsyncError):
    """A request is not signed as the protocol requires (deliberately vague towards the peer)."""


class ReplayMemoryFull(AuthError):
    """A well-signed request that cannot be remembered against replay (its edge, or the server,
    holds too many nonces inside the window): refused for now, not for bad credentials."""


class TransportError(SnapsyncError):
    """A request did not complete: connection refused or cut, timeout, TLS failure, an answer
    over its cap. `wire_bytes` is what crossed the link before it failed: the budget pays it too.
    """

    def __init__(self, message: str, *, wire_bytes: int = 0) -> None:
        super().__init__(message)
        self.wire_bytes = wire_bytes


class StorageError(SnapsyncError):
    """The server's database is away for now (locked past its timeout, disk full, connection
    lost): an outage that a request answers with 503 and the agent waits out. Raised by the
    stores in place of the driver's operational errors; any other exception from a store is a
    bug (500), never mistaken for an outage that agents retry forever."""


class ApiError(SnapsyncError):
    """A browse API or page request a person can fix (a bad parameter, an unknown environment):
    answered with `status` and the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(SnapsyncError):
    """The sync conversation between agent and server went wrong."""


class LocalProtocolError(ProtocolError):
    """This side used the protocol state machine wrongly: a bug in the embedding code."""


class RemoteProtocolError(ProtocolError):
    """The peer sent a message the protocol does not allow: a bad peer, or a damaged link."""
