"""A writer thread that applies store writes in group commits, off the event loop.

Requests queue operations; the thread takes everything queued, applies it as one batch (one
transaction, one fsync on SQLite) and then resolves each operation's future. Concurrent
requests therefore share a commit, and the event loop never waits on the disk: a request that
needs its write durable awaits its future, one that does not (a decision) just queues it.

A batch of writes nobody waits for lingers up to ``linger`` seconds to gather more, so that a
stream of decisions costs one commit per ``linger``, not one per decision; a write somebody
waits for (feedback, a health message) commits at once, together with whatever is queued.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from .base import Derive, Operation, StateStore

logger = logging.getLogger(__name__)
DEFAULT_LINGER_SECONDS = 0.01  # how long a batch nobody waits for gathers more writes
_STOP = object()
_FLUSH = object()  # an entry that only waits for everything queued before it


class StoreWriter:
    def __init__(self, store: StateStore, derive: Derive | None = None,
                 after_commit: Callable[[], None] | None = None, max_batch: int = 512,
                 linger: float = DEFAULT_LINGER_SECONDS, name: str = "store-writer"):
        self.store, self.derive, self.after_commit = store, derive, after_commit
        self.max_batch, self.linger = max_batch, linger
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._urgent = threading.Event()  # cuts a lingering batch short
        self.commits = 0  # batches committed so far
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, operation: Operation, urgent: bool = False) -> Future:
        """Queue one write; the future holds its result once the batch holding it has committed. ``urgent``:
        somebody waits for it, so its batch does not linger."""
        future: Future = Future()
        self._queue.put((operation, future, urgent))
        if urgent:
            self._urgent.set()
        return future

    async def apply(self, *operations: Operation) -> list:
        """Queue writes and wait until they are committed; their results, in order."""
        futures = [self.submit(operation, urgent=True) for operation in operations]
        return [await asyncio.wrap_future(future) for future in futures]

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything queued so far is committed."""
        future: Future = Future()
        self._queue.put((_FLUSH, future, True))
        self._urgent.set()
        future.result(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Apply what is queued, then stop."""
        self._queue.put(_STOP)
        self._urgent.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0] is not _STOP and not batch[0][2]:
                # Sleep rather than wake for every queued decision: each wake-up would take the GIL from the
                # event loop. An urgent write ends the wait.
                self._urgent.wait(self.linger)
            self._urgent.clear()
            while len(batch) < self.max_batch and batch[-1] is not _STOP:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is _STOP
            if stop:
                batch.pop()
            if batch:
                try:
                    self._commit(batch)
                except Exception:  # the thread must outlive any one batch
                    logger.exception("store writer: a batch of %d writes failed", len(batch))
            if stop:
                return

    def _commit(self, batch: list) -> None:
        flushes = [future for operation, future, _ in batch if operation is _FLUSH]
        batch = [(operation, future) for operation, future, _ in batch if operation is not _FLUSH]
        try:
            results = self.store.apply_batch([operation for operation, _ in batch], self.derive) if batch else []
        except Exception as error:  # the whole batch failed (the store is unreachable, the disk is full)
            logger.exception("store write of %d operations failed", len(batch))
            results = [error] * len(batch)
        self.commits += 1
        if self.after_commit is not None:  # before the waiters resume, so that it does not run beside them
            try:
                self.after_commit()
            except Exception:
                logger.exception("after-commit hook failed")
        for future, result in [(future, None) for future in flushes] + \
                [(future, result) for (_, future), result in zip(batch, results, strict=True)]:
            if future.cancelled():  # its waiter gave up (a deadline): the write is applied all the same
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
