"""How long a watch waits before it is opened again: client-go's reflector backoff.

client-go's Reflector (tools/cache/reflector.go) waits on
`wait.NewExponentialBackoffManager(800ms, 30s, 2min, 2.0, 1.0)` before every new list-and-watch:
the first delay is 0.8 s, each next one doubles up to 30 s, each is stretched by a random share of
up to 100% (so the ceiling is [30, 60) s), and a backoff not needed for 2 minutes starts over at
0.8 s. Kubernetes chose those figures to cut a failing client's traffic by ~98% against retrying
every second; an agent that watches ~150 kinds of one API server has the same problem, so it
uses the same figures (KubeOptions can change them, tests shrink them).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FACTOR = 2.0  # each delay doubles the previous one
JITTER = 1.0  # each delay is stretched by a random share in [0, JITTER)


@dataclass
class Backoff:
    """One watch's backoff; `delay(now)` is the next wait, counted from now.

    As client-go's manager: the delays grow while they are asked for within `reset_after`
    seconds of each other, and start over at `initial` after a quiet spell that long.
    """

    initial: float = 0.8
    cap: float = 30.0
    reset_after: float = 120.0
    rng: random.Random = field(default_factory=random.Random)
    _step: float = 0.0
    _last: float | None = None

    def delay(self, now: float) -> float:
        if self._last is None or now - self._last > self.reset_after:
            self._step = self.initial
        self._last = now
        step = self._step
        self._step = min(self.cap, step * FACTOR)
        return step * (1.0 + JITTER * self.rng.random())
