"""The server's database on SQLite: one file, WAL, every write in one `BEGIN IMMEDIATE` transaction.

A crash at any point leaves the previous version intact: a commit writes the new version, its
changed objects, their history and the pruning in a single transaction (versions.py), and
`synchronous=FULL` makes a committed version survive a power cut (bookkeeping writes use
NORMAL: atomic, safe against a process crash, a moment behind after a power cut). SQLite's
single writer lock is the environment lock: two commits never interleave.

Commits that arrive together share one transaction and its one fsync (groupcommit.py), each in
a savepoint of its own: the fsync, not the work, is what a commit costs on SQLite, and one
writer at a time is all SQLite allows anyway.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from snapsync.errors import InputError
from snapsync.server.groupcommit import GroupCommit
from snapsync.server.store.sql import Database

T = TypeVar("T")


class SQLiteDatabase(Database):
    unavailable = (sqlite3.OperationalError,)
    # Seconds a write waits for another process's write before the database counts as away.
    busy_timeout = 30.0

    def __init__(self, path: str | Path, shared_by_processes: bool = False) -> None:
        super().__init__(shared_by_processes)
        self.path = str(path)
        # One writer at a time within this process: SQLite allows one anyway, and waiting on a
        # lock wakes a waiter at once, where SQLite's busy handler sleeps and retries.
        self._writer = threading.Lock()
        self._group = GroupCommit(self.tx, self._observe)
        self._lock_file: BinaryIO | None = None
        try:
            self._create_schema()
        except sqlite3.Error as exc:
            raise InputError(f"database {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    @contextmanager
    def _transaction(self, durable: bool) -> Iterator[sqlite3.Connection]:
        db: sqlite3.Connection = self._db()
        with self._writer, self._other_processes():
            db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _other_processes(self) -> Iterator[None]:
        """With several server processes on the file (`serve --workers`), one writer at a time
        across them too, by a lock the kernel hands over at once (and drops with a dead
        process): SQLite's own busy handler sleeps up to 100 ms between tries."""
        if not self.shared_by_processes:
            yield
            return
        if self._lock_file is None:
            self._lock_file = open(self.path + "-writer", "a+b")  # noqa: SIM115 (kept open)
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def durable(self, write: Callable[[Any], T]) -> T:
        with self.outage():  # a write's own error comes back raw from its savepoint
            return self._group.run(write)

    def _observe(self, size: int) -> None:
        if self.observe_batch is not None:
            self.observe_batch(size)

    def close(self) -> None:
        super().close()
        if self._lock_file is not None:
            self._lock_file.close()

    def __repr__(self) -> str:
        return f"SQLiteDatabase({self.path!r})"
