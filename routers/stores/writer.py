"""A writer thread that applies store writes in group commits, off the event loop.

Requests queue operations; the thread takes everything queued, applies it as one batch (one
transaction, one fsync on SQLite) and then resolves each operation's future. Concurrent
requests therefore share a commit, and the event loop never waits on the disk: a request that
needs its write durable awaits its future, one that does not (a decision) just queues it.

A batch of writes nobody waits for lingers up to ``linger`` seconds to gather more, so that a
stream of decisions costs one commit per ``linger``, not one per decision. A write somebody waits
for (feedback, a health message) commits at once, together with whatever is queued, unless recent
commits held several such writes: then it waits up to ``urgent_wait`` seconds for as many as
``ExpectedCompany`` expects, because concurrent requests reach the event loop one turn apart and would
otherwise each pay a commit (an fsync, and the derivation of the new propensities). Writes awaited from
an event loop are resolved there in one callback per commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple

from seldon_market_ab.company import ExpectedCompany

from .base import Derive, Operation, StateStore, StoreUnavailableError

logger = logging.getLogger(__name__)
DEFAULT_LINGER_SECONDS = 0.01  # how long a batch nobody waits for gathers more writes
DEFAULT_URGENT_WAIT_SECONDS = 0.002  # the longest a write somebody waits for waits for company
_STOP = object()  # queued by ``close``: the thread commits what came before it and ends


class _Waiter:
    """The writes of one ``commit`` call, resolved together on its event loop."""

    __slots__ = ("loop", "future", "results", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int):
        self.loop, self.future = loop, loop.create_future()
        self.results: list = [None] * count
        self.remaining = count

    def deliver(self) -> None:  # on the event loop
        if self.future.done():  # its waiter gave up (a deadline): the writes are applied all the same
            return
        error = next((r for r in self.results if isinstance(r, BaseException)), None)
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(self.results)


class _Entry(NamedTuple):
    """One queued write, and where its result goes: a ``Future`` (``submit``, ``flush``) or a place in the results
    of a ``commit`` call (``waiter``, ``index``)."""

    operation: Operation | None  # None: a flush, which only waits for everything queued before it
    urgent: bool  # somebody waits for it: its batch does not linger
    future: Future | None = None
    waiter: _Waiter | None = None
    index: int = 0


def _deliver(waiters: list[_Waiter]) -> None:
    for waiter in waiters:
        waiter.deliver()


def _give_up(future: asyncio.Future, deadline: float) -> None:
    if not future.done():  # the writes are applied all the same when their batch commits
        future.set_exception(StoreUnavailableError(f"no commit within {deadline} s"))


def _urgent_writes(batch: list) -> int:
    return sum(1 for entry in batch if entry is not _STOP and entry.urgent and entry.operation is not None)


class StoreWriter:
    def __init__(self, store: StateStore, derive: Derive | None = None,
                 after_commit: Callable[[], None] | None = None, max_batch: int = 512,
                 linger: float = DEFAULT_LINGER_SECONDS, urgent_wait: float = DEFAULT_URGENT_WAIT_SECONDS,
                 name: str = "store-writer", observe: Callable[[int, int], None] | None = None,
                 applied: Callable[[Operation, object], None] | None = None):
        """``observe(writes, awaited)`` after each commit: how many writes it held, and how many were awaited.
        ``applied(operation, result)`` for every write that committed, in this thread, whether or not anybody still
        waits for it (a waiter that gave up at its deadline does not see the result; what counts it must)."""
        self.store, self.derive, self.after_commit, self.observe = store, derive, after_commit, observe
        self.applied = applied
        self.max_batch, self.linger, self.urgent_wait = max_batch, linger, urgent_wait
        self.company = ExpectedCompany(max_batch)  # how many urgent writes the next commit waits for
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._urgent = threading.Event()  # cuts a lingering batch short
        self.commits = 0  # batches committed so far
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, operation: Operation, urgent: bool = False) -> Future:
        """Queue one write; the future holds its result once the batch holding it has committed. ``urgent``:
        somebody waits for it, so its batch does not linger."""
        future: Future = Future()
        self._queue.put(_Entry(operation, urgent, future))
        if urgent:
            self._urgent.set()
        return future

    def commit(self, *operations: Operation) -> asyncio.Future:
        """Queue writes somebody waits for; a future of the running event loop that holds their results, in
        order, once they are committed (or the first write's error)."""
        waiter = _Waiter(asyncio.get_running_loop(), len(operations))
        for index, operation in enumerate(operations):
            self._queue.put(_Entry(operation, True, waiter=waiter, index=index))
        self._urgent.set()
        return waiter.future

    async def apply(self, *operations: Operation) -> list:
        """Queue writes and wait until they are committed; their results, in order."""
        return await self.commit(*operations)

    async def commit_within(self, deadline: float, *operations: Operation) -> list:
        """``apply``, or ``StoreUnavailableError`` when the store fails or the commit takes longer than ``deadline``
        seconds (the writes may still be applied later: what an unanswered client retries is idempotent). One timer
        on the commit's own future, lighter than ``asyncio.wait_for``, which this hot path paid per request."""
        future = self.commit(*operations)
        timer = future.get_loop().call_later(deadline, _give_up, future, deadline)
        try:
            return await future
        finally:
            timer.cancel()

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything queued so far is committed."""
        future: Future = Future()
        self._queue.put(_Entry(None, True, future))
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
            if batch[0] is not _STOP and not batch[0].urgent:
                # Sleep rather than wake for every queued decision: each wake-up would take the GIL from the
                # event loop. An urgent write ends the wait.
                self._urgent.wait(self.linger)
            self._urgent.clear()
            self._take_queued(batch)
            urgent, filled = _urgent_writes(batch), len(batch) >= self.max_batch
            if urgent and self.company.waits and not filled and batch[-1] is not _STOP:
                filled = self._wait_for_company(batch, urgent)
                self._take_queued(batch)
                self._urgent.clear()
                urgent = _urgent_writes(batch)
            if urgent:
                self.company.learn(urgent, filled or len(batch) >= self.max_batch)
            stop = batch[-1] is _STOP
            if stop:
                batch.pop()
            if batch:
                try:
                    self._commit(batch)
                    if self.observe is not None:
                        self.observe(sum(1 for entry in batch if entry.operation is not None), urgent)
                except Exception:  # the thread must outlive any one batch
                    logger.exception("store writer: a batch of %d writes failed", len(batch))
            if stop:
                return

    def _take_queued(self, batch: list) -> None:
        while len(batch) < self.max_batch and batch[-1] is not _STOP:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _wait_for_company(self, batch: list, urgent: int) -> bool:
        """Take writes as they come until the expected number of urgent ones is in (True) or ``urgent_wait``
        has passed (False)."""
        deadline = time.monotonic() + self.urgent_wait
        while not self.company.filled(urgent):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or len(batch) >= self.max_batch:
                return len(batch) >= self.max_batch
            try:
                entry = self._queue.get(timeout=remaining)
            except queue.Empty:
                return False
            batch.append(entry)
            if entry is _STOP:
                return False
            urgent += _urgent_writes([entry])
        return True

    def _commit(self, batch: list[_Entry]) -> None:
        writes = [entry for entry in batch if entry.operation is not None]
        try:
            results = self.store.apply_batch([entry.operation for entry in writes], self.derive) if writes else []
        except Exception as error:  # the whole batch failed (the store is unreachable, the disk is full)
            logger.exception("store write of %d operations failed", len(writes))
            results = [error] * len(writes)
        self.commits += 1
        if self.applied is not None:
            for entry, result in zip(writes, results, strict=True):
                if not isinstance(result, BaseException):
                    try:
                        self.applied(entry.operation, result)
                    except Exception:
                        logger.exception("applied hook failed")
        if self.after_commit is not None:  # before the waiters resume, so that it does not run beside them
            try:
                self.after_commit()
            except Exception:
                logger.exception("after-commit hook failed")
        flushes = [(entry, None) for entry in batch if entry.operation is None]
        resolved: dict[asyncio.AbstractEventLoop, list[_Waiter]] = defaultdict(list)
        for entry, result in flushes + list(zip(writes, results, strict=True)):
            waiter = entry.waiter
            if waiter is not None:  # a write awaited on an event loop
                waiter.results[entry.index] = result
                waiter.remaining -= 1
                if waiter.remaining == 0:
                    resolved[waiter.loop].append(waiter)
                continue
            if entry.future.cancelled():  # its waiter gave up (a deadline): the write is applied all the same
                continue
            if isinstance(result, BaseException):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(result)
        for loop, waiters in resolved.items():
            try:
                loop.call_soon_threadsafe(_deliver, waiters)
            except RuntimeError:  # the loop has closed: nobody is waiting any more
                pass
