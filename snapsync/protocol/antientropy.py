"""Anti-entropy on the agent's side: one comparison, from summary to repair.

When the agent shares no version with a server that holds one, it compares digests
(snapsync.protocol.reconcile) before resending everything: a summary of its latest snapshot (one
digest per kind), then the buckets that differ, then a repair frame with exactly the objects that
differ, against the server's version. The comparison works on one pinned snapshot from summary
to repair; an answer about another version, or outside what was asked, is the server's fault
(RemoteProtocolError), and the caller falls back to a full snapshot, never to a loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from snapsync.canonical.snapshot import Snapshot
from snapsync.codec.encode import EncodeOptions, encode_repair
from snapsync.errors import RemoteProtocolError
from snapsync.protocol.messages import ANSWER_LIMIT, BucketQuery, Differences, Summary, Version
from snapsync.protocol.reconcile import (
    BucketSet,
    ObjectDigests,
    differing_buckets,
    kind_digests,
    repair_delta,
    strays,
)
from snapsync.protocol.upload import Upload

# An anti-entropy answer may list every object (15-20 bytes each compressed, more for long names);
# the agent budgets for this much per object of its snapshot, and the server answers within it.
ANSWER_PER_OBJECT = 24


@dataclass(frozen=True)
class Reconciliation:
    """Anti-entropy under way, for one pinned snapshot: what the server has said so far."""

    target: Snapshot
    base: Version | None = None  # the server's version compared with; None until it answers
    listed: Mapping[str, ObjectDigests] = field(default_factory=dict)  # kinds known whole
    wanted: Mapping[str, BucketSet] = field(default_factory=dict)  # buckets that differ

    @property
    def limit(self) -> int:
        """The largest answer the agent budgets for (and the server keeps to)."""
        return max(ANSWER_LIMIT, ANSWER_PER_OBJECT * len(self.target))

    def question(self) -> Summary | BucketQuery:
        """A summary until the server answered one, then the buckets that differ."""
        if self.base is None:
            return Summary(self.target.digest, kind_digests(self.target), limit=self.limit)
        return BucketQuery(self.base, self.wanted, limit=self.limit)

    def answered(
        self, asked: Summary | BucketQuery, differences: Differences, options: EncodeOptions
    ) -> Reconciliation | Upload | None:
        """What comes next: buckets to ask about, the repair to upload, or None (the server
        declines: nothing to compare with, or too much, so a full snapshot)."""
        if differences.base is None:
            return None
        if isinstance(asked, Summary):
            wanted = differing_buckets(self.target, differences.buckets)
            asked_next = Reconciliation(self.target, differences.base, differences.kinds, wanted)
            return asked_next if wanted else asked_next._repair(asked_next.listed, options)
        if differences.base != self.base or differences.buckets:
            raise RemoteProtocolError("bucket objects for another version, or bucket digests")
        if strays(differences.kinds, self.wanted):
            raise RemoteProtocolError("bucket objects outside the buckets asked for")
        return self._repair({**self.listed, **differences.kinds}, options)

    def _repair(self, objects: Mapping[str, ObjectDigests], options: EncodeOptions) -> Upload:
        """Ship exactly the objects that differ, as a repair against the server's version."""
        base = self.base
        assert base is not None
        delta = repair_delta(base.digest, objects, self.target, self.wanted)
        frame = encode_repair(delta, options)
        return Upload.of(frame, base, self.target, "repair", {"repair": len(frame)})


class AntiEntropy:
    """The agent's anti-entropy: the comparison under way, if any, and whether the last one
    failed or was declined (then the next upload is a full snapshot, not another comparison)."""

    def __init__(self, reconcile_min: int, options: EncodeOptions) -> None:
        self.reconcile_min = reconcile_min
        self.options = options
        self.current: Reconciliation | None = None
        self.failed = False

    def wanted(self, latest: Snapshot, server_current: Version | None) -> bool:
        """Worth comparing, when the agent shares no version with the server: the server holds
        one, and the snapshot is large enough for digests to save bytes."""
        return (
            not self.failed
            and server_current is not None
            and latest.encoded_size >= self.reconcile_min
        )

    def question(self, latest: Snapshot) -> tuple[Summary | BucketQuery, int]:
        """The next question, and the largest answer to budget for; until the server answered a
        summary, the comparison pins `latest` anew."""
        if self.current is None or self.current.base is None:
            self.current = Reconciliation(latest)
        return self.current.question(), self.current.limit

    def give_up(self) -> None:
        self.current = None
        self.failed = True

    def answered(self, asked: Summary | BucketQuery, differences: Differences) -> Upload | None:
        """The repair, once the comparison is complete; None while it goes on, or given up."""
        if self.current is None:
            return None
        after = self.current.answered(asked, differences, self.options)
        if after is None:
            self.give_up()
        elif isinstance(after, Upload):
            self.current = None
            return after
        else:
            self.current = after
        return None
