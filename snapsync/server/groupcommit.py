"""Group commit: durable writes from many threads share one transaction and one fsync.

A thread that wants a durable write queues it. If no batch is being written it becomes the
leader: it takes every write queued so far, runs each inside a savepoint of one transaction and
commits once; writes that arrive meanwhile wait for the next leader. Every writer returns (its
agent is answered) only after the COMMIT that holds its write returned, so nothing is
acknowledged before it is durable.

When one write of a batch raises, its savepoint is rolled back and that writer gets the error;
the others are committed as if it had not been there. When the transaction itself fails (BEGIN
or COMMIT: the disk is full, the database is locked too long) no write of the batch is stored
and every writer gets that error, which the web layer answers as "storage unavailable": each
agent resends later, as after any outage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Write(Generic[T]):
    __slots__ = ("done", "error", "value", "work")

    def __init__(self, work: Callable[[Any], T]) -> None:
        self.work = work
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """Batches `run(work)` calls into transactions opened by `transaction()`."""

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[Any]],
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self._transaction = transaction
        self.observe = observe  # called with each committed batch's size
        self._cond = threading.Condition()
        self._queue: list[_Write[Any]] = []
        self._leading = False

    def run(self, work: Callable[[Any], T]) -> T:
        """`work(db)` inside a shared transaction; returns once that transaction committed."""
        write: _Write[T] = _Write(work)
        with self._cond:
            self._queue.append(write)
            while not write.done and self._leading:
                self._cond.wait()
            if not write.done:
                self._leading = True
                batch, self._queue = self._queue, []
        if not write.done:
            try:
                self._write(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if write.error is not None:
            raise write.error
        return write.value  # type: ignore[return-value]

    def _write(self, batch: list[_Write[Any]]) -> None:
        committed = False
        try:
            with self._transaction() as db:
                for write in batch:
                    db.execute("SAVEPOINT one_write")
                    try:
                        write.value = write.work(db)
                    except Exception as exc:
                        db.execute("ROLLBACK TO one_write")
                        write.error = exc
                    db.execute("RELEASE one_write")
            committed = True
        except BaseException as exc:
            for write in batch:
                write.value, write.error = None, write.error or exc
        finally:
            for write in batch:
                write.done = True
        if committed and self.observe is not None:
            self.observe(len(batch))
