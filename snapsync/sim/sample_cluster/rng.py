# Seeded randomness and the simulated clock's formats. Every value the generator invents (uids,
# name suffixes, digests, blobs, choices) comes from a `Rand` seeded by the caller, never from the
# global `random` module or the wall clock, so the same seed always gives the same cluster.
from __future__ import annotations

import base64
import calendar
import random
import time
import uuid
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

# 2025-03-10T08:00:00Z: the simulated clock's first instant (fixed, so output is deterministic).
START = 1741593600
# Alphabet of Kubernetes' rand.String (no vowels, no confusable digits): pod suffixes and hashes.
ALNUM = "bcdfghjklmnpqrstvwxz2456789"


class Rand(random.Random):
    """random.Random with the value shapes Kubernetes objects need."""

    def uid(self) -> str:
        return str(uuid.UUID(int=self.getrandbits(128), version=4))

    def suffix(self, n: int = 5) -> str:
        """A generateName suffix such as `x2k9p`."""
        return "".join(self.choices(ALNUM, k=n))

    def template_hash(self) -> str:
        """A pod-template-hash such as `7d4b9c8f6d` (9 or 10 characters, as real ones)."""
        return self.suffix(10 if self.random() < 0.8 else 9)

    def hexstr(self, nbytes: int) -> str:
        return self.randbytes(nbytes).hex()

    def b64(self, nbytes: int) -> str:
        return base64.b64encode(self.randbytes(nbytes)).decode("ascii")

    def chance(self, p: float) -> bool:
        return self.random() < p

    def count(self, expected: float) -> int:
        """An integer whose mean is `expected` (fractions become a coin toss)."""
        whole = int(expected)
        return whole + (1 if self.random() < expected - whole else 0)

    def pick(self, items: Sequence[T]) -> T:
        return items[int(self.random() * len(items))]


def rfc3339(t: int) -> str:
    """`2025-03-10T08:00:00Z`: the API's second-precision time format."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def parse_rfc3339(text: str) -> int:
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))


def micro_time(t: int, micros: int) -> str:
    """`2025-03-10T08:00:00.123456Z`: MicroTime, used by Lease renewals and Event eventTime."""
    return f"{rfc3339(t)[:-1]}.{micros:06d}Z"
