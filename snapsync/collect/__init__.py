"""Collectors: where raw API objects come from (a live cluster, kubectl dumps).

A collector pushes raw objects and per-kind failures into a sink as it finds them, page by page,
so the sink can canonicalize immediately and nothing holds a whole raw list. It sits just above
snapsync.canonical and speaks its vocabulary (kind refs, the KindFailure record a sink keeps in
the snapshot header) but never canonicalizes, and knows nothing of deltas or the wire. (The
watch collector keeps what a CanonicalSink made of each object, to hand it back next cycle,
without looking inside.)

The live collectors (KubeCollector, KubeWatchCollector, KubeOptions) import the `kubernetes`
client, which takes a noticeable fraction of a second; they load on first use, so commands that
never talk to a cluster do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from snapsync.collect.base import CanonicalSink, Collector, Sink
from snapsync.collect.files import FileCollector
from snapsync.lazy import exports

if TYPE_CHECKING:
    from snapsync.collect.kube import KubeCollector, KubeOptions
    from snapsync.collect.watch import KubeWatchCollector

_LAZY = {
    "KubeCollector": "snapsync.collect.kube",
    "KubeOptions": "snapsync.collect.kube",
    "KubeWatchCollector": "snapsync.collect.watch",
}

__all__ = [
    "CanonicalSink",
    "Collector",
    "FileCollector",
    "KubeCollector",
    "KubeOptions",
    "KubeWatchCollector",
    "Sink",
]


__getattr__ = exports(__name__, _LAZY)
