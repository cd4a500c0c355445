"""Collectors: where raw API objects come from (a live cluster, kubectl dumps).

A collector pushes raw objects and per-kind failures into a sink as it finds them, page by page,
so the sink can canonicalize immediately and nothing holds a whole raw list. This is the lowest
layer: it knows nothing of canonical forms, deltas or the wire.
"""

from snapsync.collect.base import Collector, KindError, Sink
from snapsync.collect.files import FileCollector

__all__ = ["Collector", "FileCollector", "KindError", "Sink"]
