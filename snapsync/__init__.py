"""snapsync: Kubernetes cluster state over metered, flaky links, as tiny verified deltas.

The public names are re-exported here; every other module is an implementation detail unless its
docstring says otherwise.
"""

from snapsync.codec import (
    Encoded,
    EncodeOptions,
    apply_frame,
    decode_frame,
    decode_snapshot,
    encode_delta,
    encode_snapshot,
    inspect_frame,
    snapshot_document,
)
from snapsync.collect import Collector, FileCollector, KindError, Sink
from snapsync.errors import (
    BaseMismatch,
    CanonicalError,
    CollectionError,
    DeltaError,
    FrameCorrupt,
    FrameError,
    FrameTooLarge,
    FrameTruncated,
    FrameUnsupported,
    InputError,
    ProfileError,
    SnapsyncError,
)
from snapsync.frame import Limits
from snapsync.keys import ObjectKey
from snapsync.profile import Profile, load_profile
from snapsync.snapshot import CanonicalObject, Snapshot, SnapshotBuilder, build_snapshot

__version__ = "0.1.0"

__all__ = [
    "BaseMismatch",
    "CanonicalError",
    "CanonicalObject",
    "CollectionError",
    "Collector",
    "DeltaError",
    "EncodeOptions",
    "Encoded",
    "FileCollector",
    "FrameCorrupt",
    "FrameError",
    "FrameTooLarge",
    "FrameTruncated",
    "FrameUnsupported",
    "InputError",
    "KindError",
    "Limits",
    "ObjectKey",
    "Profile",
    "ProfileError",
    "Sink",
    "Snapshot",
    "SnapshotBuilder",
    "SnapsyncError",
    "apply_frame",
    "build_snapshot",
    "decode_frame",
    "decode_snapshot",
    "encode_delta",
    "encode_snapshot",
    "inspect_frame",
    "load_profile",
    "snapshot_document",
]
