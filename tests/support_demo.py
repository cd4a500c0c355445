"""What a finished `snapsync demo` must leave behind, for the demo's tests run in-process
(tests/test_demo.py) and from an installed wheel (tests/test_wheel.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from snapsync.server.store import Stores, open_store
from snapsync.sim.link import ENV

CONVERGED = re.compile(r"converged\s+yes: .*\(digest ([0-9a-f]{32})\)")


@contextmanager
def converged_store(report: str, database: Path) -> Iterator[Stores]:
    """The demo's database, once the report says the run converged and the server's current
    snapshot there has the digest the report names; closed on leaving."""
    found = CONVERGED.search(report)
    assert found, report
    store = open_store(str(database))
    try:
        current = store.versions.current(ENV)
        assert current is not None and current.digest.hex() == found.group(1)
        yield store
    finally:
        store.close()
