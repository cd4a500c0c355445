"""snapsync: Kubernetes cluster state over metered, flaky links, as tiny verified deltas.

The public names are re-exported here; every other module is an implementation detail unless its
docstring says otherwise. They load on first use (PEP 562), so `import snapsync` costs only the
error tree: an embedder that needs the codec does not pay for the agent, the server or the
`kubernetes` client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from snapsync.errors import (
    ApiError,
    AuthError,
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
    KubeApiError,
    LocalProtocolError,
    ProfileError,
    ProtocolError,
    RemoteProtocolError,
    ReplayMemoryFull,
    SnapsyncError,
    StorageError,
    TransportError,
    Unencodable,
)
from snapsync.lazy import exports

if TYPE_CHECKING:
    from snapsync.agent import (
        Agent,
        AgentSettings,
        Answer,
        HttpTransport,
        StateDir,
        StepReport,
        Transport,
    )
    from snapsync.canonical.keys import ObjectKey
    from snapsync.canonical.profile import Profile, load_profile
    from snapsync.canonical.snapshot import (
        CanonicalObject,
        KindFailure,
        Snapshot,
        SnapshotBuilder,
        build_snapshot,
    )
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
    from snapsync.codec.frame import Limits
    from snapsync.collect import (
        CanonicalSink,
        Collector,
        FileCollector,
        KubeCollector,
        KubeOptions,
        KubeWatchCollector,
        Sink,
    )
    from snapsync.delta.diff import Delta, apply, diff
    from snapsync.protocol import AgentConfig, AgentProtocol, ServerConfig, ServerProtocol

_LAZY = {
    "snapsync.agent": (
        "Agent",
        "AgentSettings",
        "Answer",
        "HttpTransport",
        "StateDir",
        "StepReport",
        "Transport",
    ),
    "snapsync.canonical.keys": ("ObjectKey",),
    "snapsync.canonical.profile": ("Profile", "load_profile"),
    "snapsync.canonical.snapshot": (
        "CanonicalObject",
        "KindFailure",
        "Snapshot",
        "SnapshotBuilder",
        "build_snapshot",
    ),
    "snapsync.codec.frame": ("Limits",),
    "snapsync.codec": (
        "EncodeOptions",
        "Encoded",
        "apply_frame",
        "decode_frame",
        "decode_snapshot",
        "encode_delta",
        "encode_snapshot",
        "inspect_frame",
        "snapshot_document",
    ),
    "snapsync.collect": (
        "CanonicalSink",
        "Collector",
        "FileCollector",
        "KubeCollector",
        "KubeOptions",
        "KubeWatchCollector",
        "Sink",
    ),
    "snapsync.delta.diff": ("Delta", "apply", "diff"),
    "snapsync.protocol": ("AgentConfig", "AgentProtocol", "ServerConfig", "ServerProtocol"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}

__version__ = "0.1.0"
__all__ = [
    "Agent",
    "AgentConfig",
    "AgentProtocol",
    "AgentSettings",
    "Answer",
    "ApiError",
    "AuthError",
    "BaseMismatch",
    "CanonicalError",
    "CanonicalObject",
    "CanonicalSink",
    "CollectionError",
    "Collector",
    "Delta",
    "DeltaError",
    "EncodeOptions",
    "Encoded",
    "FileCollector",
    "FrameCorrupt",
    "FrameError",
    "FrameTooLarge",
    "FrameTruncated",
    "FrameUnsupported",
    "HttpTransport",
    "InputError",
    "KindFailure",
    "KubeApiError",
    "KubeCollector",
    "KubeOptions",
    "KubeWatchCollector",
    "Limits",
    "LocalProtocolError",
    "ObjectKey",
    "Profile",
    "ProfileError",
    "ProtocolError",
    "RemoteProtocolError",
    "ReplayMemoryFull",
    "ServerConfig",
    "ServerProtocol",
    "Sink",
    "Snapshot",
    "SnapshotBuilder",
    "SnapsyncError",
    "StateDir",
    "StepReport",
    "StorageError",
    "Transport",
    "TransportError",
    "Unencodable",
    "apply",
    "apply_frame",
    "build_snapshot",
    "decode_frame",
    "decode_snapshot",
    "diff",
    "encode_delta",
    "encode_snapshot",
    "inspect_frame",
    "load_profile",
    "snapshot_document",
]


__getattr__ = exports(__name__, _MODULE_OF)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
